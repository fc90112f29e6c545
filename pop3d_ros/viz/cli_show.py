"""`pop3d show`: a sample as PNGs: camera mosaic, class overlay, bird's-eye occupancy + LiDAR."""

from __future__ import annotations

import dataclasses
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from pop3d_ros.cli_config import run_command
from pop3d_ros.data.synthetic.config import WorldConfig
from pop3d_ros.viz.bev import bev_image
from pop3d_ros.viz.mosaic import camera_mosaic


@dataclass
class ShowCommand:
    """A sample as PNGs: camera mosaic, class overlay, bird's-eye occupancy + LiDAR. Renders
    frame --frame of the synthetic drive --world.seed, or reads it from a rendered dir."""

    out: str  # output directory for the PNGs
    data: str = ""  # rendered dir (pop3d render); "" = render the frame on the fly
    frame: int = 0  # frame index in the drive
    world: WorldConfig = field(default_factory=WorldConfig)


def main(argv=None) -> int:
    return run_command(
        ShowCommand, sys.argv[2:] if argv is None else argv, "pop3d show", _run,
        errors=(ValueError, FileNotFoundError, IndexError),
    )  # fmt: skip


def write_pictures(sample: dict, out) -> list[Path]:
    """Write mosaic.png (+ semantic.png, bev.png when the sample has them); returns paths."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    paths = [out / "mosaic.png"]
    Image.fromarray(camera_mosaic(sample["images"])).save(paths[-1])
    if "semantic" in sample:
        paths.append(out / "semantic.png")
        Image.fromarray(camera_mosaic(sample["images"], sample["semantic"])).save(paths[-1])
    occ = sample.get("occupancy")
    if occ is None:  # real data: occupancy from the LiDAR points alone
        from pop3d_ros.geometry.grid import VoxelGrid

        grid = VoxelGrid()
        occ = np.full(grid.shape, 16, np.uint8)
        idx, ok = grid.points_to_index(sample["lidar_points"])
        occ[tuple(idx[ok].T)] = np.minimum(sample["lidar_labels"][ok], 14)
    paths.append(out / "bev.png")
    Image.fromarray(bev_image(occ, sample["lidar_points"], sample["lidar_labels"])).save(paths[-1])
    return paths


def _run(args) -> int:
    if args.data:
        from pop3d_ros.data.dataset import SyntheticDataset

        sample = SyntheticDataset([args.world.seed], root=args.data)[args.frame]
    else:
        from pop3d_ros.data.synthetic import SyntheticWorld

        # The drive is laid out for its frame count: at least up to the frame shown.
        cfg = dataclasses.replace(args.world, num_frames=max(args.world.num_frames, args.frame + 1))
        sample = SyntheticWorld(cfg).sample(args.frame)
    for p in write_pictures(sample, args.out):
        print(p)
    return 0
