"""Ring-free LiDAR occupancy targets (training/lidar_occupancy.py) on hand-built sweeps.

Grid: 5 x 5 x 5 voxels of 0.8 m over [0, 4) m; voxel i spans [0.8 i, 0.8 i + 0.8). A ray
along x at y = z = 2.0 runs through the centre line of the row (x, 2, 2).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from pop3d_ros.data.classes import IGNORE
from pop3d_ros.geometry.grid import VoxelGrid, occupancy_of_points
from pop3d_ros.training.lidar_occupancy import (
    UNOBSERVED,
    LidarOccupancyConfig,
    lidar_occupancy_target,
    sweep_evidence,
    target_quality,
)
from pop3d_ros.training.losses import OccupancyLoss

GRID = VoxelGrid((0.0, 4.0), (0.0, 4.0), (0.0, 4.0), (5, 5, 5))
RAYS = LidarOccupancyConfig(free_space="rays")


def sweep(points, origin=(0.0, 2.0, 2.0), ego_x=0.0):
    pose = np.eye(4)
    pose[0, 3] = ego_x
    return {
        "lidar_points": np.asarray(points, np.float32).reshape(-1, 3),
        "lidar_origin": np.asarray(origin, np.float32),
        "ego_to_world": pose,
    }


def drive(frames: dict[int, dict]):
    return lambda sample, offset: frames.get(offset)


def test_points_mode_is_pop3d_target():
    s = sweep([[3.6, 2.0, 2.0], [0.1, 0.1, 0.1]])
    expected = occupancy_of_points(s["lidar_points"], GRID)
    assert np.array_equal(lidar_occupancy_target(s, GRID, LidarOccupancyConfig()), expected)


def test_rays_free_only_where_crossed():
    occ = lidar_occupancy_target(sweep([[3.6, 2.0, 2.0]]), GRID, RAYS)
    # Return at x = 3.6 -> voxel 4; the ray crosses voxels 0..3 of the row.
    assert occ[4, 2, 2] == 1
    assert [int(v) for v in occ[:4, 2, 2]] == [0, 0, 0, 0]
    rest = np.ones(GRID.shape, bool)
    rest[:, 2, 2] = False
    assert np.all(occ[rest] == UNOBSERVED)


def test_core_z_keeps_grazing_rays_from_freeing_voxels():
    # z = 2.3 lies 0.875 of the way up voxel layer 2: 0.375 voxel above its centre.
    s = sweep([[3.6, 2.0, 2.3]], origin=(0.0, 2.0, 2.3))
    hit, free = sweep_evidence(s["lidar_points"], s["lidar_origin"], GRID, core_z=1.0)
    assert free.reshape(GRID.shape)[:4, 2, 2].all()
    hit, free = sweep_evidence(s["lidar_points"], s["lidar_origin"], GRID, core_z=0.5)
    assert not free.any() and hit.reshape(GRID.shape)[4, 2, 2]
    # 0.25 voxel above the centre is inside the central half: freed.
    s = sweep([[3.6, 2.0, 2.2]], origin=(0.0, 2.0, 2.2))
    _, free = sweep_evidence(s["lidar_points"], s["lidar_origin"], GRID, core_z=0.5)
    assert free.reshape(GRID.shape)[:4, 2, 2].all()


def test_adjacent_sweep_is_moved_by_the_ego_poses():
    current = sweep([[0.4, 2.0, 0.4]])
    # The next frame's ego is 0.8 m further along x: its return at x = 2.0 is at 2.8 here.
    nxt = sweep([[2.0, 2.0, 2.0]], ego_x=0.8)
    cfg = LidarOccupancyConfig(free_space="rays", sweeps=(1,))
    occ = lidar_occupancy_target(current, GRID, cfg, drive({1: nxt}))
    assert occ[3, 2, 2] == 1
    # Its ray starts at x = 0.8 (voxel 1) and is freed up to voxel 2.
    assert occ[1, 2, 2] == 0 and occ[2, 2, 2] == 0
    # A drive's end (no frame at that offset) is skipped.
    cfg = LidarOccupancyConfig(free_space="rays", sweeps=(1, 2))
    assert np.array_equal(lidar_occupancy_target(current, GRID, cfg, drive({1: nxt})), occ)


@pytest.mark.parametrize(
    "remove, votes, kept", [(False, 1, True), (True, 1, False), (True, 2, True)]
)
def test_moving_returns_are_outvoted_by_rays_that_see_through(remove, votes, kept):
    through = [[3.6, 2.0, 2.0]]  # frees voxels 0..3 of the row
    current, later = sweep(through), sweep(through)
    ghost = sweep([[2.0, 2.0, 2.0]])  # a return in voxel 2 that two other sweeps see through
    cfg = LidarOccupancyConfig(
        free_space="rays", sweeps=(-1, 1), remove_moving=remove, moving_votes=votes
    )
    occ = lidar_occupancy_target(current, GRID, cfg, drive({-1: ghost, 1: later}))
    assert occ[2, 2, 2] == (1 if kept else 0)
    assert occ[4, 2, 2] == 1  # the current sweep's own return always stays


def test_static_return_hit_by_most_sweeps_stays():
    current = sweep([[3.6, 2.0, 2.0]])
    static = sweep([[2.0, 2.0, 2.0]])
    cfg = LidarOccupancyConfig(free_space="rays", sweeps=(-1, 1), remove_moving=True)
    occ = lidar_occupancy_target(current, GRID, cfg, drive({-1: static, 1: static}))
    assert occ[2, 2, 2] == 1  # 2 hits against 1 sweep seeing through


def test_config_is_checked():
    for bad in (
        LidarOccupancyConfig(free_space="voxels"),
        LidarOccupancyConfig(free_space="rays", core_z=0.0),
        LidarOccupancyConfig(free_space="rays", sweeps=(0,)),
        LidarOccupancyConfig(sweeps=(1,)),
        LidarOccupancyConfig(free_space="rays", remove_moving=True, moving_votes=0),
    ):
        with pytest.raises(ValueError):
            bad.validate()
    with pytest.raises(ValueError, match="neighbour"):
        lidar_occupancy_target(sweep([[1, 1, 1]]), GRID, LidarOccupancyConfig("rays", sweeps=(1,)))


def test_options_reach_the_occupancy_config():
    from pop3d_ros.training.cli_train import build_recipe
    from pop3d_ros.training.stage import check_settings

    ring_free = build_recipe(["--recipe", "default"])[0].stages[0].settings.occupancy
    assert (ring_free.free_space, ring_free.core_z, ring_free.sweeps) == (
        "rays",
        0.5,
        (-2, -1, 1, 2),
    )
    assert ring_free.remove_moving and ring_free.moving_votes == 2
    flags = ["--occupancy.free_space", "rays", "--occupancy.sweeps", "-1", "1"]
    s = build_recipe(flags)[0].stages[0].settings
    assert s.occupancy.sweeps == (-1, 1) and not s.occupancy.remove_moving
    assert build_recipe([])[0].stages[0].settings.occupancy.free_space == "points"
    with pytest.raises(ValueError):  # adjacent sweeps need ray free space
        check_settings(build_recipe(["--occupancy.sweeps", "-1", "1"])[0].stages[0].settings)
    with pytest.raises(ValueError):
        check_settings(build_recipe(["--unobserved_weight", "-1"])[0].stages[0].settings)


def test_unobserved_voxels_are_a_weighted_empty_outside_lovasz():
    logits = torch.tensor([[0.0, 0.0], [0.0, 0.0], [0.0, 2.0], [1.0, 1.0]], requires_grad=True)
    target = torch.tensor([0, 1, UNOBSERVED, IGNORE])
    w = 0.25
    terms = OccupancyLoss(unobserved_weight=w)(logits, target)
    # CE of the unobserved voxel as empty: log(1 + e^2).
    expected = (2 * math.log(2) + w * math.log(1 + math.e**2)) / (2 + w)
    assert terms["occ_ce"].item() == pytest.approx(expected, rel=1e-5)
    # Lovasz sees the two observed voxels only: same value as without the unobserved one.
    alone = OccupancyLoss()(logits[:2], target[:2])
    assert terms["occ_lovasz"].item() == pytest.approx(alone["occ_lovasz"].item())
    terms["occ"].backward()
    assert logits.grad[2, 1] > 0 and logits.grad[3].abs().sum() == 0
    # Weight 0: unobserved voxels are ignored.
    zero = OccupancyLoss(unobserved_weight=0.0)(logits, target)
    assert zero["occ_ce"].item() == pytest.approx(math.log(2), rel=1e-5)


def test_target_quality_against_dense_truth():
    gt = np.full(GRID.shape, 16, np.uint8)  # EMPTY
    gt[4, 2, 2] = 3
    gt[0, 0, 0] = 3
    gt[1, 1, 1] = IGNORE
    occ = lidar_occupancy_target(sweep([[3.6, 2.0, 2.0]]), GRID, RAYS)
    q = target_quality(occ, gt)
    assert q["occupied_precision"] == 1.0 and q["occupied_recall"] == 0.5
    assert q["free_precision"] == 1.0 and q["iou"] == 0.5
    assert q["labelled"] == pytest.approx(5 / 124)


def test_ring_free_targets_on_the_synthetic_drive_cover_more_true_surface():
    """Real ego poses and sweeps: aggregating the neighbours' returns must find more of the
    dense ground-truth surface than one sweep, while staying precise."""
    from pop3d_ros.data.sources import neighbour_lookup, synthetic_key_of_token, synthetic_source
    from pop3d_ros.model.config import get_preset
    from pop3d_ros.training.recipe import load_recipe

    grid = get_preset("cpu-small").voxel_grid
    keys, make = synthetic_source([7], 5, grid=grid, image_hw=(36, 64))
    sample = make(keys[2])
    neighbour = neighbour_lookup(make, synthetic_key_of_token)
    single = target_quality(
        lidar_occupancy_target(sample, grid, LidarOccupancyConfig()), sample["occupancy"]
    )
    default = load_recipe("default").stages[0].settings.occupancy  # the default's targets
    ring_free = lidar_occupancy_target(sample, grid, default, neighbour)
    assert set(np.unique(ring_free)) == {0, 1, UNOBSERVED}
    multi = target_quality(ring_free, sample["occupancy"])
    assert multi["occupied_recall"] > 1.3 * single["occupied_recall"]
    assert multi["occupied_precision"] > 0.9
    assert multi["free_precision"] > single["free_precision"]


def camera_frame(points, ego_x=0.0):
    """A one-camera frame: camera at (0, 2, 2) looking along +x (REP-103 ego axes)."""
    frame = sweep(points, ego_x=ego_x)
    cam_to_ego = np.eye(4)
    cam_to_ego[:3, :3] = [[0, 0, 1], [-1, 0, 0], [0, -1, 0]]  # optical z -> ego x
    cam_to_ego[:3, 3] = [0.0, 2.0, 2.0]
    frame.update(
        images=np.zeros((1, 16, 16, 3), np.uint8),
        intrinsics=np.array([[[8.0, 0, 8.0], [0, 8.0, 8.0], [0, 0, 1]]]),
        cam_to_ego=cam_to_ego[None],
        camera_names=["front"],
    )
    return frame


def test_sweep_features_average_the_teacher_over_frames_in_kept_voxels():
    from pop3d_ros.training.rays import relative_pose
    from pop3d_ros.training.targets import voxel_feature_targets

    current = camera_frame([[2.0, 2.0, 2.0]])  # voxel (2, 2, 2)
    # 0.8 m further on: its (1.2, 2, 2) is (2.0, 2, 2) here; its (2.0, 2, 2) is voxel (3, 2, 2).
    nxt = camera_frame([[1.2, 2.0, 2.0], [2.0, 2.0, 2.0]], ego_x=0.8)
    here = torch.tensor([1.0, 0.0]).view(1, 2, 1, 1).expand(1, 2, 4, 4)
    there = torch.tensor([0.0, 1.0]).view(1, 2, 1, 1).expand(1, 2, 4, 4)
    alone = voxel_feature_targets(current, here, GRID)
    assert alone["voxel_index"].tolist() == [GRID.flat_index(np.array([[2, 2, 2]]))[0]]
    kept = np.zeros(GRID.num_voxels, bool)
    kept[GRID.flat_index(np.array([[2, 2, 2]]))] = True  # voxel (3, 2, 2) is not occupied now
    both = voxel_feature_targets(
        current, here, GRID, [(nxt, there, relative_pose(current, nxt), kept.__getitem__)]
    )
    assert both["voxel_index"].tolist() == alone["voxel_index"].tolist()
    assert both["features"][0].tolist() == pytest.approx([0.5, 0.5])
    assert both["weight"].tolist() == [2.0]
    assert LidarOccupancyConfig(free_space="rays", sweeps=(1,), sweep_features=True).to_dict()[
        "sweep_features"
    ]
    assert "sweep_features" not in RAYS.to_dict()  # older caches keep matching settings
    with pytest.raises(ValueError):
        LidarOccupancyConfig(free_space="rays", sweep_features=True).validate()
