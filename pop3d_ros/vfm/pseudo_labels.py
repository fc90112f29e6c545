"""3D pseudo labels by back-projecting pixel semantics with calibrated depth (paper sec. 3.2).

A pixel with class c and depth D lands at X = cam_to_ego * D K^-1 (u, v, 1): its voxel is
occupied (and votes for c); the voxels its camera ray crosses before the surface are free;
everything else is unknown (IGNORE), as in POP-3D's LiDAR targets but from cameras alone.
The language head's targets are the teacher features at those pixels, averaged per voxel
(pixel count = weight), mirroring `training.targets.voxel_feature_targets`.
Out-of-scope pixels (sky) and pixels beyond `max_depth` are not back-projected.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from pop3d_ros.data.classes import EMPTY, IGNORE, NUM_CLASSES
from pop3d_ros.evaluation.labels import free_space
from pop3d_ros.geometry.grid import VoxelGrid
from pop3d_ros.teachers.features import sample_feature_map, sum_by


@dataclass
class PseudoLabelConfig:
    """How calibrated depth + pixel classes become voxel targets."""

    max_depth: float = 60.0  # metres; farther pixels are not back-projected
    free_space: bool = True  # mark voxels crossed by camera rays before the surface free
    free_ray_stride: int = 2  # use every n-th pixel (rows and columns) for the free-space rays
    free_step: float | None = None  # ray sampling step (default: half the smallest voxel edge)


def back_project(depth, K, cam_to_ego, keep) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Ego-frame points of the kept pixels.

    depth (N, h, w) metres, K (N, 3, 3) for that size, cam_to_ego (N, 4, 4), keep (N, h, w).
    Returns (points (M, 3) float32, camera index (M,), pixel uv (M, 2) at depth's size)."""
    pts, cams, uvs = [], [], []
    for c in range(depth.shape[0]):
        v, u = np.nonzero(keep[c])
        if u.size == 0:
            continue
        d = depth[c, v, u].astype(np.float64)
        pix = np.stack([u, v, np.ones_like(u)]).astype(np.float64)
        cam = (np.linalg.inv(np.asarray(K[c], np.float64)) @ pix) * d
        T = np.asarray(cam_to_ego[c], np.float64)
        pts.append((T[:3, :3] @ cam + T[:3, 3:]).T)
        cams.append(np.full(u.size, c))
        uvs.append(np.stack([u, v], 1))
    if not pts:
        return np.zeros((0, 3), np.float32), np.zeros(0, np.int64), np.zeros((0, 2), np.float32)
    return (
        np.concatenate(pts).astype(np.float32),
        np.concatenate(cams),
        np.concatenate(uvs).astype(np.float32),
    )


def pseudo_labels(
    sample,
    calibrated,
    classes,
    teacher_features,
    grid: VoxelGrid,
    cfg: PseudoLabelConfig | None = None,
) -> dict:
    """Voxel targets of one frame (reads images' size, cam_to_ego; never LiDAR).

    calibrated: `DepthCalibrator` output ("depth" (N, h, w), "intrinsics" for that size);
    classes (N, H, W) pixel semantics; teacher_features (N, D, h', w').
    Returns {"occ_target" uint8 (X, Y, Z) 1/0/IGNORE, "semantic" uint8 (X, Y, Z)
    class/EMPTY/IGNORE (the labels alone, for evaluation), "voxel_index" (M,) int64,
    "features" (M, D) float32, "weight" (M,) float32 pixel counts}."""
    cfg = cfg or PseudoLabelConfig()
    depth = np.asarray(calibrated["depth"], np.float32)
    K = np.asarray(calibrated["intrinsics"], np.float32)
    n, h, w = depth.shape
    H, W = sample["images"].shape[1:3]
    cls = (
        F.interpolate(
            torch.from_numpy(np.asarray(classes))[:, None].float(), size=(h, w), mode="nearest"
        )[:, 0]
        .to(torch.uint8)
        .numpy()
    )
    keep = (cls != IGNORE) & np.isfinite(depth) & (depth <= cfg.max_depth)
    c2e = np.asarray(sample["cam_to_ego"], np.float32)
    points, cams, uv = back_project(depth, K, c2e, keep)
    labels = cls[keep]  # same order as back_project (camera, then row-major pixels)

    occ = np.full(grid.num_voxels, IGNORE, np.uint8)
    if cfg.free_space:
        st = max(1, cfg.free_ray_stride)
        ray = np.zeros_like(keep)
        ray[:, ::st, ::st] = True
        for c in range(n):
            sel = (cams == c) & ray[c][uv[:, 1].astype(int), uv[:, 0].astype(int)]
            if sel.any():
                occ[free_space(points[sel], c2e[c, :3, 3], grid, cfg.free_step)] = 0
    idx, inside = grid.points_to_index(points)
    flat = grid.flat_index(idx[inside])
    occ[flat] = 1

    sem = np.where(occ == 0, EMPTY, IGNORE).astype(np.uint8)
    votes = np.bincount(
        flat * NUM_CLASSES + labels[inside].astype(np.int64),
        minlength=grid.num_voxels * NUM_CLASSES,
    ).reshape(-1, NUM_CLASSES)
    has = votes.sum(1) > 0
    sem[has] = votes[has].argmax(1).astype(np.uint8)

    # Teacher features at the kept pixels (full-image pixel coordinates), mean per voxel.
    tf = np.asarray(teacher_features)
    sy, sx = H / h, W / w
    full_uv = np.stack([(uv[:, 0] + 0.5) * sx - 0.5, (uv[:, 1] + 0.5) * sy - 0.5], 1)
    d = int(tf.shape[1])
    feats = torch.zeros(len(points), d)
    for c in range(n):
        sel = np.nonzero(cams == c)[0]
        if sel.size:
            feats[torch.from_numpy(sel)] = sample_feature_map(tf[c], full_uv[sel], (H, W))
    feats = feats[torch.from_numpy(np.nonzero(inside)[0])]
    if len(flat):
        uniq, inverse, sums = sum_by(flat, feats)
        counts = torch.from_numpy(np.bincount(inverse, minlength=len(uniq))).float()
        features = sums / counts[:, None]
    else:
        uniq, counts, features = np.zeros(0, np.int64), torch.zeros(0), torch.zeros(0, d)
    return {
        "occ_target": occ.reshape(grid.shape),
        "semantic": sem.reshape(grid.shape),
        "voxel_index": torch.from_numpy(uniq.astype(np.int64)),
        "features": features,
        "weight": counts,
    }
