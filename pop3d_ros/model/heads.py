"""POP-3D heads (paper sec. 3.1): occupancy head g and 3D-language head h.

Each head is N hidden blocks of Linear-Softplus-Linear with `hidden` features, then a final
Linear: 2 logits for g (index 1 = occupied), the CLIP width for h. Following TPVFormer's
decoder, which POP-3D cites, the blocks are plain (no residual/skip connections). Both act on
the last dimension, so h can run on all voxels (B, X, Y, Z, C_V) or on a gathered (N, C_V).
"""

from __future__ import annotations

import contextlib

import torch
from torch import nn


class MLPHead(nn.Module):
    """[Linear(in, hidden) - Softplus - Linear(hidden, hidden)] x n_blocks - Linear(hidden, out)."""

    def __init__(self, in_features: int, hidden: int, out_features: int, n_blocks: int = 2):
        super().__init__()
        layers: list[nn.Module] = []
        width = in_features
        for _ in range(n_blocks):
            layers += [nn.Linear(width, hidden), nn.Softplus(), nn.Linear(hidden, hidden)]
            width = hidden
        self.blocks = nn.Sequential(*layers)
        self.out = nn.Linear(hidden, out_features)
        self.in_features = in_features
        self.out_features = out_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(self.blocks(x))


def occupancy_head(c_v: int, hidden: int = 512, n_blocks: int = 2) -> MLPHead:
    """g: voxel features -> 2 logits (empty, occupied)."""
    return MLPHead(c_v, hidden, 2, n_blocks)


def language_head(c_v: int, hidden: int = 1024, clip_dim: int = 512, n_blocks: int = 2) -> MLPHead:
    """h: voxel features -> a CLIP-space embedding (not normalised; cosine scoring normalises)."""
    return MLPHead(c_v, hidden, clip_dim, n_blocks)


class ExportSoftplus(nn.Module):
    """softplus(x) = relu(x) - log(sigmoid(|x|)), the form the heads are exported in.

    The same function (max abs difference to float64 softplus 6e-7 in fp32, as Softplus's own
    5e-7), written as five element-wise ONNX ops that ONNX Runtime's CPU provider runs in
    two thirds of its Softplus kernel's time (Relu, Abs and Sub are plain passes, Sigmoid is
    MLAS's vectorised logistic; Softplus evaluates exp and log1p per element with a branch).
    Not used in training: torch's fused softplus is faster there and autograd keeps less.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(x) - torch.log(torch.sigmoid(torch.abs(x)))


@contextlib.contextmanager
def export_activations(model: nn.Module):
    """Temporarily replace every default nn.Softplus in `model` by ExportSoftplus (no
    parameters either way, so the state dict is untouched); restored on exit."""
    swapped = []
    for parent in model.modules():
        for name, child in parent.named_children():
            if type(child) is nn.Softplus and child.beta == 1.0 and child.threshold >= 20.0:
                swapped.append((parent, name, child))
                setattr(parent, name, ExportSoftplus())
    try:
        yield len(swapped)
    finally:
        for parent, name, child in swapped:
            setattr(parent, name, child)
