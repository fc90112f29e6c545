"""Bird's-eye views of semantic occupancy, heatmaps and LiDAR (x forward = up, y left = left)."""

from __future__ import annotations

import numpy as np

from pop3d_ros.data.classes import EMPTY, NUM_CLASSES
from pop3d_ros.geometry.grid import VoxelGrid
from pop3d_ros.viz.palette import class_colors, heat_colors


def _to_image(cols: np.ndarray, scale: int) -> np.ndarray:
    """(X, Y, 3) grid colours -> image with x up and y left, each cell scale x scale px."""
    img = cols[::-1, ::-1]
    return np.repeat(np.repeat(img, scale, axis=0), scale, axis=1)


def bev_image(occupancy, lidar_points=None, lidar_labels=None, grid: VoxelGrid | None = None,
              scale: int = 4, background=(255, 255, 255)) -> np.ndarray:  # fmt: skip
    """uint8 (X*scale, Y*scale, 3): the top-most class per column, darker when lower.

    `occupancy` is (X, Y, Z) class ids (EMPTY / IGNORE allowed) or booleans (occupied).
    LiDAR points (ego frame) are drawn as dots: by label when given, else black.
    """
    occ = np.asarray(occupancy)
    if occ.ndim != 3:
        raise ValueError(f"occupancy must be (X, Y, Z), got shape {occ.shape}")
    grid = grid or VoxelGrid(shape=occ.shape)
    if occ.dtype == bool:
        labels = np.where(occ, NUM_CLASSES - 2, EMPTY).astype(np.uint8)  # manmade grey
    else:
        labels = occ.astype(np.uint8)
    filled = labels < NUM_CLASSES
    Z = occ.shape[2]
    top = Z - 1 - np.argmax(filled[:, :, ::-1], axis=2)
    any_filled = filled.any(axis=2)
    cls = np.take_along_axis(labels, top[..., None], axis=2)[..., 0]
    cols = class_colors(cls).astype(np.float64)
    cols *= (0.55 + 0.45 * (top + 1) / Z)[..., None]
    cols[~any_filled] = background
    img = _to_image(cols.astype(np.uint8), scale)
    if lidar_points is not None:
        pts = np.asarray(lidar_points, dtype=np.float64)
        uv = (pts[:, :2] - grid.lower[:2]) / grid.voxel_size[:2] * scale
        rows = (occ.shape[0] * scale - 1 - uv[:, 0]).astype(int)
        cols_ = (occ.shape[1] * scale - 1 - uv[:, 1]).astype(int)
        ok = (rows >= 0) & (rows < img.shape[0]) & (cols_ >= 0) & (cols_ < img.shape[1])
        dot = (class_colors(np.asarray(lidar_labels)[ok]) // 2 if lidar_labels is not None
               else np.zeros((ok.sum(), 3), np.uint8))  # fmt: skip
        img[rows[ok], cols_[ok]] = dot
    return img


def heatmap_bev(scores, scale: int = 4, vmin=None, vmax=None) -> np.ndarray:
    """uint8 image of (X, Y, Z) scores (NaN = no voxel): max over z per column."""
    s = np.asarray(scores, dtype=np.float64)
    if s.ndim == 3:
        with np.errstate(all="ignore"):
            s = np.where(np.isfinite(s).any(axis=2), np.nanmax(np.where(np.isfinite(s), s,
                         -np.inf), axis=2), np.nan)  # fmt: skip
    return _to_image(heat_colors(s, vmin, vmax), scale)
