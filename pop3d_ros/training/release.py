"""A release checkpoint: the training checkpoint without optimizer state, float weights
stored as float16 (half the size; `load_model` casts them back into the float32 model)."""

from __future__ import annotations

from pathlib import Path

import torch

from pop3d_ros.atomic import atomic_path
from pop3d_ros.model.checkpoint import read_checkpoint


def make_release(src, dst, note: str = "") -> Path:
    ckpt = read_checkpoint(src)
    ckpt.pop("train_state", None)
    ckpt["model"] = {
        k: v.half() if torch.is_floating_point(v) else v for k, v in ckpt["model"].items()
    }
    ckpt["meta"] = {**ckpt.get("meta", {}), "weights_dtype": "float16", "release_note": note}
    dst = Path(dst)
    dst.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(dst) as tmp:
        torch.save(ckpt, tmp)
    return dst
