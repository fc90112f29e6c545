"""POP-3D evaluation (paper sec. 4) of a model on samples with LiDAR.

- Occupancy labels by ray casting (`eval_labels`): class-agnostic IoU, and zero-shot mIoU over
  the classes + "empty" (occupied voxels take the best-matching class prompt).
- LiDAR mIoU at camera-visible points (the student's language features at the point's voxel),
  and the same points classified from the 2D teacher's features back-projected via LiDAR
  (the MaskCLIP+ baseline).
- Baselines: the training-set occupancy-frequency prior, and random class labels on the
  model's own occupancy (chance level of the zero-shot mIoU).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import numpy as np
import torch
from tqdm import tqdm

from pop3d_ros.data.classes import CLASS_NAMES, EMPTY, IGNORE, NUM_CLASSES
from pop3d_ros.training.eval_labels import evaluation_labels
from pop3d_ros.training.inputs import SamplingCache, model_inputs
from pop3d_ros.training.metrics import ConfusionMatrix
from pop3d_ros.training.targets import point_feature_pairs, sum_by
from pop3d_ros.training.zeroshot import ZeroShotClassifier


class Evaluator:
    """Accumulates all metrics over frames; `result()` gives the design.md section-4 JSON dict."""

    def __init__(
        self,
        model,
        model_cfg,
        classifier: ZeroShotClassifier,
        teacher=None,
        prior: np.ndarray | None = None,
        prior_threshold: float = 0.5,
        occupancy_threshold: float = 0.5,
        device="cpu",
        seed: int = 0,
        sampling: SamplingCache | None = None,
        occ3d=None,
    ):
        """`occ3d`: an `occ3d.Occ3DEvaluation` adding the Occ3D-style keys, or None."""
        self.model = model.eval().to(device)
        self.cfg = model_cfg
        self.grid = model_cfg.voxel_grid
        self.classifier = classifier
        self.teacher = teacher
        self.prior = None if prior is None else np.asarray(prior, np.float32) >= prior_threshold
        self.threshold = occupancy_threshold
        self.device = torch.device(device)
        self.sampling = sampling or SamplingCache(model_cfg)
        self.rng = np.random.default_rng(seed)
        names = list(CLASS_NAMES)
        self.occ = ConfusionMatrix(2, ["empty", "occupied"])
        self.prior_occ = ConfusionMatrix(2, ["empty", "occupied"])
        self.sem = ConfusionMatrix(NUM_CLASSES + 1, names + ["empty"])
        self.chance = ConfusionMatrix(NUM_CLASSES + 1, names + ["empty"])
        self.lidar = ConfusionMatrix(NUM_CLASSES, names)
        self.teacher_lidar = ConfusionMatrix(NUM_CLASSES, names)
        self.occ3d = occ3d
        self.frames = 0

    @torch.no_grad()
    def add(self, sample: dict) -> None:
        grid = self.grid
        inputs = model_inputs(sample, tuple(self.cfg.image_size))
        g, m = self.sampling(inputs["intrinsics"], inputs["cam_to_ego"])
        images = inputs["images"][None].float().to(self.device) / 255.0
        out = self.model(images, g[None].to(self.device), m[None].to(self.device))
        prob = out["occupancy_logits"][0].float().softmax(-1)[..., 1].reshape(-1).cpu().numpy()
        vf = out["voxel_features"][0].reshape(-1, out["voxel_features"].shape[-1])
        occupied = prob > self.threshold

        points = np.asarray(sample["lidar_points"], np.float32)
        labels = np.asarray(sample["lidar_labels"]).astype(np.int64)
        sem_gt, occ_gt = evaluation_labels(points, labels, sample["lidar_origin"], grid)
        sem_gt, occ_gt = sem_gt.reshape(-1), occ_gt.reshape(-1)
        self.occ.update(occupied.astype(np.int64), occ_gt)
        if self.prior is not None:
            self.prior_occ.update(self.prior.reshape(-1).astype(np.int64), occ_gt)

        # Zero-shot semantics: the language head runs on occupied voxels only (as deployed).
        pred = np.full(grid.num_voxels, EMPTY, np.int64)
        occ_idx = np.nonzero(occupied)[0]
        lang = self.model.language_head(vf[torch.from_numpy(occ_idx).to(self.device)])
        pred[occ_idx] = self.classifier(lang.cpu()).numpy()
        self.sem.update(pred, np.where(sem_gt == IGNORE, -1, sem_gt))
        chance = np.full(grid.num_voxels, EMPTY, np.int64)
        chance[occ_idx] = self.rng.integers(0, NUM_CLASSES, occ_idx.size)
        self.chance.update(chance, np.where(sem_gt == IGNORE, -1, sem_gt))
        if self.occ3d is not None:
            self.occ3d.add(sample, pred, self.prior)

        # LiDAR mIoU at camera-visible, labelled points inside the grid.
        idx, inside = grid.points_to_index(points)
        keep = inside & (labels < NUM_CLASSES)
        if self.teacher is not None:
            tf = self.teacher(sample)["features"]
            pidx, _, feats = point_feature_pairs(sample, tf, points, keep=keep)
            # A point seen by several cameras: average the teacher's features over them
            # (the sum: same direction, same zero-shot label).
            uniq, _, summed = sum_by(pidx, feats)
            self.teacher_lidar.update(self.classifier(summed).numpy(), labels[uniq])
        else:
            from pop3d_ros.data.sample import project_points

            _, valid = project_points(sample, points)
            uniq = np.nonzero(keep & valid.any(0))[0]
        flat = grid.flat_index(idx[uniq])
        vox, inv = np.unique(flat, return_inverse=True)
        lang = self.model.language_head(vf[torch.from_numpy(vox).to(self.device)])
        self.lidar.update(self.classifier(lang.cpu()).numpy()[inv], labels[uniq])
        self.frames += 1

    def run(self, samples: Iterable[dict], total: int | None = None, show: bool = True):
        for s in tqdm(samples, total=total, desc="eval", unit="frame", disable=not show):
            self.add(s)
        return self

    def all_reduce(self) -> None:
        for cm in (self.occ, self.prior_occ, self.sem, self.chance, self.lidar, self.teacher_lidar):
            cm.all_reduce()
        if self.occ3d is not None:
            self.occ3d.all_reduce()

    def result(self) -> dict:
        def num(x):
            return None if x is None or not np.isfinite(x) else round(float(x), 4)

        sem_pc, lid_pc, tea_pc = (
            self.sem.per_class(),
            self.lidar.per_class(),
            self.teacher_lidar.per_class(),
        )
        per_class = {
            name: {
                "iou": num(sem_pc[name]),
                "lidar_iou": num(lid_pc.get(name)),
                "teacher_lidar_iou": num(tea_pc.get(name)),
            }
            for name in list(CLASS_NAMES) + ["empty"]
        }
        has_teacher = self.teacher_lidar.matrix.sum() > 0
        has_prior = self.prior_occ.matrix.sum() > 0
        occ3d = self.occ3d.result() if self.occ3d is not None else {}
        return {
            **occ3d,
            "iou": num(self.occ.iou()[1]),
            "miou": num(self.sem.miou()),
            "lidar_miou": num(self.lidar.miou()),
            "teacher_lidar_miou": num(self.teacher_lidar.miou()) if has_teacher else None,
            "prior_iou": num(self.prior_occ.iou()[1]) if has_prior else None,
            "chance_miou": num(self.chance.miou()),
            "per_class": per_class,
            "frames": self.frames,
            "classes_evaluated": [
                n for n, p in zip(self.sem.names, self.sem.present(), strict=True) if p
            ],
        }


# The headline numbers of `Evaluator.result()` (per-class values stay in the JSON).
SCALAR_METRICS = ("iou", "miou", "lidar_miou", "teacher_lidar_miou", "prior_iou", "chance_miou")


class HeldOutEvaluation:
    """`evaluate(model) -> {metric: value}` for `training.loop.train`: the POP-3D metrics on
    a fixed list of held-out samples (this rank's share, kept in memory so they are rendered
    or read once), summed over DDP ranks."""

    def __init__(self, model_cfg, samples: list[dict], classifier, device="cpu", **kw):
        """`kw`: the `Evaluator` options (teacher, prior, prior_threshold, ...)."""
        self.cfg = model_cfg
        self.samples = list(samples)
        self.classifier = classifier
        self.device = device
        self.kw = kw
        self.sampling = SamplingCache(model_cfg)

    def __call__(self, model) -> dict[str, float]:
        ev = Evaluator(
            model, self.cfg, self.classifier, device=self.device, sampling=self.sampling, **self.kw
        )
        ev.run(self.samples, show=False)
        ev.all_reduce()
        result = ev.result()
        return {k: result[k] for k in SCALAR_METRICS if result.get(k) is not None}


def format_table(result: dict) -> str:
    """A plain-text per-class table plus the headline numbers."""

    def f(x):
        return "   -  " if x is None else f"{100 * x:6.1f}"

    lines = [f"{'class':<22}{'occ IoU':>8}{'LiDAR':>8}{'teacher':>8}"]
    for name, v in result["per_class"].items():
        if all(v[k] is None for k in v):
            continue
        lines.append(
            f"{name:<22}{f(v['iou']):>8}{f(v['lidar_iou']):>8}{f(v['teacher_lidar_iou']):>8}"
        )
    lines.append("")
    for key in ("iou", "prior_iou", "miou", "chance_miou", "lidar_miou", "teacher_lidar_miou"):
        lines.append(f"{key:<22}{f(result.get(key)):>8}")
    lines.append(f"frames: {result['frames']}")
    return "\n".join(lines)


def occupancy_prior(frames: Iterable[dict], grid_shape) -> np.ndarray:
    """Per-voxel occupancy frequency over prepared training frames (their `occ_target`)."""
    total, n = np.zeros(tuple(grid_shape), np.float64), 0
    for item in frames:
        t = np.asarray(item["occ_target"])
        total += t == 1
        n += 1
    return (total / max(n, 1)).astype(np.float32)


def best_prior_threshold(prior: np.ndarray, frames: Callable[[], Iterable[dict]]) -> float:
    """The threshold on the prior that maximises IoU against the training targets — the
    strongest version of this baseline, chosen on training data only."""
    thresholds = np.linspace(0.05, 0.95, 19)
    inter = np.zeros(len(thresholds))
    union = np.zeros(len(thresholds))
    for item in frames():
        t = np.asarray(item["occ_target"]).reshape(-1) == 1
        for i, th in enumerate(thresholds):
            p = prior.reshape(-1) >= th
            inter[i] += np.sum(p & t)
            union[i] += np.sum(p | t)
    return float(thresholds[int(np.argmax(inter / np.maximum(union, 1)))])
