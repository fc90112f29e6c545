"""Label-free class balance of the feature distillation (`pop3d train --loss.feature_balance P`).

The distillation loss is dominated by what the LiDAR hits most (road, buildings), so a
student regresses their shared component and its zero-shot argmax falls to frequent
classes (docs/experiments/teacher-and-student.md); small and long-tail things (bollards,
stairs, a hydrant) get a few voxels per frame. RenderOcc balances its rays by class
frequency from 2D labels; here the groups come from the teacher itself: each target
voxel's group is the text-space phrase nearest to its teacher feature (the 16 classes'
phrases and, where the text space names them, its long-tail concepts), so no label is read.

Within a batch, a voxel of group g has its weight multiplied by (mean mass / mass_g) ** P,
mass_g being the summed weight of g's voxels: P = 0 leaves the loss as it is, P = 1 gives
every group present the same total weight. Factors are clipped to [1 / max_factor,
max_factor] so that one stray voxel cannot take over a step.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F


def vocabulary_phrases(encoder) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """(phrase embeddings (P, D) float32, group id per phrase (P,) int64, group names): every
    phrase of the encoder's classes and long-tail concepts (if it has any), prompt-ensembled
    like the zero-shot evaluation's."""
    from pop3d_ros.data.classes import CLASS_NAMES
    from pop3d_ros.evaluation.zeroshot import class_phrase_embeddings, ensembled, prompt_templates

    templates = prompt_templates(encoder)
    names = list(CLASS_NAMES)
    per_group = class_phrase_embeddings(encoder, templates)  # the zero-shot classes' phrases
    for name, phrases in dict(getattr(encoder, "concepts", None) or {}).items():
        if name not in names:
            names.append(name)
            per_group.append(np.stack([ensembled(encoder, p, templates) for p in phrases]))
    group_of = np.concatenate([np.full(len(e), g, np.int64) for g, e in enumerate(per_group)])
    return np.concatenate(per_group).astype(np.float32), group_of, names


class FeatureBalance:
    """`balance(targets (M, D), weight (M,)) -> (M,)` re-weighted by the teachers' groups."""

    def __init__(self, phrase_embeddings, phrase_group, power: float, max_factor: float = 10.0):
        if power < 0:
            raise ValueError(f"feature balance power must be >= 0, got {power}")
        if max_factor < 1:
            raise ValueError(f"max_factor must be >= 1, got {max_factor}")
        self.phrases = F.normalize(torch.as_tensor(np.asarray(phrase_embeddings)).float(), dim=-1)
        self.phrase_group = torch.as_tensor(np.asarray(phrase_group), dtype=torch.long)
        if self.phrases.ndim != 2 or self.phrase_group.shape != (self.phrases.shape[0],):
            raise ValueError("phrase_embeddings (P, D) and phrase_group (P,) do not match")
        self.power = float(power)
        self.max_factor = float(max_factor)

    @classmethod
    def from_encoder(cls, encoder, power: float, max_factor: float = 10.0) -> FeatureBalance:
        embeddings, group_of, _ = vocabulary_phrases(encoder)
        return cls(embeddings, group_of, power, max_factor)

    def groups(self, targets: torch.Tensor) -> torch.Tensor:
        """(M,) group id of each target: the group of its nearest phrase (cosine)."""
        if targets.shape[-1] != self.phrases.shape[1]:
            raise ValueError(
                f"targets are {targets.shape[-1]}-d, the vocabulary {self.phrases.shape[1]}-d"
            )
        # Batches live on the training device (CUDA on a GPU machine); the vocabulary is
        # built on the CPU, so it follows the targets.
        phrases = self.phrases.to(targets.device)
        cos = F.normalize(targets.float(), dim=-1) @ phrases.T
        return self.phrase_group.to(targets.device)[cos.argmax(-1)]

    def __call__(self, targets: torch.Tensor, weight: torch.Tensor | None) -> torch.Tensor:
        n = targets.shape[0]
        weight = torch.ones(n, device=targets.device) if weight is None else weight.float()
        if n == 0 or self.power == 0:
            return weight
        group = self.groups(targets)
        mass = torch.zeros(int(self.phrase_group.max()) + 1, device=weight.device)
        mass = mass.index_add_(0, group, weight)
        present = mass > 0
        factor = torch.ones_like(mass)
        factor[present] = (mass[present].mean() / mass[present]) ** self.power
        factor = factor.clamp(1.0 / self.max_factor, self.max_factor)
        return weight * factor[group]


def feature_balance_from(power: float, text_encoder, strategy: str) -> FeatureBalance | None:
    """The balance for `pop3d train`, or None when off; `text_encoder()` returns the run's
    text encoder (called only when the balance is on). It weights the voxel
    feature targets (pop3d, pop3d_render's LiDAR part, vfm, supervised_3d); render-only
    supervises rendered rays, which it does not touch, so asking for it there is an error."""
    if not power:
        return None
    if strategy == "render":
        raise ValueError(
            "train.feature_balance weights the voxel feature targets; strategy render has none "
            "(use pop3d_render, or leave it at 0)"
        )
    return FeatureBalance.from_encoder(text_encoder(), power)
