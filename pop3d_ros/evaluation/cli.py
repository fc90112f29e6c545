"""`pop3d eval`: the POP-3D evaluation of a checkpoint; writes JSON (design.md section 4)
and prints a per-class table. Runs under torchrun too (frames sharded, metrics summed)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from pop3d_ros.data.sources import add_source_arguments


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--checkpoint", required=True, help="model checkpoint (.pt)")
    add_source_arguments(p, "100-101", 10, "val", "held-out synthetic seeds")
    p.add_argument("--out", required=True, help="JSON file to write")
    p.add_argument("--teacher-cache", help="MaskCLIP feature cache for the teacher baseline")
    p.add_argument("--threshold", type=float, default=0.5, help="occupancy probability threshold")
    p.add_argument("--max-frames", type=int, default=0, help="evaluate at most N frames (0 = all)")
    p.add_argument(
        "--volume",
        default="auto",
        help="volume scored: model (the checkpoint's grid), pop3d-nuscenes (POP-3D's volume in "
        "the LiDAR frame), auto = the checkpoint's meta.eval_volume, else pop3d-nuscenes on "
        "nuScenes, else model",
    )
    p.add_argument(
        "--convention",
        action="append",
        metavar="KEY=VALUE",
        help="follow POP-3D's code instead of its paper where they differ (repeatable): "
        "free_space=pop3d-code, out_of_range=clip, lidar_points=per-camera "
        "(evaluation/conventions.py)",
    )
    p.add_argument("--device", default="auto", help="auto, cpu or cuda")
    p.add_argument(
        "--backend",
        choices=("torch", "onnxruntime", "tensorrt"),
        default="torch",
        help="score the checkpoint (torch) or its deployed graphs (export cache, --cache-dir)",
    )
    p.add_argument(
        "--precision",
        choices=("fp32", "fp16", "int8"),
        default="fp32",
        help="deployed graphs' precision (int8 needs `pop3d export --precision int8` first)",
    )
    p.add_argument("--cache-dir", default=None, help="export cache (~/.cache/pop3d_ros)")
    p.add_argument(
        "--grounding-min-score",
        type=float,
        default=0.9,
        help="cosine threshold of the long-tail grounding benchmark (default: %(default)s)",
    )
    p.add_argument(
        "--occ3d-labels",
        help="Occ3D-nuScenes gts/ folder (<scene>/<token>/labels.npz)"
        " for the Occ3D-style keys on nuScenes (synthetic: from its own GT)",
    )
    p.add_argument("--no-occ3d", action="store_true", help="skip the Occ3D-style evaluation")


def run(args) -> int:
    try:
        return _run(args)
    except (ValueError, FileNotFoundError) as exc:
        print(f"pop3d eval: error: {exc}", file=sys.stderr)
        return 2


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

    from pop3d_ros.data.sources import nuscenes_source, parse_seeds, synthetic_source
    from pop3d_ros.distributed import cleanup, init_distributed
    from pop3d_ros.evaluation.conventions import parse_conventions
    from pop3d_ros.evaluation.occ3d import Occ3DEvaluation
    from pop3d_ros.evaluation.protocol import Evaluator, format_table
    from pop3d_ros.evaluation.retrieval import RetrievalMetrics, concept_queries
    from pop3d_ros.evaluation.volume import choose_volume
    from pop3d_ros.evaluation.zeroshot import ZeroShotClassifier, class_phrase_embeddings
    from pop3d_ros.model.checkpoint import load_model
    from pop3d_ros.text.factory import text_encoder_from_spec

    conventions = parse_conventions(args.convention)
    info = init_distributed(args.device)
    model, ckpt = load_model(args.checkpoint)
    cfg = model.cfg
    if args.backend != "torch":
        from pop3d_ros.export.eval_runtime import RuntimeModel
        from pop3d_ros.export.runtime import load_runtime

        runtime = load_runtime(
            args.checkpoint, args.backend, args.cache_dir, precision=args.precision, threads=1
        )
        model = RuntimeModel(runtime)
    encoder = text_encoder_from_spec(ckpt["text_space"])
    classifier = ZeroShotClassifier(class_phrase_embeddings(encoder))
    if args.data == "synthetic":
        keys, make = synthetic_source(
            parse_seeds(args.seeds), args.frames_per_seed, grid=cfg.voxel_grid
        )
    else:
        if not args.root:
            raise ValueError("--data nuscenes needs --root DIR")
        keys, make = nuscenes_source(args.root, args.split, args.version)
    if args.max_frames > 0:
        keys = keys[: args.max_frames]
    mine = keys[info.rank :: info.world_size]
    prior = ckpt.get("occupancy_prior")
    queries = concept_queries(encoder) if args.data == "synthetic" else {}
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
        volume=choose_volume(args.volume, cfg.voxel_grid, args.data, ckpt.get("meta", {})),
        retrieval=retrieval,
        occ3d=None
        if args.no_occ3d
        else Occ3DEvaluation(cfg.voxel_grid, labels_root=args.occ3d_labels),
    )
    ev.run((make(k) for k in mine), total=len(mine), show=info.is_main)
    ev.all_reduce()
    result = ev.result()
    result["frames"] = len(keys)
    result.update(
        checkpoint=str(args.checkpoint),
        data=args.data,
        seeds=args.seeds if args.data == "synthetic" else None,
        split=args.split if args.data == "nuscenes" else None,
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
