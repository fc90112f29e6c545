"""Ablation of the LiDAR occupancy targets against dense ground truth (synthetic world).

`python -m tools.occ_target_ablation --seeds 100-103 --frames-per-seed 10
--every 2 --out ablation.json` scores each target variant (training/lidar_occupancy.py) on
held-out frames, over all known voxels and over the camera-visible ones (Occ3D-style mask):
share labelled, precision of the occupied and free labels, recall of occupied voxels, IoU.
No training involved: it measures what each rule teaches before a network sees it.
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass, field

import numpy as np
from tqdm import tqdm

from pop3d_ros.cli_config import run_command
from pop3d_ros.data.sources import DataConfig
from pop3d_ros.training.lidar_occupancy import (
    LidarOccupancyConfig,
    lidar_occupancy_target,
    target_quality,
)
from pop3d_ros.training.recipe import load_recipe
from tools.held_out import held_out_data, synthetic_seeds

SWEEPS = (-2, -1, 1, 2)
VARIANTS = {
    "points (POP-3D)": LidarOccupancyConfig(),
    "rays": LidarOccupancyConfig(free_space="rays"),
    "rays + core_z 0.5": LidarOccupancyConfig(free_space="rays", core_z=0.5),
    "rays + core_z 0.5 + sweeps +-2": LidarOccupancyConfig(
        free_space="rays", core_z=0.5, sweeps=SWEEPS
    ),
    "rays + core_z 0.5 + sweeps +-2 + moving (votes 1)": LidarOccupancyConfig(
        free_space="rays", core_z=0.5, sweeps=SWEEPS, remove_moving=True, moving_votes=1
    ),
    # the shipped default's targets
    "ring-free default (+ moving, votes 2)": load_recipe("default").stages[0].settings.occupancy,
    "rays + sweeps +-2 + moving (votes 2), no core_z": LidarOccupancyConfig(
        free_space="rays", sweeps=SWEEPS, remove_moving=True, moving_votes=2
    ),
}


def run_ablation(seeds, frames_per_seed: int, every: int = 1, preset: str = "cpu-small") -> dict:
    from pop3d_ros.data.sources import neighbour_lookup, synthetic_key_of_token, synthetic_source
    from pop3d_ros.evaluation.occ3d import camera_visibility
    from pop3d_ros.model.config import get_preset

    grid = get_preset(preset).voxel_grid
    keys, make = synthetic_source(list(seeds), frames_per_seed, grid=grid)
    neighbour = neighbour_lookup(make, synthetic_key_of_token)
    keys = keys[::every]
    scores = {name: {"all": [], "visible": []} for name in VARIANTS}
    seconds = dict.fromkeys(VARIANTS, 0.0)
    for key in tqdm(keys, desc="target ablation", unit="frame"):
        sample = make(key)
        visible = camera_visibility(sample, grid)
        for name, cfg in VARIANTS.items():
            t0 = time.perf_counter()
            target = lidar_occupancy_target(sample, grid, cfg, neighbour)
            seconds[name] += time.perf_counter() - t0
            scores[name]["all"].append(target_quality(target, sample["occupancy"]))
            scores[name]["visible"].append(target_quality(target, sample["occupancy"], visible))
    out = {"frames": keys, "variants": {}}
    for name, cfg in VARIANTS.items():
        row = {"config": cfg.to_dict(), "seconds_per_frame": seconds[name] / len(keys)}
        for region, per_frame in scores[name].items():
            row[region] = {k: float(np.nanmean([q[k] for q in per_frame])) for k in per_frame[0]}
        out["variants"][name] = row
    return out


def markdown(result: dict) -> str:
    lines = [
        "| target | labelled (vis.) | occ. precision (vis.) | free precision (vis.) "
        "| occ. recall (vis.) | IoU all | IoU visible |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, row in result["variants"].items():
        v, a = row["visible"], row["all"]
        lines.append(
            f"| {name} | {100 * v['labelled']:.1f} | {100 * v['occupied_precision']:.1f} "
            f"| {100 * v['free_precision']:.1f} | {100 * v['occupied_recall']:.1f} "
            f"| {100 * a['iou']:.1f} | {100 * v['iou']:.1f} |"
        )
    return "\n".join(lines)


@dataclass
class OccTargetAblationCommand:
    """Occupancy targets against dense ground truth (module doc)."""

    every: int = 1  # score every n-th frame
    out: str = ""  # JSON file for the full result ("" = none)
    data: DataConfig = field(default_factory=held_out_data)


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    return run_command(OccTargetAblationCommand, argv, "python -m tools.occ_target_ablation", _run)


def _run(args: OccTargetAblationCommand) -> int:
    result = run_ablation(synthetic_seeds(args.data), args.data.frames_per_seed, args.every)
    print(markdown(result))
    if args.out:
        with open(args.out, "w") as f:
            json.dump(result, f, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
