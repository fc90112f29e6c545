"""POP-3D evaluation (paper sec. 4) of a model on samples with LiDAR.

- Occupancy labels by ray casting (`eval_labels`): class-agnostic IoU, and zero-shot mIoU over
  the classes + "empty" (occupied voxels take the best-matching class prompt).
- LiDAR mIoU at camera-visible points (the student's language features at the point's voxel),
  and the same points classified from the 2D teacher's features back-projected via LiDAR
  (the MaskCLIP+ baseline).
- Baselines: the training-set occupancy-frequency prior, and random class labels on the
  model's own occupancy (chance level of the zero-shot mIoU).
- With `retrieval` (frames with concept ids, a text space with long-tail concepts): text
  retrieval AP and grounding of long-tail concepts (`evaluation/retrieval.py`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import numpy as np
import torch
from tqdm import tqdm

from pop3d_ros.data.classes import CLASS_NAMES, EMPTY, IGNORE, NUM_CLASSES
from pop3d_ros.evaluation.conventions import EvalConventions, describe, point_voxels
from pop3d_ros.evaluation.labels import evaluation_labels
from pop3d_ros.evaluation.metrics import ConfusionMatrix
from pop3d_ros.evaluation.retrieval import RetrievalMetrics, frame_instances, voxel_concepts
from pop3d_ros.evaluation.volume import EvalVolume, VolumeMap
from pop3d_ros.evaluation.zeroshot import ZeroShotClassifier
from pop3d_ros.geometry.transforms import transform_points
from pop3d_ros.model.inputs import SamplingCache, model_inputs
from pop3d_ros.teachers.features import point_feature_pairs, sum_by


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
        conventions: EvalConventions | None = None,
        volume: EvalVolume | None = None,
        retrieval: RetrievalMetrics | None = None,
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
        self.conventions = conventions or EvalConventions()
        self.volume_map = VolumeMap(volume or EvalVolume("model", self.grid), self.grid)
        names = list(CLASS_NAMES)
        self.occ = ConfusionMatrix(2, ["empty", "occupied"])
        self.prior_occ = ConfusionMatrix(2, ["empty", "occupied"])
        # The world's true occupancy scored like a prediction (synthetic frames): what a model
        # that knew the geometry exactly would get. POP-3D's labels call a voxel free when a
        # LiDAR ray grazes through it, so even the truth stays below 1.
        self.true_occ = ConfusionMatrix(2, ["empty", "occupied"])
        self.sem = ConfusionMatrix(NUM_CLASSES + 1, names + ["empty"])
        self.chance = ConfusionMatrix(NUM_CLASSES + 1, names + ["empty"])
        self.lidar = ConfusionMatrix(NUM_CLASSES, names)
        self.teacher_lidar = ConfusionMatrix(NUM_CLASSES, names)
        self.retrieval = retrieval
        self._centres = self.grid.centers().reshape(-1, 3)
        self.occ3d = occ3d
        self.frames = 0

    @torch.no_grad()
    def add(self, sample: dict) -> None:
        grid = self.grid
        inputs = model_inputs(sample, tuple(self.cfg.image_size))
        sampling = self.sampling(inputs["intrinsics"], inputs["cam_to_ego"])
        images = inputs["images"][None].float().to(self.device) / 255.0
        out = self.model(images, *(t[None].to(self.device) for t in sampling))
        prob = out["occupancy_logits"][0].float().softmax(-1)[..., 1].reshape(-1).cpu().numpy()
        vf = out["voxel_features"][0].reshape(-1, out["voxel_features"].shape[-1])
        occupied = prob > self.threshold

        # Evaluation labels on the evaluation volume, in its frame (eval_volume.py).
        conv, vmap = self.conventions, self.volume_map
        points = np.asarray(sample["lidar_points"], np.float32)
        points_v, origin_v = points, sample["lidar_origin"]
        if not vmap.identity:
            to_vol = vmap.to_volume_frame(sample)
            points_v = transform_points(to_vol, points).astype(np.float32)
            origin_v = transform_points(to_vol, np.reshape(origin_v, (1, 3)))[0]
        labels = np.asarray(sample["lidar_labels"]).astype(np.int64)
        vgrid = vmap.volume.grid
        sem_gt, occ_gt = evaluation_labels(points_v, labels, origin_v, vgrid, rays=conv.free_space)
        sem_gt, occ_gt = sem_gt.reshape(-1), occ_gt.reshape(-1)
        # Each volume voxel takes the prediction of the model voxel holding its centre.
        vox = None if vmap.identity else vmap.voxel_map(sample)

        def on_volume(x, outside):
            return x if vox is None else np.where(vox >= 0, x[np.maximum(vox, 0)], outside)

        occupied_v = on_volume(occupied, False)
        self.occ.update(occupied_v.astype(np.int64), occ_gt)
        if self.prior is not None:
            prior_v = on_volume(self.prior.reshape(-1), False)
            self.prior_occ.update(prior_v.astype(np.int64), occ_gt)
        if "occupancy" in sample:  # on the model's grid (synthetic_source)
            true = np.asarray(sample["occupancy"]).reshape(-1) < EMPTY
            self.true_occ.update(on_volume(true, False).astype(np.int64), occ_gt)

        # Zero-shot semantics: the language head runs on occupied voxels only (as deployed).
        pred = np.full(grid.num_voxels, EMPTY, np.int64)
        occ_idx = np.nonzero(occupied)[0]
        occ_lang = self.model.language_head(vf[torch.from_numpy(occ_idx).to(self.device)]).cpu()
        pred[occ_idx] = self.classifier(occ_lang).numpy()
        sem_ref = np.where(sem_gt == IGNORE, -1, sem_gt)
        self.sem.update(on_volume(pred, EMPTY), sem_ref)
        chance = np.full(vgrid.num_voxels, EMPTY, np.int64)
        chance_idx = np.nonzero(occupied_v)[0]
        chance[chance_idx] = self.rng.integers(0, NUM_CLASSES, chance_idx.size)
        self.chance.update(chance, sem_ref)
        if self.occ3d is not None:
            self.occ3d.add(sample, pred, self.prior)

        # LiDAR mIoU at camera-visible, labelled points inside the volume (or clipped into
        # it); the student's features at the model voxel holding the point (the nearest
        # model voxel where the volume reaches beyond the model's grid).
        idx, inside = point_voxels(points_v, vgrid, conv.out_of_range)
        if vox is not None:
            idx = point_voxels(points, grid, "clip")[0]
        keep = inside & (labels < NUM_CLASSES)
        per_camera = conv.lidar_points == "per-camera"
        teacher_vox = None
        if self.teacher is not None:
            tf = self.teacher(sample)["features"]
            pidx, _, feats = point_feature_pairs(sample, tf, points, keep=keep)
            if per_camera:  # every (point, camera) pair labelled from that camera's features
                uniq, summed = pidx, feats
            else:
                # A point seen by several cameras: average the teacher's features over them
                # (the sum: same direction, same zero-shot label).
                uniq, _, summed = sum_by(pidx, feats)
            self.teacher_lidar.update(self.classifier(summed).numpy(), labels[uniq])
            # per voxel: the sum of its points' (unit-direction) teacher features
            tv, _, tsum = sum_by(grid.flat_index(idx[uniq]), summed / summed.norm(
                dim=1, keepdim=True).clamp_min(1e-12))  # fmt: skip
            teacher_vox = (tv, tsum.numpy())
        else:
            from pop3d_ros.data.sample import project_points

            _, valid = project_points(sample, points)
            valid = valid & keep[None]
            uniq = np.nonzero(valid)[1] if per_camera else np.nonzero(valid.any(0))[0]
        flat = grid.flat_index(idx[uniq])
        vox_ids, inv = np.unique(flat, return_inverse=True)
        lang = self.model.language_head(vf[torch.from_numpy(vox_ids).to(self.device)])
        self.lidar.update(self.classifier(lang.cpu()).numpy()[inv], labels[uniq])
        # Retrieval is scored on the model's own grid (synthetic frames with concept ids).
        if self.retrieval is not None and "lidar_concepts" in sample and vmap.identity:
            self.retrieval.add(
                gt_concepts=voxel_concepts(points, sample["lidar_concepts"], grid),
                observed=occ_gt != IGNORE,
                occupied=occupied,
                student=occ_lang.numpy(),
                centres=self._centres,
                voxel_size=grid.voxel_size,
                teacher_voxels=None if teacher_vox is None else teacher_vox[0],
                teacher=None if teacher_vox is None else teacher_vox[1],
                instances=frame_instances(sample, grid),
            )
        self.frames += 1

    def run(self, samples: Iterable[dict], total: int | None = None, show: bool = True):
        for s in tqdm(samples, total=total, desc="eval", unit="frame", disable=not show):
            self.add(s)
        return self

    def all_reduce(self) -> None:
        for cm in (self.occ, self.prior_occ, self.true_occ, self.sem, self.chance, self.lidar,
                   self.teacher_lidar):  # fmt: skip
            cm.all_reduce()
        if self.retrieval is not None:
            self.retrieval.all_reduce()
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
        has_truth = self.true_occ.matrix.sum() > 0
        extra = self.retrieval.result() if self.retrieval is not None else {}
        occ3d = self.occ3d.result() if self.occ3d is not None else {}
        return (
            extra
            | occ3d
            | {
                "iou": num(self.occ.iou()[1]),
                "iou_mean_empty_occupied": num(self.occ.miou()),
                "miou": num(self.sem.miou()),
                "lidar_miou": num(self.lidar.miou()),
                "teacher_lidar_miou": num(self.teacher_lidar.miou()) if has_teacher else None,
                "prior_iou": num(self.prior_occ.iou()[1]) if has_prior else None,
                "true_geometry_iou": num(self.true_occ.iou()[1]) if has_truth else None,
                "chance_miou": num(self.chance.miou()),
                "per_class": per_class,
                "frames": self.frames,
                "classes_evaluated": [
                    n for n, p in zip(self.sem.names, self.sem.present(), strict=True) if p
                ],
                "conventions": {
                    **describe(self.conventions),
                    "occupancy_threshold": self.threshold,
                    "model_grid": self.grid.to_dict(),
                    "volume": self.volume_map.volume.describe(),
                },
            }
        )


# The headline numbers of `Evaluator.result()` (per-class values stay in the JSON).
SCALAR_METRICS = (
    "iou",
    "iou_mean_empty_occupied",
    "miou",
    "lidar_miou",
    "teacher_lidar_miou",
    "prior_iou",
    "chance_miou",
)


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
    for key in (
        "iou",
        "iou_mean_empty_occupied",
        "prior_iou",
        "true_geometry_iou",
        "miou",
        "chance_miou",
        "lidar_miou",
        "teacher_lidar_miou",
        "occ3d_iou",
        "occ3d_prior_iou",
        "occ3d_miou",
        "occ3d_miou_with_free",
        "ray_iou",
        "ray_iou_1m",
        "ray_iou_2m",
        "ray_iou_4m",
    ):
        if key.startswith(("occ3d", "ray")) and key not in result:
            continue
        lines.append(f"{key:<22}{f(result.get(key)):>8}")
    if result.get("retrieval_per_concept"):
        lines += ["", f"{'concept (AP)':<22}{'student':>8}{'parent':>8}{'teacher':>8}{'chance':>8}"]
        for name, v in result["retrieval_per_concept"].items():
            cols = (v["ap"], v["ap_parent"], v["ap_teacher"], v["ap_chance"])
            lines.append(f"{name:<22}" + "".join(f"{f(x):>8}" for x in cols))
        for key in ("retrieval_map", "retrieval_map_parent", "retrieval_map_teacher",
                    "retrieval_map_chance", "grounding_recall"):  # fmt: skip
            lines.append(f"{key:<22}{f(result.get(key)):>8}")
        err = result.get("grounding_center_error")
        lines.append(f"{'grounding_center_error':<22}{'-' if err is None else f'{err:.2f} m':>8}")
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
