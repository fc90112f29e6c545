"""`pop3d calib-frames`: calibration frames (.npz, the encoder's input feed) for int8."""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path

from pop3d_ros.cli_config import run_command
from pop3d_ros.data.sources import DataConfig


def _calibration_data() -> DataConfig:
    # Neither the training seeds (0-99) nor the held-out ones (100+).
    return DataConfig(seeds="200-203", frames_per_seed=4)


@dataclass
class CalibFramesCommand:
    """Writes int8 calibration frames: one .npz per frame with the encoder's inputs (images,
    cameras, as the model of --checkpoint takes them), for `pop3d export --precision int8` and
    `pop3d build-engine`."""

    checkpoint: str  # model checkpoint (.pt)
    out: str  # directory for <key>.npz files
    data: DataConfig = field(default_factory=_calibration_data)


def main(argv=None) -> int:
    argv = sys.argv[2:] if argv is None else argv
    from pop3d_ros.model.checkpoint import CheckpointError

    return run_command(
        CalibFramesCommand, argv, "pop3d calib-frames", _run,
        errors=(ValueError, FileNotFoundError, CheckpointError),
    )  # fmt: skip


def _run(args: CalibFramesCommand) -> int:
    from pop3d_ros.data.sources import frame_source
    from pop3d_ros.export.calib_frames import write_calibration_frames
    from pop3d_ros.model.checkpoint import read_checkpoint
    from pop3d_ros.model.config import ModelConfig

    if args.data.frames_per_seed < 1:
        raise ValueError("--frames_per_seed must be >= 1")
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise ValueError(f"{out}: exists and is not a directory")
    cfg = ModelConfig.from_dict(read_checkpoint(Path(args.checkpoint))["config"])
    keys, make = frame_source(args.data, grid=cfg.voxel_grid)
    paths = write_calibration_frames(
        ((k, lambda k=k: make(k)) for k in keys), cfg, out, total=len(keys)
    )
    print(f"wrote {len(paths)} calibration frames to {out}")
    return 0
