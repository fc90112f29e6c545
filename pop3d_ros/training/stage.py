"""One training stage from its resolved `TrainSettings`: prepare the frames (render, teacher,
targets; cached and resumable), build the strategy and the model, train.

Runs alone or under `torchrun --nproc_per_node N` (DDP; gloo on CPU, NCCL on GPU).
"""

from __future__ import annotations

import functools
from pathlib import Path

from pop3d_ros.cli_config import to_dict
from pop3d_ros.training.settings import TrainSettings


def _world_version() -> int:
    from pop3d_ros.data.synthetic.config import WORLD_VERSION

    return WORLD_VERSION


def gt_occupancy(sample: dict, grid):
    """The synthetic ground-truth occupancy of a frame on the model grid (supervised_3d)."""
    occ = sample.get("occupancy")
    if occ is None:
        raise ValueError(f"frame {sample.get('token')!r} has no ground-truth occupancy")
    if tuple(occ.shape) != tuple(grid.shape):
        raise ValueError(
            f"ground-truth occupancy {tuple(occ.shape)} is not on the model grid "
            f"{tuple(grid.shape)}"
        )
    return occ


def check_settings(s: TrainSettings) -> None:
    """Refuses combinations that would train something other than what was asked."""
    from pop3d_ros.data.sources import parse_seeds
    from pop3d_ros.training.strategies.render_config import refuse_unused

    s.train.validate()
    s.loss.validate()
    s.occupancy.validate()
    strategy = s.train.strategy
    if s.init_from and s.init_backbone:
        raise ValueError("init_from and init_backbone exclude each other")
    if s.train.eval_every and s.data.data == "synthetic":
        held_out = s.eval.held_out_seeds
        overlap = sorted(set(parse_seeds(held_out)) & set(parse_seeds(s.data.seeds)))
        if overlap:
            raise ValueError(f"eval.held_out_seeds {held_out} overlap the training seeds {overlap}")
    refuse_unused(s.render, strategy)
    if strategy in ("render", "pop3d_render"):
        s.render.validate()
    if s.occupancy.free_space != "points" and strategy not in ("pop3d", "pop3d_render"):
        raise ValueError(f"LiDAR occupancy options apply to pop3d and pop3d_render, not {strategy}")
    if strategy == "supervised_3d" and s.data.data != "synthetic":
        raise ValueError("strategy supervised_3d needs ground-truth occupancy (synthetic data)")


def build_strategy(s: TrainSettings, model_cfg, teacher, text_space, text_encoder, source, out,
                   teacher_meta=None):  # fmt: skip
    """(strategy, its meta for the checkpoint) of the settings; `source` = (keys, make)."""
    from pop3d_ros.data.sources import key_of_token, neighbour_lookup
    from pop3d_ros.training.feature_balance import feature_balance_from

    strategy = s.train.strategy
    _, make_sample = source
    loss = s.loss
    common = dict(
        feature_weight=loss.feature_weight,
        max_feature_voxels=loss.max_feature_voxels,
        feature_weighting=loss.feature_weighting,
        lidar_occupancy=s.occupancy,
        unobserved_weight=loss.unobserved_weight,
        lift_depth_weight=loss.depth_weight,
        feature_balance=feature_balance_from(loss.feature_balance, text_encoder, strategy),
    )
    if strategy == "pop3d":
        from pop3d_ros.training.strategies.pop3d import Pop3DStrategy

        neighbour = None
        if s.occupancy.sweeps:
            neighbour = neighbour_lookup(make_sample, key_of_token(s.data.data))
        return Pop3DStrategy(teacher, neighbour=neighbour, **common), None
    if strategy == "vfm":
        from pop3d_ros.training.strategies.vfm import VFMStrategy
        from pop3d_ros.vfm.options import build_labeler, vfm_settings

        cache = Path(s.vfm.cache) if s.vfm.cache else Path(out) / "vfm"
        labeler = build_labeler(
            s.vfm, model_cfg.voxel_grid, teacher, text_space, make_sample, cache, teacher_meta,
            text_encoder=text_encoder,
        )  # fmt: skip
        return VFMStrategy(labeler, **common), vfm_settings(s.vfm)
    if strategy in ("render", "pop3d_render"):
        from pop3d_ros.training.strategies.render_config import build_render_strategy

        neighbour = neighbour_lookup(make_sample, key_of_token(s.data.data))
        built = build_render_strategy(
            s.render, strategy, model_cfg, teacher, text_encoder, neighbour, common,
            key_of_token(s.data.data),
        )  # fmt: skip
        return built, None
    from pop3d_ros.evaluation.zeroshot import class_canonical_embeddings
    from pop3d_ros.training.strategies.supervised import Supervised3DStrategy

    return Supervised3DStrategy(
        class_canonical_embeddings(text_encoder()), gt_occupancy, **common
    ), None


def frame_settings(s, model_cfg, strategy, teacher_meta, text_space, vfm_meta) -> dict:
    """What a prepared-frame cache depends on (a cache with other settings is refused)."""
    lift = model_cfg.lifting
    synthetic = s.data.data == "synthetic"
    return {
        "strategy": s.train.strategy,
        "teacher": teacher_meta,
        "text_space": text_space,
        "image_size": list(model_cfg.image_size),
        "grid": model_cfg.to_dict()["grid"],
        "max_feature_voxels": s.loss.max_feature_voxels,
        "data": s.data.data,
        # the synthetic world lays out a seed's scene for its number of frames
        "frames_per_seed": s.data.frames_per_seed if synthetic else None,
        "world_version": _world_version() if synthetic else None,
        **({"vfm": vfm_meta} if vfm_meta else {}),
        # the POP-3D targets keep the caches made before these options existed
        **(
            {"lidar_occupancy": s.occupancy.to_dict()} if s.occupancy.free_space != "points" else {}
        ),
        **getattr(strategy, "cache_settings", {}),
        **(
            {
                "depth_target": {
                    "bins": lift.depth_bins,
                    "min": lift.depth_min,
                    "max": lift.depth_max,
                    "spacing": lift.depth_spacing,
                    "feature_hw": list(model_cfg.feature_hw),
                }
            }
            if lift.depth_bins
            else {}
        ),
    }


def train_stage(
    s: TrainSettings,
    out,
    prepared=None,
    resume: bool = False,
    stop_after: int | None = None,
    prepare_only: bool = False,
    meta: dict | None = None,
) -> dict | None:
    """Prepare and train one stage into `out` (`model.pt`, `last.pt`, TensorBoard); returns
    the loop's summary (None with `prepare_only`). `meta` joins the checkpoint's meta."""
    import torch

    from pop3d_ros.data.sources import frame_source
    from pop3d_ros.distributed import barrier, cleanup, init_distributed
    from pop3d_ros.evaluation.protocol import best_prior_threshold, occupancy_prior
    from pop3d_ros.evaluation.volume import choose_volume
    from pop3d_ros.model.pop3d import build_model
    from pop3d_ros.teachers.select import teacher_and_space
    from pop3d_ros.text.factory import text_encoder_from_spec
    from pop3d_ros.training.frames import PreparedFrames, prepare_frames
    from pop3d_ros.training.loop import train

    check_settings(s)
    cfg = s.train
    model_cfg = s.model.build(cfg.strategy)
    eval_volume = choose_volume(s.eval.volume, model_cfg.voxel_grid, s.data.data, {})
    info = init_distributed(cfg.device)
    out = Path(out)
    teacher, text_space, teacher_meta = teacher_and_space(
        s.teacher, s.data.data, model_cfg.heads.clip_dim
    )
    # One text encoder for every consumer of the run (balance, render rays' classes,
    # supervised_3d, VFM pixel semantics, periodic eval), built on first use: an open_clip
    # text space loads its text tower once, and a run that needs none loads nothing.
    text_encoder = functools.cache(lambda: text_encoder_from_spec(text_space))
    source = frame_source(s.data, model_cfg.voxel_grid)
    strategy, vfm_meta = build_strategy(
        s, model_cfg, teacher, text_space, text_encoder, source, out, teacher_meta
    )
    keys, make_sample = source
    prepared = Path(prepared) if prepared else out / "frames" / cfg.strategy
    if info.is_main:
        prepare_frames(
            keys,
            make_sample,
            lambda sample: strategy.prepare(sample, model_cfg),
            prepared,
            desc=f"prepare ({cfg.strategy})",
            settings=frame_settings(s, model_cfg, strategy, teacher_meta, text_space, vfm_meta),
        )
    barrier(info)
    if prepare_only:
        cleanup(info)
        return None
    dataset = PreparedFrames(prepared, keys)
    if hasattr(strategy, "attach_frames"):
        strategy.attach_frames(prepared, keys)
    prior = occupancy_prior((dataset[i] for i in range(len(dataset))), model_cfg.grid.shape)
    threshold = best_prior_threshold(prior, lambda: (dataset[i] for i in range(len(dataset))))
    torch.manual_seed(cfg.seed)
    model = build_model(model_cfg)
    earlier_stages = []
    if s.init_from and not resume:
        from pop3d_ros.training.init_backbone import init_weights

        earlier_stages = init_weights(model, model_cfg, s.init_from)
    elif s.init_backbone and not resume:
        from pop3d_ros.training.init_backbone import init_backbone

        earlier_stages = init_backbone(model, model_cfg, s.init_backbone)
    synthetic = s.data.data == "synthetic"
    meta = {
        **(meta or {}),
        "data": s.data.data,
        "seeds": s.data.seeds if synthetic else None,
        "frames_per_seed": s.data.frames_per_seed if synthetic else None,
        "world_version": _world_version() if synthetic else None,
        "root": s.data.root or None,
        "split": s.data.split if not synthetic else None,
        "frames": len(dataset),
        "strategy": cfg.strategy,
        "teacher": teacher_meta,
        "eval_volume": eval_volume.name,
        "vfm": vfm_meta,
        "lidar_occupancy": s.occupancy.to_dict(),
        "unobserved_weight": s.loss.unobserved_weight,
        "init_from": s.init_from or None,
        "init_backbone": s.init_backbone or None,
        # how the starting weights were made, oldest first, so a release names every stage
        "earlier_stages": earlier_stages,
        "settings": to_dict(s),
    }
    extra = {"occupancy_prior": torch.from_numpy(prior).half(), "prior_threshold": threshold}
    evaluate = None
    if cfg.eval_every:
        from pop3d_ros.training.periodic_eval import held_out_evaluation

        evaluate = held_out_evaluation(s, model_cfg, teacher, text_encoder, extra, info)
    summary = train(
        model,
        model_cfg,
        dataset,
        strategy,
        cfg,
        out,
        info=info,
        resume=resume,
        text_space=text_space,
        meta=meta,
        extra=extra,
        stop_after=stop_after,
        evaluate=evaluate,
    )
    if info.is_main:
        last = summary["history"][-1][1] if summary["history"] else {}
        print(
            f"trained to step {summary['step']} in {summary['seconds']:.0f} s; "
            f"final loss {last.get('loss', float('nan')):.4f}; checkpoint {summary['checkpoint']}"
        )
    cleanup(info)
    return summary
