"""The POP-3D network: 2D-to-3D encoder f_3D (backbone, lifting, BEV decoder) + heads g, h."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from pop3d_ros.model.backbone import ResNetFPN
from pop3d_ros.model.config import ModelConfig
from pop3d_ros.model.decoder import BEVDecoder
from pop3d_ros.model.depth import DepthHead
from pop3d_ros.model.heads import MLPHead, language_head, occupancy_head
from pop3d_ros.model.lifting import BilinearLifting

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class Pop3DModel(nn.Module):
    """forward(images, sampling_grid, sampling_mask[, sampling_depth]) -> {"occupancy_logits",
    "voxel_features"[, "depth_logits"]}.

    images (B, N_cam, 3, H, W) RGB in [0, 1]; sampling_grid (B, N_cam, N_vox, 2) and
    sampling_mask (B, N_cam, N_vox) from `model.lifting.compute_sampling`; with
    `lifting.depth_bins` > 0 also sampling_depth (B, N_cam, N_vox) from
    `model.depth.compute_sampling_depth`. Outputs: occupancy_logits (B, X, Y, Z, 2) (index 1 =
    occupied), voxel_features (B, X, Y, Z, C_V), and for a depth model depth_logits
    (B*N_cam, D, Hf, Wf) (for the depth loss; not an ONNX output).
    With `heads.occupancy_output = "density"` the logits are [0, sigma - threshold] (see
    `density_from_logits`), so the same outputs serve a density-field (rendering) model.
    The language head is separate (`language_head(features)`), so it runs only on the voxels
    that need it (feature targets in training, occupied voxels at inference).
    """

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        cfg.validate()
        self.cfg = cfg
        shape = tuple(cfg.grid.shape)
        self.backbone = ResNetFPN(cfg.backbone)
        lift = cfg.lifting
        self.lifting = BilinearLifting(
            shape, cfg.num_cameras, lift.visibility_channel, lift.depth_bins
        )
        # Only depth models own a depth head, so depth_bins = 0 keeps today's state dict.
        self.depth_head = (
            DepthHead(cfg.backbone.out_channels, lift.depth_bins) if lift.depth_bins else None
        )
        lifted = self.lifting.out_channels(cfg.backbone.out_channels)
        self.decoder = BEVDecoder(lifted, shape, cfg.decoder)
        c_v, h = cfg.decoder.voxel_channels, cfg.heads
        self.occupancy_head: MLPHead = occupancy_head(c_v, h.occ_hidden, h.n_blocks)
        self.lang_head: MLPHead = language_head(c_v, h.lang_hidden, h.clip_dim, h.n_blocks)
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), False)

    def encode(
        self,
        images: torch.Tensor,
        sampling_grid: torch.Tensor,
        sampling_mask: torch.Tensor,
        sampling_depth: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """The 2D-to-3D encoder f_3D: -> voxel features V (B, X, Y, Z, C_V)."""
        return self._encode(images, sampling_grid, sampling_mask, sampling_depth)[0]

    def _encode(self, images, sampling_grid, sampling_mask, sampling_depth):
        b, n, _, h, w = images.shape
        x = (images.reshape(b * n, 3, h, w) - self.mean) / self.std
        feats = self.backbone(x)
        if self.depth_head is None:
            vox = self.lifting(feats, sampling_grid, sampling_mask)
            return self.decoder(vox), None
        if sampling_depth is None:
            raise ValueError(
                "this model lifts with depth bins: pass sampling_depth "
                "(model.depth.compute_sampling_depth)"
            )
        depth_logits = self.depth_head(feats)
        probs = torch.softmax(depth_logits, dim=1)
        vox = self.lifting(feats, sampling_grid, sampling_mask, probs, sampling_depth)
        return self.decoder(vox), depth_logits

    def forward(
        self,
        images: torch.Tensor,
        sampling_grid: torch.Tensor,
        sampling_mask: torch.Tensor,
        sampling_depth: torch.Tensor | None = None,
    ) -> dict[str, torch.Tensor]:
        voxel_features, depth_logits = self._encode(
            images, sampling_grid, sampling_mask, sampling_depth
        )
        logits = self.occupancy_head(voxel_features)
        h = self.cfg.heads
        if h.occupancy_output == "density":
            sigma = F.softplus(logits[..., 1] - logits[..., 0] + h.density_shift)
            logits = torch.stack([torch.zeros_like(sigma), sigma - h.density_threshold], -1)
        out = {"occupancy_logits": logits, "voxel_features": voxel_features}
        if depth_logits is not None:
            out["depth_logits"] = depth_logits
        return out

    def language_head(self, features: torch.Tensor) -> torch.Tensor:
        """h: (..., C_V) -> (..., clip_dim). Call it on a gathered subset of voxels."""
        return self.lang_head(features)


def density_from_logits(logits: torch.Tensor, heads) -> torch.Tensor:
    """The density sigma (..., per voxel length) of a "density" model's occupancy_logits."""
    if heads.occupancy_output != "density":
        raise ValueError("this model predicts occupancy logits, not a density field")
    return logits[..., 1] - logits[..., 0] + heads.density_threshold


def build_model(cfg: ModelConfig | dict | str) -> Pop3DModel:
    """A randomly initialised model (backbone weights only if the config names a local file).

    `cfg` may be a ModelConfig, its dict form, or a preset name.
    """
    from pop3d_ros.model.config import get_preset

    if isinstance(cfg, str):
        cfg = get_preset(cfg)
    elif isinstance(cfg, dict):
        cfg = ModelConfig.from_dict(cfg)
    return Pop3DModel(cfg)
