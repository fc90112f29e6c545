"""Occ3D-style evaluation: camera-visibility ray casting, metrics, the Occ3D-nuScenes reader."""

import numpy as np
import pytest

from pop3d_ros.data.classes import CLASS_ID, EMPTY, IGNORE
from pop3d_ros.evaluation.occ3d import (
    OCC3D_GRID,
    Occ3DEvaluation,
    Occ3DMetrics,
    camera_visibility,
    find_occ3d_labels,
    read_occ3d_labels,
)
from pop3d_ros.geometry.grid import VoxelGrid

GRID = VoxelGrid((0.0, 20.0), (-2.0, 2.0), (-2.0, 2.0), (20, 4, 4))
CAR, ROAD = CLASS_ID["car"], CLASS_ID["driveable_surface"]


def _wall_sample(depth=10.0, hw=(9, 9), f=2.0):
    """One camera at (0.5, 0, 0) looking along +x with a narrow field of view (focal f px on
    a 9 x 9 image: +-2 px -> about +-63 deg... narrowed by f) at a frontal wall `depth` m away."""
    h, w = hw
    K = np.array([[f * w, 0, (w - 1) / 2], [0, f * h, (h - 1) / 2], [0, 0, 1]], np.float32)
    # optical (x right, y down, z forward) -> ego (x forward, y left, z up)
    T = np.eye(4, dtype=np.float32)
    T[:3, :3] = [[0, 0, 1], [-1, 0, 0], [0, -1, 0]]
    T[:3, 3] = [0.5, 0.0, 0.0]
    return {
        "intrinsics": K[None],
        "cam_to_ego": T[None],
        "depth": np.full((1, h, w), depth, np.float32),
    }


def test_visibility_stops_at_the_surface_voxel():
    vis = camera_visibility(_wall_sample(10.0), GRID, pixel_stride=1)
    # the ray along the axis (y = z = 0 -> voxels j, k in {1, 2}) sees x in [0, 11)
    along = vis[:, 1:3, 1:3].any((1, 2))
    assert along[:11].all() and not along[11:].any()
    # a narrow frustum (half-angle ~ atan(0.25)) never reaches the grid's side walls near
    # the camera: |y| <= 0.25 x there
    assert not vis[:3, 0].any() and not vis[:3, 3].any()


def test_visibility_reaches_into_a_surface_on_a_voxel_face():
    # the wall at x = 10.0 m, the face between voxels 9 and 10: the surface voxel is 10 (the
    # voxel behind the face), reached only through the quarter voxel past the depth
    vis = camera_visibility(_wall_sample(9.5), GRID, pixel_stride=1)
    along = vis[:, 1:3, 1:3].any((1, 2))
    assert along[:11].all() and not along[11:].any()


def test_sky_pixels_see_through_the_grid():
    s = _wall_sample(np.inf)
    vis = camera_visibility(s, GRID, pixel_stride=1)
    assert vis[:, 1:3, 1:3].any((1, 2)).all()


def test_occ3d_metrics_match_hand_counts():
    gt = np.array([CAR, CAR, ROAD, EMPTY, EMPTY, EMPTY, IGNORE, CAR])
    pred = np.array([CAR, ROAD, ROAD, CAR, EMPTY, EMPTY, CAR, EMPTY])
    visible = np.array([1, 1, 1, 1, 1, 1, 1, 0], bool)  # the last voxel is unseen
    m = Occ3DMetrics()
    m.add(pred, gt, visible, prior=np.array([1, 1, 1, 1, 1, 1, 1, 1]))
    r = m.result()
    # occupied: gt {0, 1, 2}, pred {0, 1, 2, 3} over the 6 scored voxels -> 3 / 4
    assert r["occ3d_iou"] == pytest.approx(0.75)
    # car: tp 1, fp 1 (voxel 3), fn 1 (voxel 1) -> 1/3; road: tp 1, fp 1 -> 1/2;
    # free: tp 2, fn 1 -> 2/3. Occ3D's mIoU: classes 0-16 in either (car, road), free out;
    # the former average: the classes present in the truth with free
    assert r["occ3d_per_class"]["car"] == pytest.approx(1 / 3, abs=1e-4)
    assert r["occ3d_per_class"]["free"] == pytest.approx(2 / 3, abs=1e-4)
    assert r["occ3d_miou"] == pytest.approx((1 / 3 + 1 / 2) / 2, abs=1e-4)
    assert r["occ3d_miou_with_free"] == pytest.approx((1 / 3 + 1 / 2 + 2 / 3) / 3, abs=1e-4)
    assert r["occ3d_prior_iou"] == pytest.approx(3 / 6)
    assert r["occ3d_visible_voxels"] == 6


def _write_occ3d(root, scene, token, sem, cam):
    d = root / scene / token
    d.mkdir(parents=True)
    np.savez_compressed(d / "labels.npz", semantics=sem, mask_lidar=cam, mask_camera=cam)
    return d / "labels.npz"


def test_read_occ3d_labels_maps_classes_and_masks(tmp_path):
    sem = np.full(OCC3D_GRID.shape, 17, np.uint8)
    sem[100, 100, 2] = 4  # Occ3D car
    sem[0, 0, 0] = 0  # others
    sem[:, :, 1] = 11  # driveable surface layer
    cam = np.zeros(OCC3D_GRID.shape, np.uint8)
    cam[80:120, 80:120] = 1
    path = _write_occ3d(tmp_path, "scene-0001", "tok1", sem, cam)
    lab = read_occ3d_labels(path)
    assert lab["semantics"][100, 100, 2] == CAR
    assert lab["semantics"][0, 0, 0] == IGNORE
    assert lab["semantics_occ3d"][0, 0, 0] == 0 and lab["semantics_occ3d"][100, 100, 2] == 4
    assert lab["semantics"][5, 5, 1] == ROAD and lab["semantics"][5, 5, 9] == EMPTY
    assert lab["mask_camera"].dtype == bool and lab["mask_camera"].sum() == 40 * 40 * 16
    assert find_occ3d_labels(tmp_path, {"token": "tok1", "scene": "x"}) == path
    with pytest.raises(FileNotFoundError):
        find_occ3d_labels(tmp_path, {"token": "nope"})
    bad = tmp_path / "bad.npz"
    np.savez(bad, semantics=np.zeros((10, 10, 2)), mask_lidar=0, mask_camera=0)
    with pytest.raises(ValueError, match="shape"):
        read_occ3d_labels(bad)


def test_evaluation_at_the_occ3d_grid(tmp_path):
    # truth made of 2 x 2 x 2 blocks of Occ3D voxels, so a 0.8 m model grid aligned with
    # them reproduces it exactly where it covers the scene
    sem = np.full(OCC3D_GRID.shape, 17, np.uint8)
    sem[:, :, 2:4] = 11  # road, z in [-0.2, 0.6)
    sem[110:114, 98:102, 4:8] = 4  # a car, x in [4, 5.6) m, z in [0.6, 2.2)
    cam = np.zeros(OCC3D_GRID.shape, np.uint8)
    cam[100:160, 80:120] = 1  # x in [0, 24) m, y in [-8, 8) m
    _write_occ3d(tmp_path, "scene-0001", "tok1", sem, cam)
    # the model covers x, y in [-20, 20): Occ3D rows >= 150 (x >= 20 m) count as free
    model = VoxelGrid((-20.0, 20.0), (-20.0, 20.0), (-1.0, 5.4), (50, 50, 8))
    pred = np.full(model.shape, EMPTY, np.uint8)
    pred[:, :, 1] = ROAD
    pred[30:32, 24:26, 2:4] = CAR  # x in [4, 5.6), y in [-0.8, 0.8), z in [0.6, 2.2)
    ev = Occ3DEvaluation(model, labels_root=tmp_path)
    ev.add({"token": "tok1", "scene": "scene-0001"}, pred.reshape(-1))
    r = ev.result()
    # visible occupied truth: road 60 rows x 40 cols x 2 layers, car 4 x 4 x 4; the road
    # beyond 20 m (10 rows x 40 x 2 = 800 voxels) is missed, nothing else is wrong
    occ_gt = 60 * 40 * 2 + 64
    assert r["occ3d_iou"] == pytest.approx((occ_gt - 800) / occ_gt, abs=1e-4)
    assert r["occ3d_per_class"]["car"] == pytest.approx(1.0)
    assert r["occ3d_per_class"]["driveable_surface"] == pytest.approx(4000 / 4800, abs=1e-4)
    assert r["occ3d_visible_voxels"] == 60 * 40 * 16


def test_evaluator_reports_occ3d_keys_on_synthetic_frames():
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).parent))
    from train_fixtures import tiny_model_config

    from pop3d_ros.data.synthetic import SyntheticWorld, WorldConfig
    from pop3d_ros.evaluation.protocol import Evaluator
    from pop3d_ros.evaluation.zeroshot import ZeroShotClassifier, class_phrase_embeddings
    from pop3d_ros.model.pop3d import build_model
    from pop3d_ros.text.synthetic_text import SyntheticTextSpace

    cfg = tiny_model_config()
    world = SyntheticWorld(
        WorldConfig(
            seed=3,
            num_frames=1,
            image_width=64,
            image_height=36,
            grid=cfg.voxel_grid,
            lidar_azimuths=180,
        )
    )
    sample = world.sample(0)
    classifier = ZeroShotClassifier(class_phrase_embeddings(SyntheticTextSpace()))
    prior = np.zeros(cfg.grid.shape, np.float32)
    prior[:, :, 0] = 1.0
    ev = Evaluator(
        build_model(cfg), cfg, classifier, prior=prior, occ3d=Occ3DEvaluation(cfg.voxel_grid)
    )
    ev.add(sample)
    r = ev.result()
    assert {"occ3d_iou", "occ3d_miou", "occ3d_per_class", "occ3d_prior_iou"} <= set(r)
    assert {"occ3d_miou_with_free", "ray_iou", "ray_iou_1m", "ray_iou_2m", "ray_iou_4m"} <= set(r)
    assert set(r["ray_iou_per_class"]) == set(r["occ3d_per_class"]) - {"free"}
    vis = camera_visibility(sample, cfg.voxel_grid)
    assert r["occ3d_visible_voxels"] == int((vis & (sample["occupancy"] != IGNORE)).sum())
    assert 0 < r["occ3d_visible_voxels"] < cfg.voxel_grid.num_voxels


def test_ray_iou_on_occ3d_labels(tmp_path):
    from pop3d_ros.evaluation.occ3d import occ3d_to_ours

    sem = np.full(OCC3D_GRID.shape, 17, np.uint8)
    sem[:, :, 2:4] = 11  # road
    sem[110:114, 98:102, 4:8] = 4  # a car 4 m ahead
    sem[60:64, 150:160, 4:10] = 0  # "others": a class of its own in RayIoU
    cam = np.ones(OCC3D_GRID.shape, np.uint8)
    _write_occ3d(tmp_path, "scene-0001", "tok1", sem, cam)
    sample = {
        "token": "tok1",
        "scene": "scene-0001",
        "ego_to_world": np.eye(4),
        "lidar_origin": np.array([0.9, 0.0, 1.8]),
    }
    pred = occ3d_to_ours(sem)
    pred[pred == IGNORE] = EMPTY  # "others" (ours: ignored) is never predicted
    exact = Occ3DEvaluation(OCC3D_GRID, labels_root=tmp_path)
    exact.add(sample, pred.reshape(-1))
    r = exact.result()
    # a prediction equal to the truth everywhere except "others", which no model predicts
    assert r["ray_iou_per_class"]["car"] == {"1m": 1.0, "2m": 1.0, "4m": 1.0}
    # rays that meet "others" in the truth go on to the road in the prediction: a few more
    # road rays predicted than true
    assert 0.99 < r["ray_iou_per_class"]["driveable_surface"]["1m"] < 1.0
    assert r["ray_iou_per_class"]["others"]["4m"] == 0.0  # counted, never predicted
    assert r["ray_iou_per_class"]["bus"]["1m"] is None
    assert r["ray_iou"] == pytest.approx(2 / 3, abs=0.01)  # car 1, road ~1, others 0
    # the car predicted 2.4 m (6 voxels) further along x: some rays within 4 m, none within 2 m
    moved = pred.copy()
    moved[110:114, 98:102, 4:8] = EMPTY
    moved[116:120, 98:102, 4:8] = CAR
    far = Occ3DEvaluation(OCC3D_GRID, labels_root=tmp_path)
    far.add(sample, moved.reshape(-1))
    car = far.result()["ray_iou_per_class"]["car"]
    assert car["1m"] == 0.0 and car["2m"] == 0.0 and car["4m"] > 0.3
