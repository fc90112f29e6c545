"""Relative depth -> metric depth by novel view synthesis (paper sec. 3.3.2, Alg. 1).

Relative inverse depth r (normalised per image to [0, 1] between its 1st and 99th
percentiles, larger = nearer) becomes metric inverse depth

    1 / D = (r + tau) / S,        S = s_scene * exp(sigma)   (per pixel)

which is the paper's D = S * D_rel + t written in inverse depth, where Depth Anything's output
lives (its "relative depth" is an affine-invariant disparity). With tau = 0, S is the depth of
the image's nearest pixels, so the paper's candidate range 1..100 reads in metres.

- Stage 1: s_scene = the candidate (log-spaced in [min_scale, max_scale]) with the smallest
  photometric error of the target image reconstructed from its neighbouring frames (same
  camera, known poses), with tau = sigma = 0. The error is the paper's reconstruction error
  alone (`stage1_loss="l1"`: Alg. 1 and eq. 7; SSIM joins in stage 2, eq. 9) or
  0.85 (1 - SSIM) / 2 + 0.15 L1 as in stage 2 (`"ssim_l1"`). It is averaged either over the
  pixels that land inside a source view (`stage1_pixels="in_view"`: the set changes from
  candidate to candidate, and a scale that pushes every pixel out of view scores 0) or over
  one fixed set per image, its static pixels, with a pixel no source view sees scored at
  the image's chance level (`"fixed"`: the error of the target against its sources shifted
  by half the image, an unrelated match) or against the source's nearest border pixel
  (`"border"`, monodepth2's padding), so leaving the image never wins; `"guarded"` keeps the
  in-view average but drops the candidates under which the sources see less than half the
  share of static pixels the best-seen candidate gets. In-view measures best
  (docs/experiments/results/issue29). With
  `rig_shifts` (the default) the target frame's adjacent cameras are source views too,
  their error added with `rig_weight`: their baseline is the rig's extrinsics, metric for
  every camera, where the ego motion leaves the side cameras' error without a clear minimum
  (`views.py`; the paper: ()).
- Stage 2: per-pixel sigma (init 0, i.e. S = s_scene) and a scene offset tau (init 0, or
  stage 1's offset when `offsets` names several) by AdamW
  on the same error. Log-scale and normalised-offset parameters make one learning rate fit any
  scene scale. The paper runs 5000 iterations at lr 1e-5 on 225 x 400 depth maps (on a GPU);
  the CPU default here is 100 iterations at lr 1e-3 on half-resolution maps.
Pixels of movable classes (from the pixel semantics) and out-of-scope pixels (sky) are left
out of the error; their depth follows the calibrated scale and offset.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F

from pop3d_ros.atomic import atomic_path
from pop3d_ros.data.classes import IGNORE
from pop3d_ros.geometry.camera import scale_intrinsics
from pop3d_ros.vfm.photometric import photometric_error, reprojection_error
from pop3d_ros.vfm.semantics import movable_mask
from pop3d_ros.vfm.views import source_views, view_transform


@dataclass
class CalibrationConfig:
    """Both stages of the depth calibration."""

    downsample: int = 2  # calibrate at image size / this (paper: 900x1600 -> 225x400 = /4)
    min_scale: float = 1.0  # stage 1 candidate range (paper: 1 .. 100)
    max_scale: float = 100.0
    num_scales: int = 64  # candidates, log-spaced
    # Stage 1 offset candidates tau searched with the scale; (0,) = the paper (scale only;
    # images without sky need tau > 0: docs/experiments/vfm.md).
    offsets: tuple[float, ...] = (0.0,)
    stage1: bool = True  # False: stage 2 starts from init_scale (the paper's ablation)
    init_scale: float = 1.0  # stage 2's start when stage 1 is off
    stage2: bool = True
    scale_stride: int = 1  # pixels per stage 2 scale parameter (1 = per pixel, the paper)
    iterations: int = 100  # stage 2 AdamW steps (paper: 5000)
    lr: float = 1e-3  # stage 2 learning rate (paper: 1e-5 on its own parametrisation)
    weight_decay: float = 0.0  # AdamW weight decay on sigma and tau
    ssim_alpha: float = 0.85  # weight of (1 - SSIM) / 2 against L1 (monodepth2)
    stage1_loss: Literal["l1", "ssim_l1"] = "ssim_l1"  # stage 1: l1 (the paper) or ssim_l1
    # stage 1's pixel set (the module doc): in_view, fixed, border or guarded
    stage1_pixels: Literal["in_view", "fixed", "border", "guarded"] = "in_view"
    min_depth: float = 1.0  # metres; calibrated depth is clamped to [min_depth, max_depth]
    max_depth: float = 150.0
    source_offsets: tuple[int, ...] = (-1, 1)  # neighbouring frames used as source views
    mask_movable: bool = True  # leave movable-class pixels out of the photometric error
    # Rig views: the target frame's cameras this many steps around the rig are source views
    # too (their baseline comes from the extrinsics; docs/experiments/vfm.md, rig views).
    # () = the paper (the same camera in other frames only).
    rig_shifts: tuple[int, ...] = (-1, 1)
    # With rig views: None = one minimum over all source views; a number = the temporal
    # views' mean error plus this weight times the rig views' mean error (each a minimum
    # over its own views, averaged over the pixels those views see).
    rig_weight: float | None = 1.0

    def validate(self) -> None:
        if self.downsample < 1 or self.num_scales < 1 or self.iterations < 0:
            raise ValueError("calibration needs downsample >= 1, num_scales >= 1, iterations >= 0")
        if not 0 < self.min_scale <= self.max_scale:
            raise ValueError("calibration needs 0 < min_scale <= max_scale")
        if not 0 < self.min_depth < self.max_depth:
            raise ValueError("calibration needs 0 < min_depth < max_depth")
        if self.rig_weight is not None and self.rig_weight < 0:
            raise ValueError("rig_weight must be >= 0 (or None: one minimum over all views)")
        if not self.source_offsets or 0 in self.source_offsets:
            raise ValueError("source_offsets must name other frames, e.g. (-1, 1)")
        if self.stage1_loss not in ("l1", "ssim_l1"):
            raise ValueError(f"stage1_loss must be l1 or ssim_l1, not {self.stage1_loss!r}")
        if self.stage1_pixels not in ("in_view", "fixed", "border", "guarded"):
            raise ValueError(
                "stage1_pixels must be in_view, fixed, border or guarded, "
                f"not {self.stage1_pixels!r}"
            )

    def candidates(self) -> np.ndarray:
        return np.geomspace(self.min_scale, self.max_scale, self.num_scales)


def normalise_relative(rel: np.ndarray) -> np.ndarray:
    """(N, H, W) relative inverse depth -> per image (x - p1) / (p99 - p1)."""
    rel = np.asarray(rel, np.float64)
    lo = np.percentile(rel.reshape(len(rel), -1), 1, axis=1)[:, None, None]
    hi = np.percentile(rel.reshape(len(rel), -1), 99, axis=1)[:, None, None]
    return ((rel - lo) / np.maximum(hi - lo, 1e-9)).astype(np.float32)


def metric_depth(r, scale, offset, cfg: CalibrationConfig):
    """Depth (B, h, w) from normalised relative inverse depth r, scale S (broadcastable) and
    offset tau (B, 1, 1), clamped to [min_depth, max_depth]."""
    inv = (r + offset) / scale
    return 1.0 / inv.clamp(1.0 / cfg.max_depth, 1.0 / cfg.min_depth)


def _mean_error(err, mask):
    m = mask.float()
    return (err * m).sum((1, 2)) / m.sum((1, 2)).clamp(min=1)


def chance_error(target, sources, static, alpha: float) -> torch.Tensor:
    """(B,) the error of an unrelated match: the target against each source rolled by half
    its height and width, over the static pixels, mean over the sources."""
    h, w = target.shape[-2:]
    errs = [
        _mean_error(photometric_error(target, src.roll((h // 2, w // 2), (2, 3)), alpha), static)
        for src in sources
    ]
    return torch.stack(errs).mean(0)


def calibrate_views(
    r,
    target,
    sources,
    K_t,
    K_s,
    transforms,
    static,
    cfg: CalibrationConfig,
    source_static=None,
    groups=None,
):
    """Calibrate a batch of images (one per camera) against their source views.

    r (B, h, w) normalised relative inverse depth; target (B, 3, h, w) in [0, 1]; sources,
    K_s, transforms: lists over source frames of (B, 3, h, w), (B, 3, 3), (B, 4, 4) target ->
    source optical frames; static (B, h, w) bool: pixels allowed in the error;
    source_static: optional list of (B, h, w) bool, the sources' static pixels (a target
    pixel that lands on a moving object in a source is not compared with that source).
    Returns {"depth" (B, h, w), "scene_scale" (B,), "offset" (B,), "stage1_depth",
    "stage1_error" (B,), "final_error" (B,)} as tensors."""
    B = r.shape[0]
    masks = source_static or [None] * len(sources)
    groups = groups or [(list(range(len(sources))), 1.0)]

    def error(depth, alpha=cfg.ssim_alpha, chance=None, border=False, seen=None):
        """The weighted group errors; `chance` (one (B,) per group): the fixed pixel set,
        a pixel no source of the group sees scored at that level; `border`: out-of-view
        pixels compared with the border (`reprojection_error`); `seen`: a list that gets
        the (B,) share of static pixels some source sees, mean over the groups."""
        total, share = 0.0, 0.0
        n_static = static.float().sum((1, 2)).clamp(min=1)
        for g, (idx, weight) in enumerate(groups):
            err, valid = reprojection_error(
                depth, target, [sources[i] for i in idx], K_t, [K_s[i] for i in idx],
                [transforms[i] for i in idx], alpha, [masks[i] for i in idx], border,
            )  # fmt: skip
            share = share + (valid & static).float().sum((1, 2)) / n_static / len(groups)
            if chance is None:
                total = total + weight * _mean_error(err, valid & static)
            else:
                err = torch.where(valid, err, chance[g].view(B, 1, 1))
                total = total + weight * _mean_error(err, static)
        if seen is not None:
            seen.append(share)
        return total

    zero = torch.zeros(B, 1, 1)
    with torch.no_grad():
        if cfg.stage1:
            alpha1 = cfg.ssim_alpha if cfg.stage1_loss == "ssim_l1" else 0.0
            chance = None
            if cfg.stage1_pixels == "fixed":
                chance = [
                    chance_error(target, [sources[i] for i in idx], static, alpha1)
                    for idx, _ in groups
                ]
            pairs = [(s, o) for o in cfg.offsets for s in cfg.candidates()]
            seen: list[torch.Tensor] = []
            errs = torch.stack(
                [
                    error(
                        metric_depth(r, s, torch.full((B, 1, 1), o), cfg),
                        alpha1,
                        chance,
                        cfg.stage1_pixels == "border",
                        seen,
                    )
                    for s, o in pairs
                ],
                1,
            )
            if cfg.stage1_pixels == "guarded":  # no candidate wins by leaving the image
                share = torch.stack(seen, 1)
                errs = torch.where(
                    share >= 0.5 * share.max(1, keepdim=True).values, errs, torch.inf
                )
            best = errs.argmin(1)
            scene = torch.tensor([pairs[i][0] for i in best], dtype=torch.float32)
            offset0 = torch.tensor([pairs[i][1] for i in best], dtype=torch.float32)
            stage1_error = errs[torch.arange(B), best]
        else:
            scene = torch.full((B,), float(cfg.init_scale))
            offset0 = torch.zeros(B)
            stage1_error = error(metric_depth(r, scene.view(B, 1, 1), zero, cfg))
    stage1_depth = metric_depth(r, scene.view(B, 1, 1), offset0.view(B, 1, 1), cfg)
    h, w = r.shape[1:]
    st = max(1, int(cfg.scale_stride))
    sigma = torch.zeros(B, 1, -(-h // st), -(-w // st), requires_grad=True)

    def pixel_scale():
        s = (
            sigma
            if st == 1
            else F.interpolate(sigma, size=(h, w), mode="bilinear", align_corners=False)
        )
        return scene.view(B, 1, 1) * s[:, 0].exp()

    tau = offset0.view(B, 1, 1).clone().requires_grad_(True)
    if cfg.stage2 and cfg.iterations > 0:
        opt = torch.optim.AdamW([sigma, tau], lr=cfg.lr, weight_decay=cfg.weight_decay)
        for _ in range(cfg.iterations):
            depth = metric_depth(r, pixel_scale(), tau, cfg)
            loss = error(depth).sum()
            opt.zero_grad()
            loss.backward()
            opt.step()
    with torch.no_grad():
        depth = metric_depth(r, pixel_scale(), tau, cfg)
        final_error = error(depth)
    return {
        "depth": depth.detach(),
        "scene_scale": scene,
        "offset": tau.detach().view(B),
        "stage1_depth": stage1_depth,
        "stage1_error": stage1_error,
        "final_error": final_error,
    }


def _static(classes, hw, cfg: CalibrationConfig) -> np.ndarray:
    """(N, h, w) bool at the calibration size: in scope and (with mask_movable) not movable."""
    cls = (
        F.interpolate(
            torch.from_numpy(np.asarray(classes))[:, None].float(), size=tuple(hw), mode="nearest"
        )[:, 0]
        .to(torch.uint8)
        .numpy()
    )
    static = cls != IGNORE
    if cfg.mask_movable:
        static &= ~movable_mask(cls)
    return static


def _resize(images: np.ndarray, hw) -> torch.Tensor:
    """uint8 (N, H, W, 3) -> float (N, 3, h, w) in [0, 1] (antialiased)."""
    x = torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).float() / 255.0
    if tuple(x.shape[-2:]) == tuple(hw):
        return x
    return F.interpolate(x, size=tuple(hw), mode="bilinear", antialias=True, align_corners=False)


def _intrinsics(sample: dict, hw) -> torch.Tensor:
    H, W = sample["images"].shape[1:3]
    sy, sx = hw[0] / H, hw[1] / W
    return torch.tensor(
        np.stack([scale_intrinsics(k, sx, sy) for k in sample["intrinsics"]]), dtype=torch.float32
    )


def calibrate_frame(
    sample, sources, relative, classes, cfg: CalibrationConfig, source_classes=None
) -> dict:
    """Calibrate every camera image of `sample` against the same cameras of `sources`
    (neighbouring samples; only images, calibration and poses are read).

    relative (N, H, W) from a depth source; classes (N, H, W) pixel semantics;
    source_classes: optional list of the sources' (N, H, W) pixel semantics.
    Returns numpy arrays: "depth" (N, h, w) float32 metres at the calibration size,
    "intrinsics" (N, 3, 3) for that size, "scene_scale", "offset", "stage1_error",
    "final_error" (N,), and "stage1_depth" (N, h, w)."""
    cfg.validate()
    if not sources:
        raise ValueError(f"frame {sample.get('token')!r} has no neighbouring frame to calibrate on")
    H, W = sample["images"].shape[1:3]
    hw = (max(1, H // cfg.downsample), max(1, W // cfg.downsample))
    r = F.interpolate(
        torch.from_numpy(normalise_relative(relative))[:, None],
        size=hw,
        mode="bilinear",
        antialias=True,
        align_corners=False,
    )[:, 0]
    static = _static(classes, hw, cfg)
    views = source_views(sample, sources, cfg.rig_shifts)
    view_classes = list(source_classes or [None] * len(sources))
    view_classes += [classes] * (len(views) - len(sources))  # rig views: the target frame
    src_static = None
    if source_classes is not None and cfg.mask_movable:
        src_static = [
            torch.from_numpy(_static(c, hw, cfg)[perm])
            for c, (_, perm) in zip(view_classes, views, strict=True)
        ]
    n_t = len(sources)
    groups = None
    if len(views) > n_t and cfg.rig_weight is not None:  # temporal and rig errors summed
        groups = [(list(range(n_t)), 1.0), (list(range(n_t, len(views))), cfg.rig_weight)]
    K_t = _intrinsics(sample, hw)
    out = calibrate_views(
        r,
        _resize(sample["images"], hw),
        [_resize(v["images"], hw)[perm] for v, perm in views],
        K_t,
        [_intrinsics(v, hw)[perm] for v, perm in views],
        [view_transform(sample, v, perm) for v, perm in views],
        torch.from_numpy(static),
        cfg,
        src_static,
        groups,
    )
    res = {k: v.numpy().astype(np.float32) for k, v in out.items()}
    res["intrinsics"] = K_t.numpy()
    return res


class DepthCalibrator:
    """Calibrated depth per frame, cached as `<cache_dir>/<token>.npz` (resumable: a frame on
    disk is never recomputed; `settings.json` refuses a cache made with other settings).

    `fetch(token) -> sample` gives the neighbouring frames; `semantics(sample) -> (N, H, W)`
    the pixel classes used for the movable-object mask."""

    def __init__(self, source, semantics, cfg: CalibrationConfig, cache_dir=None):
        cfg.validate()
        self.source, self.semantics, self.cfg = source, semantics, cfg
        self.cache_dir = Path(cache_dir) if cache_dir else None
        if self.cache_dir is not None:
            self.cache_dir.mkdir(parents=True, exist_ok=True)
            settings = json.loads(
                json.dumps({"calibration": asdict(cfg), "depth_source": source.describe()})
            )
            path = self.cache_dir / "settings.json"
            if path.exists() and json.loads(path.read_text()) != settings:
                raise ValueError(f"{self.cache_dir} holds depth calibrated with other settings")
            path.write_text(json.dumps(settings, indent=1, sort_keys=True))

    def neighbours(self, sample: dict, fetch) -> list[dict]:
        """The source frames: `source_offsets` followed along prev/next links; where one side
        ends (first/last frame) the offsets are mirrored to the other side."""
        out: dict[str, dict] = {}
        for off in self.cfg.source_offsets:
            for o in (off, -off, 2 * off, -2 * off):
                s = _walk(sample, o, fetch)
                if s is not None and s.get("token") not in out:
                    out[s.get("token")] = s
                    break
        return list(out.values())

    def __call__(self, sample: dict, fetch, classes=None) -> dict:
        token = str(sample.get("token", ""))
        path = self.cache_dir / f"{_safe(token)}.npz" if self.cache_dir and token else None
        if path is not None and path.exists():
            with np.load(path) as z:
                return {k: z[k] for k in z.files}
        classes = self.semantics(sample) if classes is None else classes
        sources = self.neighbours(sample, fetch)
        src_classes = [self.semantics(s) for s in sources] if self.cfg.mask_movable else None
        res = calibrate_frame(sample, sources, self.source(sample), classes, self.cfg, src_classes)
        if path is not None:
            with atomic_path(path, suffix=".npz") as tmp:  # np.savez appends .npz otherwise
                np.savez(tmp, **res)
        return res


def _walk(sample: dict, offset: int, fetch):
    key = "next" if offset > 0 else "prev"
    cur = sample
    for _ in range(abs(offset)):
        token = cur.get(key)
        if not token:
            return None
        cur = fetch(token)
    return cur


def _safe(token: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in token)
