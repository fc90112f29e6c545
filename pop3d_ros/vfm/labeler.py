"""One frame -> VFM pseudo labels: teacher semantics, relative depth, calibration,
back-projection; calibrated depth and labels cached per frame under one directory.

`<cache>/depth/<token>.npz` (the `DepthCalibrator` cache) and `<cache>/labels/<token>.pt`
(the voxel targets on one grid). `settings.json` files refuse a cache made otherwise.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch

from pop3d_ros.atomic import atomic_path
from pop3d_ros.vfm.calibrate import CalibrationConfig, DepthCalibrator, _safe
from pop3d_ros.vfm.pseudo_labels import PseudoLabelConfig, pseudo_labels


class VFMLabeler:
    """`labeler(sample) -> pseudo-label dict` (see `pseudo_labels.pseudo_labels`; here
    `occ_target` and `semantic` are uint8 tensors and `features` float16).

    teacher(sample) -> {"features": (N, D, h, w)}; semantics: `PixelSemantics`;
    depth_source: a `RelativeDepthSource`; fetch(token) -> the neighbouring samples."""

    def __init__(
        self,
        teacher,
        semantics,
        depth_source,
        fetch,
        grid,
        cache_dir=None,
        calibration: CalibrationConfig | None = None,
        labels: PseudoLabelConfig | None = None,
        teacher_meta=None,
    ):
        self.teacher, self.pixel_semantics, self.fetch, self.grid = teacher, semantics, fetch, grid
        self.label_cfg = labels or PseudoLabelConfig()
        self.cache_dir = Path(cache_dir) if cache_dir else None
        self.calibrator = DepthCalibrator(
            depth_source,
            self.semantics,
            calibration or CalibrationConfig(),
            self.cache_dir / "depth" if self.cache_dir else None,
        )
        if self.cache_dir is not None:
            settings = json.loads(
                json.dumps(
                    {
                        "labels": asdict(self.label_cfg),
                        "grid": grid.to_dict(),
                        "teacher": teacher_meta,
                        "depth_source": depth_source.describe(),
                        "calibration": asdict(self.calibrator.cfg),
                    }
                )
            )
            d = self.cache_dir / "labels"
            d.mkdir(parents=True, exist_ok=True)
            path = d / "settings.json"
            if path.exists() and json.loads(path.read_text()) != settings:
                raise ValueError(f"{d} holds pseudo labels made with other settings")
            path.write_text(json.dumps(settings, indent=1, sort_keys=True))

    def semantics(self, sample: dict) -> np.ndarray:
        """(N, H, W) pixel classes of a sample from the teacher."""
        hw = tuple(int(x) for x in sample["images"].shape[1:3])
        return self.pixel_semantics(self.teacher(sample)["features"], hw)

    def depth(self, sample: dict) -> dict:
        return self.calibrator(sample, self.fetch)

    def label_path(self, token: str) -> Path | None:
        return self.cache_dir / "labels" / f"{_safe(token)}.pt" if self.cache_dir else None

    def __call__(self, sample: dict) -> dict:
        token = str(sample.get("token", ""))
        path = self.label_path(token) if token else None
        if path is not None and path.exists():
            return torch.load(path, weights_only=True)
        tf = self.teacher(sample)["features"]
        hw = tuple(int(x) for x in sample["images"].shape[1:3])
        classes = self.pixel_semantics(tf, hw)
        calibrated = self.calibrator(sample, self.fetch, classes=classes)
        out = pseudo_labels(sample, calibrated, classes, tf, self.grid, self.label_cfg)
        out["features"] = out["features"].half()
        out["occ_target"] = torch.from_numpy(out["occ_target"])
        out["semantic"] = torch.from_numpy(out["semantic"])
        if path is not None:
            with atomic_path(path) as tmp:
                torch.save(out, tmp)
        return out
