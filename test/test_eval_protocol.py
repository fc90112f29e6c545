"""The evaluator on an oracle model (known answers) and the zero-shot classifier."""

import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).parent))

from train_fixtures import tiny_model_config, tiny_sample  # noqa: E402

from pop3d_ros.data.classes import CLASS_ID, NUM_CLASSES  # noqa: E402
from pop3d_ros.data.synthetic_teacher import SyntheticTeacher, TeacherConfig  # noqa: E402
from pop3d_ros.evaluation.labels import evaluation_labels  # noqa: E402
from pop3d_ros.evaluation.protocol import Evaluator, format_table  # noqa: E402
from pop3d_ros.evaluation.zeroshot import ZeroShotClassifier, class_phrase_embeddings  # noqa: E402
from pop3d_ros.text.synthetic_text import SyntheticTextSpace  # noqa: E402


class Oracle(nn.Module):
    """Predicts the evaluation labels of one known frame exactly."""

    def __init__(self, sem, occ, class_emb):
        super().__init__()
        self.sem = torch.from_numpy(sem.astype(np.int64))
        self.occ = torch.from_numpy(occ.astype(np.int64))
        self.class_emb = torch.from_numpy(class_emb)

    def forward(self, images, grid, mask):
        occupied = (self.occ == 1).float()
        logits = torch.stack([-5 * occupied, 5 * occupied - 2.5 * (1 - occupied)], -1)
        cls = self.sem.clamp(max=NUM_CLASSES - 1).float()
        return {"occupancy_logits": logits[None], "voxel_features": cls[None, ..., None]}

    def language_head(self, f):
        return self.class_emb[f[..., 0].long()]


@pytest.fixture(scope="module")
def space():
    return SyntheticTextSpace()


def test_zero_shot_classifier_max_over_phrases(space):
    clf = ZeroShotClassifier(class_phrase_embeddings(space))
    feats = space.encode(["a photo of a sedan.", "a tree", "asphalt"])
    assert clf(feats).tolist() == [
        CLASS_ID["car"],
        CLASS_ID["vegetation"],
        CLASS_ID["driveable_surface"],
    ]


def test_oracle_scores_perfect_and_beats_chance(space):
    cfg = tiny_model_config()
    sample = tiny_sample(3)
    sem, occ = evaluation_labels(
        sample["lidar_points"], sample["lidar_labels"], sample["lidar_origin"], cfg.voxel_grid
    )
    model = Oracle(sem, occ, space.class_embeddings())
    ev = Evaluator(
        model,
        cfg,
        ZeroShotClassifier(class_phrase_embeddings(space)),
        teacher=SyntheticTeacher(space, TeacherConfig(mode="average", confusion_prob=0.0)),
        prior=np.zeros(cfg.grid.shape),
    )
    res = ev.run([sample], show=False).result()
    for key in ("iou", "miou", "lidar_miou", "teacher_lidar_miou", "prior_iou", "per_class"):
        assert key in res
    assert res["iou"] == pytest.approx(1.0) and res["miou"] == pytest.approx(1.0)
    assert res["prior_iou"] == pytest.approx(0.0)  # an all-empty prior finds nothing
    assert res["chance_miou"] < 0.9
    assert 0.0 < res["teacher_lidar_miou"] <= 1.0 and 0.0 < res["lidar_miou"] <= 1.0
    assert res["per_class"]["car"]["iou"] == pytest.approx(1.0)
    assert "car" in format_table(res)


def test_true_geometry_is_scored_like_a_prediction_against_the_lidar_labels(space):
    from pop3d_ros.data.classes import EMPTY, IGNORE

    cfg = tiny_model_config()
    sample = tiny_sample(3)
    _, occ = evaluation_labels(
        sample["lidar_points"], sample["lidar_labels"], sample["lidar_origin"], cfg.voxel_grid
    )
    n_occupied = int((occ == 1).sum())
    # a world where every LiDAR-hit voxel is matter, plus 7 voxels a ray crossed (the
    # grazing case) and every unobserved voxel (not scored)
    world = np.full(cfg.grid.shape, EMPTY, np.uint8)
    world[occ == 1] = CLASS_ID["car"]
    world[occ == IGNORE] = CLASS_ID["manmade"]
    crossed = np.argwhere(occ == 0)[:7]
    world[tuple(crossed.T)] = CLASS_ID["driveable_surface"]
    model = Oracle(*evaluation_labels(
        sample["lidar_points"], sample["lidar_labels"], sample["lidar_origin"], cfg.voxel_grid
    ), space.class_embeddings())  # fmt: skip
    clf = ZeroShotClassifier(class_phrase_embeddings(space))
    res = Evaluator(model, cfg, clf).run([sample | {"occupancy": world}], show=False).result()
    assert res["true_geometry_iou"] == pytest.approx(round(n_occupied / (n_occupied + 7), 4))
    assert "true_geometry_iou" in format_table(res)
    assert (
        Evaluator(model, cfg, clf).run([sample], show=False).result()["true_geometry_iou"] is None
    )


def test_eval_cli_writes_all_keys(tmp_path, space):
    import json

    from pop3d_ros.cli import main
    from pop3d_ros.model.checkpoint import save_checkpoint
    from pop3d_ros.model.pop3d import build_model

    cfg = tiny_model_config()
    ckpt = tmp_path / "m.pt"
    teacher = {"kind": "synthetic", "stride": 16, "noise_std": 0.3, "confusion_prob": 0.1}
    save_checkpoint(
        ckpt,
        build_model(cfg),
        cfg,
        space.describe(),
        {"teacher": teacher},
        occupancy_prior=torch.full(tuple(cfg.grid.shape), 0.3).half(),
        prior_threshold=0.25,
    )
    out = tmp_path / "eval.json"
    rc = main(
        [
            "eval",
            "--checkpoint",
            str(ckpt),
            "--data",
            "synthetic",
            "--seeds",
            "100",
            "--frames-per-seed",
            "1",
            "--out",
            str(out),
        ]
    )
    assert rc == 0
    res = json.loads(out.read_text())
    keys = ("iou", "iou_mean_empty_occupied", "miou", "lidar_miou", "teacher_lidar_miou")
    for key in (*keys, "prior_iou", "per_class", "conventions"):
        assert key in res and res[key] is not None, key
    assert res["frames"] == 1 and set(res["per_class"]) >= {"car", "empty"}
    # the long-tail retrieval benchmark (a v2 text space, a v2 world frame); the tiny grid
    # (16 m square) may hold no long-tail concept: then its values are None
    assert res["text_space"].startswith("synthetic:v2")
    keys = ("retrieval_map", "retrieval_map_parent", "retrieval_map_teacher",
            "retrieval_map_chance")  # fmt: skip
    for key in keys:
        assert key in res and (res[key] is None or 0.0 <= res[key] <= 1.0), key
    assert (res["retrieval_map"] is None) == (not res["retrieval_per_concept"])
    assert {"grounding_recall", "grounding_center_error", "grounding_instances"} <= set(res)
    # An all-occupied prior (0.3 >= 0.25) scores the occupied share of observed voxels.
    assert 0.0 < res["prior_iou"] < 1.0
    assert main(["eval", "--checkpoint", str(tmp_path / "missing.pt"), "--out", str(out)]) != 0
