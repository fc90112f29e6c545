"""Acceptance measurements of the VFM recipe on held-out synthetic drives (issue 18).

    python -m pop3d_ros.vfm.report --seeds 300-301 --frames-per-seed 4 --out vfm_report.json

1. Depth quality against the true depth (AbsRel, delta < 1.25) over camera pixels that are in
   scope (not sky) with true depth <= --eval-depth: the raw relative depth with the best
   per-image affine fit in inverse depth (an oracle that sees the true depth), stage 1 alone,
   stages 1 + 2, and stage 2 started without stage 1 (from scale 1). Calibrated maps are
   compared at full image resolution (inverse depth upsampled bilinearly).
2. Pseudo-label quality before any training, POP-3D protocol (LiDAR-ray labels, used here for
   evaluation only): class-agnostic IoU and zero-shot mIoU (16 classes + empty) of the labels
   from stages 1 + 2, and of the same semantics back-projected with the true depth (the
   ceiling that better depth could reach).
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
from pop3d_ros.training.eval_labels import evaluation_labels
from pop3d_ros.training.metrics import ConfusionMatrix
from pop3d_ros.vfm.calibrate import CalibrationConfig, calibrate_frame, normalise_relative
from pop3d_ros.vfm.pseudo_labels import pseudo_labels


class DepthMetrics:
    """Pooled AbsRel and delta < 1.25 over pixels."""

    def __init__(self):
        self.abs_rel, self.delta, self.n = 0.0, 0.0, 0

    def add(self, pred: np.ndarray, gt: np.ndarray) -> None:
        ratio = np.maximum(pred / gt, gt / pred)
        self.abs_rel += float(np.sum(np.abs(pred - gt) / gt))
        self.delta += float(np.sum(ratio < 1.25))
        self.n += gt.size

    def result(self) -> dict:
        n = max(self.n, 1)
        return {"abs_rel": round(self.abs_rel / n, 4), "delta1": round(self.delta / n, 4),
                "pixels": self.n}  # fmt: skip


def upsample_depth(depth: np.ndarray, hw) -> np.ndarray:
    inv = torch.from_numpy(1.0 / np.asarray(depth, np.float32))[:, None]
    return (1.0 / F.interpolate(inv, size=tuple(hw), mode="bilinear", align_corners=False))[
        :, 0
    ].numpy()


def oracle_fit(rel: np.ndarray, gt: np.ndarray, mask: np.ndarray, cfg) -> np.ndarray:
    """Per image: 1/D = a r + b fitted by least squares to the true inverse depth."""
    r = normalise_relative(rel)
    out = np.empty_like(r)
    for k in range(len(r)):
        m = mask[k]
        A = np.stack([r[k][m], np.ones(m.sum())], 1)
        a, b = np.linalg.lstsq(A, 1.0 / gt[k][m], rcond=None)[0] if m.any() else (1.0, 0.0)
        out[k] = 1.0 / np.clip(a * r[k] + b, 1.0 / cfg.max_depth, 1.0 / cfg.min_depth)
    return out


class LabelMetrics:
    def __init__(self):
        self.occ = ConfusionMatrix(2, ["empty", "occupied"])
        self.sem = ConfusionMatrix(NUM_CLASSES + 1, list(CLASS_NAMES) + ["empty"])

    def add(self, semantic: np.ndarray, sem_gt: np.ndarray, occ_gt: np.ndarray) -> None:
        pred = np.where(semantic < NUM_CLASSES, semantic, EMPTY).astype(np.int64).reshape(-1)
        self.occ.update((pred < NUM_CLASSES).astype(np.int64), occ_gt.reshape(-1))
        self.sem.update(pred, np.where(sem_gt == IGNORE, -1, sem_gt).reshape(-1))

    def result(self) -> dict:
        return {"iou": round(float(self.occ.iou()[1]), 4), "miou": round(self.sem.miou(), 4),
                "per_class": {k: (None if v is None else round(v, 4))
                              for k, v in self.sem.per_class().items()}}  # fmt: skip


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seeds", default="300-301")
    p.add_argument("--frames-per-seed", type=int, default=4)
    p.add_argument("--preset", default="cpu-small", help="voxel grid of the labels")
    p.add_argument("--eval-depth", type=float, default=50.0, help="metres (depth metrics)")
    p.add_argument("--teacher-profile", default="near-gt")
    p.add_argument("--calib-iterations", type=int, default=CalibrationConfig().iterations)
    p.add_argument(
        "--offsets",
        help="also report stage 1 searching these offsets, e.g. 0,0.1,0.2,0.3 (comma-separated)",
    )
    p.add_argument(
        "--only-offsets", action="store_true", help="with --offsets: only the offset-search rows"
    )
    p.add_argument("--out", required=True)
    args = p.parse_args(argv)

    from pop3d_ros.data.synthetic_teacher import TEACHER_PROFILES, SyntheticTeacher
    from pop3d_ros.model.config import get_preset
    from pop3d_ros.text.synthetic_text import SyntheticTextSpace
    from pop3d_ros.training.sources import parse_seeds, synthetic_source
    from pop3d_ros.vfm.depth_source import SyntheticVFM
    from pop3d_ros.vfm.semantics import pixel_semantics_from_encoder

    grid = get_preset(args.preset).voxel_grid
    keys, make = synthetic_source(parse_seeds(args.seeds), args.frames_per_seed, grid=grid)
    space = SyntheticTextSpace()
    teacher = SyntheticTeacher(space, TEACHER_PROFILES[args.teacher_profile])
    semantics = pixel_semantics_from_encoder(space)
    vfm = SyntheticVFM()
    cfg = CalibrationConfig(iterations=args.calib_iterations)
    no_stage1 = replace(cfg, stage1=False)
    offs = (
        replace(cfg, offsets=tuple(float(x) for x in args.offsets.split(",")))
        if args.offsets
        else None
    )
    base = not (offs and args.only_offsets)
    names = ["oracle", "stage1", "stage1+2", "stage2_only"] if base else []
    names += ["stage1_offsets", "stage1+2_offsets"] if offs else []
    depth = {k: DepthMetrics() for k in names}
    labels = {
        k: LabelMetrics()
        for k in (["stage1+2", "true_depth"] if base else [])
        + (["stage1+2_offsets"] if offs else [])
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
        preds = {}
        if base:
            full = calibrate_frame(s, sources, rel, classes[s["token"]], cfg, src_cls)
            only2 = calibrate_frame(s, sources, rel, classes[s["token"]], no_stage1, src_cls)
            preds.update(
                {
                    "oracle": oracle_fit(rel, gt, mask, cfg),
                    "stage1": upsample_depth(full["stage1_depth"], hw),
                    "stage1+2": upsample_depth(full["depth"], hw),
                    "stage2_only": upsample_depth(only2["depth"], hw),
                }
            )
            lab = pseudo_labels(s, full, classes[s["token"]], tf, grid)
            labels["stage1+2"].add(lab["semantic"], sem_gt, occ_gt)
        if offs:
            o = calibrate_frame(s, sources, rel, classes[s["token"]], offs, src_cls)
            preds["stage1_offsets"] = upsample_depth(o["stage1_depth"], hw)
            preds["stage1+2_offsets"] = upsample_depth(o["depth"], hw)
            lab = pseudo_labels(s, o, classes[s["token"]], tf, grid)
            labels["stage1+2_offsets"].add(lab["semantic"], sem_gt, occ_gt)
        for k, pred in preds.items():
            depth[k].add(pred[mask], gt[mask])
        if not base:
            continue
        K = np.stack([k for k in s["intrinsics"]])
        true = {"depth": np.where(np.isfinite(gt), gt, np.inf).astype(np.float32),
                "intrinsics": K}  # fmt: skip
        labels["true_depth"].add(
            pseudo_labels(s, true, classes[s["token"]], tf, grid)["semantic"], sem_gt, occ_gt
        )
    result = {
        "seeds": args.seeds,
        "frames": len(keys),
        "eval_depth_m": args.eval_depth,
        "calibration": asdict(cfg),
        "offsets": list(offs.offsets) if offs else None,
        "depth": {k: v.result() for k, v in depth.items()},
        "labels": {k: v.result() for k, v in labels.items()},
    }
    with open(args.out, "w") as f:
        json.dump(result, f, indent=1)
    for k, v in result["depth"].items():
        print(f"depth {k:<12} AbsRel {v['abs_rel']:.3f}  d<1.25 {100 * v['delta1']:.1f}")
    for k, v in result["labels"].items():
        print(f"labels {k:<11} IoU {100 * v['iou']:.1f}  mIoU {100 * v['miou']:.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
