"""POP-3D training losses (paper sec. 3.2), as modules that return dicts of named terms.

L = L_occ + lambda * L_ft, with L_occ = cross-entropy + Lovasz-softmax on the 2-class
occupancy logits and L_ft = mean squared error between predicted language features and the
2D teacher's features at camera-visible LiDAR points.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def lovasz_grad(gt_sorted: torch.Tensor) -> torch.Tensor:
    """Gradient of the Lovasz extension of the Jaccard loss w.r.t. sorted errors (Berman 2018)."""
    gts = gt_sorted.sum()
    intersection = gts - gt_sorted.cumsum(0)
    union = gts + (1.0 - gt_sorted).cumsum(0)
    jaccard = 1.0 - intersection / union
    if gt_sorted.numel() > 1:
        jaccard = torch.cat([jaccard[:1], jaccard[1:] - jaccard[:-1]])
    return jaccard


def lovasz_softmax_flat(probs: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Lovasz-softmax over (P, C) probabilities and (P,) integer labels, averaged over the
    classes present in `labels` (the "present" variant: absent classes have no IoU to learn).
    """
    if probs.numel() == 0:
        return probs.sum() * 0.0
    losses = []
    for c in range(probs.shape[1]):
        fg = (labels == c).to(probs.dtype)
        if fg.sum() == 0:
            continue
        errors = (fg - probs[:, c]).abs()
        errors_sorted, perm = torch.sort(errors, descending=True)
        # The permutation only selects targets; the gradient flows through the errors.
        losses.append(torch.dot(errors_sorted, lovasz_grad(fg[perm.detach()])))
    if not losses:
        return probs.sum() * 0.0
    return torch.stack(losses).mean()


class OccupancyLoss(nn.Module):
    """Cross-entropy + Lovasz-softmax on occupancy logits (..., 2) against targets (...)
    in {0 = empty, 1 = occupied, `unobserved_index`, ignore_index}.

    Voxels no sensor ray reached (`unobserved_index`, from ring-free LiDAR targets) count as
    empty in the cross-entropy with weight `unobserved_weight` and stay out of the Lovasz
    term: a weak prior that unseen space is empty, which real surfaces outvote.
    """

    def __init__(
        self,
        ce_weight: float = 1.0,
        lovasz_weight: float = 1.0,
        ignore_index=255,
        unobserved_index: int = 2,
        unobserved_weight: float = 0.1,
    ):
        super().__init__()
        self.ce_weight = ce_weight
        self.lovasz_weight = lovasz_weight
        self.ignore_index = ignore_index
        self.unobserved_index = unobserved_index
        self.unobserved_weight = unobserved_weight

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> dict[str, torch.Tensor]:
        logits = logits.reshape(-1, logits.shape[-1]).float()
        target = target.reshape(-1).long()
        unobserved = target == self.unobserved_index
        valid = (target != self.ignore_index) & ~unobserved
        weak = logits[unobserved] if self.unobserved_weight > 0 else logits[:0]
        logits, target = logits[valid], target[valid]
        if target.numel() + weak.shape[0] == 0:
            zero = logits.sum() * 0.0
            return {"occ_ce": zero, "occ_lovasz": zero, "occ": zero}
        # One mean over observed voxels (weight 1) and unobserved ones (weight w, as empty).
        ce_sum = F.cross_entropy(logits, target, reduction="sum")
        ce_sum = ce_sum + self.unobserved_weight * F.cross_entropy(
            weak, torch.zeros(weak.shape[0], dtype=torch.long), reduction="sum"
        )
        ce = ce_sum / (target.numel() + self.unobserved_weight * weak.shape[0])
        lov = lovasz_softmax_flat(logits.softmax(-1), target)
        return {
            "occ_ce": ce,
            "occ_lovasz": lov,
            "occ": self.ce_weight * ce + self.lovasz_weight * lov,
        }


class FeatureLoss(nn.Module):
    """Weighted mean squared error between predicted (N, D) and target (N, D) features.

    Targets of points that share a voxel may be averaged per voxel with the point count as
    weight: since the prediction is the same for those points, this has exactly the gradient
    of the per-point MSE (the within-voxel variance is a constant).
    """

    def forward(self, pred: torch.Tensor, target: torch.Tensor, weight: torch.Tensor | None = None):
        pred = pred.float()
        target = target.float()
        if pred.shape != target.shape:
            raise ValueError(
                f"feature shapes differ: pred {tuple(pred.shape)} vs {tuple(target.shape)}"
            )
        if pred.shape[0] == 0:
            return {"ft": pred.sum() * 0.0}
        per_row = ((pred - target) ** 2).mean(-1)
        if weight is None:
            return {"ft": per_row.mean()}
        weight = weight.to(per_row.dtype)
        return {"ft": (per_row * weight).sum() / weight.sum().clamp_min(1e-12)}


class Pop3DLoss(nn.Module):
    """L = L_occ + lambda * L_ft. Returns all named terms plus "loss" (the total)."""

    def __init__(self, feature_weight: float = 1.0, ignore_index: int = 255):
        super().__init__()
        self.feature_weight = feature_weight
        self.occ = OccupancyLoss(ignore_index=ignore_index)
        self.ft = FeatureLoss()

    def forward(self, occ_logits, occ_target, pred_feats, target_feats, feat_weight=None):
        terms = self.occ(occ_logits, occ_target)
        terms.update(self.ft(pred_feats, target_feats, feat_weight))
        terms["loss"] = terms["occ"] + self.feature_weight * terms["ft"]
        return terms
