"""`pop3d vfm-labels`: cache the VFM pseudo labels (calibrated depth + voxel targets) of a set
of drives, resumable, with progress. `pop3d train --strategy vfm --vfm-cache DIR` reuses them.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from pop3d_ros.atomic import write_text_atomic
from pop3d_ros.data.sources import add_source_arguments
from pop3d_ros.teachers.select import add_teacher_arguments
from pop3d_ros.vfm.options import add_vfm_arguments


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--preset", default="cpu-small", help="model preset (its voxel grid)")
    add_source_arguments(p, "0-7", 25, "train", "synthetic world seeds, e.g. 0-7")
    p.add_argument("--out", required=True, help="cache directory (same as --vfm-cache)")
    add_teacher_arguments(p)
    add_vfm_arguments(p)


def run(args) -> int:
    try:
        return _run(args)
    except (ValueError, OSError) as exc:  # bad options, missing or unreadable weights/data
        print(f"pop3d vfm-labels: error: {str(exc).splitlines()[0]}", file=sys.stderr)
        return 2


def _run(args) -> int:
    from tqdm import tqdm

    from pop3d_ros.data.sources import frame_source
    from pop3d_ros.model.config import get_preset
    from pop3d_ros.teachers.select import teacher_and_space
    from pop3d_ros.vfm.options import build_labeler

    model_cfg = get_preset(args.preset)
    out = Path(args.out)
    teacher, text_space, teacher_meta = teacher_and_space(args, model_cfg)
    keys, make_sample = frame_source(args, model_cfg)
    labeler = build_labeler(
        args, model_cfg.voxel_grid, teacher, text_space, make_sample, out, teacher_meta
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
