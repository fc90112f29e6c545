"""LiDAR-free training from vision-foundation-model pseudo labels (`pop3d_ros/vfm/`)."""

from __future__ import annotations

import torch

from pop3d_ros.model.inputs import model_inputs
from pop3d_ros.training.strategies.base import Strategy, _subsample


class VFMStrategy(Strategy):
    """LiDAR-free training from vision-foundation-model pseudo labels (zero-shot occupancy
    from VFMs): occupancy and language targets back-projected from the cameras with
    calibrated relative depth (`vfm.labeler.VFMLabeler`). Reads images, calibration and
    poses only, never `lidar_points`."""

    name = "vfm"

    def __init__(self, labeler, **kw):
        """`labeler(sample) -> {"occ_target", "voxel_index", "features", "weight", ...}` on
        the model's grid (cached per frame)."""
        super().__init__(**kw)
        self.labeler = labeler

    def prepare(self, sample: dict, model_cfg) -> dict:
        item = model_inputs(sample, tuple(model_cfg.image_size))
        labels = self.labeler(sample)
        occ = torch.as_tensor(labels["occ_target"])
        if tuple(occ.shape) != tuple(model_cfg.voxel_grid.shape):
            raise ValueError(f"pseudo labels on grid {tuple(occ.shape)}, model grid differs")
        item["occ_target"] = occ
        targets = _subsample(
            {k: labels[k] for k in ("voxel_index", "features", "weight")},
            self.max_feature_voxels,
            str(sample.get("token", "")),
        )
        item.update(
            voxel_index=targets["voxel_index"],
            features=targets["features"].half(),
            weight=targets["weight"].float(),
        )
        return item
