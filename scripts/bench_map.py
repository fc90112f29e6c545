"""The online map's costs (part of `make bench`; also runnable alone: `python
scripts/bench_map.py [--checkpoint C] [--out FILE.json]`).

- `map_update_ms`: `OnlineMap.integrate` per camera set (visibility rule, log-odds, language
  running mean, eviction), median over the frames of a synthetic drive predicted by the
  model, the map starting empty each pass.
- `map_query_ms`: `OnlineMap.query` (top 10, no objects, then objects at min_score 0.5) over
  a map holding 100k occupied voxels with 512-wide language features.
- `map_long_drive`: 2,000 camera sets of synthetic predictions (a straight street: ground,
  kerbs, walls and parked cars) through a map with the default bounds: the largest number of
  stored voxels and features it ever held, against its `max_voxels` / `max_features`.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def drive_predictions(pipeline, seed: int = 1000, frames: int = 6) -> list:
    """(FramePrediction, pose, stamp) of the first frames of a synthetic drive."""
    from pop3d_ros.data.synthetic import SyntheticWorld, WorldConfig
    from pop3d_ros.mapping.drive import drive_frames

    world = SyntheticWorld(WorldConfig(seed=seed, num_frames=frames))
    return [(f.prediction, f.pose, f.stamp) for f in drive_frames(pipeline, world)]


def bench_update(frames: list, passes: int = 3) -> dict:
    from pop3d_ros.mapping import MapConfig, OnlineMap

    grid = frames[0][0].grid
    m = OnlineMap(MapConfig.for_grid(grid))
    m.integrate(*frames[0])  # builds the rig's ray walk once (cached per calibration)
    times = []
    for _ in range(passes):
        m.clear()
        for prediction, pose, stamp in frames:
            report = m.integrate(prediction, pose, stamp)
            times.append(report.elapsed_ms)
    return {
        "median_ms": statistics.median(times),
        "min_ms": min(times),
        "max_ms": max(times),
        "runs": len(times),
        "grid": list(grid.shape),
        "occupied_voxels_per_frame": int(np.mean([len(f[0].feature_index) for f in frames])),
    }


def filled_map(occupied: int = 100_000, dim: int = 512, seed: int = 0):
    """A map with `occupied` occupied voxels holding random unit language features."""
    from pop3d_ros.mapping import MapConfig, OnlineMap

    rng = np.random.default_rng(seed)
    m = OnlineMap(MapConfig(max_features=occupied * 2), feature_dim=dim)
    side = int(np.ceil(np.sqrt(occupied / 4)))
    i, j, k = np.meshgrid(np.arange(side), np.arange(side), np.arange(4), indexing="ij")
    index = np.stack([i.ravel(), j.ravel(), k.ravel()], 1)[:occupied]
    s = m.store
    addr = s.ensure(index)
    s.log_odds.reshape(-1)[addr] = 2.0
    s.updates.reshape(-1)[addr] = 1
    for a in range(0, occupied, 20_000):
        f = rng.standard_normal((min(20_000, occupied - a), dim)).astype(np.float32)
        f /= np.linalg.norm(f, axis=1, keepdims=True)
        s.fuse_features(addr[a : a + len(f)], f, np.ones(len(f), np.float32), 20.0)
    return m


def bench_query(occupied: int = 100_000, repeat: int = 10) -> dict:
    m = filled_map(occupied)
    emb = np.random.default_rng(1).standard_normal(m.feature_dim).astype(np.float32)
    out = {"occupied_voxels": m.stats()["occupied_voxels"]}
    for name, min_score in (("top10", 0.0), ("objects_min_score_0.1", 0.1)):
        m.query(emb, top_k=10, min_score=min_score)
        times = []
        for _ in range(repeat):
            t0 = time.perf_counter()
            res = m.query(emb, top_k=10, min_score=min_score)
            times.append((time.perf_counter() - t0) * 1e3)
        out[name] = {"median_ms": statistics.median(times), "min_ms": min(times),
                     "max_ms": max(times), "objects": len(res.objects)}  # fmt: skip
    out["bytes"] = m.stats()["bytes"]
    return out


def street_frame(grid, cameras, x_ego: float, rng, dim: int = 512):
    """A synthetic prediction of a straight street at the ego's position: ground everywhere,
    walls 12 m to either side, a parked car every 10 m; features per structure + noise."""
    from pop3d_ros.mapping import FramePrediction

    c = grid.centers()
    x, y, z = c[..., 0] + x_ego, c[..., 1], c[..., 2]
    ground = np.abs(z) < grid.voxel_size[2] / 2
    wall = (np.abs(np.abs(y) - 12.0) < 0.8) & (z < 4.0)
    car = (np.abs(y + 4.0) < 1.0) & (np.mod(x, 10.0) < 4.0) & (z > 0) & (z < 1.6)
    prob = np.full(grid.shape, 0.05, np.float32)
    prob[ground | wall | car] = 0.9
    occ = np.flatnonzero(prob.reshape(-1) >= 0.5)
    kind = np.select([ground.reshape(-1)[occ], wall.reshape(-1)[occ]], [0, 1], 2)
    centres = rng.standard_normal((3, dim)).astype(np.float32)
    feats = centres[kind] + 0.3 * rng.standard_normal((occ.size, dim)).astype(np.float32)
    feats /= np.linalg.norm(feats, axis=1, keepdims=True)
    return FramePrediction(grid, prob, tuple(cameras), occ, feats)


def bench_long_drive(frames: int = 2000, step_m: float = 4.0) -> dict:
    """Bounded memory over a long drive (synthetic predictions, the default cpu-small grid)."""
    from pop3d_ros.data.synthetic import SyntheticWorld, WorldConfig
    from pop3d_ros.geometry.grid import VoxelGrid
    from pop3d_ros.geometry.transforms import make_transform
    from pop3d_ros.mapping import MapConfig, OnlineMap
    from pop3d_ros.mapping.drive import sample_cameras

    grid = VoxelGrid((-25.6, 25.6), (-25.6, 25.6), (-2.0, 4.4), (64, 64, 8))
    world = SyntheticWorld(WorldConfig(seed=0, num_frames=1))
    cams = sample_cameras(world.sample(0, occupancy=False))
    rng = np.random.default_rng(0)
    config = MapConfig.for_grid(grid)
    m = OnlineMap(config)
    peak_voxels = peak_features = peak_bytes = 0
    times = []
    for i in range(frames):
        x = i * step_m
        f = street_frame(grid, cams, x, rng)
        report = m.integrate(f, make_transform(None, [x, 0.0, 0.0]), 0.5 * i)
        times.append(report.elapsed_ms)
        st = m.stats()
        peak_voxels = max(peak_voxels, st["stored_voxels"])
        peak_features = max(peak_features, st["feature_voxels"])
        peak_bytes = max(peak_bytes, st["bytes"])
    st = m.stats()
    return {
        "frames": frames,
        "km": frames * step_m / 1000,
        "max_voxels": config.max_voxels,
        "max_features": config.max_features,
        "peak_stored_voxels": peak_voxels,
        "peak_feature_voxels": peak_features,
        "peak_bytes": peak_bytes,
        "final": st,
        "stayed_under_bounds": peak_voxels <= config.max_voxels
        and peak_features <= config.max_features,
        "mb_per_10k_occupied": round(st["bytes"] / 1e6 * 1e4 / max(st["occupied_voxels"], 1), 3),
        "update_ms_median": statistics.median(times),
    }


def bench_map(pipeline, repeat: int = 10, long_frames: int = 2000) -> dict:
    frames = drive_predictions(pipeline)
    update = bench_update(frames)
    query = bench_query(100_000, repeat)
    long_drive = bench_long_drive(long_frames) if long_frames else None
    return {
        "map_update_ms": update["median_ms"],
        "map_query_ms": query["top10"]["median_ms"],
        "details": {"update": update, "query": query, "long_drive": long_drive},
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--checkpoint", default=str(ROOT / "models" / "default" / "model.pt"))
    parser.add_argument("--backend", default="torch")
    parser.add_argument("--long-frames", type=int, default=2000)
    parser.add_argument("--out", default="")
    args = parser.parse_args(argv)
    import torch

    from pop3d_ros.mapping.drive import load_pipeline

    torch.set_num_threads(1)
    pipeline, _ = load_pipeline(args.checkpoint, args.backend, threads=1)
    result = bench_map(pipeline, long_frames=args.long_frames)
    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        Path(args.out).write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
