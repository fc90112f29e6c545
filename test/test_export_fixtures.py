"""Tiny random-init checkpoint for the deployment tests (helpers only; no tests here).

Smaller than the cpu-small preset so an export + parity run takes about a second.
"""

from __future__ import annotations

from pathlib import Path

from pop3d_ros.model.config import (
    BackboneConfig,
    DecoderConfig,
    GridConfig,
    HeadsConfig,
    ModelConfig,
)


def tiny_config(clip_dim: int = 24, voxel_channels: int = 16) -> ModelConfig:
    return ModelConfig(
        name="test-tiny",
        image_size=(64, 96),
        grid=GridConfig(x_range=(-16, 16), y_range=(-16, 16), z_range=(-2, 4), shape=(16, 16, 4)),
        backbone=BackboneConfig(depth=18, out_channels=16, output_stride=8, last_stage=3),
        decoder=DecoderConfig(
            bev_channels=32, n_blocks=1, n_down_blocks=1, voxel_channels=voxel_channels
        ),
        heads=HeadsConfig(occ_hidden=32, lang_hidden=32, clip_dim=clip_dim, n_blocks=1),
    )


def write_tiny_checkpoint(path: Path, seed: int = 0, **cfg_kwargs) -> Path:
    import torch

    from pop3d_ros.model.checkpoint import save_checkpoint
    from pop3d_ros.model.pop3d import build_model

    cfg = tiny_config(**cfg_kwargs)
    torch.manual_seed(seed)
    model = build_model(cfg)
    text_space = {
        "kind": "synthetic",
        "space_id": "synthetic:test",
        "embed_dim": cfg.heads.clip_dim,
    }
    return save_checkpoint(path, model, cfg, text_space, {"seed": seed})
