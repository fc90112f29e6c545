"""MaskCLIP dense features from an open_clip ViT (Zhou et al., ECCV 2022; POP-3D's teacher).

CLIP's image embedding comes from attention pooling of the class token. MaskCLIP instead
keeps, in the last transformer block, only the *value* path of attention (no query-key
mixing across tokens), so every patch token yields a text-aligned feature. Two variants:

- `maskclip` (the official code, MaskCLIP `mmseg/models/backbones/vit.py`,
  `TransformerEncoderLayer.forward(return_qkv=True)`): for the last block
  `v = out_proj(W_v ln_1(x) + b_v); v = x + v; v = v + FFN(ln_2(v))`, then `ln_post` and
  `proj`. This is the block run with each token attending only to itself.
- `maskclip-no-residual`: `out_proj(W_v ln_1(x) + b_v)`, then `ln_post` and `proj`, without
  the residual and the FFN (what ClearCLIP / SCLIP report gives cleaner dense features).
  Not what POP-3D's teacher computes.

open_clip's layer scale (`ls_1`, `ls_2`; identity in CLIP ViTs) is applied where open_clip
applies it. The positional embedding is interpolated (bicubic) to the input's patch grid, so
any image size works.

Weights: an optional local open_clip checkpoint; otherwise random init (no network here).
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)

# The last-block variants (module docstring). The first is the default.
MASKCLIP_VARIANTS = ("maskclip", "maskclip-no-residual")


def interpolate_pos_embed(pos: torch.Tensor, src_hw: tuple[int, int], dst_hw: tuple[int, int]):
    """(1 + h*w, C) positional embedding -> (1 + H*W, C); the class token's entry is kept."""
    if tuple(src_hw) == tuple(dst_hw):
        return pos
    cls, grid = pos[:1], pos[1:]
    c = grid.shape[-1]
    grid = grid.reshape(1, src_hw[0], src_hw[1], c).permute(0, 3, 1, 2)
    grid = F.interpolate(grid.float(), size=tuple(dst_hw), mode="bicubic", align_corners=False)
    return torch.cat([cls, grid.permute(0, 2, 3, 1).reshape(-1, c).to(pos.dtype)])


class MaskCLIP(nn.Module):
    """Dense text-aligned features: images (B, 3, H, W) in [0, 1] -> (B, D, H/p, W/p)."""

    def __init__(self, visual: nn.Module, variant: str = "maskclip"):
        super().__init__()
        if variant not in MASKCLIP_VARIANTS:
            raise ValueError(f"unknown MaskCLIP variant {variant!r} (one of {MASKCLIP_VARIANTS})")
        self.variant = variant
        for name in (
            "conv1",
            "class_embedding",
            "positional_embedding",
            "ln_pre",
            "transformer",
            "ln_post",
            "proj",
        ):
            if not hasattr(visual, name):
                raise ValueError(f"MaskCLIP needs an open_clip VisionTransformer (no {name!r})")
        if getattr(visual, "attn_pool", None) is not None:
            raise ValueError("MaskCLIP needs a ViT without attentional pooling")
        self.visual = visual
        self.patch = visual.conv1.kernel_size
        gs = visual.grid_size
        self.native_grid = (int(gs[0]), int(gs[1])) if isinstance(gs, tuple | list) else (gs, gs)
        self.register_buffer("mean", torch.tensor(CLIP_MEAN).view(1, 3, 1, 1), False)
        self.register_buffer("std", torch.tensor(CLIP_STD).view(1, 3, 1, 1), False)

    @property
    def embed_dim(self) -> int:
        return int(self.visual.proj.shape[1])

    @property
    def stride(self) -> int:
        return int(self.patch[0])

    def embeds(self, x: torch.Tensor) -> torch.Tensor:
        """Token embeddings before the transformer (B, 1 + h*w, C), as open_clip's `_embeds`
        but with the positional embedding interpolated to this input's patch grid."""
        v = self.visual
        x = v.conv1(x)
        hw = (x.shape[2], x.shape[3])
        x = x.flatten(2).transpose(1, 2)
        cls = v.class_embedding.to(x.dtype).expand(x.shape[0], 1, -1)
        x = torch.cat([cls, x], dim=1)
        x = x + interpolate_pos_embed(v.positional_embedding, self.native_grid, hw).to(x.dtype)
        return v.ln_pre(x)

    @staticmethod
    def value_path(block: nn.Module, x: torch.Tensor) -> torch.Tensor:
        """The last block's attention with its attention matrix dropped: the value embedding
        of each token through the output projection, `out_proj(W_v ln_1(x) + b_v)`."""
        attn: nn.MultiheadAttention = block.attn
        d = x.shape[-1]
        y = block.ln_1(x)
        v = F.linear(y, attn.in_proj_weight[2 * d :], attn.in_proj_bias[2 * d :])
        return attn.out_proj(v)

    def last_block(self, block: nn.Module, x: torch.Tensor) -> torch.Tensor:
        """The last block as this teacher's variant computes it (module docstring)."""
        v = self.value_path(block, x)
        if self.variant == "maskclip-no-residual":
            return v
        v = x + block.ls_1(v) if hasattr(block, "ls_1") else x + v
        ffn = block.mlp(block.ln_2(v))
        return v + (block.ls_2(ffn) if hasattr(block, "ls_2") else ffn)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        b, _, h, w = images.shape
        ph, pw = self.patch
        gh, gw = math.ceil(h / ph), math.ceil(w / pw)
        # Pad to whole patches (right/bottom) so no image content is dropped.
        x = (images - self.mean) / self.std
        x = F.pad(x, (0, gw * pw - w, 0, gh * ph - h))
        x = self.embeds(x)
        blocks = self.visual.transformer.resblocks
        batch_first = getattr(self.visual.transformer, "batch_first", True)
        if not batch_first:
            x = x.transpose(0, 1)
        for blk in blocks[:-1]:
            x = blk(x)
        x = self.last_block(blocks[-1], x)
        if not batch_first:
            x = x.transpose(0, 1)
        x = self.visual.ln_post(x[:, 1:]) @ self.visual.proj  # drop the class token
        return x.transpose(1, 2).reshape(b, -1, gh, gw)


def build_maskclip(
    model_name: str = "ViT-B-16", checkpoint: str | None = None, variant: str = "maskclip"
) -> MaskCLIP:
    """MaskCLIP around open_clip's `model_name` vision tower; weights from a local file only."""
    import open_clip

    if variant not in MASKCLIP_VARIANTS:
        raise ValueError(f"unknown MaskCLIP variant {variant!r} (one of {MASKCLIP_VARIANTS})")
    model = open_clip.create_model(model_name, pretrained=checkpoint or None)
    return MaskCLIP(model.visual, variant).eval()


@torch.no_grad()
def maskclip_features(teacher: MaskCLIP, images: np.ndarray, batch: int = 6) -> np.ndarray:
    """uint8 (N, H, W, 3) -> float16 (N, D, ceil(H/p), ceil(W/p))."""
    x = torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).float() / 255.0
    outs = [teacher(x[i : i + batch]) for i in range(0, len(x), batch)]
    return torch.cat(outs).half().numpy()
