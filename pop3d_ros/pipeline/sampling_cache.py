"""Sampling grids from calibration, recomputed only when the calibration changes."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import numpy as np

from pop3d_ros.geometry.camera import PinholeCamera
from pop3d_ros.geometry.grid import VoxelGrid


def calibration_key(cameras: Sequence[PinholeCamera]) -> str:
    """Digest of every camera's K, extrinsics and image size (exact bytes: any change counts)."""
    digest = hashlib.sha1()
    for cam in cameras:
        digest.update(np.ascontiguousarray(cam.K, dtype=np.float64).tobytes())
        digest.update(np.ascontiguousarray(cam.cam_to_ego, dtype=np.float64).tobytes())
        digest.update(f"{cam.width}x{cam.height}".encode())
    return digest.hexdigest()


class SamplingCache:
    """`get(cameras)` -> (sampling_grid (1, N, V, 2), sampling_mask (1, N, V)) float32.

    Computing the grid projects every voxel into every camera (tens of ms); with a fixed rig it
    is done once. Only the latest calibration is kept: rigs do not alternate.
    """

    def __init__(
        self,
        grid: VoxelGrid,
        feature_hw: tuple[int, int],
        image_hw: tuple[int, int],
        min_depth: float = 0.1,
    ):
        self.grid = grid
        self.feature_hw = tuple(feature_hw)
        self.image_hw = tuple(image_hw)
        self.min_depth = float(min_depth)
        self.computations = 0  # how often the grid was (re)computed
        self._key: str | None = None
        self._value: tuple[np.ndarray, np.ndarray] | None = None

    def get(self, cameras: Sequence[PinholeCamera]) -> tuple[np.ndarray, np.ndarray]:
        from pop3d_ros.model.lifting import compute_sampling

        key = calibration_key(cameras)
        if key != self._key or self._value is None:
            grid, mask = compute_sampling(
                cameras, self.grid, self.feature_hw, self.image_hw, self.min_depth
            )
            self._value = (np.ascontiguousarray(grid[None]), np.ascontiguousarray(mask[None]))
            self._key = key
            self.computations += 1
        return self._value
