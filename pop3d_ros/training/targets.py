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
import torch.nn.functional as F

from pop3d_ros.data.sample import project_points
from pop3d_ros.geometry.grid import VoxelGrid
from pop3d_ros.geometry.transforms import transform_points


def occupancy_target(points: np.ndarray, grid: VoxelGrid) -> np.ndarray:
    """(X, Y, Z) uint8: 1 where a voxel holds at least one point, else 0."""
    occ = np.zeros(grid.num_voxels, dtype=np.uint8)
    idx, inside = grid.points_to_index(points)
    occ[grid.flat_index(idx[inside])] = 1
    return occ.reshape(grid.shape)


def sample_feature_map(features, uv: np.ndarray, image_hw: tuple[int, int]) -> torch.Tensor:
    """Bilinear samples of a dense map (D, h, w) at image pixels uv (N, 2) -> (N, D) float32.

    The map covers the whole image, so pixel u maps to normalised x = (u + 0.5) / W * 2 - 1
    (grid_sample with align_corners=False uses the same pixel-area convention).
    """
    fmap = torch.as_tensor(features).float()[None]
    H, W = image_hw
    uv = torch.as_tensor(uv, dtype=torch.float32)
    gx = (uv[:, 0] + 0.5) / W * 2 - 1
    gy = (uv[:, 1] + 0.5) / H * 2 - 1
    grid = torch.stack([gx, gy], -1)[None, None]  # (1, 1, N, 2)
    out = F.grid_sample(fmap, grid, mode="bilinear", padding_mode="border", align_corners=False)
    return out[0, :, 0].T.contiguous()


def point_feature_pairs(sample: dict, teacher_features, points=None, keep=None):
    """Teacher features at every (camera-visible point, camera) pair.

    Returns (point_index (M,) int64, camera_index (M,) int64, features (M, D) float32).
    `teacher_features` is (N_cam, D, h, w) (any float dtype); `keep` (P,) bool limits the
    pairs to those points.
    """
    points = sample["lidar_points"] if points is None else points
    uv, valid = project_points(sample, points)
    if keep is not None:
        valid = valid & np.asarray(keep, bool)[None]
    hw = (int(sample["images"].shape[1]), int(sample["images"].shape[2]))
    pidx, cidx, feats = [], [], []
    for c in range(valid.shape[0]):
        sel = np.nonzero(valid[c])[0]
        if sel.size == 0:
            continue
        pidx.append(sel)
        cidx.append(np.full(sel.size, c))
        feats.append(sample_feature_map(teacher_features[c], uv[c, sel], hw))
    if not pidx:
        d = int(teacher_features.shape[1])
        return np.zeros(0, np.int64), np.zeros(0, np.int64), torch.zeros(0, d)
    return np.concatenate(pidx), np.concatenate(cidx), torch.cat(feats)


def sum_by(index: np.ndarray, feats: torch.Tensor) -> tuple[np.ndarray, np.ndarray, torch.Tensor]:
    """Rows of `feats` (M, D) summed per distinct value of `index` (M,): (the sorted distinct
    values, each row's position among them, the (len(values), D) sums)."""
    uniq, inverse = np.unique(index, return_inverse=True)
    sums = torch.zeros(len(uniq), feats.shape[1], dtype=feats.dtype)
    return uniq, inverse, sums.index_add_(0, torch.from_numpy(inverse), feats)


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
