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
    """`get(cameras)` -> (sampling_grid (1, N, V, 2), sampling_mask (1, N, V)) float32, and
    `feed(cameras)` -> those by input name, plus sampling_depth (1, N, V) for a depth-bin
    lifting (`lifting` = the model's LiftingConfig with depth_bins > 0, else None).

    Computing the grid projects every voxel into every camera (tens of ms); with a fixed rig it
    is done once. Only the latest calibration is kept: rigs do not alternate.
    """

    def __init__(
        self,
        grid: VoxelGrid,
        feature_hw: tuple[int, int],
        image_hw: tuple[int, int],
        min_depth: float = 0.1,
        lifting=None,
    ):
        self.grid = grid
        self.feature_hw = tuple(feature_hw)
        self.image_hw = tuple(image_hw)
        self.min_depth = float(min_depth)
        self.lifting = lifting if lifting is not None and lifting.depth_bins else None
        self.computations = 0  # how often the grid was (re)computed
        self._key: str | None = None
        self._value: dict[str, np.ndarray] | None = None

    @classmethod
    def for_model(cls, cfg) -> SamplingCache:
        """The cache of a ModelConfig's grid, sizes and lifting."""
        return cls(
            cfg.voxel_grid,
            cfg.feature_hw,
            tuple(cfg.image_size),
            cfg.lifting.min_depth,
            lifting=cfg.lifting,
        )

    def feed(self, cameras: Sequence[PinholeCamera]) -> dict[str, np.ndarray]:
        """The encoder's calibration inputs by name (batch 1), recomputed on a new rig."""
        from pop3d_ros.model.depth import compute_sampling_depth
        from pop3d_ros.model.lifting import compute_sampling

        key = calibration_key(cameras)
        if key != self._key or self._value is None:
            grid, mask = compute_sampling(
                cameras, self.grid, self.feature_hw, self.image_hw, self.min_depth
            )
            value = {
                "sampling_grid": np.ascontiguousarray(grid[None]),
                "sampling_mask": np.ascontiguousarray(mask[None]),
            }
            if self.lifting is not None:
                depth = compute_sampling_depth(cameras, self.grid, self.lifting)
                value["sampling_depth"] = np.ascontiguousarray(depth[None])
            self._value = value
            self._key = key
            self.computations += 1
        return self._value

    def get(self, cameras: Sequence[PinholeCamera]) -> tuple[np.ndarray, np.ndarray]:
        value = self.feed(cameras)
        return value["sampling_grid"], value["sampling_mask"]
