"""The 3D-supervised comparison (paper sec. 4.1): synthetic ground-truth occupancy and
class text embeddings as targets."""

from __future__ import annotations

import numpy as np
import torch

from pop3d_ros.data.classes import EMPTY, IGNORE, NUM_CLASSES
from pop3d_ros.model.inputs import model_inputs
from pop3d_ros.training.strategies.base import Strategy, _subsample


class Supervised3DStrategy(Strategy):
    """The 3D-supervised comparison (synthetic only): occupancy from GT semantic occupancy,
    language features at GT-occupied voxels supervised to their class's text embedding."""

    name = "supervised_3d"

    def __init__(self, class_embeddings, gt_occupancy_fn, **kw):
        """`class_embeddings` (16, D); `gt_occupancy_fn(sample, grid) -> (X, Y, Z)` uint8."""
        super().__init__(**kw)
        self.class_embeddings = torch.as_tensor(np.asarray(class_embeddings), dtype=torch.float32)
        self.gt_occupancy_fn = gt_occupancy_fn

    def prepare(self, sample: dict, model_cfg) -> dict:
        grid = model_cfg.voxel_grid
        item = model_inputs(sample, tuple(model_cfg.image_size))
        gt = np.asarray(self.gt_occupancy_fn(sample, grid)).reshape(-1)
        occ = np.where(gt == EMPTY, 0, np.where(gt < NUM_CLASSES, 1, IGNORE)).astype(np.uint8)
        item["occ_target"] = torch.from_numpy(occ.reshape(grid.shape))
        self.add_depth_target(item, sample, model_cfg)
        vox = np.nonzero(gt < NUM_CLASSES)[0]
        targets = {
            "voxel_index": torch.from_numpy(vox.astype(np.int64)),
            "features": self.class_embeddings[torch.from_numpy(gt[vox].astype(np.int64))],
            "weight": torch.ones(len(vox)),
        }
        targets = _subsample(targets, self.max_feature_voxels, str(sample.get("token", "")))
        item.update(
            voxel_index=targets["voxel_index"],
            features=targets["features"].half(),
            weight=targets["weight"],
        )
        return item
