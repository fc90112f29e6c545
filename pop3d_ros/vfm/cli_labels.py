"""`pop3d vfm-labels`: cache the VFM pseudo labels (calibrated depth + voxel targets) of a set
of drives, resumable, with progress. `pop3d train --strategy vfm --vfm.cache DIR` reuses them.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from pathlib import Path

from pop3d_ros.atomic import write_text_atomic
from pop3d_ros.cli_config import run_command
from pop3d_ros.data.sources import DataConfig
from pop3d_ros.teachers.select import TeacherConfig
from pop3d_ros.vfm.options import VFMConfig


@dataclass
class VFMLabelsCommand:
    """Cache the VFM pseudo labels (calibrated depth + voxel targets) of a set of drives,
    resumable, with progress; `pop3d train` with train.strategy vfm and vfm.cache DIR reuses
    them."""

    out: str  # cache directory (the vfm.cache of the training run)
    preset: str = "cpu-small"  # model preset (its voxel grid)
    data: DataConfig = field(default_factory=DataConfig)
    teacher: TeacherConfig = field(default_factory=TeacherConfig)
    vfm: VFMConfig = field(default_factory=VFMConfig)


def main(argv=None) -> int:
    # OSError: missing or unreadable weights or data.
    return run_command(
        VFMLabelsCommand, sys.argv[2:] if argv is None else argv, "pop3d vfm-labels", _run,
        errors=(ValueError, OSError),
    )  # fmt: skip


def _run(args) -> int:
    from tqdm import tqdm

    from pop3d_ros.data.sources import frame_source
    from pop3d_ros.model.config import get_preset
    from pop3d_ros.teachers.select import teacher_and_space
    from pop3d_ros.vfm.options import build_labeler

    model_cfg = get_preset(args.preset)
    out = Path(args.out)
    teacher, text_space, teacher_meta = teacher_and_space(
        args.teacher, args.data.data, model_cfg.heads.clip_dim
    )
    keys, make_sample = frame_source(args.data, model_cfg.voxel_grid)
    labeler = build_labeler(
        args.vfm, model_cfg.voxel_grid, teacher, text_space, make_sample, out, teacher_meta
    )
    index_path = out / "index.json"
    index = json.loads(index_path.read_text()) if index_path.exists() else {}
    done = 0
    for key in tqdm(keys, desc="vfm labels", unit="frame"):
        token = index.get(key)
        if token is not None and labeler.label_path(token).exists():
            done += 1
            continue
        sample = make_sample(key)
        labeler(sample)
        index[key] = str(sample.get("token", key))
        write_text_atomic(index_path, json.dumps(index, indent=1))
    print(f"{len(keys)} frames labelled in {out} ({done} were cached already)")
    return 0
