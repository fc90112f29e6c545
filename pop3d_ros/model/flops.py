"""FLOP counts of a model config, measured with torch.utils.flop_counter (1 MAC = 2 FLOPs)."""

from __future__ import annotations

import torch
from torch.utils.flop_counter import FlopCounterMode

from pop3d_ros.model.config import ModelConfig


def _inputs(cfg: ModelConfig, batch: int = 1):
    h, w = cfg.image_size
    n, v = cfg.num_cameras, cfg.voxel_grid.num_voxels
    inputs = (
        torch.zeros(batch, n, 3, h, w),
        torch.zeros(batch, n, v, 2),
        torch.ones(batch, n, v),
    )
    if cfg.lifting.depth_bins:  # sampling_depth: bin coordinates of a depth-bin lifting
        inputs += (torch.zeros(batch, n, v),)
    return inputs


def estimate_gflops(cfg: ModelConfig, model=None, language_voxels: int = 0) -> dict[str, float]:
    """Forward GFLOPs for one frame of `cfg.num_cameras` images (batch 1).

    Returns {"encoder_occupancy": encoder + occupancy head, "language_per_voxel": the language
    head per voxel it runs on, "total": encoder + language head on `language_voxels` voxels}.
    `model` avoids rebuilding when the caller already has one for this config.
    """
    from pop3d_ros.model.pop3d import build_model

    model = build_model(cfg) if model is None else model
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            with FlopCounterMode(display=False) as counter:
                model(*_inputs(cfg))
            enc = counter.get_total_flops() / 1e9
            probe = 64
            with FlopCounterMode(display=False) as counter:
                model.language_head(torch.zeros(probe, cfg.decoder.voxel_channels))
            lang = counter.get_total_flops() / 1e9 / probe
    finally:
        model.train(was_training)
    return {
        "encoder_occupancy": enc,
        "language_per_voxel": lang,
        "total": enc + lang * int(language_voxels),
    }
