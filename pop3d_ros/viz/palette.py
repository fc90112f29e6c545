"""Colours per class (nuScenes-lidarseg-like) and a scalar colour map for heatmaps."""

from __future__ import annotations

import numpy as np

from pop3d_ros.data.classes import EMPTY, IGNORE, NUM_CLASSES

CLASS_COLORS = np.array(
    [
        [255, 120, 50],  # barrier
        [255, 192, 203],  # bicycle
        [255, 255, 0],  # bus
        [0, 150, 245],  # car
        [0, 255, 255],  # construction_vehicle
        [200, 180, 0],  # motorcycle
        [255, 0, 0],  # pedestrian
        [255, 240, 150],  # traffic_cone
        [135, 60, 0],  # trailer
        [160, 32, 240],  # truck
        [255, 0, 255],  # driveable_surface
        [139, 137, 137],  # other_flat
        [75, 0, 75],  # sidewalk
        [150, 240, 80],  # terrain
        [230, 230, 250],  # manmade
        [0, 175, 0],  # vegetation
    ],
    dtype=np.uint8,
)
EMPTY_COLOR = np.array([255, 255, 255], dtype=np.uint8)
IGNORE_COLOR = np.array([40, 40, 40], dtype=np.uint8)
# viridis-like key points for heatmaps (low -> high)
_HEAT = np.array([[68, 1, 84], [59, 82, 139], [33, 145, 140], [94, 201, 98], [253, 231, 37]],
                 dtype=np.float64)  # fmt: skip


def class_colors(labels) -> np.ndarray:
    """uint8 RGB (..., 3) of class ids; EMPTY white, IGNORE / unknown dark grey."""
    labels = np.asarray(labels)
    table = np.tile(IGNORE_COLOR, (256, 1))
    table[:NUM_CLASSES] = CLASS_COLORS
    table[EMPTY] = EMPTY_COLOR
    table[IGNORE] = IGNORE_COLOR
    return table[labels.astype(np.uint8)]


def heat_colors(values, vmin=None, vmax=None) -> np.ndarray:
    """uint8 RGB (..., 3) of scalars; NaN -> black."""
    v = np.asarray(values, dtype=np.float64)
    finite = np.isfinite(v)
    lo = np.nanmin(v[finite]) if vmin is None and finite.any() else (vmin or 0.0)
    hi = np.nanmax(v[finite]) if vmax is None and finite.any() else (vmax or 1.0)
    x = np.clip((np.where(finite, v, lo) - lo) / max(hi - lo, 1e-12), 0, 1) * (len(_HEAT) - 1)
    i = np.minimum(np.floor(x).astype(int), len(_HEAT) - 2)
    f = (x - i)[..., None]
    rgb = _HEAT[i] * (1 - f) + _HEAT[i + 1] * f
    rgb[~finite] = 0
    return np.round(rgb).astype(np.uint8)
