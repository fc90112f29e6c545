"""The occupancy headline `iou_mean_empty_occupied`, the conventions named in the eval JSON,
and the switches that follow POP-3D's code instead of its paper, on hand-made rays whose
labels are worked out by hand (tiny grid: 8 x 8 x 2 voxels of 2 m over x, y in [-8, 8],
z in [-2, 2])."""

import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).parent))
from train_fixtures import tiny_model_config, tiny_sample  # noqa: E402

from pop3d_ros.data.classes import CLASS_ID, EMPTY, IGNORE  # noqa: E402
from pop3d_ros.data.sample import project_points  # noqa: E402
from pop3d_ros.evaluation.conventions import EvalConventions, parse_conventions  # noqa: E402
from pop3d_ros.evaluation.labels import evaluation_labels  # noqa: E402
from pop3d_ros.evaluation.protocol import Evaluator  # noqa: E402
from pop3d_ros.evaluation.zeroshot import ZeroShotClassifier, class_phrase_embeddings  # noqa: E402
from pop3d_ros.text.synthetic_text import SyntheticTextSpace  # noqa: E402

CAR = CLASS_ID["car"]
# Sensor at voxel (4, 4, 1); one return at (7, 1, 1): voxel (7, 4, 1). The ray runs along x
# through voxels (4..6, 4, 1), which are free; every other voxel is unobserved.
ORIGIN = np.array([1.0, 1.0, 1.0], np.float32)
INSIDE = np.array([[7.0, 1.0, 1.0]], np.float32)
OUTSIDE = np.array([[20.0, 1.0, 1.0]], np.float32)  # beyond x = 8: outside the volume
TWO_CAMERAS = np.array([[7.0, 3.0, 1.0]], np.float32)  # seen by cam_front and cam_front_left


class FixedOccupancy(nn.Module):
    """Predicts a fixed set of occupied voxels, all with the features of `cls`."""

    def __init__(self, occupied: np.ndarray, class_emb: np.ndarray, cls: int):
        super().__init__()
        self.occ = torch.from_numpy(occupied.astype(np.float32))
        self.emb = torch.from_numpy(class_emb[cls])

    def forward(self, images, grid, mask):
        logits = torch.stack([-5 * self.occ, 5 * self.occ - 2.5], -1)
        return {"occupancy_logits": logits[None], "voxel_features": self.occ[None, ..., None]}

    def language_head(self, f):
        return self.emb.expand(f.shape[0], -1)


@pytest.fixture(scope="module")
def space():
    return SyntheticTextSpace()


def _sample(points):
    s = tiny_sample(0)
    s["lidar_points"] = np.asarray(points, np.float32)
    s["lidar_labels"] = np.full(len(points), CAR, np.uint8)
    s["lidar_origin"] = ORIGIN
    return s


def _evaluate(space, sample, occupied_voxels, conventions=None):
    cfg = tiny_model_config()
    occ = np.zeros(cfg.grid.shape, bool)
    for v in occupied_voxels:
        occ[v] = True
    model = FixedOccupancy(occ, space.class_embeddings(), CAR)
    clf = ZeroShotClassifier(class_phrase_embeddings(space))
    ev = Evaluator(model, cfg, clf, conventions=conventions)
    return ev, ev.run([sample], show=False).result()


def test_hand_ray_labels():
    grid = tiny_model_config().voxel_grid
    sem, occ = evaluation_labels(INSIDE, [CAR], ORIGIN, grid)
    assert occ[7, 4, 1] == 1 and sem[7, 4, 1] == CAR
    for x in (4, 5, 6):
        assert occ[x, 4, 1] == 0 and sem[x, 4, 1] == EMPTY
    assert (occ != IGNORE).sum() == 4 and (sem != IGNORE).sum() == 4


def test_iou_mean_empty_occupied_by_hand(space):
    # Predicted occupied: (6, 4, 1) (wrong: free) and (7, 4, 1) (right).
    # occupied IoU = TP 1 / (TP 1 + FP 1 + FN 0) = 1/2
    # empty IoU    = TP 2 (voxels 4, 5) / (TP 2 + FN 1 (voxel 6) + FP 0) = 2/3
    _, res = _evaluate(space, _sample(INSIDE), [(6, 4, 1), (7, 4, 1)])
    assert res["iou"] == pytest.approx(0.5, abs=1e-4)
    assert res["per_class"]["empty"]["iou"] == pytest.approx(2 / 3, abs=1e-4)
    assert res["iou_mean_empty_occupied"] == pytest.approx((0.5 + 2 / 3) / 2, abs=1e-4)
    # mIoU over car + empty (the classes in the ground truth): car IoU 1/2, empty 2/3.
    assert res["miou"] == pytest.approx((0.5 + 2 / 3) / 2, abs=1e-4)
    assert res["classes_evaluated"] == ["car", "empty"]
    conv = res["conventions"]
    assert conv["free_space"] == "every-voxel" and conv["out_of_range"] == "exclude"
    assert (
        conv["lidar_points"] == "unique" and "absent from the ground truth" in conv["miou_classes"]
    )
    assert conv["occupancy_threshold"] == 0.5 and conv["model_grid"]["shape"] == [8, 8, 2]
    assert conv["volume"]["name"] == "model"


def test_pop3d_code_free_space_casts_no_ray_to_out_of_range_returns():
    grid = tiny_model_config().voxel_grid
    both = np.concatenate([INSIDE + [0, 2, 0], OUTSIDE])  # (7, 3, 1): voxel (7, 5, 1)
    # Paper rule: the ray to the far return crosses voxels (4..7, 4, 1) inside the volume.
    _, occ = evaluation_labels(both, [CAR, CAR], ORIGIN, grid)
    assert all(occ[x, 4, 1] == 0 for x in (4, 5, 6, 7))
    # Authors' code: no ray to a return outside the volume; (7, 4, 1) stays unobserved.
    _, occ_code = evaluation_labels(both, [CAR, CAR], ORIGIN, grid, rays="pop3d-code")
    assert occ_code[7, 4, 1] == IGNORE and occ_code[7, 5, 1] == 1
    assert occ_code[4, 4, 1] == 0  # the origin's voxel, on the ray to (7, 3, 1)


def test_out_of_range_and_per_camera_point_sets(space):
    sample = _sample(np.concatenate([INSIDE, OUTSIDE, TWO_CAMERAS]))
    _, valid = project_points(sample)
    assert valid.sum(0).tolist() == [1, 1, 2], "the rig's views changed: fix the test points"
    ev, _ = _evaluate(space, sample, [(7, 4, 1)])
    assert ev.lidar.matrix.sum() == 2  # the return outside the volume is excluded
    ev, res = _evaluate(space, sample, [(7, 4, 1)], parse_conventions(["out_of_range=clip"]))
    assert ev.lidar.matrix.sum() == 3  # ... or clipped into boundary voxel (7, 4, 1)
    assert res["conventions"]["out_of_range"] == "clip"
    conv = EvalConventions(out_of_range="clip", lidar_points="per-camera")
    ev, _ = _evaluate(space, sample, [(7, 4, 1)], conv)
    assert ev.lidar.matrix.sum() == 4  # once per camera that sees it: 1 + 1 + 2


def test_bad_convention_is_a_clear_error():
    with pytest.raises(ValueError, match="expected KEY=VALUE"):
        parse_conventions(["free_space"])
    with pytest.raises(ValueError, match="one of"):
        parse_conventions(["free_space=sometimes"])
