"""`pop3d train`: prepare frames (render/teacher/targets, cached and resumable), then train.

Runs alone or under `torchrun --nproc_per_node N` (DDP; gloo on CPU, NCCL on GPU).
"""

from __future__ import annotations

import argparse
import functools
import sys
from pathlib import Path

from pop3d_ros.data.sources import (
    add_source_arguments,
    frame_source,
    key_of_token,
    neighbour_lookup,
)
from pop3d_ros.teachers.select import add_teacher_arguments, teacher_and_space
from pop3d_ros.training.cli_depth_opts import add_depth_arguments, apply_depth_arguments
from pop3d_ros.training.cli_occupancy_opts import add_occupancy_arguments, occupancy_config
from pop3d_ros.training.cli_render_opts import (
    add_render_arguments,
    refuse_render_arguments,
    render_strategy,
)
from pop3d_ros.training.config import TrainConfig
from pop3d_ros.training.feature_balance import add_balance_arguments, feature_balance_from


def add_arguments(p: argparse.ArgumentParser) -> None:
    d = TrainConfig()
    p.add_argument("--preset", default="cpu-small", help="model preset (default: cpu-small)")
    add_source_arguments(p, "0-7", 25, "train", "synthetic world seeds, e.g. 0-7")
    p.add_argument("--out", required=True, help="run directory (checkpoints, TensorBoard)")
    p.add_argument("--prepared", help="prepared-frame cache (default: <out>/frames)")
    p.add_argument("--resume", action="store_true", help="continue from <out>/last.pt")
    p.add_argument(
        "--strategy",
        choices=["pop3d", "supervised_3d", "vfm", "render", "pop3d_render"],
        default=d.strategy,
        help="pop3d (LiDAR + 2D teacher), supervised_3d (GT occupancy), vfm (cameras only: VFM "
        "pseudo labels), render (2D rendering supervision of a density field, RenderOcc, "
        "label-free), pop3d_render (pop3d + render)",
    )
    add_render_arguments(p)
    add_occupancy_arguments(p)
    add_depth_arguments(p, d.depth_weight)
    add_teacher_arguments(p)
    p.add_argument(
        "--max-feature-voxels",
        type=int,
        default=4096,
        help="cap on supervised language-head voxels per frame (0 = all)",
    )
    p.add_argument(
        "--feature-weighting",
        choices=["point", "voxel"],
        default=d.feature_weighting,
        help="L_ft per (point, camera) pair (paper) or per voxel (default: %(default)s)",
    )
    add_balance_arguments(p, d.feature_balance)
    p.add_argument(
        "--init-from",
        help="start from this checkpoint's weights (same preset; fresh optimizer and schedule)",
    )
    p.add_argument(
        "--init-backbone",
        help="start the image backbone + neck from this checkpoint (pop3d pretrain2d, or any "
        "pop3d train run with the same backbone config); the rest stays at its init",
    )
    p.add_argument(
        "--eval-seeds",
        default="100-101",
        help="held-out synthetic seeds evaluated every --eval-every steps (default: %(default)s)",
    )
    p.add_argument(
        "--eval-split", default="val", help="nuScenes split evaluated every --eval-every steps"
    )
    p.add_argument(
        "--eval-max-frames",
        type=int,
        default=8,
        help="frames of the periodic evaluation, spread over the seeds/split (0 = all)",
    )
    p.add_argument(
        "--eval-volume",
        default="auto",
        help="volume the evaluations score (evaluation/volume.py), recorded in the checkpoint "
        "for pop3d eval: auto = pop3d-nuscenes on nuScenes, the model's grid on synthetic",
    )
    p.add_argument("--stop-after", type=int, help="end this invocation at this step")
    p.add_argument(
        "--prepare-only",
        action="store_true",
        help="only render/prepare the frames (do this once before a torchrun job)",
    )
    for name in (
        "steps",
        "batch_size",
        "warmup_steps",
        "checkpoint_every",
        "log_every",
        "eval_every",
        "num_workers",
        "seed",
    ):
        p.add_argument("--" + name.replace("_", "-"), type=int, default=getattr(d, name))
    for name in (
        "lr",
        "weight_decay",
        "backbone_lr_mult",
        "warmup_start_lr",
        "final_lr",
        "grad_clip",
        "feature_weight",
    ):
        p.add_argument("--" + name.replace("_", "-"), type=float, default=getattr(d, name))
    p.add_argument("--amp", choices=["auto", "on", "off"], default=d.amp)
    p.add_argument("--device", default=d.device, help="auto, cpu or cuda")
    from pop3d_ros.vfm.options import add_vfm_arguments

    add_vfm_arguments(p)


def _text_encoder(text_space: dict):
    from pop3d_ros.text.factory import text_encoder_from_spec

    return text_encoder_from_spec(text_space)


def _world_version() -> int:
    from pop3d_ros.data.synthetic.config import WORLD_VERSION

    return WORLD_VERSION


def run(args) -> int:
    try:
        return _run(args)
    except (ValueError, FileNotFoundError) as exc:
        print(f"pop3d train: error: {exc}", file=sys.stderr)
        return 2


def _run(args) -> int:
    import torch

    from pop3d_ros.distributed import barrier, cleanup, init_distributed
    from pop3d_ros.evaluation.protocol import best_prior_threshold, occupancy_prior
    from pop3d_ros.evaluation.volume import choose_volume
    from pop3d_ros.evaluation.zeroshot import class_canonical_embeddings
    from pop3d_ros.model.config import get_preset
    from pop3d_ros.model.pop3d import build_model
    from pop3d_ros.training.frames import PreparedFrames, prepare_frames
    from pop3d_ros.training.loop import train
    from pop3d_ros.training.strategies.pop3d import Pop3DStrategy
    from pop3d_ros.training.strategies.supervised import Supervised3DStrategy

    fields = TrainConfig.__dataclass_fields__
    cfg = TrainConfig(**{k: getattr(args, k) for k in fields if hasattr(args, k)})
    cfg.validate()
    if args.init_from and getattr(args, "init_backbone", None):
        raise ValueError("--init-from and --init-backbone exclude each other")
    if cfg.eval_every and args.data == "synthetic":
        from pop3d_ros.data.sources import parse_seeds

        overlap = sorted(set(parse_seeds(args.eval_seeds)) & set(parse_seeds(args.seeds)))
        if overlap:
            raise ValueError(f"--eval-seeds {args.eval_seeds} overlap the training seeds {overlap}")
    refuse_render_arguments(args, cfg.strategy)
    model_cfg = get_preset(args.preset)
    depth_settings = apply_depth_arguments(args, model_cfg, cfg.strategy)
    eval_volume = choose_volume(args.eval_volume, model_cfg.voxel_grid, args.data, {})
    info = init_distributed(cfg.device)
    out = Path(args.out)
    teacher, text_space, teacher_meta = teacher_and_space(args, model_cfg)
    # One text encoder for every consumer of the run (balance, render rays' classes,
    # supervised_3d, VFM pixel semantics, periodic eval), built on first use: an open_clip
    # text space loads its text tower once, and a run that needs none loads nothing.
    text_encoder = functools.cache(lambda: _text_encoder(text_space))
    lidar_occupancy = occupancy_config(args)
    common = dict(
        feature_weight=cfg.feature_weight,
        max_feature_voxels=args.max_feature_voxels,
        feature_weighting=cfg.feature_weighting,
        lidar_occupancy=lidar_occupancy,
        unobserved_weight=args.unobserved_weight,
        lift_depth_weight=cfg.depth_weight,
        feature_balance=feature_balance_from(cfg.feature_balance, text_encoder, cfg.strategy),
    )
    if lidar_occupancy.free_space != "points" and cfg.strategy not in ("pop3d", "pop3d_render"):
        raise ValueError(
            f"LiDAR occupancy options apply to pop3d and pop3d_render, not {cfg.strategy}"
        )
    keys, make_sample = frame_source(args, model_cfg)
    vfm_meta = None
    if cfg.strategy == "pop3d":
        neighbour = None
        if lidar_occupancy.sweeps:
            neighbour = neighbour_lookup(make_sample, key_of_token(args.data))
        strategy = Pop3DStrategy(teacher, neighbour=neighbour, **common)
    elif cfg.strategy == "vfm":
        from pop3d_ros.training.strategies.vfm import VFMStrategy
        from pop3d_ros.vfm.options import build_labeler, vfm_settings

        cache = Path(args.vfm_cache) if args.vfm_cache else out / "vfm"
        labeler = build_labeler(
            args,
            model_cfg.voxel_grid,
            teacher,
            text_space,
            make_sample,
            cache,
            teacher_meta,
            text_encoder=text_encoder,
        )
        strategy = VFMStrategy(labeler, **common)
        vfm_meta = vfm_settings(args)
    elif cfg.strategy in ("render", "pop3d_render"):
        strategy = render_strategy(args, cfg, model_cfg, teacher, text_encoder, make_sample, common)
    else:
        if args.data != "synthetic":
            raise ValueError("--strategy supervised_3d needs ground-truth occupancy (synthetic)")
        strategy = Supervised3DStrategy(
            class_canonical_embeddings(text_encoder()), _gt_occupancy, **common
        )
    prepared = Path(args.prepared) if args.prepared else out / "frames" / cfg.strategy
    if info.is_main:
        prepare_frames(
            keys,
            make_sample,
            lambda s: strategy.prepare(s, model_cfg),
            prepared,
            desc=f"prepare ({cfg.strategy})",
            settings={
                "strategy": cfg.strategy,
                "teacher": teacher_meta,
                "text_space": text_space,
                "image_size": list(model_cfg.image_size),
                "grid": model_cfg.to_dict()["grid"],
                "max_feature_voxels": args.max_feature_voxels,
                "data": args.data,
                # the synthetic world lays out a seed's scene for its number of frames
                "frames_per_seed": args.frames_per_seed if args.data == "synthetic" else None,
                "world_version": _world_version() if args.data == "synthetic" else None,
                **({"vfm": vfm_meta} if vfm_meta else {}),
                # the POP-3D targets keep the caches made before these options existed
                **(
                    {"lidar_occupancy": lidar_occupancy.to_dict()}
                    if lidar_occupancy.free_space != "points"
                    else {}
                ),
                **getattr(strategy, "cache_settings", {}),
                **depth_settings,
            },
        )
    barrier(info)
    if args.prepare_only:
        cleanup(info)
        return 0
    dataset = PreparedFrames(prepared, keys)
    prior = occupancy_prior((dataset[i] for i in range(len(dataset))), model_cfg.grid.shape)
    threshold = best_prior_threshold(prior, lambda: (dataset[i] for i in range(len(dataset))))
    torch.manual_seed(cfg.seed)
    model = build_model(model_cfg)
    earlier_stages = []
    if args.init_from and not args.resume:
        from pop3d_ros.training.init_backbone import init_weights

        earlier_stages = init_weights(model, model_cfg, args.init_from)
    elif getattr(args, "init_backbone", None) and not args.resume:
        from pop3d_ros.training.init_backbone import init_backbone

        earlier_stages = init_backbone(model, model_cfg, args.init_backbone)
    meta = {
        "data": args.data,
        "seeds": args.seeds if args.data == "synthetic" else None,
        "frames_per_seed": args.frames_per_seed if args.data == "synthetic" else None,
        "world_version": _world_version() if args.data == "synthetic" else None,
        "root": args.root,
        "split": args.split if args.data == "nuscenes" else None,
        "frames": len(dataset),
        "strategy": cfg.strategy,
        "teacher": teacher_meta,
        "eval_volume": eval_volume.name,
        "vfm": vfm_meta,
        "lidar_occupancy": lidar_occupancy.to_dict(),
        "unobserved_weight": args.unobserved_weight,
        "init_from": args.init_from,
        "init_backbone": getattr(args, "init_backbone", None),
        # how the starting weights were made, oldest first, so a release names every stage
        "earlier_stages": earlier_stages,
        "command": "pop3d train " + " ".join(sys.argv[2:]) if len(sys.argv) > 2 else "",
    }
    extra = {"occupancy_prior": torch.from_numpy(prior).half(), "prior_threshold": threshold}
    evaluate = None
    if cfg.eval_every:
        from pop3d_ros.training.periodic_eval import held_out_evaluation

        evaluate = held_out_evaluation(args, model_cfg, teacher, text_encoder, extra, info)
    summary = train(
        model,
        model_cfg,
        dataset,
        strategy,
        cfg,
        out,
        info=info,
        resume=args.resume,
        text_space=text_space,
        meta=meta,
        extra=extra,
        stop_after=args.stop_after,
        evaluate=evaluate,
    )
    if info.is_main:
        last = summary["history"][-1][1] if summary["history"] else {}
        print(
            f"trained to step {summary['step']} in {summary['seconds']:.0f} s; "
            f"final loss {last.get('loss', float('nan')):.4f}; checkpoint {summary['checkpoint']}"
        )
    cleanup(info)
    return 0


def _gt_occupancy(sample: dict, grid):
    occ = sample.get("occupancy")
    if occ is None:
        raise ValueError(f"frame {sample.get('token')!r} has no ground-truth occupancy")
    if tuple(occ.shape) != tuple(grid.shape):
        raise ValueError(
            f"ground-truth occupancy {tuple(occ.shape)} is not on the model grid "
            f"{tuple(grid.shape)}"
        )
    return occ
