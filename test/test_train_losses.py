"""Losses, targets, evaluation labels and metrics of the training module (known answers)."""

import math

import numpy as np
import pytest
import torch

from pop3d_ros.data.classes import EMPTY, IGNORE
from pop3d_ros.evaluation.labels import evaluation_labels
from pop3d_ros.evaluation.metrics import ConfusionMatrix
from pop3d_ros.geometry.grid import VoxelGrid, occupancy_of_points
from pop3d_ros.teachers.features import point_feature_pairs, sample_feature_map, sum_by
from pop3d_ros.training.losses import (
    FeatureLoss,
    OccupancyLoss,
    Pop3DLoss,
    lovasz_softmax_flat,
)
from pop3d_ros.training.schedule import lr_factor


def test_lovasz_hand_computed():
    # 3 voxels, labels [1, 0, 1], P(occupied) = [0.8, 0.4, 0.3].
    # Class 1: errors |1-.8|=.2, |0-.4|=.4, |1-.3|=.7 -> sorted .7(fg) .4(bg) .2(fg).
    #   Jaccard after each prefix: 1-(2-1)/2 = .5, 1-1/3 = 2/3, 1-0/3 = 1 -> grads .5, 1/6, 1/3.
    #   loss1 = .7*.5 + .4/6 + .2/3 = 0.48333...
    # Class 0: P = [.2, .6, .7]; errors .2(bg), .4(fg: 1-.6), .7(bg) -> sorted .7 bg, .4 fg, .2 bg.
    #   gts=1: J = 1-1/2 = .5, 1-0/2 = 1, 1-0/3 = 1 -> grads .5, .5, 0; loss0 = .35 + .2 = .55.
    p1 = torch.tensor([0.8, 0.4, 0.3])
    probs = torch.stack([1 - p1, p1], 1)
    labels = torch.tensor([1, 0, 1])
    expected = (0.7 * 0.5 + 0.4 / 6 + 0.2 / 3 + 0.55) / 2
    assert lovasz_softmax_flat(probs, labels).item() == pytest.approx(expected, abs=1e-6)


def test_lovasz_zero_for_perfect_prediction_and_present_classes_only():
    labels = torch.tensor([1, 1, 0])
    probs = torch.nn.functional.one_hot(labels, 2).float()
    assert lovasz_softmax_flat(probs, labels).item() == pytest.approx(0.0, abs=1e-7)
    # Only class 1 present: class 0's term is skipped.
    probs = torch.tensor([[0.5, 0.5], [0.0, 1.0]])
    assert lovasz_softmax_flat(probs, torch.tensor([1, 1])).item() == pytest.approx(0.25)


def test_occupancy_loss_ignores_and_backpropagates():
    logits = torch.zeros(4, 2, requires_grad=True)
    target = torch.tensor([0, 1, IGNORE, 1])
    terms = OccupancyLoss()(logits, target)
    assert set(terms) == {"occ_ce", "occ_lovasz", "occ"}
    assert terms["occ_ce"].item() == pytest.approx(math.log(2))
    terms["occ"].backward()
    assert logits.grad[2].abs().sum() == 0 and logits.grad[0].abs().sum() > 0


def test_feature_loss_weighted_equals_per_point_gradient():
    # Two points in one voxel: per-point MSE vs MSE to their mean weighted by the count.
    pred = torch.randn(1, 8, requires_grad=True)
    t = torch.randn(2, 8)
    FeatureLoss()(pred.expand(2, 8), t)["ft"].backward()
    g1 = pred.grad.clone()
    pred.grad = None
    FeatureLoss()(pred, t.mean(0, keepdim=True), torch.tensor([2.0]))["ft"].backward()
    assert torch.allclose(g1, pred.grad, atol=1e-6)


def test_total_loss_is_sum_with_lambda():
    logits, target = torch.randn(5, 2), torch.tensor([0, 1, 0, 1, 1])
    pf, tf = torch.randn(3, 4), torch.randn(3, 4)
    terms = Pop3DLoss(feature_weight=0.5)(logits, target, pf, tf)
    assert terms["loss"].item() == pytest.approx((terms["occ"] + 0.5 * terms["ft"]).item())


def test_occupancy_target_marks_point_voxels():
    grid = VoxelGrid((0, 4), (0, 4), (0, 2), (4, 4, 2))
    pts = np.array([[0.5, 0.5, 0.5], [0.6, 0.4, 0.2], [3.5, 2.5, 1.5], [9, 9, 9]], np.float32)
    occ = occupancy_of_points(pts, grid)
    assert occ.sum() == 2 and occ[0, 0, 0] == 1 and occ[3, 2, 1] == 1


def test_feature_map_sampling_is_bilinear_with_pixel_centres():
    # A 2x2 map over a 4x4 image: feature cell centres sit at pixels 1.0-0.5=0.5 and 2.5.
    fmap = torch.tensor([[[0.0, 1.0], [2.0, 3.0]]])
    uv = np.array([[0.5, 0.5], [2.5, 2.5], [1.5, 0.5], [0.0, 0.0]], np.float32)
    out = sample_feature_map(fmap, uv, (4, 4))[:, 0]
    assert out.tolist() == pytest.approx([0.0, 3.0, 0.5, 0.0])


def test_point_feature_pairs_keep_and_sum_by():
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).parent))
    from train_fixtures import tiny_sample

    sample = tiny_sample(0)
    rng = np.random.default_rng(0)
    maps = rng.standard_normal((6, 4, 3, 5)).astype(np.float32)
    keep = rng.random(len(sample["lidar_points"])) < 0.5
    pidx, cidx, feats = point_feature_pairs(sample, maps)
    kidx, kcam, kfeats = point_feature_pairs(sample, maps, keep=keep)
    sel = keep[pidx]  # the same pairs as filtering afterwards, in the same order
    np.testing.assert_array_equal(kidx, pidx[sel])
    np.testing.assert_array_equal(kcam, cidx[sel])
    torch.testing.assert_close(kfeats, feats[torch.from_numpy(np.nonzero(sel)[0])])
    assert 0 < len(kidx) < len(pidx)
    uniq, inverse, sums = sum_by(np.array([7, 3, 7, 3, 9]), torch.arange(10.0).reshape(5, 2))
    assert uniq.tolist() == [3, 7, 9] and inverse.tolist() == [1, 0, 1, 0, 2]
    assert sums.tolist() == [[8.0, 10.0], [4.0, 6.0], [8.0, 9.0]]


def test_evaluation_labels_ray_free_majority_and_ignore():
    grid = VoxelGrid((0, 10), (0, 1), (0, 1), (10, 1, 1))
    origin = np.array([0.5, 0.5, 0.5])
    pts = np.array([[6.5, 0.5, 0.5], [6.6, 0.5, 0.5], [6.4, 0.4, 0.5]], np.float32)
    labels = np.array([3, 5, 5], np.uint8)
    sem, occ = evaluation_labels(pts, labels, origin, grid)
    assert sem[:6, 0, 0].tolist() == [EMPTY] * 6  # crossed by the rays
    assert sem[6, 0, 0] == 5 and occ[6, 0, 0] == 1  # majority class
    assert sem[7:, 0, 0].tolist() == [IGNORE] * 3 and occ[7:, 0, 0].tolist() == [IGNORE] * 3
    # A voxel with only unlabelled points is occupied but has no semantic label.
    sem, occ = evaluation_labels(pts[:1], np.array([IGNORE]), origin, grid)
    assert occ[6, 0, 0] == 1 and sem[6, 0, 0] == IGNORE


def test_confusion_matrix_iou():
    cm = ConfusionMatrix(3, ["a", "b", "c"])
    cm.update([0, 0, 1, 1], [0, 1, 1, 255])
    iou = cm.iou()
    assert iou[0] == pytest.approx(0.5) and iou[1] == pytest.approx(0.5)
    assert cm.per_class()["c"] is None and cm.miou() == pytest.approx(0.5)


def test_lr_schedule_warmup_and_cosine():
    kw = dict(base_lr=2e-4, total_steps=1000, warmup_steps=100, warmup_start_lr=1e-5, final_lr=1e-6)
    assert 2e-4 * lr_factor(0, **kw) == pytest.approx(1e-5)
    assert 2e-4 * lr_factor(100, **kw) == pytest.approx(2e-4)
    assert 2e-4 * lr_factor(1000, **kw) == pytest.approx(1e-6)
    assert lr_factor(550, **kw) == pytest.approx((1 + 1e-6 / 2e-4) / 2, rel=1e-3)
