"""The voxel grid in base_link: metric range, resolution, index <-> metric conversions."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class VoxelGrid:
    """An axis-aligned voxel grid. Index (i, j, k) runs along (x, y, z).

    The default is POP-3D's: 100 x 100 x 8 voxels of 1.024 x 1.024 x 1 m over
    x, y in [-51.2, 51.2] m and z in [-5, 3] m.
    """

    x_range: tuple[float, float] = (-51.2, 51.2)  # metres, [min, max)
    y_range: tuple[float, float] = (-51.2, 51.2)  # metres, [min, max)
    z_range: tuple[float, float] = (-5.0, 3.0)  # metres, [min, max)
    shape: tuple[int, int, int] = (100, 100, 8)  # voxels along x, y, z

    def __post_init__(self):
        for lo, hi in (self.x_range, self.y_range, self.z_range):
            if not hi > lo:
                raise ValueError(f"grid range must be increasing, got ({lo}, {hi})")
        if any(int(n) <= 0 for n in self.shape):
            raise ValueError(f"grid shape must be positive, got {self.shape}")

    @property
    def lower(self) -> np.ndarray:
        return np.array([self.x_range[0], self.y_range[0], self.z_range[0]])

    @property
    def upper(self) -> np.ndarray:
        return np.array([self.x_range[1], self.y_range[1], self.z_range[1]])

    @property
    def voxel_size(self) -> np.ndarray:
        return (self.upper - self.lower) / np.array(self.shape)

    @property
    def num_voxels(self) -> int:
        return int(np.prod(self.shape))

    def centers(self) -> np.ndarray:
        """Voxel centres, shape (X, Y, Z, 3), float32."""
        axes = [
            self.lower[d] + (np.arange(self.shape[d]) + 0.5) * self.voxel_size[d] for d in range(3)
        ]
        return np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1).astype(np.float32)

    def corners(self) -> np.ndarray:
        """(8, 3) corners of the grid's box (metres)."""
        axes = [(self.lower[d], self.upper[d]) for d in range(3)]
        return np.stack(np.meshgrid(*axes, indexing="ij"), -1).reshape(-1, 3)

    def index_to_center(self, index) -> np.ndarray:
        """Metric centres of integer voxel indices (..., 3)."""
        return (self.lower + (np.asarray(index) + 0.5) * self.voxel_size).astype(np.float32)

    def points_to_index(self, points):
        """Voxel indices (N, 3) int64 of points (N, 3) and a mask of points inside the grid."""
        p = np.asarray(points, dtype=np.float64)
        idx = np.floor((p - self.lower) / self.voxel_size).astype(np.int64)
        inside = np.all((idx >= 0) & (idx < np.array(self.shape)), axis=-1)
        return idx, inside

    def flat_index(self, index) -> np.ndarray:
        """Row-major flat index of (..., 3) voxel indices (matches `centers().reshape(-1, 3)`)."""
        index = np.asarray(index)
        X, Y, Z = self.shape
        return (index[..., 0] * Y + index[..., 1]) * Z + index[..., 2]

    def to_dict(self) -> dict:
        return {
            "x_range": list(self.x_range),
            "y_range": list(self.y_range),
            "z_range": list(self.z_range),
            "shape": list(self.shape),
        }

    @classmethod
    def from_dict(cls, d: dict) -> VoxelGrid:
        return cls(
            x_range=tuple(d["x_range"]),
            y_range=tuple(d["y_range"]),
            z_range=tuple(d["z_range"]),
            shape=tuple(int(n) for n in d["shape"]),
        )


def occupancy_of_points(points: np.ndarray, grid: VoxelGrid) -> np.ndarray:
    """(X, Y, Z) uint8: 1 where a voxel holds at least one point, else 0."""
    occ = np.zeros(grid.num_voxels, dtype=np.uint8)
    idx, inside = grid.points_to_index(points)
    occ[grid.flat_index(idx[inside])] = 1
    return occ.reshape(grid.shape)
