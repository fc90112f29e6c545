"""Image decoding from raw message bytes (numpy views, no copies) and from JPEG/PNG.

Raw images stay in their native channel order as a view over the message buffer; the
preprocessor resizes first and converts colour on the small image, which is both cheaper and
copy-free on the full-resolution data.
"""

from __future__ import annotations

import cv2
import numpy as np

# encoding -> channels of the raw layout (all 8-bit).
RAW_ENCODINGS = {"rgb8": 3, "bgr8": 3, "mono8": 1, "rgba8": 4, "bgra8": 4}
# OpenCV colour conversion from each encoding to RGB (None = already RGB).
_TO_RGB = {
    "rgb8": None,
    "bgr8": cv2.COLOR_BGR2RGB,
    "mono8": cv2.COLOR_GRAY2RGB,
    "rgba8": cv2.COLOR_RGBA2RGB,
    "bgra8": cv2.COLOR_BGRA2RGB,
}


class ImageDecodeError(ValueError):
    """An image message that cannot be used; `reason` is a short key for drop counters."""

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason


def raw_image_view(data, height: int, width: int, step: int, encoding: str) -> np.ndarray:
    """(H, W, C) uint8 view over a raw image buffer (bytes, bytearray, array.array, ndarray).

    Rows may be padded (`step` > width * channels); the view skips the padding. Raises
    ImageDecodeError for zero size, unsupported encodings, a too-small step or short data.
    """
    encoding = (encoding or "").strip().lower()
    if encoding not in RAW_ENCODINGS:
        raise ImageDecodeError(
            "unsupported_encoding",
            f"unsupported encoding {encoding!r} (supported: {', '.join(RAW_ENCODINGS)})",
        )
    height, width, step = int(height), int(width), int(step)
    if height <= 0 or width <= 0:
        raise ImageDecodeError("zero_size", f"image has zero size ({width}x{height})")
    channels = RAW_ENCODINGS[encoding]
    if step < width * channels:
        raise ImageDecodeError(
            "bad_step", f"step {step} < width {width} x {channels} bytes per pixel"
        )
    buf = np.frombuffer(data, dtype=np.uint8)
    if buf.size < step * height:
        raise ImageDecodeError(
            "short_data",
            f"data has {buf.size} bytes, need step x height = {step} x {height} = {step * height}",
        )
    rows = buf[: step * height].reshape(height, step)
    return rows[:, : width * channels].reshape(height, width, channels)


def to_rgb(image: np.ndarray, encoding: str) -> np.ndarray:
    """RGB (H, W, 3) uint8 of an image in `encoding`'s channel order (copies unless rgb8)."""
    code = _TO_RGB[encoding.strip().lower()]
    if code is None:
        return image
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[:, :, 0]
    return cv2.cvtColor(np.ascontiguousarray(image), code)


def check_compressed(data, fmt: str = "") -> np.ndarray:
    """The checks of a JPEG/PNG buffer that need no decoding; its uint8 view."""
    buf = np.frombuffer(data, dtype=np.uint8)
    if buf.size == 0:
        raise ImageDecodeError("zero_size", "compressed image has no data")
    fmt_l = (fmt or "").lower()
    if fmt_l and not any(k in fmt_l for k in ("jpeg", "jpg", "png")):
        raise ImageDecodeError(
            "unsupported_encoding", f"unsupported compressed format {fmt!r} (JPEG or PNG)"
        )
    return buf


def decode_compressed(data, fmt: str = "") -> np.ndarray:
    """RGB (H, W, 3) uint8 of a JPEG/PNG buffer (CompressedImage.data)."""
    buf = check_compressed(data, fmt)
    bgr = cv2.imdecode(buf, cv2.IMREAD_COLOR)
    if bgr is None:
        raise ImageDecodeError("corrupt_compressed", "compressed image could not be decoded")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
