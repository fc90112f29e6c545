"""Occ3D's mIoU and SparseOcc's RayIoU as their authors compute them: each checked against a
small numpy port of the reference code (Occ3D devkit `Metric_mIoU`; SparseOcc
`loaders/ray_metrics.py`, `loaders/ego_pose_dataset.py`, `lib/dvr/dvr.cu`) written here, on
shared label arrays."""

import math

import numpy as np
import pytest

from pop3d_ros.data.classes import CLASS_ID, EMPTY, IGNORE
from pop3d_ros.evaluation.metrics import ConfusionMatrix
from pop3d_ros.evaluation.occ3d import Occ3DMetrics, occ3d_to_ours, ours_to_occ3d
from pop3d_ros.evaluation.ray_iou import RayIoU, query_directions, scene_origins
from pop3d_ros.geometry.grid import VoxelGrid

CAR, ROAD, BUS = CLASS_ID["car"], CLASS_ID["driveable_surface"], CLASS_ID["bus"]


# --- a port of Occ3D's Metric_mIoU (num_classes=18, use_image_mask=True) ---------------------
def ref_metric_miou(preds, gts, masks, n_cl=18):
    hist = np.zeros((n_cl, n_cl))
    for pred, gt, mask in zip(preds, gts, masks, strict=True):
        p, g = pred[mask].flatten(), gt[mask].flatten()
        k = (g >= 0) & (g < n_cl)
        hist += np.bincount(n_cl * g[k].astype(int) + p[k].astype(int), minlength=n_cl**2).reshape(
            n_cl, n_cl
        )
    with np.errstate(divide="ignore", invalid="ignore"):
        iou = np.diag(hist) / (hist.sum(1) + hist.sum(0) - np.diag(hist))
    return np.nanmean(iou[: n_cl - 1]), iou


def _random_frames(seed, n=3, shape=(12, 10, 4)):
    """Occ3D-id frames: ground truth 0-17 with some 255, predictions 1-17 (a zero-shot model
    never predicts "others"), a camera mask; bus (Occ3D 3) only ever predicted, trailer (9)
    in neither."""
    rng = np.random.default_rng(seed)
    frames = []
    for _ in range(n):
        gt = rng.choice([0, 1, 4, 5, 11, 13, 15, 17, 17, 17, 255], size=shape).astype(np.uint8)
        pred = rng.choice([1, 3, 4, 5, 11, 13, 15, 17, 17], size=shape).astype(np.uint8)
        mask = rng.random(shape) < 0.7
        frames.append((pred, gt, mask))
    return frames


def test_occ3d_miou_equals_metric_miou_on_shared_arrays():
    frames = _random_frames(0)
    ref, ref_iou = ref_metric_miou(*zip(*frames, strict=True))
    m = Occ3DMetrics()
    for pred, gt, mask in frames:
        # ours in our ids; the ground truth also in Occ3D's own ids ("others" kept)
        m.add(occ3d_to_ours(pred), occ3d_to_ours(gt), mask, gt_occ3d=gt)
    r = m.result(digits=None)
    assert r["occ3d_miou"] == pytest.approx(ref, abs=1e-6)
    assert r["occ3d_per_class"]["bus"] == 0.0 and r["occ3d_per_class"]["trailer"] is None
    assert r["occ3d_per_class"]["others"] == pytest.approx(ref_iou[0], abs=1e-6) == 0.0
    assert "bus" in r["occ3d_classes_evaluated"] and "trailer" not in r["occ3d_classes_evaluated"]
    assert "free" not in r["occ3d_classes_evaluated"]
    # geometry: occupied = any class 0-16, over the same voxels
    tp = fp = fn = 0
    for pred, gt, mask in frames:
        k = mask & (gt != 255)
        po, go = pred[k] < 17, gt[k] < 17
        tp, fp, fn = tp + np.sum(po & go), fp + np.sum(po & ~go), fn + np.sum(~po & go)
    assert r["occ3d_iou"] == pytest.approx(tp / (tp + fp + fn), abs=1e-6)


def test_occ3d_miou_counts_a_class_only_predicted_and_the_old_average_does_not():
    # voxel:   0    1    2     3      4      5
    gt = np.array([CAR, CAR, ROAD, EMPTY, EMPTY, EMPTY])
    pred = np.array([CAR, CAR, ROAD, BUS, EMPTY, EMPTY])  # a bus where there is none
    m = Occ3DMetrics()
    m.add(pred, gt, np.ones(6, bool))
    r = m.result()
    # Occ3D: car 1, road 1, bus 0 (predicted, absent from the truth) -> 2/3
    assert r["occ3d_miou"] == pytest.approx(2 / 3, abs=1e-4)
    assert r["occ3d_classes_evaluated"] == ["bus", "car", "driveable_surface"]
    # the former average: ground-truth classes + free (2/3): (1 + 1 + 2/3) / 3
    assert r["occ3d_miou_with_free"] == pytest.approx((2 + 2 / 3) / 3, abs=1e-4)
    assert ours_to_occ3d(np.array([0, 15, EMPTY, IGNORE])).tolist() == [1, 16, 17, 255]


def test_miou_averages_over_ground_truth_classes_not_predicted_ones():
    # gt has classes a, b; the prediction adds c. IoU a = 1, b = 1/3, c = 0.
    cm = ConfusionMatrix(3, ["a", "b", "c"])
    cm.update(np.array([0, 0, 1, 2, 2]), np.array([0, 0, 1, 1, 1]))
    assert cm.present().tolist() == [True, True, False]
    assert cm.miou() == pytest.approx((1 + 1 / 3) / 2)  # over predicted classes: 4/9
    assert cm.per_class() == {"a": 1.0, "b": pytest.approx(1 / 3), "c": None}


# --- a port of SparseOcc's RayIoU --------------------------------------------------------------
def ref_generate_lidar_rays():
    pitch_angles = []
    for k in range(10):
        angle = math.pi / 2 - math.atan(k + 1)
        pitch_angles.append(-angle)
    while pitch_angles[-1] < 0.21:
        delta = pitch_angles[-1] - pitch_angles[-2]
        pitch_angles.append(pitch_angles[-1] + delta)
    lidar_rays = []
    for pitch_angle in pitch_angles:
        for azimuth_angle in np.arange(0, 360, 1):
            azimuth_angle = np.deg2rad(azimuth_angle)
            x = np.cos(pitch_angle) * np.cos(azimuth_angle)
            y = np.cos(pitch_angle) * np.sin(azimuth_angle)
            z = np.sin(pitch_angle)
            lidar_rays.append((x, y, z))
    return np.array(lidar_rays, dtype=np.float32)


def ref_render_forward(occ_zyx, origin, points, max_step=1000):
    """dvr.cu render_forward_cuda_kernel in "test" phase, one ray at a time (voxel units)."""
    vzsize, vysize, vxsize = occ_zyx.shape
    dists, coords = [], []
    for xe, ye, ze in points:
        xo, yo, zo = origin
        vx, vy, vz = int(xo), int(yo), int(zo)
        rx, ry, rz = xe - xo, ye - yo, ze - zo
        gt_d = math.sqrt(rx * rx + ry * ry + rz * rz)
        dx, dy, dz = rx / gt_d, ry / gt_d, rz / gt_d
        step_x, step_y, step_z = (
            (1 if dx >= 0 else -1),
            (1 if dy >= 0 else -1),
            (1 if dz >= 0 else -1),
        )
        t_max_x = (vx + (0 if step_x < 0 else 1) - xo) / dx if dx != 0 else math.inf
        t_max_y = (vy + (0 if step_y < 0 else 1) - yo) / dy if dy != 0 else math.inf
        t_max_z = (vz + (0 if step_z < 0 else 1) - zo) / dz if dz != 0 else math.inf
        t_dx = step_x / dx if dx != 0 else math.inf
        t_dy = step_y / dy if dy != 0 else math.inf
        t_dz = step_z / dz if dz != 0 else math.inf
        path, d = [], []
        step, was_inside = 0, False
        while True:
            inside = 0 <= vx < vxsize and 0 <= vy < vysize and 0 <= vz < vzsize
            if inside:
                was_inside = True
                path.append((vx, vy, vz))
            elif was_inside:
                break
            if t_max_x < t_max_y:
                if t_max_x < t_max_z:
                    _d, vx, t_max_x = t_max_x, vx + step_x, t_max_x + t_dx
                else:
                    _d, vz, t_max_z = t_max_z, vz + step_z, t_max_z + t_dz
            else:
                if t_max_y < t_max_z:
                    _d, vy, t_max_y = t_max_y, vy + step_y, t_max_y + t_dy
                else:
                    _d, vz, t_max_z = t_max_z, vz + step_z, t_max_z + t_dz
            if inside:
                d.append(_d)
            step += 1
            if step > max_step:
                break
        exp_d, coord = d[-1], path[-1]
        for (x, y, z), di in zip(path, d, strict=True):
            if occ_zyx[z, y, x] > 0.5:
                exp_d, coord = di, (x, y, z)
                break
        dists.append(exp_d)
        coords.append(coord)
    return np.array(dists), np.array(coords)


def ref_process_one_sample(sem, lidar_rays, origins, pc_min, voxel_size, free_id=17):
    occ = (sem < free_id).astype(np.float64).transpose(2, 1, 0)
    out = []
    for o in origins:
        ends = lidar_rays + o[None]
        dist, coord = ref_render_forward(
            occ, (o - pc_min) / voxel_size, (ends - pc_min) / voxel_size
        )
        label = sem[coord[:, 0], coord[:, 1], coord[:, 2]]
        out.append(np.stack([label.astype(np.float64), dist * voxel_size], 1))
    return np.concatenate(out)


def ref_calc_rayiou(pcd_pred_list, pcd_gt_list, n_names=18):
    thresholds = [1, 2, 4]
    gt_cnt, pred_cnt = np.zeros(n_names), np.zeros(n_names)
    tp_cnt = np.zeros([len(thresholds), n_names])
    for pcd_pred, pcd_gt in zip(pcd_pred_list, pcd_gt_list, strict=True):
        for j, threshold in enumerate(thresholds):
            tp_dist_mask = np.abs(pcd_pred[:, 1] - pcd_gt[:, 1]) < threshold
            for i in range(n_names):
                cls_mask_pred, cls_mask_gt = pcd_pred[:, 0] == i, pcd_gt[:, 0] == i
                if j == 0:
                    gt_cnt[i] += cls_mask_gt.sum()
                    pred_cnt[i] += cls_mask_pred.sum()
                tp_cnt[j][i] += np.logical_and(cls_mask_gt & cls_mask_pred, tp_dist_mask).sum()
    with np.errstate(divide="ignore", invalid="ignore"):
        return [(tp_cnt[j] / (gt_cnt + pred_cnt - tp_cnt[j]))[:-1] for j in range(3)]


def ref_origins(global_from_ego, ego_from_lidar, ref, half_range):
    """EgoPoseDataset.__getitem__'s output origins (|x|, |y| < half_range there: 39)."""

    def pose(i):
        return global_from_ego[i] @ ego_from_lidar[i]

    ref_lidar_from_global = np.linalg.inv(pose(ref))
    out = []
    for i in range(len(global_from_ego)):
        origin_tf = np.zeros(3) if i == ref else (ref_lidar_from_global @ pose(i))[:3, 3]
        origin_tf = (ego_from_lidar[ref][:3] @ np.append(origin_tf, 1.0).T).T
        if np.abs(origin_tf[0]) < half_range and np.abs(origin_tf[1]) < half_range:
            out.append(origin_tf)
    if len(out) > 8:
        select_idx = np.round(np.linspace(0, len(out) - 1, 8)).astype(np.int64)
        out = [out[i] for i in select_idx]
    return np.stack(out)


def _rot_z(a):
    c, s = np.cos(a), np.sin(a)
    return np.array([[c, -s, 0], [s, c, 0], [0, 0, 1.0]])


def _scene(n=10, seed=0):
    rng = np.random.default_rng(seed)
    g_from_e, e_from_l = [], []
    for i in range(n):
        t = np.eye(4)
        t[:3, :3] = _rot_z(0.05 * i)
        t[:3, 3] = [1.3 * i, 0.2 * i, 0.0]
        g_from_e.append(t)
        lid = np.eye(4)
        lid[:3, :3] = _rot_z(rng.uniform(-np.pi, np.pi))  # the LiDAR's own yaw: no effect
        lid[:3, 3] = [0.94 + rng.uniform(-0.05, 0.05), 0.0, 1.84]
        e_from_l.append(lid)
    return g_from_e, e_from_l


GRID = VoxelGrid((-8.0, 8.0), (-8.0, 8.0), (-1.0, 2.2), (40, 40, 8))  # 0.4 m voxels


def test_query_directions_are_sparseoccs_lidar_rays():
    np.testing.assert_array_equal(query_directions(), ref_generate_lidar_rays())


def test_scene_origins_are_egoposedatasets():
    g_from_e, e_from_l = _scene()
    for ref in (0, 4, 9):
        expected = ref_origins(g_from_e, e_from_l, ref, half_range=8.0 - 1.0)
        ours = scene_origins(g_from_e, [m[:3, 3] for m in e_from_l], ref, GRID)
        np.testing.assert_allclose(ours, expected, atol=1e-9)
        assert 1 < len(ours) <= 8


def _labels(seed):
    rng = np.random.default_rng(seed)
    sem = np.full(GRID.shape, 17, np.uint8)
    sem[:, :, 1] = 11  # road layer, z in [-0.6, -0.2)
    sem[:, :, 0] = rng.choice([11, 13], size=GRID.shape[:2])
    for _ in range(25):  # boxes of random classes
        x, y = rng.integers(0, 36, 2)
        z = rng.integers(2, 6)
        sem[x : x + rng.integers(1, 5), y : y + rng.integers(1, 5), 2:z] = rng.choice(
            [1, 4, 10, 15]
        )
    return sem


def test_ray_iou_equals_sparseoccs_on_shared_arrays():
    g_from_e, e_from_l = _scene(n=4)
    dirs = ref_generate_lidar_rays()[::9].astype(np.float64)  # a spread subset, for time
    dirs /= np.linalg.norm(dirs, axis=1, keepdims=True)
    ours = RayIoU(directions=dirs)
    pcd_pred_list, pcd_gt_list = [], []
    pc_min = np.array(GRID.lower)
    for i in range(2):
        gt = _labels(10 + i)
        pred = gt.copy()
        pred[gt == 4] = 10  # cars called trucks
        pred = np.roll(pred, 1, axis=0)  # everything 0.4 m further along x
        pred[5:9, 30:34, 2:5] = 3  # a bus nowhere in the truth
        origins = ref_origins(g_from_e, e_from_l, i, half_range=7.0)
        p = ref_process_one_sample(pred, dirs, origins, pc_min, 0.4)
        g = ref_process_one_sample(gt, dirs, origins, pc_min, 0.4)
        valid = g[:, 0].astype(np.int32) != 17
        pcd_pred_list.append(p[valid])
        pcd_gt_list.append(g[valid])
        ours.add(pred, gt, origins, GRID)
    iou_list = ref_calc_rayiou(pcd_pred_list, pcd_gt_list)
    r = ours.result(digits=None)
    assert r["ray_iou"] == pytest.approx(np.nanmean(iou_list), abs=1e-6)
    for j, key in enumerate(("ray_iou_1m", "ray_iou_2m", "ray_iou_4m")):
        assert r[key] == pytest.approx(np.nanmean(iou_list[j]), abs=1e-6)
    per = r["ray_iou_per_class"]
    for c, name in ((4, "car"), (10, "truck"), (11, "driveable_surface"), (3, "bus")):
        for j, t in enumerate(("1m", "2m", "4m")):
            assert per[name][t] == pytest.approx(iou_list[j][c], abs=1e-6)
    assert per["bus"]["4m"] == 0.0 and per["car"]["1m"] == 0.0  # a class only one side has
    assert per["trailer"]["1m"] is None  # in neither: nan-skipped
    assert 0.0 < r["ray_iou_1m"] < r["ray_iou_4m"] < 1.0
