"""`pop3d calib-frames`: calibration frames (.npz, the encoder's input feed) for int8."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--checkpoint", required=True, type=Path, help="model checkpoint (.pt)")
    p.add_argument("--out", required=True, type=Path, help="directory for <key>.npz files")
    p.add_argument(
        "--seeds",
        default="200-203",
        help="synthetic world seeds (default 200-203: neither training 0-99 nor held-out 100+)",
    )
    p.add_argument("--frames-per-seed", type=int, default=4, help="frames per seed")


def run(args) -> int:
    from pop3d_ros.data.sources import parse_seeds, synthetic_source
    from pop3d_ros.model.checkpoint import CheckpointError, read_checkpoint
    from pop3d_ros.model.config import ModelConfig

    try:
        if args.frames_per_seed < 1:
            raise ValueError("--frames-per-seed must be >= 1")
        if args.out.exists() and not args.out.is_dir():
            raise ValueError(f"{args.out}: exists and is not a directory")
        cfg = ModelConfig.from_dict(read_checkpoint(args.checkpoint)["config"])
        keys, make = synthetic_source(
            parse_seeds(args.seeds), args.frames_per_seed, grid=cfg.voxel_grid
        )
    except (ValueError, CheckpointError) as e:
        print(f"pop3d calib-frames: error: {e}", file=sys.stderr)
        return 2
    from pop3d_ros.export.calib_frames import write_calibration_frames

    paths = write_calibration_frames(
        ((k, lambda k=k: make(k)) for k in keys), cfg, args.out, total=len(keys)
    )
    print(f"wrote {len(paths)} calibration frames to {args.out}")
    return 0
