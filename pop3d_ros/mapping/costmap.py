"""The map's 2D costmap: nav_msgs/OccupancyGrid semantics as plain arrays.

One cell per map voxel column (x, y); the cell size is the voxel's edge. A column is
lethal (100) where an occupied voxel's centre lies within the height band
[ground_z + min_height, ground_z + max_height]; free (0) where some voxel of the band was
observed and none is occupied; unknown (-1) where no voxel of the band was ever observed.
Cells outside the observed area are unknown. Row-major with x along a row (OccupancyGrid:
`data[y * width + x]`), cell (0, 0) at `origin`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pop3d_ros.mapping.config import CostmapConfig

LETHAL, FREE, UNKNOWN = 100, 0, -1


@dataclass(frozen=True)
class Costmap:
    data: np.ndarray  # (height, width) int8: LETHAL / FREE / UNKNOWN; rows along y
    resolution: float  # metres per cell
    origin: tuple[float, float, float]  # map-frame position of cell (0, 0)'s outer corner

    @property
    def width(self) -> int:
        return int(self.data.shape[1])

    @property
    def height(self) -> int:
        return int(self.data.shape[0])

    def cell_of(self, x: float, y: float) -> tuple[int, int]:
        """(row, column) of the cell holding map-frame point (x, y)."""
        col = int(np.floor((x - self.origin[0]) / self.resolution))
        row = int(np.floor((y - self.origin[1]) / self.resolution))
        return row, col


def project_costmap(
    index: np.ndarray,
    log_odds: np.ndarray,
    voxel_size,
    origin,
    occupied_log_odds: float,
    config: CostmapConfig | None = None,
) -> Costmap:
    """The costmap of observed voxels (index (N, 3) int64, their log-odds (N,))."""
    config = config or CostmapConfig()
    size = np.asarray(voxel_size, np.float64)
    origin = np.asarray(origin, np.float64)
    if not np.isclose(size[0], size[1]):
        raise ValueError(f"a costmap needs square cells, voxels are {size[0]} x {size[1]} m")
    index = np.asarray(index, np.int64).reshape(-1, 3)
    z = origin[2] + (index[:, 2] + 0.5) * size[2]
    lo, hi = config.ground_z + config.min_height, config.ground_z + config.max_height
    band = (z >= lo) & (z <= hi)
    if not band.any():
        return Costmap(np.zeros((0, 0), np.int8), float(size[0]), (0.0, 0.0, config.ground_z))
    ij = index[band, :2]
    occ = np.asarray(log_odds)[band] > occupied_log_odds
    i0, j0 = ij.min(0)
    w, h = ij.max(0) - ij.min(0) + 1
    data = np.full((h, w), UNKNOWN, np.int8)
    rows, cols = ij[:, 1] - j0, ij[:, 0] - i0
    data[rows, cols] = FREE
    data[rows[occ], cols[occ]] = LETHAL
    corner = origin[:2] + np.array([i0, j0]) * size[:2]
    return Costmap(data, float(size[0]), (float(corner[0]), float(corner[1]), config.ground_z))
