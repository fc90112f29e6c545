"""`pop3d eval`: the POP-3D evaluation of a checkpoint; writes JSON (design.md section 4)
and prints a per-class table. Runs under torchrun too (frames sharded, metrics summed)."""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Literal

import tyro

from pop3d_ros.cli_config import run_command
from pop3d_ros.data.sources import DataConfig


def _held_out() -> DataConfig:
    return DataConfig(seeds="100-101", frames_per_seed=10, split="val")


@dataclass
class EvalCommand:
    """Evaluate a checkpoint: POP-3D's protocol, the Occ3D-style protocol and retrieval; writes
    JSON (design.md section 4) and prints a per-class table. A field unique across the groups
    may be given without its group (--seeds = --data.seeds)."""

    checkpoint: str  # model checkpoint (.pt)
    out: str  # JSON file to write
    data: DataConfig = field(default_factory=_held_out)
    teacher_cache: str = ""  # MaskCLIP feature cache for the teacher baseline
    threshold: float = 0.5  # occupancy probability threshold
    max_frames: int = 0  # evaluate at most N frames (0 = all)
    # Volume scored: model (the checkpoint's grid), pop3d-nuscenes (POP-3D's volume in the
    # LiDAR frame), auto = the checkpoint's meta.eval_volume, else pop3d-nuscenes on
    # nuScenes, else model.
    volume: str = "auto"
    # KEY=VALUE, repeatable: follow POP-3D's code instead of its paper where they differ:
    # free_space=pop3d-code, out_of_range=clip, lidar_points=per-camera
    # (evaluation/conventions.py).
    convention: Annotated[tuple[str, ...], tyro.conf.UseAppendAction] = ()
    device: str = "auto"  # auto, cpu or cuda
    # Score the checkpoint (torch) or its deployed graphs (export cache, cache_dir).
    backend: Literal["torch", "onnxruntime", "tensorrt"] = "torch"
    # Deployed graphs' precision (int8 needs `pop3d export --precision int8` first).
    precision: Literal["fp32", "fp16", "int8"] = "fp32"
    cache_dir: str = ""  # export cache ("" = ~/.cache/pop3d_ros)
    grounding_min_score: float = 0.9  # cosine threshold of the long-tail grounding benchmark
    # Occ3D-nuScenes gts/ folder (<scene>/<token>/labels.npz) for the Occ3D-style keys on
    # nuScenes (synthetic frames use their own ground truth).
    occ3d_labels: str = ""
    occ3d: bool = True  # the Occ3D-style evaluation (--no_occ3d skips it)
    ray_iou: bool = True  # SparseOcc's RayIoU beside it, ~1 s per frame (--no_ray_iou skips it)


def main(argv=None) -> int:
    return run_command(EvalCommand, sys.argv[2:] if argv is None else argv, "pop3d eval", _run)


def _teacher(args, ckpt: dict, encoder):
    """The teacher the model was trained with, for the back-projection baseline."""
    if args.teacher_cache:
        from pop3d_ros.teachers.cache import CachedTeacher

        return CachedTeacher(args.teacher_cache)
    info = ckpt.get("meta", {}).get("teacher", {})
    if info.get("kind") == "synthetic":
        from pop3d_ros.data.synthetic_teacher import SyntheticTeacher, TeacherConfig

        fields = TeacherConfig.__dataclass_fields__
        return SyntheticTeacher(
            encoder, TeacherConfig(**{k: v for k, v in info.items() if k in fields})
        )
    return None


def _run(args) -> int:
    import numpy as np

    from pop3d_ros.data.sources import frame_source
    from pop3d_ros.distributed import cleanup, init_distributed
    from pop3d_ros.evaluation.conventions import parse_conventions
    from pop3d_ros.evaluation.occ3d import Occ3DEvaluation
    from pop3d_ros.evaluation.protocol import Evaluator, format_table
    from pop3d_ros.evaluation.retrieval import RetrievalMetrics, concept_queries
    from pop3d_ros.evaluation.volume import choose_volume
    from pop3d_ros.evaluation.zeroshot import ZeroShotClassifier, class_phrase_embeddings
    from pop3d_ros.model.checkpoint import load_model
    from pop3d_ros.text.factory import text_encoder_from_spec

    conventions = parse_conventions(list(args.convention))
    info = init_distributed(args.device)
    model, ckpt = load_model(args.checkpoint)
    cfg = model.cfg
    if args.backend != "torch":
        from pop3d_ros.export.eval_runtime import RuntimeModel
        from pop3d_ros.export.runtime import load_runtime

        runtime = load_runtime(
            args.checkpoint,
            args.backend,
            args.cache_dir or None,
            precision=args.precision,
            threads=1,
        )
        model = RuntimeModel(runtime)
    encoder = text_encoder_from_spec(ckpt["text_space"])
    classifier = ZeroShotClassifier(class_phrase_embeddings(encoder))
    keys, make = frame_source(args.data, cfg.voxel_grid)
    if args.max_frames > 0:
        keys = keys[: args.max_frames]
    mine = keys[info.rank :: info.world_size]
    prior = ckpt.get("occupancy_prior")
    synthetic = args.data.data == "synthetic"
    queries = concept_queries(encoder) if synthetic else {}
    retrieval = RetrievalMetrics(queries, args.grounding_min_score) if queries else None
    ev = Evaluator(
        model,
        cfg,
        classifier,
        teacher=_teacher(args, ckpt, encoder),
        prior=None if prior is None else np.asarray(prior.float()),
        prior_threshold=float(ckpt.get("prior_threshold", 0.5)),
        occupancy_threshold=args.threshold,
        device=info.device,
        conventions=conventions,
        volume=choose_volume(args.volume, cfg.voxel_grid, args.data.data, ckpt.get("meta", {})),
        retrieval=retrieval,
        occ3d=Occ3DEvaluation(
            cfg.voxel_grid, labels_root=args.occ3d_labels or None, ray_iou=args.ray_iou
        )
        if args.occ3d
        else None,
    )
    ev.run((make(k) for k in mine), total=len(mine), show=info.is_main)
    ev.all_reduce()
    result = ev.result()
    result["frames"] = len(keys)
    result.update(
        checkpoint=str(args.checkpoint),
        data=args.data.data,
        seeds=args.data.seeds if synthetic else None,
        split=None if synthetic else args.data.split,
        text_space=ckpt["text_space"].get("space_id", ckpt["text_space"].get("kind")),
        backend=args.backend,
        precision=getattr(model, "runtime", None) and model.runtime.precision or "fp32",
    )
    if info.is_main:
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(result, indent=1))
        print(format_table(result))
        print(f"wrote {out}")
    cleanup(info)
    return 0
