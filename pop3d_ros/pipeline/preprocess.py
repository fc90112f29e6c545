"""Resizing camera images and intrinsics to the network input size."""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

from pop3d_ros.geometry.camera import PinholeCamera
from pop3d_ros.pipeline.images import to_rgb


def resize_to_rgb(image: np.ndarray, encoding: str, image_hw: tuple[int, int]) -> np.ndarray:
    """RGB (H, W, 3) uint8 at the network size from an image in its native encoding.

    Resizes before converting colour so the full-resolution buffer is read once and never
    copied. INTER_AREA averages when shrinking (what the training data's resize does).
    """
    h, w = int(image_hw[0]), int(image_hw[1])
    src = image
    if src.ndim == 3 and src.shape[2] == 1:
        src = src[:, :, 0]
    if src.shape[:2] != (h, w):
        interp = cv2.INTER_AREA if src.shape[0] >= h else cv2.INTER_LINEAR
        src = cv2.resize(src, (w, h), interpolation=interp)
    if src.ndim == 2:
        src = src[:, :, None]
    return np.ascontiguousarray(to_rgb(src, encoding))


def cameras_for_input(cameras: Sequence[PinholeCamera], image_hw) -> list[PinholeCamera]:
    """The cameras with intrinsics scaled to the network input size."""
    h, w = int(image_hw[0]), int(image_hw[1])
    return [c if (c.width, c.height) == (w, h) else c.resized(w, h) for c in cameras]


def images_to_input(images_rgb: Sequence[np.ndarray]) -> np.ndarray:
    """float32 (1, N_cam, 3, H, W) in [0, 1] (the encoder's `images` input)."""
    stack = np.stack(images_rgb, axis=0)  # (N, H, W, 3) uint8
    out = stack.transpose(0, 3, 1, 2).astype(np.float32)
    out *= 1.0 / 255.0
    return out[None]
