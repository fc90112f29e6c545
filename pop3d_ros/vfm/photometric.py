"""Novel view synthesis as the self-supervised objective (paper eq. 6-9, Godard et al. 2019).

A target pixel p_t with depth D(p_t) lands in a source view at
p_s ~ K_s T_{t->s} D(p_t) K_t^-1 p_t; the source image sampled there (bilinear) reconstructs
the target. The error per pixel is alpha * (1 - SSIM) / 2 + (1 - alpha) * |I_t - I_s|.
All functions work on batches (B = images) of torch tensors and are differentiable in depth.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def pixel_grid(h: int, w: int, device=None) -> torch.Tensor:
    """(3, h*w) homogeneous pixel centres (u, v, 1), u = column, v = row."""
    v, u = torch.meshgrid(
        torch.arange(h, dtype=torch.float32, device=device),
        torch.arange(w, dtype=torch.float32, device=device),
        indexing="ij",
    )
    return torch.stack([u.reshape(-1), v.reshape(-1), torch.ones(h * w, device=device)])


def warp_coordinates(depth, K_t, K_s, T_t_to_s):
    """Where each target pixel lands in the source image.

    depth (B, h, w) metric depth of the target pixels; K_t, K_s (B, 3, 3); T_t_to_s (B, 4, 4)
    target optical frame -> source optical frame. Returns (uv (B, h, w, 2) source pixel
    coordinates, in_front (B, h, w) bool: the point is in front of the source camera)."""
    B, h, w = depth.shape
    pix = pixel_grid(h, w, depth.device)
    rays = torch.linalg.inv(K_t) @ pix  # (B, 3, h*w)
    pts = rays * depth.reshape(B, 1, -1)
    pts = T_t_to_s[:, :3, :3] @ pts + T_t_to_s[:, :3, 3:]
    z = pts[:, 2]
    proj = K_s @ pts
    uv = proj[:, :2] / z.clamp(min=1e-3)[:, None]
    return uv.permute(0, 2, 1).reshape(B, h, w, 2), (z > 1e-3).reshape(B, h, w)


def sample_image(image, uv):
    """Bilinear samples of `image` (B, C, h, w) at pixel coordinates uv (B, h', w', 2).
    Returns (values (B, C, h', w'), inside (B, h', w') bool)."""
    _, _, h, w = image.shape
    gx = (uv[..., 0] + 0.5) / w * 2 - 1
    gy = (uv[..., 1] + 0.5) / h * 2 - 1
    grid = torch.stack([gx, gy], -1)
    out = F.grid_sample(image, grid, mode="bilinear", padding_mode="border", align_corners=False)
    inside = (gx > -1) & (gx < 1) & (gy > -1) & (gy < 1)
    return out, inside


def ssim(x, y, c1: float = 0.01**2, c2: float = 0.03**2):
    """(B, C, h, w) per-pixel SSIM over 3x3 windows (reflect padding), as in monodepth2."""
    x, y = F.pad(x, (1, 1, 1, 1), mode="reflect"), F.pad(y, (1, 1, 1, 1), mode="reflect")
    mu_x, mu_y = F.avg_pool2d(x, 3, 1), F.avg_pool2d(y, 3, 1)
    sxx = F.avg_pool2d(x * x, 3, 1) - mu_x**2
    syy = F.avg_pool2d(y * y, 3, 1) - mu_y**2
    sxy = F.avg_pool2d(x * y, 3, 1) - mu_x * mu_y
    num = (2 * mu_x * mu_y + c1) * (2 * sxy + c2)
    den = (mu_x**2 + mu_y**2 + c1) * (sxx + syy + c2)
    return (num / den).clamp(-1, 1)


def photometric_error(target, reconstructed, alpha: float = 0.85):
    """(B, h, w) alpha * (1 - SSIM) / 2 + (1 - alpha) * L1, both averaged over channels."""
    l1 = (target - reconstructed).abs().mean(1)
    s = ((1 - ssim(target, reconstructed)) / 2).clamp(0, 1).mean(1)
    return alpha * s + (1 - alpha) * l1


def reprojection_error(
    depth,
    target,
    sources,
    K_t,
    K_s,
    transforms,
    alpha: float = 0.85,
    source_masks=None,
    border: bool = False,
):
    """Per-pixel error of the target reconstructed from each source view, the minimum over
    sources (monodepth2's occlusion handling), and where at least one source saw the pixel.

    depth (B, h, w); target (B, 3, h, w) in [0, 1]; sources: list of (B, 3, h, w);
    K_s, transforms: lists matching `sources`; source_masks: optional list of (B, h, w) bool,
    False where a source pixel must not be compared (a moving object there occludes or
    reveals the static scene). `border`: a pixel landing outside a source image is compared
    with the image's nearest border pixel (monodepth2's padding) instead of not at all.
    Returns (error (B, h, w), valid (B, h, w))."""
    errs = []
    masks = source_masks or [None] * len(sources)
    for src, ks, T, sm in zip(sources, K_s, transforms, masks, strict=True):
        uv, front = warp_coordinates(depth, K_t, ks, T)
        rec, inside = sample_image(src, uv)
        ok = front if border else front & inside
        if sm is not None:
            seen, _ = sample_image(sm[:, None].float(), uv)
            ok = ok & (seen[:, 0] > 0.999)
        e = photometric_error(target, rec, alpha)
        errs.append(torch.where(ok, e, torch.full_like(e, float("inf"))))
    err = torch.stack(errs).min(0).values
    valid = torch.isfinite(err)
    return torch.where(valid, err, torch.zeros_like(err)), valid
