"""Hand-made frames for the map tests: a pinhole camera, a 1 m lattice, dense predictions."""

import numpy as np

from pop3d_ros.geometry.camera import PinholeCamera
from pop3d_ros.geometry.transforms import OPTICAL_TO_BODY, make_transform
from pop3d_ros.mapping import FramePrediction, MapConfig


def camera(position, width=21, f=10.0):
    """A camera at `position` (ego) looking along +x; about 92 degrees of view."""
    K = np.array([[f, 0, (width - 1) / 2], [0, f, (width - 1) / 2], [0, 0, 1]])
    return PinholeCamera(K, make_transform(OPTICAL_TO_BODY, position), width, width)


def unit_config(**kw):
    """1 m voxels on a lattice through the origin, one voxel per block (exact eviction)."""
    kw.setdefault("visibility", "all")
    kw.setdefault("range_scale_m", 0.0)  # every observation at full weight unless a test asks
    return MapConfig(voxel_size=1.0, origin=0.0, block_size=1, **kw)


def frame(grid, prob, cams=None, features=None):
    prob = np.asarray(prob, np.float32).reshape(grid.shape)
    cams = tuple(cams or [camera((0.5, 0.5, 0.5))])
    if features is None:
        return FramePrediction(grid, prob, cams)
    index = np.array(sorted(features), np.int64)
    rows = np.array([features[i] for i in index], np.float32).reshape(len(index), 4)
    return FramePrediction(grid, prob, cams, index, rows)


def log_odds(m, *index):
    lo, seen = m.lookup(np.array(index, np.int64).reshape(-1, 3))
    return [float(v) if s else None for v, s in zip(lo, seen, strict=True)]
