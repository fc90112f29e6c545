"""Typed training configuration: the loop (`TrainConfig`) and the loss terms and targets
(`LossConfig`); defaults = the POP-3D recipe, paper sec. 4."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Literal


@dataclass
class LossConfig:
    """The loss terms and the language-head targets they weigh."""

    feature_weight: float = 1.0  # lambda in L = L_occ + lambda * L_ft
    # Weight of the depth-bin cross-entropy (LiDAR depth bins) of a model whose lifting has
    # depth bins (model config lifting.depth_bins > 0); unused otherwise.
    depth_weight: float = 1.0
    # How L_ft averages over supervised voxels: "point" weighs each voxel by its (point,
    # camera) pairs = the paper's per-point MSE; "voxel" weighs every voxel once, so the
    # dense near-range road no longer outweighs sparse, distant and small objects.
    feature_weighting: Literal["point", "voxel"] = "point"
    # Label-free class balance of L_ft (training/feature_balance.py): each voxel's weight x
    # (mean group mass / its group's mass) ** feature_balance per batch, the group being the
    # teacher target's nearest text-space phrase; 0 = off, 1 = equal mass per group.
    feature_balance: float = 0.0
    max_feature_voxels: int = 4096  # cap on supervised language-head voxels per frame (0 = all)
    # Weight of voxels no LiDAR ray reached, as empty (occupancy.free_space rays).
    unobserved_weight: float = 0.1

    def validate(self) -> None:
        if min(self.feature_weight, self.depth_weight, self.feature_balance) < 0:
            raise ValueError("feature_weight, depth_weight and feature_balance must be >= 0")
        if self.max_feature_voxels < 0 or self.unobserved_weight < 0:
            raise ValueError("max_feature_voxels and unobserved_weight must be >= 0")


@dataclass
class TrainConfig:
    """Everything the loop needs besides the model config and the data."""

    steps: int = 1000  # total optimisation steps (the cosine schedule ends here)
    batch_size: int = 1  # frames per step per process
    lr: float = 2e-4  # peak learning rate of the non-backbone parameters (AdamW)
    weight_decay: float = 0.01  # AdamW weight decay
    backbone_lr_mult: float = 0.1  # the image backbone trains at lr x this
    warmup_steps: int = 500  # linear warm-up length in steps
    warmup_start_lr: float = 1e-5  # lr at step 0 of the warm-up
    final_lr: float = 1e-6  # lr at the end of the cosine decay
    grad_clip: float = 35.0  # max global gradient norm (0 disables clipping)
    amp: Literal["auto", "on", "off"] = "auto"  # mixed precision; auto: on when training on CUDA
    checkpoint_every: int = 200  # write last.pt every N steps (and at the end)
    # Evaluate on held-out frames every N steps and at the end (TensorBoard eval/*, the
    # checkpoint's meta.eval); 0 = never. Needs an `evaluate` callable in `train`.
    eval_every: int = 0
    log_every: int = 10  # TensorBoard scalars every N steps
    num_workers: int = 0  # DataLoader worker processes per rank
    seed: int = 0  # seeds data order and initialisation
    # Supervision (training/strategies/): pop3d = LiDAR + 2D teacher, render = RenderOcc's 2D
    # rendering, pop3d_render = both, vfm = foundation-model pseudo labels (no LiDAR),
    # supervised_3d = synthetic ground truth (for comparison).
    strategy: Literal["pop3d", "supervised_3d", "vfm", "render", "pop3d_render"] = "pop3d"
    device: str = "auto"  # "auto" (cuda if available), "cpu" or "cuda"

    def validate(self) -> None:
        if self.steps <= 0:
            raise ValueError(f"steps must be positive, got {self.steps}")
        if self.batch_size <= 0:
            raise ValueError(f"batch_size must be positive, got {self.batch_size}")
        if self.lr <= 0 or self.final_lr < 0 or self.warmup_start_lr <= 0:
            raise ValueError("learning rates must be positive")
        if self.warmup_steps < 0 or self.checkpoint_every <= 0 or self.log_every <= 0:
            raise ValueError("warmup_steps must be >= 0, checkpoint_every/log_every > 0")
        if self.eval_every < 0:
            raise ValueError(f"eval_every must be >= 0, got {self.eval_every}")
        if self.amp not in ("auto", "on", "off"):
            raise ValueError(f"amp must be auto, on or off, got {self.amp!r}")

    def to_dict(self) -> dict:
        return asdict(self)
