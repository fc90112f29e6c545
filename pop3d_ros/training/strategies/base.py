"""Supervision strategies: how a frame becomes targets, and how outputs become losses.

The loop only calls `prepare` (once per frame, cached to disk), `collate`, `losses` and, if
a strategy defines it, `forward_heads(model, outputs, batch)` inside the training forward
(where the language head runs; 2D rendering supervision uses it), so other label-free
recipes (foundation-model pseudo labels: `vfm`) plug in by adding a class and a name in
`training.strategies` — the loop does not change.

Prepared frame (a dict of CPU tensors): `images` uint8 (N, 3, H, W) at the model input size,
`intrinsics` (N, 3, 3) for that size, `cam_to_ego` (N, 4, 4), `occ_target` uint8 (X, Y, Z)
in {0, 1, IGNORE}, `voxel_index` int64 (M,) flat voxels where the language head is
supervised, `features` float16 (M, D) their targets, `weight` float32 (M,), and for a
model with a depth-bin lifting (LiDAR strategies) `depth_target` uint8 (N, Hf, Wf), the bin
of the nearest LiDAR point per image-feature cell (255 = none; model/depth.py).
"""

from __future__ import annotations

import zlib

import numpy as np
import torch

from pop3d_ros.data.classes import IGNORE
from pop3d_ros.model.inputs import camera_list
from pop3d_ros.training.lidar_occupancy import LidarOccupancyConfig, lidar_occupancy_target
from pop3d_ros.training.losses import FeatureLoss, OccupancyLoss
from pop3d_ros.training.targets import voxel_feature_targets


def _subsample(targets: dict, max_voxels: int, token: str) -> dict:
    n = targets["voxel_index"].numel()
    if max_voxels <= 0 or n <= max_voxels:
        return targets
    # Seeded by the frame so that a re-run of `prepare` gives the same cache.
    rng = np.random.default_rng(zlib.crc32(token.encode()))
    keep = torch.from_numpy(np.sort(rng.choice(n, max_voxels, replace=False)))
    return {k: v[keep] for k, v in targets.items()}


class Strategy:
    """Base class: targets shared by all strategies + the loss on them."""

    name = "base"

    def __init__(
        self,
        feature_weight: float = 1.0,
        max_feature_voxels: int = 4096,
        feature_weighting: str = "point",
        lidar_occupancy: LidarOccupancyConfig | None = None,
        unobserved_weight: float = 0.1,
        lift_depth_weight: float = 1.0,
        feature_balance=None,
    ):
        """`lidar_occupancy`: how LiDAR becomes the occupancy target (default: POP-3D's, a
        voxel with a return occupied, all others empty); `unobserved_weight`: the weight of
        voxels no ray reached (ring-free targets) as empty; `lift_depth_weight`: weight of
        the depth-bin cross-entropy of a depth-bin lifting (TrainConfig.depth_weight; the
        term is `depth`, `lift_depth` where rendering already names its depth loss `depth`)."""
        if feature_weighting not in ("point", "voxel"):
            raise ValueError(f"feature_weighting must be point or voxel, got {feature_weighting!r}")
        self.feature_weight = feature_weight
        self.max_feature_voxels = max_feature_voxels
        self.feature_weighting = feature_weighting
        self.lidar_occupancy = lidar_occupancy or LidarOccupancyConfig()
        self.lidar_occupancy.validate()
        self.lift_depth_weight = lift_depth_weight
        self.feature_balance = feature_balance
        self.occ_loss = OccupancyLoss(ignore_index=IGNORE, unobserved_weight=unobserved_weight)
        self.ft_loss = FeatureLoss()
        self.neighbour = None  # neighbour(sample, offset) -> adjacent frame (multi-sweep)

    def occupancy_target(self, sample: dict, grid) -> torch.Tensor:
        """The LiDAR occupancy target of one frame under `self.lidar_occupancy`."""
        return torch.from_numpy(
            lidar_occupancy_target(sample, grid, self.lidar_occupancy, self.neighbour)
        )

    def feature_targets(self, sample: dict, teacher_features, grid, occ_target) -> dict:
        """Language-head targets of one frame: the teacher at this frame's LiDAR points, and
        with `lidar_occupancy.sweep_features` also at the adjacent sweeps' points that land
        in voxels occupied in `occ_target`."""
        others = []
        cfg = self.lidar_occupancy
        if cfg.sweep_features and self.neighbour is not None:
            from pop3d_ros.training.rays import relative_pose

            occupied = np.asarray(occ_target).reshape(-1) == 1
            for off in cfg.sweeps:
                other = self.neighbour(sample, int(off))
                if other is not None:
                    tf = self.teacher(other)["features"]
                    others.append((other, tf, relative_pose(sample, other), occupied.__getitem__))
        return voxel_feature_targets(sample, teacher_features, grid, others)

    def prepare(self, sample: dict, model_cfg) -> dict:
        raise NotImplementedError

    def add_depth_target(self, item: dict, sample: dict, model_cfg) -> dict:
        """Adds `depth_target` (LiDAR depth bins per feature cell) when the model lifts with
        depth bins; `item` holds the resized calibration (`model_inputs`)."""
        lift = model_cfg.lifting
        if lift.depth_bins:
            from pop3d_ros.model.depth import depth_target

            cams = camera_list(item["intrinsics"], item["cam_to_ego"], model_cfg.image_size)
            target = depth_target(sample["lidar_points"], cams, model_cfg.feature_hw, lift)
            item["depth_target"] = torch.from_numpy(target)
        return item

    def collate(self, items: list[dict], num_voxels: int) -> dict:
        keys = ["images", "intrinsics", "cam_to_ego", "occ_target"]
        if "depth_target" in items[0]:
            keys.append("depth_target")
        batch = {k: torch.stack([it[k] for it in items]) for k in keys}
        batch["voxel_index"] = torch.cat(
            [it["voxel_index"] + b * num_voxels for b, it in enumerate(items)]
        )
        batch["features"] = torch.cat([it["features"] for it in items])
        batch["weight"] = torch.cat([it["weight"] for it in items])
        return batch

    def lift_depth_loss(self, outputs: dict, batch: dict) -> torch.Tensor | None:
        """Cross-entropy of the depth-bin head against the LiDAR bins, or None for a model
        without depth bins."""
        if "depth_logits" not in outputs:
            return None
        if "depth_target" not in batch:
            raise ValueError(
                f"the model lifts with depth bins but the {self.name} frames hold no "
                "depth_target (prepare them for this model config)"
            )
        from pop3d_ros.model.depth import depth_loss

        target = batch["depth_target"]
        return depth_loss(outputs["depth_logits"], target.reshape(-1, *target.shape[-2:]))

    def pop3d_terms(self, outputs: dict, batch: dict) -> dict:
        """POP-3D's occupancy and feature losses; `loss` = occ + feature_weight * ft."""
        terms = self.occ_loss(outputs["occupancy_logits"], batch["occ_target"])
        # The cache keeps the pair counts either way, so one prepared set serves both.
        weight = batch["weight"] if self.feature_weighting == "point" else None
        if self.feature_balance is not None:
            weight = self.feature_balance(batch["features"], weight)
        terms.update(self.ft_loss(outputs["language_features"], batch["features"], weight))
        terms["loss"] = terms["occ"] + self.feature_weight * terms["ft"]
        return terms

    def losses(self, outputs: dict, batch: dict) -> dict:
        terms = self.pop3d_terms(outputs, batch)
        depth = self.lift_depth_loss(outputs, batch)
        if depth is not None:
            terms["depth"] = depth
            terms["loss"] = terms["loss"] + self.lift_depth_weight * depth
        return terms
