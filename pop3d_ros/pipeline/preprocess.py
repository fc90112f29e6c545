"""Resizing camera images and intrinsics to the network input size, lazily.

Images arrive faster than sets are inferred (6 x 12 Hz in, a few sets per second out), and
only the newest complete set runs. So a message is kept as it arrived — a zero-copy view over
a raw buffer, or the compressed bytes — in a `PendingImage` (cheap checks only), and decoded
and resized in the worker for the set that actually runs (`convert_set`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from pop3d_ros.geometry.camera import PinholeCamera
from pop3d_ros.pipeline.images import (
    CONVERT_BEFORE_RESIZE,
    ImageDecodeError,
    check_compressed,
    decode_compressed,
    raw_image_view,
    to_rgb,
)


def resize_to_rgb(image: np.ndarray, encoding: str, image_hw: tuple[int, int]) -> np.ndarray:
    """RGB (H, W, 3) uint8 at the network size from an image in its native encoding.

    Resizes before converting colour so the full-resolution buffer is read once and never
    copied. INTER_AREA averages when shrinking (what the training data's resize does).
    """
    h, w = int(image_hw[0]), int(image_hw[1])
    src = image
    if encoding.strip().lower() in CONVERT_BEFORE_RESIZE:
        src, encoding = to_rgb(src, encoding), "rgb8"
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


@dataclass(frozen=True)
class PendingImage:
    """One camera's image as it arrived, converted only when its set runs.

    Raw: `view` is an (H, W, C) uint8 view over the message buffer (no copy; it keeps the
    buffer alive). Compressed: `data` holds the JPEG/PNG bytes. Construction runs the cheap
    checks (encoding, sizes, format), so a malformed message is rejected on arrival.
    """

    encoding: str  # raw encoding (rgb8, bgr8, ...) or "compressed"
    frame_id: str = ""
    view: np.ndarray | None = None
    data: object = None  # compressed bytes
    fmt: str = ""

    @classmethod
    def raw(
        cls, data, height, width, step, encoding: str, frame_id: str = "", bigendian=False
    ) -> PendingImage:
        view = raw_image_view(data, height, width, step, encoding, bool(bigendian))
        return cls((encoding or "").strip().lower(), frame_id, view=view)

    @classmethod
    def compressed(cls, data, fmt: str, frame_id: str = "") -> PendingImage:
        check_compressed(data, fmt)
        return cls("compressed", frame_id, data=data, fmt=fmt)

    def convert(self, image_hw) -> tuple[np.ndarray, tuple[int, int]]:
        """(RGB uint8 at `image_hw`, native (width, height)); ImageDecodeError if corrupt."""
        if self.view is not None:
            img, enc = self.view, self.encoding
        else:
            img, enc = decode_compressed(self.data, self.fmt), "rgb8"
        return resize_to_rgb(img, enc, image_hw), (int(img.shape[1]), int(img.shape[0]))


CameraFn = Callable[[int, str, int, int], PinholeCamera]  # (index, frame_id, w, h) -> camera


def convert_set(
    pending: Sequence[PendingImage], image_hw, camera_fn: CameraFn
) -> tuple[list[np.ndarray], list[PinholeCamera]]:
    """Network-size RGB images and their cameras for one set, in order.

    Raises ImageDecodeError (with `.index`, the position of the failing image) for a corrupt
    image, ValueError from `camera_fn` for bad calibration.
    """
    images, cameras = [], []
    for i, p in enumerate(pending):
        try:
            img, (w, h) = p.convert(image_hw)
        except ImageDecodeError as exc:
            exc.index = i
            raise
        images.append(img)
        cameras.append(camera_fn(i, p.frame_id, w, h))
    return images, cameras
