"""Training targets from one sample (paper sec. 3.2), computed without manual labels.

- Occupancy: a voxel holding >= 1 LiDAR point is occupied (1), every other voxel empty (0).
- Features: the 2D teacher's dense feature map sampled bilinearly at the pixels where
  camera-visible LiDAR points project, for every camera that sees the point. The language
  head is evaluated only at those points' voxels, so the targets are aggregated per voxel:
  the mean over the voxel's (point, camera) pairs with the pair count as weight gives the
  same gradient as the per-point MSE (see losses.FeatureLoss) at a fraction of the cost.
"""

from __future__ import annotations

import numpy as np
import torch

from pop3d_ros.geometry.grid import VoxelGrid
from pop3d_ros.geometry.transforms import transform_points
from pop3d_ros.teachers.features import point_feature_pairs, sum_by


def voxel_feature_targets(sample: dict, teacher_features, grid: VoxelGrid, others=()) -> dict:
    """Per-voxel feature targets for the language head.

    `others`: (other sample, its teacher features, (4, 4) its ego -> this ego, keep) for
    adjacent frames of the drive whose (point, camera) pairs join this frame's: each other
    frame's points are projected into its own cameras for the teacher features, then moved
    into this frame's grid; `keep(flat voxel indices) -> bool mask` drops voxels that are
    not occupied now (e.g. a moving object's old place). Averaging the teacher over frames
    that see a voxel from other places denoises the target (a student can then beat its
    teacher).

    Returns {"voxel_index": (M,) int64 flat voxel indices, "features": (M, D) float32 mean
    teacher feature over the voxel's (point, camera) pairs, "weight": (M,) float32 pair counts}.
    """
    flats, feat_parts = [], []
    frames = [(sample, teacher_features, None, None), *others]
    for frame, tf, to_current, keep in frames:
        points = frame["lidar_points"]
        pidx, _, feats = point_feature_pairs(frame, tf, points)
        pts = points[pidx]
        if to_current is not None:
            pts = transform_points(to_current, pts).astype(np.float32)
        idx, inside = grid.points_to_index(pts)
        flat = grid.flat_index(idx[inside])
        feats = feats[torch.from_numpy(np.nonzero(inside)[0])]
        if keep is not None and len(flat):
            ok = np.asarray(keep(flat), bool)
            flat, feats = flat[ok], feats[torch.from_numpy(np.nonzero(ok)[0])]
        flats.append(flat)
        feat_parts.append(feats)
    flat = np.concatenate(flats)
    uniq, inverse, sums = sum_by(flat, torch.cat(feat_parts))
    counts_t = torch.from_numpy(np.bincount(inverse, minlength=len(uniq))).float()
    return {
        "voxel_index": torch.from_numpy(uniq.astype(np.int64)),
        "features": sums / counts_t[:, None],
        "weight": counts_t,
    }
