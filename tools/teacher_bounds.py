"""How far could a student of a synthetic teacher get? LiDAR mIoU at camera-visible points of

- `teacher`: the teacher itself, its features averaged over the cameras that see a point
  (the baseline of `pop3d eval`);
- `teacher_voxel`: the teacher averaged over each voxel's (point, camera) pairs of the frame,
  the smoothing a voxel-level student gets for free;
- `expected`: the teacher's mean over its own random draws (`SyntheticTeacher.expected`), per
  voxel: what an MSE-trained student converges to if it predicts E[teacher | image] exactly.

The gap between `expected` and a trained student is the student's (capacity, data,
training); the gap between `teacher` and `expected` is what smoothing can win over the
teacher. `python -m tools.teacher_bounds --profile maskclip-like --seeds 100-103`
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field

import numpy as np
from tqdm import tqdm

from pop3d_ros.cli_config import run_command
from pop3d_ros.data.classes import CLASS_NAMES, NUM_CLASSES
from pop3d_ros.data.sources import DataConfig
from pop3d_ros.evaluation.metrics import ConfusionMatrix
from pop3d_ros.teachers.features import point_feature_pairs, sum_by
from tools.held_out import held_out_data, synthetic_seeds

KINDS = ("teacher", "teacher_voxel", "expected")


class TeacherBounds:
    """Accumulates one confusion matrix per kind over frames."""

    def __init__(self, teacher, grid, classifier):
        self.teacher = teacher
        self.grid = grid
        self.classifier = classifier
        self.matrices = {k: ConfusionMatrix(NUM_CLASSES, list(CLASS_NAMES)) for k in KINDS}

    def add(self, sample: dict) -> None:
        points = np.asarray(sample["lidar_points"], np.float32)
        labels = np.asarray(sample["lidar_labels"]).astype(np.int64)
        idx, inside = self.grid.points_to_index(points)
        keep = inside & (labels < NUM_CLASSES)
        for kind, features in (
            ("teacher", self.teacher(sample)["features"]),
            ("expected", self.teacher.expected(sample)),
        ):
            pidx, _, feats = point_feature_pairs(sample, features, points, keep=keep)
            # sums, not means: the same direction, so the same zero-shot labels
            point_ids, point_of_pair, per_point = sum_by(pidx, feats)
            _, voxel_of_pair, per_voxel = sum_by(self.grid.flat_index(idx[pidx]), feats)
            # every pair of a point lies in the point's voxel: label the point by its voxel
            by_voxel = np.zeros(len(point_ids), np.int64)
            by_voxel[point_of_pair] = self.classifier(per_voxel).numpy()[voxel_of_pair]
            truth = labels[point_ids]
            if kind == "teacher":
                self.matrices["teacher"].update(self.classifier(per_point).numpy(), truth)
                self.matrices["teacher_voxel"].update(by_voxel, truth)
            else:
                self.matrices["expected"].update(by_voxel, truth)

    def result(self) -> dict:
        out = {k: round(float(m.miou()), 4) for k, m in self.matrices.items()}
        per_kind = {k: m.per_class() for k, m in self.matrices.items()}
        out["per_class"] = {name: {k: per_kind[k][name] for k in KINDS} for name in CLASS_NAMES}
        return out


@dataclass
class TeacherBoundsCommand:
    """How well a student of a synthetic teacher profile could do at best (module doc)."""

    profile: str = "near-gt"  # synthetic teacher profile (data/synthetic_teacher.py)
    confusion_prob: float | None = None  # override the profile's confusion_prob
    preset: str = "cpu-small"  # model preset whose grid is used
    text_seed: int = 0  # seed of the synthetic text space
    out: str = ""  # also write the result as JSON here ("" = no)
    data: DataConfig = field(default_factory=held_out_data)


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    return run_command(TeacherBoundsCommand, argv, "python -m tools.teacher_bounds", _run)


def _run(args: TeacherBoundsCommand) -> int:
    from dataclasses import replace

    from pop3d_ros.data.sources import synthetic_source
    from pop3d_ros.data.synthetic_teacher import TEACHER_PROFILES, SyntheticTeacher
    from pop3d_ros.evaluation.zeroshot import ZeroShotClassifier, class_phrase_embeddings
    from pop3d_ros.model.config import get_preset
    from pop3d_ros.text.synthetic_text import SyntheticTextSpace

    if args.profile not in TEACHER_PROFILES:
        raise ValueError(f"--profile {args.profile!r}: use one of {sorted(TEACHER_PROFILES)}")
    cfg = TEACHER_PROFILES[args.profile]
    if args.confusion_prob is not None:
        cfg = replace(cfg, confusion_prob=args.confusion_prob)
    model_cfg = get_preset(args.preset)
    space = SyntheticTextSpace(seed=args.text_seed, dim=model_cfg.heads.clip_dim)
    bounds = TeacherBounds(
        SyntheticTeacher(space, cfg),
        model_cfg.voxel_grid,
        ZeroShotClassifier(class_phrase_embeddings(space)),
    )
    keys, make = synthetic_source(
        synthetic_seeds(args.data), args.data.frames_per_seed, grid=model_cfg.voxel_grid
    )
    for key in tqdm(keys, desc="teacher bounds", unit="frame"):
        bounds.add(make(key))
    result = bounds.result()
    print(f"{'class':<22}" + "".join(f"{k:>15}" for k in KINDS))
    for name, row in result["per_class"].items():
        cells = "".join(
            "              -" if row[k] is None else f"{100 * row[k]:15.1f}" for k in KINDS
        )
        print(f"{name:<22}{cells}")
    print(f"{'mIoU':<22}" + "".join(f"{100 * result[k]:15.1f}" for k in KINDS))
    if args.out:
        with open(args.out, "w") as f:
            json.dump({"profile": args.profile, "seeds": args.data.seeds, **result}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
