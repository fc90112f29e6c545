"""Calibration frames: the encoder's input feed (images, sampling_grid, sampling_mask[,
sampling_depth]) of synthetic samples, one `.npz` per frame, for static int8 quantization.

The feed is computed exactly as evaluation computes it (`training.inputs`: images resized to
the model's input and scaled to [0, 1], sampling grid/mask from the rig), so the activation
ranges seen during calibration are those of deployment.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np

from pop3d_ros.atomic import atomic_path

Log = Callable[[str], None]


def sample_feed(sample: dict, cfg, sampling) -> dict[str, np.ndarray]:
    """The encoder feed (batch 1, float32) of one sample."""
    from pop3d_ros.model.inputs import model_inputs

    inputs = model_inputs(sample, tuple(cfg.image_size))
    calib = sampling(inputs["intrinsics"], inputs["cam_to_ego"])
    feed = {"images": (inputs["images"][None].float() / 255.0).numpy()}
    for name, t in zip(cfg.encoder_input_names[1:], calib, strict=True):
        feed[name] = np.asarray(t[None], np.float32)  # grid, mask[, depth bin coordinates]
    return feed


def write_calibration_frames(
    samples: Iterable[tuple[str, dict]], cfg, out_dir: str | os.PathLike, total: int | None = None
) -> list[Path]:
    """Write `<key>.npz` per (key, sample); an existing file is kept (resumable)."""
    from tqdm import tqdm

    from pop3d_ros.model.inputs import SamplingCache

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    sampling = SamplingCache(cfg)
    paths = []
    for key, make in tqdm(samples, total=total, desc="calib-frames", unit="frame"):
        path = out_dir / f"{key}.npz"
        if not path.is_file():
            with atomic_path(path, suffix=".npz") as tmp:  # np.savez appends .npz otherwise
                np.savez(tmp, **sample_feed(make(), cfg, sampling))
        paths.append(path)
    return paths
