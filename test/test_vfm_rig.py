"""Rig views in the depth calibration: two cameras of one rig at one instant fix the metric
scale through their extrinsic baseline, where the ego motion gives none."""

import numpy as np

from pop3d_ros.data.classes import IGNORE
from pop3d_ros.geometry.rig import CAMERA_NAMES, load_rig
from pop3d_ros.vfm.calibrate import CalibrationConfig, calibrate_frame
from pop3d_ros.vfm.views import neighbour_permutation, view_transform

H, W, F_PX = 32, 64, 40.0
SKY_ROWS = 8  # the top quarter of each image is sky (relative inverse depth 0, ignored)


def _cam_to_ego(yaw_deg: float, position) -> np.ndarray:
    """Optical frame (x right, y down, z forward) -> ego (x forward, y left, z up)."""
    y = np.deg2rad(yaw_deg)
    T = np.eye(4)
    T[:3, 0] = [np.sin(y), -np.cos(y), 0.0]  # right
    T[:3, 1] = [0.0, 0.0, -1.0]  # down
    T[:3, 2] = [np.cos(y), np.sin(y), 0.0]  # forward
    T[:3, 3] = position
    return T


def _texture(y, z):
    """Smooth colour of the wall at ego (y, z), three channels in [0, 1]."""
    return np.stack(
        [
            0.5 + 0.25 * np.sin(2.1 * y) * np.sin(1.7 * z) + 0.2 * np.sin(0.9 * y + 3.1 * z),
            0.5 + 0.3 * np.sin(1.3 * y + 0.4) * np.cos(2.3 * z),
            0.5 + 0.3 * np.cos(0.7 * y - 1.9 * z + 1.0),
        ],
        -1,
    ).clip(0, 1)


def _render(cams, K):
    """Images of the wall x - 0.3 y = 8 (ego frame) and each pixel's depth along the axis."""
    v, u = np.mgrid[0:H, 0:W].astype(np.float64)
    rays = np.stack([(u - K[0, 2]) / K[0, 0], (v - K[1, 2]) / K[1, 1], np.ones_like(u)], -1)
    n, d = np.array([1.0, -0.3, 0.0]), 8.0
    images, depth = [], []
    for T in cams:
        dirs = rays @ T[:3, :3].T  # ego-frame direction per pixel, optical z = 1
        z = (d - n @ T[:3, 3]) / (dirs @ n)  # axis depth where the ray meets the wall
        p = T[:3, 3] + dirs * z[..., None]
        img = _texture(p[..., 1], p[..., 2])
        img[:SKY_ROWS] = 0.8
        z[:SKY_ROWS] = np.inf
        images.append((img * 255).round().astype(np.uint8))
        depth.append(z)
    return np.stack(images), np.stack(depth)


def _pair():
    """A two-camera rig 1 m apart, yawed +-15 deg, standing still: previous and next frames
    are the same images from the same poses, so the temporal error is 0 at every scale."""
    K = np.array([[F_PX, 0, (W - 1) / 2], [0, F_PX, (H - 1) / 2], [0, 0, 1.0]])
    cams = np.stack([_cam_to_ego(15, [0, 0.5, 1.5]), _cam_to_ego(-15, [0, -0.5, 1.5])])
    images, depth = _render(cams, K)
    sample = {
        "token": "pair",
        "images": images,
        "intrinsics": np.stack([K, K]).astype(np.float32),
        "cam_to_ego": cams.astype(np.float32),
        "ego_to_world": np.eye(4, dtype=np.float32),
    }
    classes = np.zeros((2, H, W), np.uint8)
    classes[:, :SKY_ROWS] = IGNORE
    relative = np.where(np.isfinite(depth), 1.0 / depth, 0.0)  # exact inverse depth
    return sample, depth, relative, classes


def _abs_rel(pred, depth):
    m = np.isfinite(depth)
    return float(np.mean(np.abs(pred[m] - depth[m]) / depth[m]))


def test_rig_views_recover_the_scale_the_ego_motion_cannot():
    sample, depth, relative, classes = _pair()
    still = [dict(sample, token="prev"), dict(sample, token="next")]
    common = dict(downsample=1, stage2=False, num_scales=64)
    paper_cfg = CalibrationConfig(rig_shifts=(), **common)  # the paper: other frames only
    paper = calibrate_frame(sample, still, relative, classes, paper_cfg, [classes, classes])
    rig = calibrate_frame(
        sample,
        still,
        relative,
        classes,
        CalibrationConfig(rig_shifts=(-1, 1), **common),
        [classes, classes],
    )
    # metric depth from the rig's 1 m baseline: within the 7.6 % candidate step
    assert _abs_rel(rig["stage1_depth"], depth) < 0.06
    # without rig views a still ego gives no scale: the error is ~0 at every candidate, the
    # pick is rounding noise
    assert paper["stage1_error"].max() < 1e-3
    assert _abs_rel(paper["stage1_depth"], depth) > 0.5
    # one minimum over all views (rig_weight None) is held at 0 by the still temporal views
    pooled = CalibrationConfig(rig_shifts=(1,), rig_weight=None, **common)
    flat = calibrate_frame(sample, still, relative, classes, pooled, [classes, classes])
    assert _abs_rel(flat["stage1_depth"], depth) > 0.5


def test_view_transform_of_a_rig_view_is_the_extrinsic_baseline():
    sample, *_ = _pair()
    T = view_transform(sample, sample, [1, 0]).numpy()
    # camera 0's centre seen from camera 1: 1 m to the left in the ego frame (+y)
    centre_in_1 = T[0, :3, 3]
    ego = sample["cam_to_ego"][1, :3, :3] @ centre_in_1
    np.testing.assert_allclose(ego, [0.0, 1.0, 0.0], atol=1e-5)
    np.testing.assert_allclose(
        view_transform(sample, sample).numpy(), np.eye(4)[None].repeat(2, 0), atol=1e-5
    )


def test_rig_neighbours_follow_the_yaw_of_the_cameras():
    cams = load_rig(None, names=CAMERA_NAMES, width=256, height=144)
    c2e = np.stack([c.cam_to_ego for c in cams])
    name = dict(enumerate(CAMERA_NAMES))
    left = {name[c]: name[int(p)] for c, p in enumerate(neighbour_permutation(c2e, 1))}
    right = {name[c]: name[int(p)] for c, p in enumerate(neighbour_permutation(c2e, -1))}
    assert left["cam_front"] == "cam_front_left" and right["cam_front"] == "cam_front_right"
    assert left["cam_back_left"] == "cam_back" and right["cam_back_right"] == "cam_back"
    assert left["cam_back"] == "cam_back_right" and right["cam_back"] == "cam_back_left"


def test_options_choose_rig_views_or_the_paper():
    import pytest

    from pop3d_ros.training.cli_train import build_recipe

    def calibration(*argv):
        return build_recipe(list(argv))[0].stages[0].settings.vfm.calibration

    assert calibration().rig_shifts == (-1, 1)
    assert calibration("--vfm.calibration.rig_shifts").rig_shifts == ()  # the paper's views
    pooled = calibration("--set", "rig_shifts=[1]", "--set", "rig_weight=null")
    assert pooled.rig_shifts == (1,) and pooled.rig_weight is None
    with pytest.raises(SystemExit):
        calibration("--vfm.calibration.rig_shifts", "left")
