"""Depth-distribution lifting (BEVDepth / FlashOcc idea in a TensorRT-friendly form).

A depth head predicts, per feature-map cell, a distribution over D depth bins along the
optical axis. The lifting samples it at each voxel's pixel (with the features, one
`grid_sample`) and weights the voxel's feature per camera by the probability of the voxel's
own depth, p(voxel) = sum_k prob_k * relu(1 - |k - b|), with b the voxel centre's fractional
bin coordinate. b depends on calibration only, so it is computed here, outside the engine
(`compute_sampling_depth`), and enters the network as the input `sampling_depth`
(B, N_cam, N_vox): D times smaller than precomputed per-bin weights (N_cam x N_vox x D), and
the tent weights are a handful of elementwise ops in the graph.

Supervision is label-free: LiDAR points projected into each camera give a bin index per
feature cell (`depth_target`, 255 = no point), trained with cross-entropy.

Bins: bin k covers edge coordinates [k, k + 1] of the spacing in `LiftingConfig` ("lid":
depth = d_min + (d_max - d_min) * e (e + 1) / (D (D + 1)) at edge coordinate e, CaDDN's
linear-increasing discretization; "linear": depth = d_min + (d_max - d_min) * e / D). Depths
outside [d_min, d_max] fall into the first / last bin.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from pop3d_ros.geometry.camera import PinholeCamera
from pop3d_ros.geometry.grid import VoxelGrid

IGNORE_DEPTH = 255  # depth-target value of a feature cell without a LiDAR point


def depth_to_edge(depth, bins: int, d_min: float, d_max: float, spacing: str) -> np.ndarray:
    """Continuous bin-edge coordinate e in [0, D] of depths (metres), clamped to the range."""
    d = np.clip(np.asarray(depth, dtype=np.float64), d_min, d_max)
    if spacing == "linear":
        return (d - d_min) / (d_max - d_min) * bins
    if spacing == "lid":
        unit = 2.0 * (d_max - d_min) / (bins * (bins + 1))
        return -0.5 + 0.5 * np.sqrt(1.0 + 8.0 * (d - d_min) / unit)
    raise ValueError(f"unknown depth spacing {spacing!r}")


def depth_to_bin_coordinate(depth, lifting) -> np.ndarray:
    """Fractional bin-centre coordinate b in [0, D - 1] (bin k's centre is b = k)."""
    n = int(lifting.depth_bins)
    e = depth_to_edge(depth, n, lifting.depth_min, lifting.depth_max, lifting.depth_spacing)
    return np.clip(e - 0.5, 0.0, n - 1.0)


def depth_to_bin_index(depth, lifting) -> np.ndarray:
    """The bin (int64 in [0, D - 1]) holding each depth."""
    n = int(lifting.depth_bins)
    e = depth_to_edge(depth, n, lifting.depth_min, lifting.depth_max, lifting.depth_spacing)
    return np.clip(np.floor(e), 0, n - 1).astype(np.int64)


def compute_sampling_depth(
    cameras: Sequence[PinholeCamera], grid: VoxelGrid, lifting
) -> np.ndarray:
    """`sampling_depth` (N_cam, N_vox) float32: each voxel centre's bin coordinate along each
    camera's optical axis (voxel order as `compute_sampling`). Voxels behind a camera get
    bin 0; `sampling_mask` hides them anyway."""
    if int(lifting.depth_bins) < 2:
        raise ValueError("compute_sampling_depth needs lifting.depth_bins >= 2")
    centers = grid.centers().reshape(-1, 3).astype(np.float64)
    out = np.zeros((len(cameras), centers.shape[0]), dtype=np.float32)
    for c, cam in enumerate(cameras):
        _, depth, _ = cam.project(centers, min_depth=0.0)
        out[c] = depth_to_bin_coordinate(depth, lifting)
    return out


def depth_target(
    points_ego: np.ndarray,
    cameras: Sequence[PinholeCamera],
    feature_hw: tuple[int, int],
    lifting,
) -> np.ndarray:
    """uint8 (N_cam, Hf, Wf): the bin of the nearest LiDAR point in each feature cell
    (IGNORE_DEPTH where none). `cameras` are calibrated for the network input size; a cell
    covers ceil(W / Wf) x ceil(H / Hf) pixels, as in `compute_sampling`."""
    if int(lifting.depth_bins) < 2 or int(lifting.depth_bins) >= IGNORE_DEPTH:
        raise ValueError(f"depth targets need 2 <= depth_bins < {IGNORE_DEPTH}")
    fh, fw = int(feature_hw[0]), int(feature_hw[1])
    out = np.full((len(cameras), fh, fw), IGNORE_DEPTH, dtype=np.uint8)
    pts = np.asarray(points_ego, dtype=np.float64).reshape(-1, 3)
    for c, cam in enumerate(cameras):
        sx, sy = int(np.ceil(cam.width / fw)), int(np.ceil(cam.height / fh))
        uv, depth, valid = cam.project(pts, min_depth=0.1)
        if not valid.any():
            continue
        col = np.floor((uv[valid, 0] + 0.5) / sx).astype(np.int64)
        row = np.floor((uv[valid, 1] + 0.5) / sy).astype(np.int64)
        keep = (col >= 0) & (col < fw) & (row >= 0) & (row < fh)
        cell, d = (row * fw + col)[keep], depth[valid][keep]
        order = np.argsort(d, kind="stable")
        first_cell, first = np.unique(cell[order], return_index=True)  # nearest point first
        flat = out[c].reshape(-1)
        flat[first_cell] = depth_to_bin_index(d[order][first], lifting).astype(np.uint8)
    return out


class DepthHead(nn.Module):
    """Image features (B*N, C, Hf, Wf) -> depth-bin logits (B*N, D, Hf, Wf):
    conv3x3-BN-ReLU then a 1x1 conv (plain TensorRT convolutions)."""

    def __init__(self, in_channels: int, bins: int):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(in_channels, in_channels, 3, padding=1, bias=False),
            nn.BatchNorm2d(in_channels),
            nn.ReLU(inplace=True),
            nn.Conv2d(in_channels, bins, 1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


def tent_probability(bin_probs: torch.Tensor, sampling_depth: torch.Tensor) -> torch.Tensor:
    """p = sum_k probs_k * relu(1 - |k - b|): (B, N, D, V) sampled bin probabilities and
    (B, N, V) bin coordinates -> (B, N, 1, V). Elementwise ops only (no gather)."""
    d = bin_probs.shape[2]
    k = torch.arange(d, dtype=bin_probs.dtype, device=bin_probs.device).view(1, 1, d, 1)
    w = torch.relu(1.0 - torch.abs(k - sampling_depth.unsqueeze(2)))
    return (bin_probs * w).sum(dim=2, keepdim=True)


def depth_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Cross-entropy of depth-bin logits (B*N, D, Hf, Wf) against bin targets (B*N, Hf, Wf)
    (IGNORE_DEPTH ignored); 0 (with a graph) when no cell has a target."""
    t = target.long()
    if not bool((t != IGNORE_DEPTH).any()):
        return logits.sum() * 0.0
    return nn.functional.cross_entropy(logits.float(), t, ignore_index=IGNORE_DEPTH)
