"""Synthetic world: determinism, format, and geometric consistency of its sensors and GT."""

import numpy as np
import pytest

from pop3d_ros.data.classes import EMPTY, IGNORE
from pop3d_ros.data.sample import load_sample, project_points, save_sample, validate_sample
from pop3d_ros.data.synthetic import SyntheticWorld, WorldConfig, render_benchmark
from pop3d_ros.data.synthetic.raycast import intersect, intersect_cylinder, intersect_ground
from pop3d_ros.geometry.grid import VoxelGrid

SMALL = dict(num_frames=3, image_width=128, image_height=72, lidar_azimuths=540)


@pytest.fixture(scope="module")
def world():
    return SyntheticWorld(WorldConfig(seed=4, **SMALL))


@pytest.fixture(scope="module")
def sample(world):
    return world.sample(1)


def test_sample_format(world, sample):
    validate_sample(sample)
    assert sample["images"].shape == (6, 72, 128, 3)
    assert sample["prev"] == world.token(0) and sample["next"] == world.token(2)
    assert world.sample(0, occupancy=False)["prev"] is None
    assert len(sample["lidar_points"]) > 10000
    assert sample["occupancy"].shape == (100, 100, 8)
    # the scene is not degenerate: many classes visible, sky and objects present
    assert len(np.unique(sample["semantic"])) >= 8
    assert (sample["semantic"] == IGNORE).any() and np.isinf(sample["depth"]).any()
    with pytest.raises(IndexError, match="out of range"):
        world.sample(3)


def test_same_seed_byte_identical_different_seed_differs(sample):
    again = SyntheticWorld(WorldConfig(seed=4, **SMALL)).sample(1)
    for key, value in sample.items():
        if isinstance(value, np.ndarray):
            assert value.tobytes() == again[key].tobytes(), key
        else:
            assert value == again[key], key
    other = SyntheticWorld(WorldConfig(seed=5, **SMALL)).sample(1)
    assert not np.array_equal(other["images"], sample["images"])
    assert not np.array_equal(other["occupancy"], sample["occupancy"])


def test_ego_moves_between_frames(world):
    a, b = world.ego_to_world(0), world.ego_to_world(2)
    step = world.config.ego_speed * world.config.frame_interval * 2
    assert np.linalg.norm(b[:3, 3] - a[:3, 3]) == pytest.approx(step, rel=0.05)


def test_lidar_points_agree_with_camera_depth(sample):
    uv, valid = project_points(sample)
    pts = sample["lidar_points"].astype(np.float64)
    checked = agree = 0
    for c in range(6):
        ok = valid[c]
        T = np.linalg.inv(sample["cam_to_ego"][c].astype(np.float64))
        z = (pts[ok] @ T[:3, :3].T + T[:3, 3])[:, 2]
        px = np.round(uv[c, ok]).astype(int)
        d = sample["depth"][c, px[:, 1], px[:, 0]]
        checked += ok.sum()
        agree += (np.abs(d - z) < 0.03 * z + 0.05).sum()
    assert checked > 3000
    # pixels and LiDAR rays differ a little: mismatches only at object edges
    assert agree / checked > 0.9


def test_occupancy_contains_every_lidar_point(sample):
    grid = VoxelGrid()
    idx, inside = grid.points_to_index(sample["lidar_points"])
    assert inside.sum() > 10000
    occ = sample["occupancy"][tuple(idx[inside].T)]
    assert not np.any(occ == EMPTY) and not np.any(occ == IGNORE)
    # and the voxel's class is mostly the point's class (boundaries may differ)
    assert (occ == sample["lidar_labels"][inside]).mean() > 0.85


def test_occupancy_on_another_grid(world):
    grid = VoxelGrid((-20.0, 20.0), (-20.0, 20.0), (-2.0, 4.0), (50, 50, 12))
    s = world.sample(2, grid=grid)
    assert s["occupancy"].shape == (50, 50, 12)
    idx, inside = grid.points_to_index(s["lidar_points"])
    occ = s["occupancy"][tuple(idx[inside].T)]
    assert inside.sum() > 1000 and not np.any(occ == EMPTY)


def test_pixel_class_matches_brute_force_ray_cast(world, sample):
    """Independent check of the culled renderer: every primitive vs a random pixel subset."""
    prims, pose = world.primitives(1)
    rng = np.random.default_rng(0)
    for c, cam in enumerate(world.cameras):
        dirs = cam.pixel_rays()
        rows = rng.integers(0, cam.height, 150)
        cols = rng.integers(0, cam.width, 150)
        d = dirs[rows, cols]
        best = intersect_ground(cam.center_ego, d, world.config.camera_range)
        cls = np.full(len(d), IGNORE, dtype=np.int64)
        ground = np.isfinite(best)
        hit = cam.center_ego + d[ground] * best[ground, None]
        world_xy = hit[:, :2] @ pose[:2, :2].T + pose[:2, 3]
        cls[ground] = world.scene.ground_class(world_xy[:, 0], world_xy[:, 1])
        for i in range(len(prims)):
            t, _ = intersect(prims, i, cam.center_ego, d)
            closer = t < best
            best[closer] = t[closer]
            cls[closer] = prims.cls[i]
        np.testing.assert_array_equal(sample["semantic"][c, rows, cols], cls)


def test_render_benchmark_reports_components():
    out = render_benchmark(WorldConfig(seed=1, **SMALL), frames=1)
    assert out["frames"] == 1
    for key in ("cameras_s", "lidar_s", "occupancy_s", "total_s"):
        assert 0 < out[key] < 30


def test_save_load_round_trip(sample, tmp_path):
    save_sample(sample, tmp_path / "f.npz")
    back = load_sample(tmp_path / "f.npz")
    assert back.keys() == sample.keys()
    for key, value in sample.items():
        if isinstance(value, np.ndarray):
            np.testing.assert_array_equal(back[key], value)
        else:
            assert back[key] == value


def test_cylinder_rays_along_axes_hit_or_miss_without_nan_warnings():
    # Axis-aligned rays multiply an infinite cap distance by a zero direction component;
    # that used to flood evaluation logs with "invalid value" warnings.
    dirs = np.array([[0.0, 1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, -1.0], [0.0, 1.0, 0.0]])
    origin = np.array([0.0, -5.0, 0.0])
    with np.errstate(all="raise"):
        t, normal = intersect_cylinder(origin, dirs, np.array([0.0, 0.0, 0.0]), 1.0, 1.0)
    assert t[0] == pytest.approx(4.0)  # straight at the side
    np.testing.assert_allclose(normal[0], [0.0, -1.0, 0.0], atol=1e-9)
    assert np.isinf(t[1]) and np.isinf(t[2])  # parallel to the side, pointing down beside it
    assert np.all(normal[1:3] == 0.0)
