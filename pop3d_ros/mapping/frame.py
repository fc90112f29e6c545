"""What the map takes from one camera set: the frame's prediction on its grid in base_link."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pop3d_ros.geometry.grid import VoxelGrid


@dataclass(frozen=True)
class FramePrediction:
    """One camera set's occupancy and language features in base_link.

    `probability` is dense (every voxel of `grid`): seeing a place free is information too.
    Language features are given for some voxels only (the occupied ones, where the language
    head ran), or not at all (`feature_index` None: occupancy only, e.g. a frame on which
    the language head was skipped).
    """

    grid: VoxelGrid  # the model's grid in base_link
    probability: np.ndarray  # (X, Y, Z) float32 P(occupied)
    cameras: tuple  # PinholeCameras of the set (any image size): the frustums of the rule
    feature_index: np.ndarray | None = None  # (N,) int64 flat voxel indices of `features`
    features: np.ndarray | None = None  # (N, D) float32 language features (L2-normalised)

    def check(self) -> str:
        """Why this prediction cannot update a map ("" when it can)."""
        p = np.asarray(self.probability)
        if p.shape != tuple(self.grid.shape):
            return f"probability of shape {p.shape}, grid {tuple(self.grid.shape)}"
        if not np.all(np.isfinite(p)) or p.min() < 0 or p.max() > 1:
            return "probability must be finite and within [0, 1]"
        if not self.cameras:
            return "no cameras: the visibility rule needs the set's frustums"
        if (self.feature_index is None) != (self.features is None):
            return "feature_index and features go together"
        if self.features is not None:
            f, i = np.asarray(self.features), np.asarray(self.feature_index)
            if f.ndim != 2 or i.shape != (f.shape[0],):
                return f"features {f.shape} do not match feature_index {i.shape}"
            if i.size and (i.min() < 0 or i.max() >= self.grid.num_voxels):
                return "feature_index outside the grid"
            if not np.all(np.isfinite(f)):
                return "language features contain NaN or inf"
        return ""

    @classmethod
    def from_result(cls, result, grid: VoxelGrid, cameras) -> FramePrediction:
        """From `pipeline.occupancy.OccupancyResult` (needs its dense `probability_grid`)."""
        if result.probability_grid is None:
            raise ValueError("the occupancy result carries no dense probability grid")
        return cls(
            grid=grid,
            probability=result.probability_grid,
            cameras=tuple(cameras),
            feature_index=grid.flat_index(result.indices).astype(np.int64),
            features=result.language_features,
        )
