"""`pop3d eval-map`: build the map of synthetic drives and score it (evaluation/map_protocol.py).

    pop3d eval-map --checkpoint models/default/model.pt --data synthetic --seeds 100-103 \\
        --frames 40 --out map_eval.json

One drive per seed; the ratios pool all drives (per-seed values under `per_seed`).
"""

from __future__ import annotations

import dataclasses
import json
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal

from pop3d_ros.cli_config import run_command
from pop3d_ros.mapping.cli_map import given_lattice, map_config
from pop3d_ros.mapping.config import MapConfig

MAIN_KEYS = (
    "map_iou", "map_iou_naive", "frame_iou_mean", "map_retrieval_map",
    "frame_retrieval_map_mean", "map_grounding_recall", "frame_grounding_recall_mean",
    "trail_fraction", "retention", "occluded_kept_fraction", "map_voxels", "map_bytes",
    "mb_per_10k_occupied", "map_update_ms", "map_query_ms",
)  # fmt: skip


EXTRA_PREFIXES = (
    "map_iou_", "frame_iou_mean_", "retention_", "trail_fraction_", "occluded_kept_fraction_",
    "map_retrieval_map_", "map_grounding_recall_",
)  # fmt: skip


@dataclass
class EvalMapCommand:
    """Build the map of synthetic drives (one per seed) and score it against the static
    world (evaluation/map_protocol.py), with its naive twin and the ablations in the same
    pass; writes JSON. The map's settings are `--map.*` (MapConfig); a field unique across
    the groups may be given without its group (--visibility = --map.visibility)."""

    checkpoint: str = "models/default/model.pt"  # model checkpoint (.pt)
    data: str = "synthetic"  # frame source: synthetic (ground truth comes from the world)
    seeds: str = "100-103"  # synthetic drives (held-out seeds by default)
    frames: int = 40  # frames per drive
    out: str = "map_eval.json"  # JSON report to write
    grounding_min_score: float = 0.9  # cosine threshold of the grounded objects
    pixel_stride: int = 2  # camera mask of the protocol: one ray every N pixels
    # a frame's visible voxels: "cameras" = every voxel its cameras saw (on the drive's
    # grid), "grid" = those inside its own grid (Occ3D's mask of that frame)
    reach: Literal["cameras", "grid"] = "cameras"
    ablations: bool = True  # also score the ablation maps (ablation_configs) in the same pass
    backend: Literal["torch", "onnxruntime"] = "torch"  # inference backend
    threads: int = 1  # inference threads
    map: MapConfig = field(default_factory=MapConfig)  # the map (mapping/config.py)


def ablation_configs(config: MapConfig) -> dict[str, MapConfig]:
    """The maps scored beside the map and its naive twin: plain log-odds (no range weight)
    with and without the visibility rule, the literal first-voxel rule, the rule with nothing
    updated behind occluders (occluded_evidence none), and language fused every 2nd / 4th
    camera set."""
    plain = dataclasses.replace(config, range_scale_m=0.0)
    return {
        "plain": plain,
        "naive_plain": dataclasses.replace(plain, visibility="all"),
        "first_voxel": dataclasses.replace(config, occlusion="first", occlusion_limit=1),
        "occluded_none": dataclasses.replace(config, occluded_evidence="none"),
        "language_every_2": dataclasses.replace(config, language_every=2),
        "language_every_4": dataclasses.replace(config, language_every=4),
    }


def main(argv=None) -> int:
    argv = sys.argv[2:] if argv is None else list(argv)
    keep = given_lattice(EvalMapCommand, argv)
    return run_command(EvalMapCommand, argv, "pop3d eval-map", lambda cmd: _run(cmd, keep))


def _run(cfg: EvalMapCommand, keep) -> int:
    report = evaluate(cfg, keep)
    out = Path(cfg.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=1))
    keys = MAIN_KEYS + tuple(k for k in report if k.startswith(EXTRA_PREFIXES))
    width = max(len(k) for k in keys)
    for key in keys:
        print(f"{key.ljust(width)}  {report.get(key)}")
    print(f"wrote {out}")
    return 0


def evaluate(cfg: EvalMapCommand, keep=()) -> dict:
    import numpy as np
    from tqdm import tqdm

    from pop3d_ros.data.sources import parse_seeds
    from pop3d_ros.data.synthetic import SyntheticWorld, WorldConfig
    from pop3d_ros.evaluation.map_protocol import DriveEvaluation, pool
    from pop3d_ros.evaluation.retrieval import RetrievalMetrics, concept_queries
    from pop3d_ros.mapping.drive import drive_frames, load_pipeline

    if cfg.data != "synthetic":
        raise ValueError(f"--data {cfg.data}: eval-map needs the synthetic world's ground truth")
    if cfg.frames < 2:
        raise ValueError("--frames must be >= 2 (a map of one frame is the frame)")
    seeds = parse_seeds(cfg.seeds)
    pipeline, encoder = load_pipeline(cfg.checkpoint, cfg.backend, cfg.threads)
    config = map_config(cfg.map, pipeline.grid, keep)
    queries = concept_queries(encoder)
    embeddings = [q for q, _ in queries.values()]

    def retrieval():
        return RetrievalMetrics(queries, cfg.grounding_min_score) if queries else None

    variants = ablation_configs(config) if cfg.ablations else {}
    map_retrieval = {name: retrieval() for name in ("map", "naive", *variants)}
    frame_retrieval = retrieval()
    per_seed = {}
    for seed in seeds:
        world = SyntheticWorld(WorldConfig(seed=seed, num_frames=cfg.frames))
        ev = DriveEvaluation(world, cfg.frames, pipeline.grid, config, lambda: frame_retrieval,
                             cfg.pixel_stride, cfg.reach, variants)  # fmt: skip
        for frame in tqdm(drive_frames(pipeline, world), total=cfg.frames,
                          desc=f"eval-map s{seed}", unit="frame"):  # fmt: skip
            ev.add(frame)
        per_seed[seed] = ev.result(map_retrieval, embeddings)
    report = pool([r.pop("raw") for r in per_seed.values()])
    if frame_retrieval is not None:
        mr, fr = map_retrieval["map"].result(), frame_retrieval.result()
        for name, metrics in map_retrieval.items():
            if name != "map":
                res = metrics.result()
                report[f"map_retrieval_map_{name}"] = res["retrieval_map"]
                report[f"map_grounding_recall_{name}"] = res["grounding_recall"]
        report.update(
            map_retrieval_map=mr["retrieval_map"],
            frame_retrieval_map_mean=fr["retrieval_map"],
            map_grounding_recall=mr["grounding_recall"],
            frame_grounding_recall_mean=fr["grounding_recall"],
            map_retrieval_per_concept=mr["retrieval_per_concept"],
            frame_retrieval_per_concept=fr["retrieval_per_concept"],
            map_grounding_instances=mr["grounding_instances"],
            frame_grounding_instances=fr["grounding_instances"],
            map_retrieval_map_chance=mr["retrieval_map_chance"],
            grounding_min_score=cfg.grounding_min_score,
        )
    sizes = [r for r in per_seed.values()]
    for key in ("map_voxels", "map_observed_voxels", "map_occupied_voxels", "map_feature_voxels",
                "map_bytes"):  # fmt: skip
        report[key] = int(np.median([r[key] for r in sizes]))
    occ = sum(r["map_occupied_voxels"] for r in sizes)
    report["mb_per_10k_occupied"] = round(
        sum(r["map_bytes"] for r in sizes) / 1e6 * 1e4 / max(occ, 1), 3
    )
    report.update(
        checkpoint=str(cfg.checkpoint),
        data=cfg.data,
        seeds=cfg.seeds,
        frames_per_seed=cfg.frames,
        map_config=asdict(config),
        ablations={
            name: {k: v for k, v in asdict(c).items() if getattr(config, k) != v}
            for name, c in variants.items()
        },  # fmt: skip
        protocol=(
            "evaluation/map_protocol.py: the map's own lattice; scored = voxels some camera saw "
            f"(Occ3D-style mask, reach {cfg.reach!r}), not IGNORE, not a moving agent at the "
            "last frame; truth = static primitives + ground"
        ),
        per_seed={str(k): v for k, v in per_seed.items()},
    )
    return report
