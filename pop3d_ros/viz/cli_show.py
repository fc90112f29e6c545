"""`pop3d show`: a sample as PNGs: camera mosaic, class overlay, bird's-eye occupancy + LiDAR."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from PIL import Image

from pop3d_ros.viz.bev import bev_image
from pop3d_ros.viz.mosaic import camera_mosaic


def add_arguments(parser) -> None:
    parser.add_argument("--out", required=True, help="output directory for the PNGs")
    parser.add_argument("--data", default=None, help="rendered dir (pop3d render); default: "
                        "render the synthetic frame on the fly")  # fmt: skip
    parser.add_argument("--seed", type=int, default=0, help="synthetic drive seed")
    parser.add_argument("--frame", type=int, default=0, help="frame index in the drive")
    parser.add_argument("--width", type=int, default=256)
    parser.add_argument("--height", type=int, default=144)


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


def run(args) -> int:
    try:
        if args.data:
            from pop3d_ros.data.dataset import SyntheticDataset

            ds = SyntheticDataset([args.seed], root=args.data)
            sample = ds[args.frame]
        else:
            from pop3d_ros.data.synthetic import SyntheticWorld, WorldConfig

            cfg = WorldConfig(seed=args.seed, num_frames=args.frame + 1,
                              image_width=args.width, image_height=args.height)  # fmt: skip
            world = SyntheticWorld(cfg)
            sample = world.sample(args.frame)
    except (ValueError, FileNotFoundError, IndexError) as exc:
        print(f"pop3d show: error: {exc}", file=sys.stderr)
        return 2
    for p in write_pictures(sample, args.out):
        print(p)
    return 0
