"""`pop3d pretrain2d`: the 2D pretraining stage of the image backbone (training/pretrain2d.py).

Prepares frames once (images at the model size + the teacher's patch maps; cached and
resumable), trains backbone + neck + a 1x1 head to regress the teacher's dense map from
single camera images, and writes `<out>/backbone.pt` for `pop3d train --init_backbone`.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path

from pop3d_ros.cli_config import run_command
from pop3d_ros.data.sources import DataConfig
from pop3d_ros.teachers.select import TeacherConfig
from pop3d_ros.training.pretrain2d import Pretrain2DConfig


def _pretrain_data() -> DataConfig:
    # Seeds of their own: keep them disjoint from the held-out evaluation seeds (100-103).
    return DataConfig(seeds="200-239", frames_per_seed=10)


@dataclass
class Pretrain2DCommand:
    """2D pretraining of the image backbone: regress the teacher's dense map from single
    camera images; writes OUT/backbone.pt for `pop3d train --init_backbone`."""

    out: str  # run directory (backbone.pt, frames/)
    preset: str = "cpu-small"  # model preset (its backbone and image size)
    data: DataConfig = field(default_factory=_pretrain_data)
    teacher: TeacherConfig = field(default_factory=TeacherConfig)
    pretrain: Pretrain2DConfig = field(default_factory=Pretrain2DConfig)
    prepared: str = ""  # prepared-frame cache ("" = OUT/frames)
    prepare_only: bool = False  # only prepare the frames
    threads: int = 0  # torch threads (0 = torch's default)


def main(argv=None) -> int:
    argv = sys.argv[2:] if argv is None else argv
    return run_command(Pretrain2DCommand, argv, "pop3d pretrain2d", lambda a: _run(a, argv))


def _run(args, argv) -> int:
    import torch
    from tqdm import tqdm

    from pop3d_ros.data.sources import frame_source
    from pop3d_ros.model.checkpoint import save_checkpoint
    from pop3d_ros.model.config import get_preset
    from pop3d_ros.teachers.select import teacher_and_space
    from pop3d_ros.training.frames import PreparedFrames, prepare_frames
    from pop3d_ros.training.pretrain2d import (
        ImagePool,
        Student2D,
        config_dict,
        prepare_item,
        pretrain,
    )
    from pop3d_ros.training.stage import _world_version

    cfg = args.pretrain
    cfg.validate()
    if args.threads:
        torch.set_num_threads(args.threads)
    model_cfg = get_preset(args.preset)
    out = Path(args.out)
    teacher, text_space, teacher_meta = teacher_and_space(
        args.teacher, args.data.data, model_cfg.heads.clip_dim
    )
    keys, make_sample = frame_source(args.data, model_cfg.voxel_grid)
    synthetic = args.data.data == "synthetic"
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
            "data": args.data.data,
            "frames_per_seed": args.data.frames_per_seed if synthetic else None,
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
        "command": " ".join(["pop3d", "pretrain2d", *argv]),
        "step": summary["step"],
        "train_seconds": summary["seconds"],
        "teacher": teacher_meta,
        "data": args.data.data,
        "seeds": args.data.seeds if synthetic else None,
        "frames_per_seed": args.data.frames_per_seed if synthetic else None,
        "split": None if synthetic else args.data.split,
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
