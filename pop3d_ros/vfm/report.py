"""Acceptance measurements of the VFM recipe on held-out synthetic drives (issue 18).

    python -m pop3d_ros.vfm.report --seeds 300-301 --frames-per-seed 4 --out vfm_report.json

1. Depth quality against the true depth (AbsRel, delta < 1.25) over camera pixels that are in
   scope (not sky) with true depth <= --eval-depth: the raw relative depth with the best
   per-image affine fit in inverse depth (an oracle that sees the true depth) and the best
   scale-only fit (offset 0, what a perfect scale-only stage 1 reaches), then per --variants
   stage 1 alone and stages 1 + 2 (the paper's source views; with the rig's adjacent
   cameras too), and stage 2 started without stage 1 (from scale 1). Per variant also the
   median of the images' own AbsRel and, per camera, the share of images whose AbsRel
   exceeds 0.3 (a failed calibration). Calibrated maps are
   compared at full image resolution (inverse depth upsampled bilinearly).
2. Pseudo-label quality before any training in both protocols: POP-3D's (LiDAR-ray labels,
   used here for evaluation only) and the Occ3D-style one (dense ground truth at
   camera-visible voxels, `evaluation/occ3d.py`): class-agnostic IoU and zero-shot mIoU
   (16 classes + empty) of the labels from stages 1 + 2 per variant, and of the same
   semantics back-projected with the true depth (the ceiling that better depth could reach).
"""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict, replace

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from pop3d_ros.data.classes import CLASS_NAMES, EMPTY, IGNORE, NUM_CLASSES
from pop3d_ros.evaluation.labels import evaluation_labels
from pop3d_ros.evaluation.metrics import ConfusionMatrix
from pop3d_ros.evaluation.occ3d import Occ3DMetrics, camera_visibility
from pop3d_ros.geometry.rig import CAMERA_NAMES
from pop3d_ros.vfm.calibrate import CalibrationConfig, calibrate_frame, normalise_relative
from pop3d_ros.vfm.pseudo_labels import pseudo_labels

FAILED_ABS_REL = 0.3  # an image whose own AbsRel exceeds this counts as a failed calibration


class DepthMetrics:
    """Pooled AbsRel and delta < 1.25 over pixels, and per camera the share of images whose
    own AbsRel exceeds FAILED_ABS_REL (`failed_per_camera`, `failed`)."""

    def __init__(self):
        self.abs_rel, self.delta, self.n = 0.0, 0.0, 0
        self.images: dict[int, list[float]] = {}  # camera index -> per-image AbsRel

    def add(self, pred: np.ndarray, gt: np.ndarray, camera: int | None = None) -> None:
        ratio = np.maximum(pred / gt, gt / pred)
        err = np.abs(pred - gt) / gt
        self.abs_rel += float(np.sum(err))
        self.delta += float(np.sum(ratio < 1.25))
        self.n += gt.size
        if camera is not None and gt.size:
            self.images.setdefault(int(camera), []).append(float(err.mean()))

    def result(self, camera_names=None) -> dict:
        n = max(self.n, 1)
        out = {"abs_rel": round(self.abs_rel / n, 4), "delta1": round(self.delta / n, 4),
               "pixels": self.n}  # fmt: skip
        if self.images:
            name = (lambda c: camera_names[c]) if camera_names else str
            out["failed_per_camera"] = {
                name(c): round(float(np.mean(np.asarray(v) > FAILED_ABS_REL)), 3)
                for c, v in sorted(self.images.items())
            }
            every = np.concatenate([np.asarray(v) for v in self.images.values()])
            out["failed"] = round(float(np.mean(every > FAILED_ABS_REL)), 3)
            out["median_image_abs_rel"] = round(float(np.median(every)), 4)
        return out


def rig_settings(shifts_text, weight, flag: str = "--rig-shifts"):
    """(rig_shifts, rig_weight) of CalibrationConfig from this report's command-line forms:
    shifts as comma-separated ints ('' = none, the paper), a negative weight = None (one
    minimum over all views)."""
    try:
        shifts = tuple(int(x) for x in str(shifts_text).split(",") if x.strip())
    except ValueError:
        raise ValueError(f"bad {flag} {shifts_text!r}: use e.g. -1,1") from None
    return shifts, None if weight is not None and weight < 0 else weight


def upsample_depth(depth: np.ndarray, hw) -> np.ndarray:
    inv = torch.from_numpy(1.0 / np.asarray(depth, np.float32))[:, None]
    return (1.0 / F.interpolate(inv, size=tuple(hw), mode="bilinear", align_corners=False))[
        :, 0
    ].numpy()


def oracle_fit(rel, gt, mask, cfg, offset: bool = True) -> np.ndarray:
    """Per image: 1/D = a r + b fitted by least squares to the true inverse depth (b = 0
    without `offset`: the best a scale-only stage 1 could do, tau = 0)."""
    r = normalise_relative(rel)
    out = np.empty_like(r)
    for k in range(len(r)):
        m = mask[k]
        A = np.stack([r[k][m], np.ones(m.sum())], 1)[:, : 2 if offset else 1]
        coef = np.linalg.lstsq(A, 1.0 / gt[k][m], rcond=None)[0] if m.any() else [1.0]
        a, b = coef[0], coef[1] if offset and len(coef) > 1 else 0.0
        out[k] = 1.0 / np.clip(a * r[k] + b, 1.0 / cfg.max_depth, 1.0 / cfg.min_depth)
    return out


class LabelMetrics:
    """Pseudo labels scored as a prediction (voxels without a label count as empty) in both
    protocols: POP-3D's (LiDAR-ray labels: `iou`, `miou`) and, where `add` gets the dense
    ground truth and the camera-visibility mask, the Occ3D-style one (`occ3d_iou`,
    `occ3d_miou`; `evaluation/occ3d.py`, the protocol `pop3d eval` reports)."""

    def __init__(self):
        self.occ = ConfusionMatrix(2, ["empty", "occupied"])
        self.sem = ConfusionMatrix(NUM_CLASSES + 1, list(CLASS_NAMES) + ["empty"])
        self.occ3d = Occ3DMetrics()

    def add(self, semantic, sem_gt, occ_gt, dense_gt=None, visible=None) -> None:
        pred = np.where(semantic < NUM_CLASSES, semantic, EMPTY).astype(np.int64).reshape(-1)
        self.occ.update((pred < NUM_CLASSES).astype(np.int64), occ_gt.reshape(-1))
        self.sem.update(pred, np.where(sem_gt == IGNORE, -1, sem_gt).reshape(-1))
        if dense_gt is not None and visible is not None:
            self.occ3d.add(pred, dense_gt, visible)

    def result(self) -> dict:
        out = {"iou": round(float(self.occ.iou()[1]), 4), "miou": round(self.sem.miou(), 4),
               "per_class": {k: (None if v is None else round(v, 4))
                             for k, v in self.sem.per_class().items()}}  # fmt: skip
        if self.occ3d.std.matrix.sum() > 0:
            o = self.occ3d.result()
            keys = ("occ3d_iou", "occ3d_miou", "occ3d_miou_with_free", "occ3d_per_class")
            out.update({k: o[k] for k in keys})
        return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seeds", default="300-301")
    p.add_argument("--frames-per-seed", type=int, default=4)
    p.add_argument("--preset", default="cpu-small", help="voxel grid of the labels")
    p.add_argument("--eval-depth", type=float, default=50.0, help="metres (depth metrics)")
    p.add_argument("--teacher-profile", default="near-gt")
    p.add_argument("--calib-iterations", type=int, default=CalibrationConfig().iterations)
    p.add_argument(
        "--variants",
        default="paper,stage2-only,rig",
        help="calibrations to report (comma-separated): paper (stage 1 on the same camera's "
        "neighbouring frames, then stage 2), stage2-only (the paper without stage 1), rig "
        "(paper + the rig's adjacent cameras as source views); default: %(default)s",
    )
    p.add_argument(
        "--rig-shifts",
        default="-1,1",
        help="rig views: cameras around the rig (write --rig-shifts=-1,1)",
    )
    p.add_argument(
        "--rig-weight",
        type=float,
        default=CalibrationConfig().rig_weight,
        help="weight of the rig views' error (negative: one minimum over all views)",
    )
    p.add_argument(
        "--stage1-loss",
        choices=["l1", "ssim_l1"],
        default=CalibrationConfig().stage1_loss,
        help="stage 1's error in every variant (l1 = the paper's; default: %(default)s)",
    )
    p.add_argument(
        "--stage1-pixels",
        choices=["in_view", "fixed", "border", "guarded"],
        default=CalibrationConfig().stage1_pixels,
        help="stage 1's pixel set in every variant (default: %(default)s)",
    )
    p.add_argument(
        "--offsets",
        help="also report stage 1 searching these offsets, e.g. 0,0.1,0.2,0.3 (comma-separated)",
    )
    p.add_argument(
        "--only-offsets", action="store_true", help="with --offsets: only the offset-search rows"
    )
    p.add_argument("--out", required=True)
    args = p.parse_args(argv)

    from pop3d_ros.data.sources import parse_seeds, synthetic_source
    from pop3d_ros.data.synthetic_teacher import TEACHER_PROFILES, SyntheticTeacher
    from pop3d_ros.model.config import get_preset
    from pop3d_ros.text.synthetic_text import SyntheticTextSpace
    from pop3d_ros.vfm.depth_source import SyntheticVFM
    from pop3d_ros.vfm.semantics import pixel_semantics_from_encoder

    grid = get_preset(args.preset).voxel_grid
    keys, make = synthetic_source(parse_seeds(args.seeds), args.frames_per_seed, grid=grid)
    space = SyntheticTextSpace()
    teacher = SyntheticTeacher(space, TEACHER_PROFILES[args.teacher_profile])
    semantics = pixel_semantics_from_encoder(space)
    vfm = SyntheticVFM()
    cfg = CalibrationConfig(  # the paper's source views
        iterations=args.calib_iterations,
        rig_shifts=(),
        stage1_loss=args.stage1_loss,
        stage1_pixels=args.stage1_pixels,
    )
    shifts, weight = rig_settings(args.rig_shifts, args.rig_weight, "--rig-shifts")
    chosen = [] if args.only_offsets else [v.strip() for v in args.variants.split(",")]
    # variant -> (calibration, suffix of its rows)
    variants = {
        "paper": (cfg, ""),
        "stage2-only": (replace(cfg, stage1=False), None),
        "rig": (replace(cfg, rig_shifts=shifts, rig_weight=weight), "_rig"),
    }
    unknown = set(chosen) - set(variants)
    if unknown:
        raise SystemExit(f"unknown --variants {sorted(unknown)}: choose from {list(variants)}")
    variants = {k: v for k, v in variants.items() if k in chosen}
    if args.offsets:
        offsets = tuple(float(x) for x in args.offsets.split(","))
        variants["offsets"] = (replace(cfg, offsets=offsets), "_offsets")
    base = bool(chosen)
    names = ["oracle", "oracle_scale_only"] if base else []
    for _, suffix in variants.values():
        names += ["stage2_only"] if suffix is None else [f"stage1{suffix}", f"stage1+2{suffix}"]
    depth = {k: DepthMetrics() for k in names}
    labels = {
        k: LabelMetrics()
        for k in [f"stage1+2{sx}" for _, sx in variants.values() if sx is not None]
        + (["true_depth"] if base else [])
    }
    for key in tqdm(keys, desc="vfm report", unit="frame"):
        s = make(key)
        sources = [make(t) for t in (s["prev"], s["next"]) if t]
        classes = {t: semantics(teacher(x)["features"], x["images"].shape[1:3])
                   for t, x in [(s["token"], s)] + [(x["token"], x) for x in sources]}  # fmt: skip
        tf = teacher(s)["features"]
        rel = vfm(s)
        gt = s["depth"]
        mask = np.isfinite(gt) & (gt <= args.eval_depth) & (s["semantic"] != IGNORE)
        hw = gt.shape[1:]
        src_cls = [classes[x["token"]] for x in sources]
        sem_gt, occ_gt = evaluation_labels(s["lidar_points"], s["lidar_labels"],
                                           s["lidar_origin"], grid)  # fmt: skip
        gts = (sem_gt, occ_gt, s["occupancy"], camera_visibility(s, grid))
        preds = {}
        if base:
            preds["oracle"] = oracle_fit(rel, gt, mask, cfg)
            preds["oracle_scale_only"] = oracle_fit(rel, gt, mask, cfg, offset=False)
        for vcfg, suffix in variants.values():
            out = calibrate_frame(s, sources, rel, classes[s["token"]], vcfg, src_cls)
            if suffix is None:
                preds["stage2_only"] = upsample_depth(out["depth"], hw)
                continue
            preds[f"stage1{suffix}"] = upsample_depth(out["stage1_depth"], hw)
            preds[f"stage1+2{suffix}"] = upsample_depth(out["depth"], hw)
            lab = pseudo_labels(s, out, classes[s["token"]], tf, grid)
            labels[f"stage1+2{suffix}"].add(lab["semantic"], *gts)
        for k, pred in preds.items():
            for c in range(len(gt)):
                depth[k].add(pred[c][mask[c]], gt[c][mask[c]], c)
        if not base:
            continue
        K = np.stack([k for k in s["intrinsics"]])
        true = {"depth": np.where(np.isfinite(gt), gt, np.inf).astype(np.float32),
                "intrinsics": K}  # fmt: skip
        labels["true_depth"].add(
            pseudo_labels(s, true, classes[s["token"]], tf, grid)["semantic"], *gts
        )
    result = {
        "seeds": args.seeds,
        "frames": len(keys),
        "eval_depth_m": args.eval_depth,
        "calibration": asdict(cfg),
        "variants": {k: asdict(v) for k, (v, _) in variants.items()},
        "depth": {k: v.result(CAMERA_NAMES) for k, v in depth.items()},
        "labels": {k: v.result() for k, v in labels.items()},
    }
    with open(args.out, "w") as f:
        json.dump(result, f, indent=1)
    for k, v in result["depth"].items():
        fails = " ".join(f"{100 * x:.0f}" for x in v.get("failed_per_camera", {}).values())
        print(f"depth {k:<18} AbsRel {v['abs_rel']:.3f}  d<1.25 {100 * v['delta1']:.1f}  "
              f"median {v.get('median_image_abs_rel', float('nan')):.3f}  "
              f"failed {100 * v.get('failed', 0):.0f} % (per camera {fails})")  # fmt: skip
    for k, v in result["labels"].items():
        o3 = f"  Occ3D IoU {100 * v['occ3d_iou']:.1f} mIoU {100 * v['occ3d_miou']:.1f}" if (
            v.get("occ3d_iou") is not None) else ""  # fmt: skip
        print(f"labels {k:<17} IoU {100 * v['iou']:.1f}  mIoU {100 * v['miou']:.1f}{o3}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
