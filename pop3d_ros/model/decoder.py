"""BEV decoder: fold height into channels, 2D residual convs, unfold channels back to height.

2D convs on a bird's-eye view are cheap and map to plain TensorRT convolutions, unlike 3D
convs or attention. (B, C_in, X, Y, Z) -> V (B, X, Y, Z, C_V).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from pop3d_ros.model.config import DecoderConfig


class ResBlock(nn.Module):
    """Basic residual block: conv3x3-BN-ReLU-conv3x3-BN + skip, ReLU."""

    def __init__(self, channels: int):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(channels, channels, 3, padding=1, bias=False),
            nn.BatchNorm2d(channels),
            nn.ReLU(inplace=True),
            nn.Conv2d(channels, channels, 3, padding=1, bias=False),
            nn.BatchNorm2d(channels),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(x + self.body(x))


def _conv_bn_relu(c_in: int, c_out: int, kernel: int = 3, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, kernel, stride=stride, padding=kernel // 2, bias=False),
        nn.BatchNorm2d(c_out),
        nn.ReLU(inplace=True),
    )


class BEVDecoder(nn.Module):
    """Full-resolution residual blocks plus an optional half-resolution branch (U-shaped, one
    level) for a wider receptive field, then a 1x1 conv to C_V * Z channels."""

    def __init__(self, in_channels: int, grid_shape: tuple[int, int, int], cfg: DecoderConfig):
        super().__init__()
        self.grid_shape = tuple(int(n) for n in grid_shape)
        z = self.grid_shape[2]
        c = cfg.bev_channels
        self.c_v = cfg.voxel_channels
        self.stem = _conv_bn_relu(in_channels * z, c, kernel=1)
        self.blocks = nn.Sequential(*[ResBlock(c) for _ in range(cfg.n_blocks)])
        self.has_down = cfg.n_down_blocks > 0
        if self.has_down:
            self.down = _conv_bn_relu(c, c, stride=2)
            self.down_blocks = nn.Sequential(*[ResBlock(c) for _ in range(cfg.n_down_blocks)])
            self.merge = _conv_bn_relu(2 * c, c)
        self.to_voxels = nn.Conv2d(c, self.c_v * z, 1)

    def forward(self, vox: torch.Tensor) -> torch.Tensor:
        # Sizes from the config, not the tensor: constants in the exported graph.
        b, c_in = vox.shape[0], vox.shape[1]
        x, y, z = self.grid_shape
        # (B, C, X, Y, Z) -> (B, C*Z, X, Y): height becomes channels.
        bev = vox.permute(0, 1, 4, 2, 3).reshape(b, c_in * z, x, y)
        bev = self.blocks(self.stem(bev))
        if self.has_down:
            low = self.down_blocks(self.down(bev))
            up = F.interpolate(low, size=(x, y), mode="bilinear", align_corners=False)
            bev = self.merge(torch.cat([bev, up], dim=1))
        out = self.to_voxels(bev)  # (B, C_V*Z, X, Y)
        return out.reshape(b, self.c_v, z, x, y).permute(0, 3, 4, 2, 1).contiguous()
