"""`pop3d pretrain2d`: the 2D pretraining stage of the image backbone (training/pretrain2d.py).

Prepares frames once (images at the model size + the teacher's patch maps; cached and
resumable), trains backbone + neck + a 1x1 head to regress the teacher's dense map from
single camera images, and writes `<out>/backbone.pt` for `pop3d train --init-backbone`.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from pop3d_ros.data.sources import add_source_arguments
from pop3d_ros.teachers.select import add_teacher_arguments
from pop3d_ros.training.pretrain2d import Pretrain2DConfig


def add_arguments(p: argparse.ArgumentParser) -> None:
    d = Pretrain2DConfig()
    p.add_argument("--preset", default="cpu-small", help="model preset (default: cpu-small)")
    add_source_arguments(p, "200-239", 10, "train", "synthetic seeds (keep them disjoint from "
                         "the held-out evaluation seeds), e.g. 200-239")  # fmt: skip
    p.add_argument("--out", required=True, help="run directory (backbone.pt, frames/)")
    p.add_argument("--prepared", help="prepared-frame cache (default: <out>/frames)")
    p.add_argument("--prepare-only", action="store_true", help="only prepare the frames")
    add_teacher_arguments(p)
    for name in ("steps", "batch_images", "warmup_steps", "seed", "log_every"):
        p.add_argument("--" + name.replace("_", "-"), type=int, default=getattr(d, name))
    for name in ("lr", "weight_decay", "final_lr", "grad_clip"):
        p.add_argument("--" + name.replace("_", "-"), type=float, default=getattr(d, name))
    p.add_argument("--loss", choices=["mse", "cosine"], default=d.loss)
    p.add_argument("--no-hflip", dest="hflip", action="store_false", help="no mirroring")
    p.add_argument("--threads", type=int, default=0, help="torch threads (0 = torch default)")


def run(args) -> int:
    try:
        return _run(args)
    except (ValueError, FileNotFoundError) as exc:
        print(f"pop3d pretrain2d: error: {exc}", file=sys.stderr)
        return 2


def _run(args) -> int:
    import torch
    from tqdm import tqdm

    from pop3d_ros.data.sources import frame_source
    from pop3d_ros.model.checkpoint import save_checkpoint
    from pop3d_ros.model.config import get_preset
    from pop3d_ros.teachers.select import teacher_and_space
    from pop3d_ros.training.cli_train import _world_version
    from pop3d_ros.training.frames import PreparedFrames, prepare_frames
    from pop3d_ros.training.pretrain2d import (
        ImagePool,
        Student2D,
        config_dict,
        prepare_item,
        pretrain,
    )

    fields = Pretrain2DConfig.__dataclass_fields__
    cfg = Pretrain2DConfig(**{k: getattr(args, k) for k in fields if hasattr(args, k)})
    cfg.validate()
    if args.threads:
        torch.set_num_threads(args.threads)
    model_cfg = get_preset(args.preset)
    out = Path(args.out)
    teacher, text_space, teacher_meta = teacher_and_space(args, model_cfg)
    keys, make_sample = frame_source(args, model_cfg)
    synthetic = args.data == "synthetic"
    prepared = Path(args.prepared) if args.prepared else out / "frames"
    prepare_frames(
        keys,
        make_sample,
        lambda s: prepare_item(s, teacher, model_cfg.image_size),
        prepared,
        desc="prepare (pretrain2d)",
        settings={
            "stage": "pretrain2d",
            "teacher": teacher_meta,
            "text_space": text_space,
            "image_size": list(model_cfg.image_size),
            "data": args.data,
            "frames_per_seed": args.frames_per_seed if synthetic else None,
            "world_version": _world_version() if synthetic else None,
        },
    )
    if args.prepare_only:
        return 0
    frames = PreparedFrames(prepared, keys)
    torch.manual_seed(cfg.seed)
    student = Student2D(model_cfg)
    pool = ImagePool(frames, model_cfg)
    bar = tqdm(total=cfg.steps, desc="pretrain2d", unit="step")

    def progress(step, loss):
        bar.update(1)
        bar.set_postfix(loss=f"{loss:.4f}", refresh=False)

    summary = pretrain(student, pool, cfg, progress)
    bar.close()
    meta = {
        "stage": "pretrain2d",
        "strategy": "pretrain2d",
        "command": "pop3d pretrain2d " + " ".join(sys.argv[2:]) if len(sys.argv) > 2 else "",
        "step": summary["step"],
        "train_seconds": summary["seconds"],
        "teacher": teacher_meta,
        "data": args.data,
        "seeds": args.seeds if synthetic else None,
        "frames_per_seed": args.frames_per_seed if synthetic else None,
        "split": None if synthetic else args.split,
        "frames": len(frames),
        "images": len(pool),
        "pretrain2d": config_dict(cfg),
        "history": summary["history"],
    }
    holder = torch.nn.Module()
    holder.backbone = student.backbone  # state dict keys "backbone.*", as in the full model
    path = save_checkpoint(
        out / "backbone.pt",
        holder,
        model_cfg,
        text_space,
        meta,
        head={k: v.detach().cpu() for k, v in student.head.state_dict().items()},
    )
    first, last = summary["history"][0][1], summary["history"][-1][1]
    print(
        f"pretrain2d: {summary['step']} steps x {cfg.batch_images} images in "
        f"{summary['seconds']:.0f} s ({summary['seconds'] / summary['step']:.2f} s/step); "
        f"loss {first:.4f} -> {last:.4f}; {len(pool)} images; checkpoint {path}"
    )
    return 0
