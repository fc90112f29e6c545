"""Parameter-free 2D->3D lifting (Simple-BEV style).

`compute_sampling` projects every voxel centre into every camera from calibration alone
(numpy, outside the network); `BilinearLifting` samples the image features there and takes
the masked mean over the cameras that see the voxel. The sampling grid and mask are network
inputs, so a calibration change needs no new ONNX/TensorRT engine, and the graph has no
data-dependent shapes.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from pop3d_ros.geometry.camera import PinholeCamera
from pop3d_ros.geometry.grid import VoxelGrid
from pop3d_ros.model.depth import tent_probability


def compute_sampling(
    cameras: Sequence[PinholeCamera],
    grid: VoxelGrid,
    feature_hw: tuple[int, int],
    image_hw: tuple[int, int],
    min_depth: float = 0.1,
) -> tuple[np.ndarray, np.ndarray]:
    """Normalised `grid_sample` coordinates and visibility of every voxel centre per camera.

    `cameras` must be calibrated for the network's input size `image_hw` = (H, W) (use
    `PinholeCamera.resized`). `feature_hw` is the backbone output size; when the image is not
    a multiple of it, the feature map covers a slightly larger extent, accounted for here.

    Returns `sampling_grid` (N_cam, N_vox, 2) float32 in [-1, 1] (x = column, y = row, for
    `grid_sample(..., align_corners=False)`) and `sampling_mask` (N_cam, N_vox) float32, 1
    where the centre is in front of the camera and inside its image. Voxels are in
    `grid.centers().reshape(-1, 3)` order (x-major, z fastest). Unseen entries get (0, 0).
    """
    h, w = int(image_hw[0]), int(image_hw[1])
    fh, fw = int(feature_hw[0]), int(feature_hw[1])
    if fh <= 0 or fw <= 0 or h <= 0 or w <= 0:
        raise ValueError(f"bad sizes: feature_hw={feature_hw}, image_hw={image_hw}")
    centers = grid.centers().reshape(-1, 3).astype(np.float64)
    n_vox = centers.shape[0]
    out_grid = np.zeros((len(cameras), n_vox, 2), dtype=np.float32)
    out_mask = np.zeros((len(cameras), n_vox), dtype=np.float32)
    # The feature map of size f at stride s spans f * s pixels (>= the image when padded).
    extent_w = fw * int(np.ceil(w / fw))
    extent_h = fh * int(np.ceil(h / fh))
    for c, cam in enumerate(cameras):
        if (cam.width, cam.height) != (w, h):
            raise ValueError(
                f"camera {cam.name!r} is calibrated for {cam.width}x{cam.height}, "
                f"but the network input is {w}x{h}; use PinholeCamera.resized()"
            )
        uv, _, valid = cam.project(centers, min_depth=min_depth)
        # Pixel centre u sits at (u + 0.5) / extent of the way across (align_corners=False).
        gx = (uv[:, 0] + 0.5) / extent_w * 2.0 - 1.0
        gy = (uv[:, 1] + 0.5) / extent_h * 2.0 - 1.0
        out_grid[c, valid, 0] = gx[valid]
        out_grid[c, valid, 1] = gy[valid]
        out_mask[c, valid] = 1.0
    return np.clip(out_grid, -1.0, 1.0), out_mask


class BilinearLifting(nn.Module):
    """Image features (B*N_cam, C, Hf, Wf) -> voxel features (B, C_lift, X, Y, Z).

    Bilinear sampling at each voxel's projection, then the mean over the cameras whose mask is
    1 (zero where no camera sees the voxel). With `visibility_channel`, the fraction of cameras
    seeing the voxel is appended as one more channel.

    With `depth_bins` D > 0 (model/depth.py) the depth-bin probabilities (B*N_cam, D, Hf, Wf)
    are sampled with the features (one grid_sample), p = the probability of the voxel's own
    depth bin (tent weights of `sampling_depth`), scaled by D (1 = uniform, so the weighted
    features keep the unweighted ones' scale), and the channels are: the unweighted mean (as
    without depth: the decoder keeps today's information while the depth head is still
    untrained, and can learn how far to trust it), the mean of p * feature (the depth-weighted
    lifting: a feature lands on the voxels at its predicted depth), the mean of p (depth
    evidence: "a surface is here" even where features look alike), then visibility.
    C_lift = C (+ C + 1 with depth) (+ 1 with visibility).
    """

    def __init__(
        self,
        grid_shape: tuple[int, int, int],
        num_cameras: int,
        visibility_channel: bool = True,
        depth_bins: int = 0,
    ):
        super().__init__()
        self.num_cameras = int(num_cameras)
        self.grid_shape = tuple(int(n) for n in grid_shape)
        self.visibility_channel = visibility_channel
        self.depth_bins = int(depth_bins)

    def out_channels(self, feature_channels: int) -> int:
        c = feature_channels * (2 if self.depth_bins else 1) + int(self.depth_bins > 0)
        return c + int(self.visibility_channel)

    def forward(
        self,
        features: torch.Tensor,
        sampling_grid: torch.Tensor,
        sampling_mask: torch.Tensor,
        depth_probs: torch.Tensor | None = None,
        sampling_depth: torch.Tensor | None = None,
    ) -> torch.Tensor:
        b, n_cam, n_vox, _ = sampling_grid.shape
        c = features.shape[1]
        x, y, z = self.grid_shape
        if self.depth_bins:
            if depth_probs is None or sampling_depth is None:
                raise ValueError("a depth-bin lifting needs depth_probs and sampling_depth")
            features = torch.cat([features, depth_probs], dim=1)
        grid = sampling_grid.reshape(b * n_cam, 1, n_vox, 2)
        sampled = F.grid_sample(
            features, grid, mode="bilinear", padding_mode="zeros", align_corners=False
        )  # (B*N, C(+D), 1, N_vox)
        sampled = sampled.reshape(b, n_cam, features.shape[1], n_vox)
        mask = sampling_mask.reshape(b, n_cam, 1, n_vox)
        count = mask.sum(dim=1)  # (B, 1, N_vox)
        if not self.depth_bins:
            parts = [(sampled * mask).sum(dim=1) / count.clamp(min=1.0)]
        else:
            feats, probs = sampled[:, :, :c], sampled[:, :, c:]
            p = tent_probability(probs, sampling_depth) * (mask * self.depth_bins)
            denom = count.clamp(min=1.0)
            parts = [
                (feats * mask).sum(dim=1) / denom,
                (feats * p).sum(dim=1) / denom,
                p.sum(dim=1) / denom,
            ]
        if self.visibility_channel:
            parts.append(count * (1.0 / self.num_cameras))
        fused = torch.cat(parts, dim=1) if len(parts) > 1 else parts[0]
        return fused.reshape(b, fused.shape[1], x, y, z)
