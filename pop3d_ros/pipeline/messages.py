"""Field arrays of the output messages, built vectorised (numpy), plus a per-voxel loop
variant kept only so the benchmark can show the difference.

PointCloud2 data is a packed numpy structured array; CUBE_LIST markers need per-point
positions (float64 x, y, z) and colours (float32 r, g, b, a), produced here as arrays that the
ROS layer writes into the message buffer in one piece.
"""

from __future__ import annotations

import struct

import numpy as np

from pop3d_ros.data.classes import NUM_CLASSES

# sensor_msgs/PointField datatype codes (ROS-free copies of the message constants).
POINTFIELD_CODES = {
    np.dtype(np.int8): 1,
    np.dtype(np.uint8): 2,
    np.dtype(np.int16): 3,
    np.dtype(np.uint16): 4,
    np.dtype(np.int32): 5,
    np.dtype(np.uint32): 6,
    np.dtype(np.float32): 7,
    np.dtype(np.float64): 8,
}

# One distinct colour per class (tab20-like), RGB in [0, 1].
CLASS_PALETTE = np.array(
    [
        [1.00, 0.47, 0.20], [1.00, 0.75, 0.80], [1.00, 1.00, 0.00], [0.00, 0.59, 0.96],
        [0.85, 0.55, 0.25], [0.80, 0.25, 0.50], [1.00, 0.00, 0.00], [1.00, 0.94, 0.59],
        [0.53, 0.24, 0.69], [0.63, 0.12, 0.94], [0.55, 0.55, 0.55], [0.29, 0.00, 0.29],
        [0.29, 0.69, 0.29], [0.59, 0.94, 0.31], [0.90, 0.90, 0.98], [0.00, 0.69, 0.00],
    ],
    dtype=np.float32,
)  # fmt: skip
assert CLASS_PALETTE.shape[0] == NUM_CLASSES


def cloud_dtype(extra: str = "occupancy", with_label: bool = False) -> np.dtype:
    """Packed dtype: float32 x, y, z, <extra> (+ uint16 label)."""
    fields = [("x", "<f4"), ("y", "<f4"), ("z", "<f4"), (extra, "<f4")]
    if with_label:
        fields.append(("label", "<u2"))
    return np.dtype(fields)


def point_fields(dtype: np.dtype) -> list[tuple[str, int, int]]:
    """(name, byte offset, PointField datatype code) per field of a structured dtype."""
    out = []
    for name in dtype.names:
        sub, offset = dtype.fields[name][:2]
        out.append((name, int(offset), POINTFIELD_CODES[np.dtype(sub.newbyteorder("="))]))
    return out


def cloud_array(
    centres: np.ndarray, values: np.ndarray, extra: str = "occupancy", labels=None
) -> np.ndarray:
    """Structured array (N,) of voxel centres with one float value (and optional label)."""
    arr = np.empty(len(centres), dtype=cloud_dtype(extra, labels is not None))
    centres = np.asarray(centres, dtype=np.float32).reshape(-1, 3)
    arr["x"], arr["y"], arr["z"] = centres[:, 0], centres[:, 1], centres[:, 2]
    arr[extra] = np.asarray(values, dtype=np.float32).reshape(-1)
    if labels is not None:
        arr["label"] = np.asarray(labels, dtype=np.uint16).reshape(-1)
    return arr


def colormap(values: np.ndarray) -> np.ndarray:
    """(N, 3) float32 RGB of values in [0, 1] along blue -> cyan -> green -> yellow -> red."""
    v = np.clip(np.asarray(values, dtype=np.float32), 0.0, 1.0)
    r = np.clip(1.5 - np.abs(4.0 * v - 3.0), 0.0, 1.0)
    g = np.clip(1.5 - np.abs(4.0 * v - 2.0), 0.0, 1.0)
    b = np.clip(1.5 - np.abs(4.0 * v - 1.0), 0.0, 1.0)
    return np.stack([r, g, b], axis=-1)


def height_colors(z: np.ndarray, z_range: tuple[float, float], alpha: float = 1.0) -> np.ndarray:
    """(N, 4) RGBA by height within the grid's z range."""
    lo, hi = float(z_range[0]), float(z_range[1])
    rgb = colormap((np.asarray(z, dtype=np.float32) - lo) / max(hi - lo, 1e-6))
    return _with_alpha(rgb, alpha)


def class_colors(labels: np.ndarray, alpha: float = 1.0) -> np.ndarray:
    """(N, 4) RGBA from the class palette (labels outside 0..15 are grey)."""
    labels = np.asarray(labels, dtype=np.int64)
    valid = (labels >= 0) & (labels < NUM_CLASSES)
    rgb = np.full((labels.size, 3), 0.5, dtype=np.float32)
    rgb[valid] = CLASS_PALETTE[labels[valid]]
    return _with_alpha(rgb, alpha)


def score_colors(scores: np.ndarray, alpha: float = 1.0) -> np.ndarray:
    """(N, 4) RGBA of scores normalised to their own min..max (a heatmap)."""
    s = np.asarray(scores, dtype=np.float32)
    if s.size == 0:
        return np.zeros((0, 4), dtype=np.float32)
    lo, hi = float(s.min()), float(s.max())
    return _with_alpha(colormap((s - lo) / max(hi - lo, 1e-6)), alpha)


def _with_alpha(rgb: np.ndarray, alpha: float) -> np.ndarray:
    out = np.empty((rgb.shape[0], 4), dtype=np.float32)
    out[:, :3] = rgb
    out[:, 3] = alpha
    return out


def marker_arrays(centres: np.ndarray, colors: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(points (N, 3) float64 C-contiguous, colors (N, 4) float32) for a CUBE_LIST."""
    return (
        np.ascontiguousarray(centres, dtype=np.float64).reshape(-1, 3),
        np.ascontiguousarray(colors, dtype=np.float32).reshape(-1, 4),
    )


# -- the straightforward per-voxel variant (benchmark comparison only) --------------------------
def cloud_bytes_loop(centres, values, labels=None) -> bytes:
    """The same bytes as `cloud_array(...).tobytes()`, packed one voxel at a time."""
    out = bytearray()
    for i in range(len(centres)):
        x, y, z = (float(c) for c in centres[i])
        out += struct.pack("<ffff", x, y, z, float(values[i]))
        if labels is not None:
            out += struct.pack("<H", int(labels[i]))
    return bytes(out)


def height_colors_loop(z, z_range, alpha: float = 1.0) -> list[tuple[float, float, float, float]]:
    """Per-voxel colours, one Python call per voxel."""
    lo, hi = float(z_range[0]), float(z_range[1])
    out = []
    for zi in z:
        v = min(max((float(zi) - lo) / max(hi - lo, 1e-6), 0.0), 1.0)
        r = min(max(1.5 - abs(4.0 * v - 3.0), 0.0), 1.0)
        g = min(max(1.5 - abs(4.0 * v - 2.0), 0.0), 1.0)
        b = min(max(1.5 - abs(4.0 * v - 1.0), 0.0), 1.0)
        out.append((r, g, b, alpha))
    return out
