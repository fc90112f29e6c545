"""POP-3D's recipe (paper sec. 3.2): LiDAR occupancy targets and 2D-teacher feature
distillation at the camera-visible LiDAR points."""

from __future__ import annotations

from pop3d_ros.model.inputs import model_inputs
from pop3d_ros.training.strategies.base import Strategy, _subsample


class Pop3DStrategy(Strategy):
    """POP-3D's tri-modal self-supervision: occupancy from LiDAR, features from a 2D teacher.

    `teacher(sample) -> {"features": (N_cam, D, h, w)}` (the synthetic teacher, or cached
    MaskCLIP features wrapped the same way).
    """

    name = "pop3d"

    def __init__(self, teacher, neighbour=None, **kw):
        """`neighbour(sample, offset) -> sample or None`: the drive's adjacent frames, for
        multi-sweep occupancy targets."""
        super().__init__(**kw)
        self.teacher = teacher
        self.neighbour = neighbour

    def prepare(self, sample: dict, model_cfg) -> dict:
        grid = model_cfg.voxel_grid
        item = model_inputs(sample, tuple(model_cfg.image_size))
        item["occ_target"] = self.occupancy_target(sample, grid)
        self.add_depth_target(item, sample, model_cfg)
        tf = self.teacher(sample)["features"]
        targets = _subsample(
            self.feature_targets(sample, tf, grid, item["occ_target"]),
            self.max_feature_voxels,
            str(sample.get("token", "")),
        )
        item.update(
            voxel_index=targets["voxel_index"],
            features=targets["features"].half(),
            weight=targets["weight"],
        )
        return item
