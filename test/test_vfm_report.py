"""The VFM report's bookkeeping: per-camera failure shares of the depth calibration and the
pseudo labels scored in both protocols (POP-3D's and the Occ3D-style one)."""

import numpy as np
import pytest

from pop3d_ros.data.classes import EMPTY, IGNORE
from pop3d_ros.vfm.report import DepthMetrics, LabelMetrics


def test_depth_metrics_count_failed_images_per_camera():
    m = DepthMetrics()
    gt = np.full(4, 10.0)
    m.add(np.full(4, 11.0), gt, 0)  # AbsRel 0.1
    m.add(np.full(4, 15.0), gt, 1)  # AbsRel 0.5: failed
    m.add(np.full(4, 10.0), gt, 1)  # AbsRel 0
    r = m.result(["front", "right"])
    assert r["failed_per_camera"] == {"front": 0.0, "right": 0.5}
    assert r["failed"] == pytest.approx(1 / 3, abs=1e-3)
    assert r["median_image_abs_rel"] == pytest.approx(0.1)
    assert r["abs_rel"] == pytest.approx(0.2)  # pooled over the 12 pixels
    assert r["delta1"] == pytest.approx(2 / 3, abs=1e-3)


def test_label_metrics_score_the_occ3d_protocol_at_visible_voxels():
    # voxel:        0  1      2       3  4  5
    labels = np.array([0, EMPTY, IGNORE, 1, 1, EMPTY])  # unlabelled (IGNORE) counts as empty
    dense = np.array([0, EMPTY, 1, 1, EMPTY, 0])
    visible = np.array([True, True, True, True, False, True])
    lidar_sem = np.array([0, EMPTY, IGNORE, 1, 1, IGNORE])  # POP-3D: LiDAR-ray labels
    lidar_occ = np.array([1, 0, -1, 1, 1, -1])
    m = LabelMetrics()
    m.add(labels, lidar_sem, lidar_occ, dense, visible)
    r = m.result()
    # Occ3D, visible voxels 0, 1, 2, 3, 5: occupied TP {0, 3}, FN {2, 5}
    assert r["occ3d_iou"] == pytest.approx(0.5)
    # class 0: TP {0}, FN {5} -> 1/2; class 1: TP {3}, FN {2} -> 1/2; free: TP {1}, FP {2, 5}
    assert r["occ3d_per_class"]["free"] == pytest.approx(1 / 3, abs=1e-3)
    assert r["occ3d_miou"] == pytest.approx(0.5, abs=1e-3)  # Occ3D's: free not in the mean
    assert r["occ3d_miou_with_free"] == pytest.approx((0.5 + 0.5 + 1 / 3) / 3, abs=1e-3)
    # POP-3D protocol at the labelled voxels 0, 1, 3, 4: every one right
    assert r["iou"] == pytest.approx(1.0) and r["miou"] == pytest.approx(1.0)
    bare = LabelMetrics()
    bare.add(labels, lidar_sem, lidar_occ)  # without dense ground truth: POP-3D keys only
    assert "occ3d_iou" not in bare.result()
