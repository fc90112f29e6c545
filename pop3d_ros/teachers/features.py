"""A 2D teacher's dense features read at image points: bilinear samples of the feature map at
the pixels where LiDAR points (or any 3D points) project, per (point, camera) pair. Shared by
the training targets, the teacher baselines of the evaluation and the VFM pseudo labels."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from pop3d_ros.data.sample import project_points


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
