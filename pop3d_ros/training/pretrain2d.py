"""2D pretraining of the image backbone: regress the 2D teacher's dense map from single images.

A stage of its own before the 3D stage (`pop3d pretrain2d`, then `pop3d train
--init_backbone`). Every camera of every frame is one training image, so this stage sees far
more images than the 3D stage for the same compute. The student is the model's ResNet+FPN
backbone plus a 1x1 conv projection head C -> clip_dim (MaskCLIP+/feature-distillation
style); its target is the teacher's patch map resampled (bilinear, at each feature cell's
centre) to the backbone's output resolution. Only backbone(+neck) weights are handed on; the
head is kept in the checkpoint for inspection.

Prepared frame (one `.pt` per frame, `training.frames.prepare_frames`): `images` uint8
(N, 3, H, W) at the model input size, `teacher` float16 (N, D, h, w) the teacher's patch map
at its own resolution, `src_hw` int64 (2,) the image size the teacher saw, `stride` int64 ().
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from pop3d_ros.model.backbone import ResNetFPN
from pop3d_ros.model.inputs import resize_images
from pop3d_ros.model.pop3d import IMAGENET_MEAN, IMAGENET_STD


@dataclass
class Pretrain2DConfig:
    """The 2D pretraining stage (image size and backbone come from the model preset)."""

    steps: int = 2000  # optimisation steps (cosine schedule ends here)
    batch_images: int = 16  # single camera images per step (random frame, random camera)
    lr: float = 1e-3  # peak AdamW learning rate (backbone, neck and head alike)
    weight_decay: float = 1e-4  # AdamW weight decay on conv weights (not on norms/biases)
    warmup_steps: int = 50  # linear warm-up from lr/100
    final_lr: float = 1e-5  # lr at the end of the cosine decay
    # "cosine" (default): 1 - cos(pred, target) on cells whose target is non-zero (sky patches
    # of the synthetic teacher are zero vectors and are skipped). The 1x1 head is discarded
    # after this stage and every consumer compares features by cosine, so only direction
    # matters; under MSE the scale dominates (maskclip-like teacher, seeds 200-239: loss 0.078
    # -> 0.011 in 20 steps from shrinking the output, while predicting zero scores 0.0012 and
    # the best constant vector 0.00097). "mse": mean squared error per feature cell, the 3D
    # stage's L_ft (minimiser: the teacher's mean).
    loss: Literal["cosine", "mse"] = "cosine"
    hflip: bool = True  # mirror image and target map together with probability 0.5
    grad_clip: float = 10.0  # max global gradient norm (0 disables)
    seed: int = 0  # initialisation and image order
    log_every: int = 25  # progress/loss history every N steps

    def validate(self) -> None:
        if self.steps <= 0 or self.batch_images <= 0:
            raise ValueError("steps and batch_images must be positive")
        if self.lr <= 0 or self.final_lr < 0 or self.warmup_steps < 0:
            raise ValueError("lr must be positive, final_lr and warmup_steps >= 0")
        if self.loss not in ("mse", "cosine"):
            raise ValueError(f"loss must be mse or cosine, got {self.loss!r}")
        if self.log_every <= 0:
            raise ValueError("log_every must be positive")


def prepare_item(sample: dict, teacher, image_hw) -> dict:
    """One frame's images at the model size and the teacher's raw patch map (fp16)."""
    out = teacher(sample)
    feats = torch.as_tensor(np.asarray(out["features"])).half()
    images = np.asarray(sample["images"])
    if feats.ndim != 4 or feats.shape[0] != images.shape[0]:
        raise ValueError(f"teacher map {tuple(feats.shape)} does not match {images.shape[0]} cams")
    return {
        "images": resize_images(images, tuple(image_hw)),
        "teacher": feats,
        "src_hw": torch.tensor(images.shape[1:3], dtype=torch.int64),
        "stride": torch.tensor(int(out["stride"]), dtype=torch.int64),
    }


def resample_teacher(teacher, src_hw, stride: int, feature_hw) -> torch.Tensor:
    """Teacher patch maps (B, D, h, w) -> (B, D, fh, fw): bilinear at the centre of each
    feature cell. Cell (i, j) of a stride-s' map of the model image covers model pixels
    centred at ((i + 0.5) s', (j + 0.5) s'); the model image is the teacher's image resized,
    so in the teacher's pixels that is (i + 0.5) H_src / fh; patch k of the teacher covers
    pixels [k stride, (k + 1) stride) (the last patch may extend past the image)."""
    fh, fw = feature_hw
    h_src, w_src = float(src_hw[0]), float(src_hw[1])
    ys = (torch.arange(fh, dtype=torch.float32) + 0.5) * (h_src / fh)
    xs = (torch.arange(fw, dtype=torch.float32) + 0.5) * (w_src / fw)
    h, w = teacher.shape[-2:]
    # align_corners=False: normalised -1..1 spans the map's outer edges = h * stride pixels
    gy = ys / (h * stride) * 2 - 1
    gx = xs / (w * stride) * 2 - 1
    grid = torch.stack(torch.meshgrid(gy, gx, indexing="ij")[::-1], -1)
    grid = grid.unsqueeze(0).expand(teacher.shape[0], -1, -1, -1)
    return F.grid_sample(
        teacher.float(), grid, mode="bilinear", padding_mode="border", align_corners=False
    )


class Student2D(nn.Module):
    """The model's backbone + neck and a 1x1 projection head C -> D; images in [0, 1]."""

    def __init__(self, model_cfg):
        super().__init__()
        self.backbone = ResNetFPN(model_cfg.backbone)
        self.head = nn.Conv2d(model_cfg.backbone.out_channels, model_cfg.heads.clip_dim, 1)
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), False)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone((images - self.mean) / self.std))


def feature_loss(pred: torch.Tensor, target: torch.Tensor, kind: str) -> torch.Tensor:
    if kind == "mse":
        return ((pred - target) ** 2).mean()
    valid = target.norm(dim=1) > 1e-6
    cos = F.cosine_similarity(pred, target, dim=1)
    return (1 - cos[valid]).mean() if valid.any() else pred.sum() * 0.0


class ImagePool:
    """Random single camera images from prepared frames: `batch(n, rng)` -> (images, targets).

    Targets are resampled to the backbone's feature resolution on the fly."""

    def __init__(self, frames, model_cfg, cache_frames: int = 64):
        self.frames = frames
        self.model_cfg = model_cfg
        self.cache_frames = cache_frames
        self._cache: dict[int, dict] = {}
        first = self._frame(0)
        self.cams = int(first["images"].shape[0])

    def __len__(self) -> int:
        return len(self.frames) * self.cams

    def _frame(self, i: int) -> dict:
        if i not in self._cache:
            if len(self._cache) >= self.cache_frames:
                self._cache.pop(next(iter(self._cache)))
            self._cache[i] = self.frames[i]
        return self._cache[i]

    def image(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        item = self._frame(index // self.cams)
        c = index % self.cams
        cfg = self.model_cfg
        target = resample_teacher(
            item["teacher"][c : c + 1], item["src_hw"], int(item["stride"]), cfg.feature_hw
        )
        return item["images"][c].float().div(255), target[0]

    def batch(self, n: int, rng: np.random.Generator, hflip: bool = False):
        picks = rng.integers(0, len(self), n)
        pairs = [self.image(int(i)) for i in picks]
        images = torch.stack([p[0] for p in pairs])
        targets = torch.stack([p[1] for p in pairs])
        if hflip:
            flip = torch.from_numpy(rng.random(n) < 0.5)
            images[flip] = images[flip].flip(-1)
            targets[flip] = targets[flip].flip(-1)
        return images, targets


def _lr(step: int, cfg: Pretrain2DConfig) -> float:
    if step < cfg.warmup_steps:
        return cfg.lr * (0.01 + 0.99 * step / cfg.warmup_steps)
    span = max(1, cfg.steps - cfg.warmup_steps)
    t = min(1.0, (step - cfg.warmup_steps) / span)
    return cfg.final_lr + (cfg.lr - cfg.final_lr) * 0.5 * (1 + math.cos(math.pi * t))


def pretrain(student: Student2D, pool: ImagePool, cfg: Pretrain2DConfig, progress=None) -> dict:
    """Train `student` in place. Returns {"history": [(step, loss)], "seconds", "step"}."""
    cfg.validate()
    decay = [p for n, p in student.named_parameters() if p.ndim > 1]
    rest = [p for n, p in student.named_parameters() if p.ndim <= 1]
    opt = torch.optim.AdamW(
        [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": rest, "weight_decay": 0}],
        lr=cfg.lr,
    )
    rng = np.random.default_rng(cfg.seed)
    student.train()
    history, running, t0 = [], [], time.perf_counter()
    for step in range(cfg.steps):
        for g in opt.param_groups:
            g["lr"] = _lr(step, cfg)
        images, targets = pool.batch(cfg.batch_images, rng, cfg.hflip)
        loss = feature_loss(student(images), targets, cfg.loss)
        if not torch.isfinite(loss):
            raise FloatingPointError(f"pretrain2d: non-finite loss at step {step}")
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if cfg.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(student.parameters(), cfg.grad_clip)
        opt.step()
        value = loss.item()
        running.append(value)
        if (step + 1) % cfg.log_every == 0 or step + 1 == cfg.steps:
            history.append((step + 1, float(np.mean(running))))
            running = []
        if progress is not None:
            progress(step + 1, value)
    return {"history": history, "seconds": time.perf_counter() - t0, "step": cfg.steps}


def config_dict(cfg: Pretrain2DConfig) -> dict:
    return asdict(cfg)
