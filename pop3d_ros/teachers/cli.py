"""`pop3d teacher-cache`: MaskCLIP features once per frame, cached fp16 on disk (resumable)."""

from __future__ import annotations

import argparse
import sys


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", choices=["synthetic", "nuscenes"], default="nuscenes")
    p.add_argument("--root", help="nuScenes root (with --data nuscenes)")
    p.add_argument("--version", default="v1.0-mini", help="nuScenes table folder under --root")
    p.add_argument("--split", default="train", help="nuScenes split")
    p.add_argument("--seeds", default="0-7", help="synthetic seeds (with --data synthetic)")
    p.add_argument("--frames-per-seed", type=int, default=25)
    p.add_argument("--out", required=True, help="cache directory")
    p.add_argument("--model", default="ViT-B-16", help="open_clip ViT name")
    p.add_argument("--checkpoint", help="local open_clip weights (random init without)")
    p.add_argument(
        "--variant",
        choices=["maskclip", "maskclip-no-residual"],
        default="maskclip",
        help="last-block computation: maskclip = the official MaskCLIP code (residual + FFN); "
        "maskclip-no-residual = value path only (ClearCLIP/SCLIP-style)",
    )
    p.add_argument("--device", default="auto", help="auto, cpu or cuda")


def run(args) -> int:
    import torch

    from pop3d_ros.data.sources import nuscenes_source, parse_seeds, synthetic_source
    from pop3d_ros.teachers.cache import build_cache
    from pop3d_ros.teachers.maskclip import build_maskclip

    try:
        if args.data == "synthetic":
            keys, make = synthetic_source(parse_seeds(args.seeds), args.frames_per_seed)
        elif not args.root:
            raise ValueError("--data nuscenes needs --root DIR")
        else:
            keys, make = nuscenes_source(args.root, args.split, args.version)
        dev = "cuda" if args.device == "auto" and torch.cuda.is_available() else args.device
        dev = "cpu" if dev == "auto" else dev
        teacher = build_maskclip(args.model, args.checkpoint, args.variant).to(dev)
        if not args.checkpoint:
            print(
                "pop3d teacher-cache: warning: no --checkpoint, random MaskCLIP weights",
                file=sys.stderr,
            )
        meta = {
            "model_name": args.model,
            "checkpoint": args.checkpoint,
            "variant": teacher.variant,
            "stride": teacher.stride,
            "dim": teacher.embed_dim,
            "dtype": "float16",
            "text_space": {
                "kind": "open_clip",
                "model_name": args.model,
                "checkpoint": args.checkpoint,
            },
        }

        def features(sample):
            x = torch.from_numpy(sample["images"]).permute(0, 3, 1, 2).float().div(255).to(dev)
            with torch.no_grad():
                return teacher(x).half().cpu().numpy()

        counts = build_cache(keys, make, features, args.out, meta)
    except (ValueError, FileNotFoundError) as exc:
        print(f"pop3d teacher-cache: error: {exc}", file=sys.stderr)
        return 2
    print(
        f"teacher-cache: {counts['computed']} computed, {counts['skipped']} already cached "
        f"in {args.out}"
    )
    return 0
