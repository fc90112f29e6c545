"""`pop3d teacher-cache`: MaskCLIP features once per frame, cached fp16 on disk (resumable)."""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from typing import Literal

from pop3d_ros.cli_config import run_command
from pop3d_ros.data.sources import DataConfig


@dataclass
class TeacherCacheCommand:
    """MaskCLIP dense features once per frame, cached fp16 on disk (resumable)."""

    out: str  # cache directory
    data: DataConfig = field(default_factory=lambda: DataConfig(data="nuscenes"))
    model: str = "ViT-B-16"  # open_clip ViT name
    checkpoint: str = ""  # local open_clip weights ("" = random initialisation, for tests)
    # Last-block computation: maskclip = the official MaskCLIP code (residual + FFN);
    # maskclip-no-residual = the value path only (ClearCLIP/SCLIP-style).
    variant: Literal["maskclip", "maskclip-no-residual"] = "maskclip"
    device: str = "auto"  # auto, cpu or cuda


def main(argv=None) -> int:
    return run_command(
        TeacherCacheCommand, sys.argv[2:] if argv is None else argv, "pop3d teacher-cache", _run
    )


def _run(args) -> int:
    import torch

    from pop3d_ros.data.sources import frame_source
    from pop3d_ros.teachers.cache import build_cache
    from pop3d_ros.teachers.maskclip import build_maskclip

    checkpoint = args.checkpoint or None
    keys, make = frame_source(args.data)
    dev = "cuda" if args.device == "auto" and torch.cuda.is_available() else args.device
    dev = "cpu" if dev == "auto" else dev
    teacher = build_maskclip(args.model, checkpoint, args.variant).to(dev)
    if not args.checkpoint:
        print(
            "pop3d teacher-cache: warning: no --checkpoint, random MaskCLIP weights",
            file=sys.stderr,
        )
    meta = {
        "model_name": args.model,
        "checkpoint": checkpoint,
        "variant": teacher.variant,
        "stride": teacher.stride,
        "dim": teacher.embed_dim,
        "dtype": "float16",
        "text_space": {
            "kind": "open_clip",
            "model_name": args.model,
            "checkpoint": checkpoint,
        },
    }

    def features(sample):
        x = torch.from_numpy(sample["images"]).permute(0, 3, 1, 2).float().div(255).to(dev)
        with torch.no_grad():
            return teacher(x).half().cpu().numpy()

    counts = build_cache(keys, make, features, args.out, meta)
    print(
        f"teacher-cache: {counts['computed']} computed, {counts['skipped']} already cached "
        f"in {args.out}"
    )
    return 0
