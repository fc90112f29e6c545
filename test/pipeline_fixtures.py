"""Tiny random-init checkpoints and synthetic camera sets for pipeline / node tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from pop3d_ros.geometry.rig import CAMERA_NAMES, load_rig


def tiny_config(image_hw=(64, 96), grid_shape=(16, 16, 4)):
    """cpu-small shrunk to a test size: 64x96 images, a 16x16x4 grid, narrow heads."""
    from pop3d_ros.model.config import GridConfig, get_preset

    cfg = get_preset("cpu-small")
    cfg.image_size = tuple(image_hw)
    cfg.grid = GridConfig(
        x_range=(-25.6, 25.6), y_range=(-25.6, 25.6), z_range=(-2.0, 4.4), shape=grid_shape
    )
    cfg.backbone.out_channels = 16
    cfg.decoder.bev_channels = 16
    cfg.decoder.voxel_channels = 8
    cfg.heads.occ_hidden = 16
    cfg.heads.lang_hidden = 32
    cfg.heads.clip_dim = 64
    cfg.validate()
    return cfg


def write_tiny_checkpoint(
    path: Path, seed: int = 0, occupancy_bias: float = 0.0, text_version: int = 1, **kw
) -> Path:
    """A random-init checkpoint in the synthetic text space (dim 64; `text_version` 2 has the
    long-tail concepts).

    `occupancy_bias` is added to the occupied logit's bias so a test can make about half the
    voxels occupied (random init alone gives an arbitrary fraction).
    """
    import torch

    from pop3d_ros.model.checkpoint import save_checkpoint
    from pop3d_ros.model.pop3d import build_model

    torch.manual_seed(seed)
    cfg = tiny_config(**kw)
    model = build_model(cfg)
    if occupancy_bias:
        last = [m for m in model.occupancy_head.modules() if isinstance(m, torch.nn.Linear)][-1]
        with torch.no_grad():
            last.bias[1] += occupancy_bias
    text_space = {"kind": "synthetic", "seed": 0, "dim": cfg.heads.clip_dim,
                  "version": text_version}  # fmt: skip
    return save_checkpoint(path, model, cfg, text_space, {"test": True})


def rig_cameras(width: int, height: int):
    return load_rig(names=CAMERA_NAMES, width=width, height=height)


def random_images(n: int, height: int, width: int, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (height, width, 3), dtype=np.uint8) for _ in range(n)]
