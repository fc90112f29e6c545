"""Image decoding from raw message bytes (numpy views, no copies) and from JPEG/PNG.

Raw images stay in their native channel order as a view over the message buffer; the
preprocessor resizes first and converts colour on the small image, which is both cheaper and
copy-free on the full-resolution data. Bayer mosaics and packed YUV 4:2:2 cannot be resized
before they are converted (neighbouring pixels are different colours), so those are
converted at full size first.

Conversions are cv_bridge's (`cv_bridge.cpp`, `getConversionCode` and `toCvCopyImpl`): ROS's
Bayer names give the pattern of the first row's first two pixels, OpenCV's the second row's
second and third, so `bayer_rggb8` is `COLOR_BayerBG2RGB`, `bayer_bggr8` `COLOR_BayerRG2RGB`,
`bayer_gbrg8` `COLOR_BayerGR2RGB`, `bayer_grbg8` `COLOR_BayerGB2RGB`; `yuv422` is UYVY,
`yuv422_yuy2` YUYV; 16-bit images are scaled to 8 bits by 255/65535 with OpenCV's rounding
(`convertTo`, what `toCvCopy(msg, "rgb8")` does), not stretched per image as cv_bridge's
`cvtColorForDisplay` would: the same pixel value always gives the same input to the model.
"""

from __future__ import annotations

import cv2
import numpy as np

# encoding -> (channels of the raw layout, bytes per channel).
RAW_ENCODINGS = {
    "rgb8": (3, 1), "bgr8": (3, 1), "mono8": (1, 1), "rgba8": (4, 1), "bgra8": (4, 1),
    "bayer_rggb8": (1, 1), "bayer_bggr8": (1, 1), "bayer_gbrg8": (1, 1), "bayer_grbg8": (1, 1),
    "yuv422": (2, 1), "yuv422_yuy2": (2, 1),
    "mono16": (1, 2), "rgb16": (3, 2), "bgr16": (3, 2), "rgba16": (4, 2), "bgra16": (4, 2),
}  # fmt: skip
# OpenCV colour conversion from each encoding to RGB (None = already RGB), as cv_bridge.
_TO_RGB = {
    "rgb8": None,
    "bgr8": cv2.COLOR_BGR2RGB,
    "mono8": cv2.COLOR_GRAY2RGB,
    "rgba8": cv2.COLOR_RGBA2RGB,
    "bgra8": cv2.COLOR_BGRA2RGB,
    "bayer_rggb8": cv2.COLOR_BayerBG2RGB,
    "bayer_bggr8": cv2.COLOR_BayerRG2RGB,
    "bayer_gbrg8": cv2.COLOR_BayerGR2RGB,
    "bayer_grbg8": cv2.COLOR_BayerGB2RGB,
    "yuv422": cv2.COLOR_YUV2RGB_UYVY,
    "yuv422_yuy2": cv2.COLOR_YUV2RGB_YUY2,
    "mono16": cv2.COLOR_GRAY2RGB,
    "rgb16": None,
    "bgr16": cv2.COLOR_BGR2RGB,
    "rgba16": cv2.COLOR_RGBA2RGB,
    "bgra16": cv2.COLOR_BGRA2RGB,
}
# Converted at full size before resizing (a mosaic or packed chroma cannot be resized).
CONVERT_BEFORE_RESIZE = frozenset(
    {"bayer_rggb8", "bayer_bggr8", "bayer_gbrg8", "bayer_grbg8", "yuv422", "yuv422_yuy2"}
)


class ImageDecodeError(ValueError):
    """An image message that cannot be used; `reason` is a short key for drop counters."""

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason


def raw_image_view(
    data, height: int, width: int, step: int, encoding: str, bigendian: bool = False
) -> np.ndarray:
    """(H, W, C) uint8 (uint16 for 16-bit encodings) view over a raw image buffer (bytes,
    bytearray, array.array, ndarray); a big-endian 16-bit image is byte-swapped (a copy).

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
    channels, size = RAW_ENCODINGS[encoding]
    if step < width * channels * size:
        raise ImageDecodeError(
            "bad_step", f"step {step} < width {width} x {channels * size} bytes per pixel"
        )
    if size == 2 and step % 2:
        raise ImageDecodeError("bad_step", f"step {step} of a 16-bit image is odd")
    buf = np.frombuffer(data, dtype=np.uint8)
    if buf.size < step * height:
        raise ImageDecodeError(
            "short_data",
            f"data has {buf.size} bytes, need step x height = {step} x {height} = {step * height}",
        )
    rows = buf[: step * height].reshape(height, step)
    if size == 1:
        return rows[:, : width * channels].reshape(height, width, channels)
    wide = rows.view(">u2" if bigendian else "<u2")[:, : width * channels]
    return wide.astype(np.uint16).reshape(height, width, channels)  # native order


def to_rgb(image: np.ndarray, encoding: str) -> np.ndarray:
    """RGB (H, W, 3) uint8 of an image in `encoding`'s layout (copies unless rgb8), as
    cv_bridge's `toCvCopy(msg, "rgb8")`: colour conversion, then 16 -> 8 bits."""
    code = _TO_RGB[encoding.strip().lower()]
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[:, :, 0]
    if code is not None:
        image = cv2.cvtColor(np.ascontiguousarray(image), code)
    if image.dtype == np.uint16:
        image = cv2.convertScaleAbs(image, alpha=255.0 / 65535.0)
    return image


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
