"""`pop3d map`: build the online map of a synthetic drive offline (no ROS) and save it.

    pop3d map --checkpoint models/default/model.pt --data synthetic --seeds 100 --frames 40 \\
        --out map.npz [--ply map.ply]

Runs the node's inference path frame by frame and `OnlineMap.integrate` with the drive's
ego poses; the map's settings are `MapConfig`'s fields (`--visibility`, `--language-every`,
`--max-voxels`, ...). Several seeds write one map each (`map_s<seed>.npz`).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

from pop3d_ros.mapping.cli_options import add_dataclass_arguments, dataclass_from_args
from pop3d_ros.mapping.config import MapConfig

LATTICE = ("voxel_size", "origin")  # taken from the model's grid


@dataclass
class MapRunConfig:
    """`pop3d map`."""

    checkpoint: str = "models/default/model.pt"  # model checkpoint (.pt)
    data: str = "synthetic"  # frame source: synthetic (the drive of each seed)
    seeds: str = "100"  # synthetic drives, e.g. 100 or 100-103 (one map each)
    frames: int = 40  # frames per drive
    out: str = "map.npz"  # map file to write
    ply: str = ""  # also write the occupied voxels as PLY (Open3D / CloudCompare) here
    backend: str = "torch"  # inference backend: torch or onnxruntime
    threads: int = 1  # inference threads


def add_arguments(parser) -> None:
    add_dataclass_arguments(parser, MapRunConfig)
    add_dataclass_arguments(parser, MapConfig, skip=LATTICE)


def seed_path(path: str, seed: int, many: bool) -> Path:
    p = Path(path)
    return p.with_name(f"{p.stem}_s{seed}{p.suffix}") if many else p


def map_config(args, grid) -> MapConfig:
    base = dataclass_from_args(MapConfig, args, skip=LATTICE)
    return MapConfig.for_grid(grid, **{k: v for k, v in vars(base).items() if k not in LATTICE})


def run(args) -> int:
    try:
        run_cfg = dataclass_from_args(MapRunConfig, args)
        return build_maps(run_cfg, args)
    except (ValueError, FileNotFoundError) as exc:
        print(f"pop3d map: error: {str(exc).splitlines()[0]}", file=sys.stderr)
        return 2


def build_maps(run_cfg: MapRunConfig, args) -> int:
    from tqdm import tqdm

    from pop3d_ros.data.sources import parse_seeds
    from pop3d_ros.data.synthetic import SyntheticWorld, WorldConfig
    from pop3d_ros.mapping.drive import drive_frames, load_pipeline
    from pop3d_ros.mapping.online_map import OnlineMap

    if run_cfg.data != "synthetic":
        raise ValueError(f"--data {run_cfg.data}: only synthetic drives are supported")
    if run_cfg.frames < 1:
        raise ValueError("--frames must be >= 1")
    seeds = parse_seeds(run_cfg.seeds)
    pipeline, encoder = load_pipeline(run_cfg.checkpoint, run_cfg.backend, run_cfg.threads)
    config = map_config(args, pipeline.grid)
    for seed in seeds:
        world = SyntheticWorld(WorldConfig(seed=seed, num_frames=run_cfg.frames))
        m = OnlineMap(config)
        refused = 0
        for frame in tqdm(drive_frames(pipeline, world), total=run_cfg.frames,
                          desc=f"map s{seed}", unit="frame"):  # fmt: skip
            report = m.integrate(frame.prediction, frame.pose, frame.stamp)
            refused += not report.accepted
        out = m.save(seed_path(run_cfg.out, seed, len(seeds) > 1))
        st = m.stats()
        print(f"seed {seed}: {st['occupied_voxels']} occupied of {st['observed_voxels']} "
              f"observed voxels, {st['feature_voxels']} with language, "
              f"{st['bytes'] / 1e6:.1f} MB, {refused} sets refused -> {out}")  # fmt: skip
        if run_cfg.ply:
            ply = write_map_ply(m, seed_path(run_cfg.ply, seed, len(seeds) > 1), encoder)
            print(f"wrote {ply}")
    return 0


def write_map_ply(online_map, path, encoder=None) -> Path:
    """The occupied voxels as PLY, coloured by zero-shot class (the 16 classes' prompts) when
    the map holds language features, else by height."""
    import numpy as np

    from pop3d_ros.mapping.io import write_ply
    from pop3d_ros.pipeline.messages import height_colors

    class_emb = None
    if encoder is not None and online_map.num_features:
        from pop3d_ros.evaluation.zeroshot import class_phrase_embeddings

        class_emb = dict(enumerate(class_phrase_embeddings(encoder)))
    cloud = online_map.cloud(class_emb)
    if cloud.labels is not None:
        from pop3d_ros.viz.palette import class_colors

        colors = class_colors(np.where(cloud.labels < 255, cloud.labels, 255).astype(np.uint8))
    else:
        z = cloud.centres[:, 2]
        lo, hi = (float(z.min()), float(z.max())) if z.size else (0.0, 1.0)
        colors = np.round(height_colors(z, (lo, hi))[:, :3] * 255).astype(np.uint8)
    return write_ply(path, cloud.centres, cloud.occupancy, colors, cloud.labels)
