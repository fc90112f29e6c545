"""Confusion-matrix metrics (IoU per class, mIoU) that can be summed across DDP ranks."""

from __future__ import annotations

import numpy as np
import torch


class ConfusionMatrix:
    """Accumulates a (K, K) confusion matrix, rows = ground truth, columns = prediction.

    Ground-truth values outside [0, K) (e.g. IGNORE) are skipped.
    """

    def __init__(self, num_classes: int, names: list[str] | None = None):
        self.num_classes = num_classes
        self.names = list(names) if names is not None else [str(i) for i in range(num_classes)]
        self.matrix = np.zeros((num_classes, num_classes), dtype=np.int64)

    def update(self, pred, gt) -> None:
        pred = np.asarray(pred).reshape(-1).astype(np.int64)
        gt = np.asarray(gt).reshape(-1).astype(np.int64)
        if pred.shape != gt.shape:
            raise ValueError(f"prediction and ground truth sizes differ: {pred.size} vs {gt.size}")
        keep = (gt >= 0) & (gt < self.num_classes)
        if np.any((pred[keep] < 0) | (pred[keep] >= self.num_classes)):
            raise ValueError("prediction holds a class id outside the matrix")
        k = self.num_classes
        self.matrix += np.bincount(gt[keep] * k + pred[keep], minlength=k * k).reshape(k, k)

    def all_reduce(self) -> None:
        """Sum the matrix over all ranks (no-op without an initialised process group)."""
        import torch.distributed as dist

        if dist.is_available() and dist.is_initialized():
            t = torch.from_numpy(self.matrix.copy())
            dist.all_reduce(t)
            self.matrix = t.numpy()

    def iou(self) -> np.ndarray:
        """Per-class IoU; NaN for classes absent from both ground truth and prediction."""
        tp = np.diag(self.matrix).astype(np.float64)
        union = self.matrix.sum(0) + self.matrix.sum(1) - tp
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(union > 0, tp / union, np.nan)

    def present(self) -> np.ndarray:
        """Classes that occur in the ground truth (the ones mIoU averages over)."""
        return self.matrix.sum(1) > 0

    def miou(self) -> float:
        iou = self.iou()
        present = self.present()
        return float(np.nanmean(np.where(present, iou, np.nan))) if present.any() else float("nan")

    def per_class(self) -> dict[str, float | None]:
        iou = self.iou()
        present = self.present()
        return {
            n: (float(iou[i]) if present[i] and np.isfinite(iou[i]) else None)
            for i, n in enumerate(self.names)
        }
