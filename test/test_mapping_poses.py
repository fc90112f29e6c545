"""Choosing the pose of a camera set from odometry: interpolation, age, bad poses."""

import numpy as np
import pytest

from pop3d_ros.geometry.transforms import make_transform, yaw_rotation
from pop3d_ros.mapping import PoseBuffer, PoseConfig
from pop3d_ros.mapping.poses import interpolate_pose, pose_problem


def pose(x, y=0.0, yaw=0.0):
    return make_transform(yaw_rotation(yaw), [x, y, 0.0])


def test_interpolation_between_two_poses():
    buf = PoseBuffer(PoseConfig(max_pose_age_s=0.5))
    assert buf.add(10.0, pose(0.0, 0.0, 0.0)) == ""
    assert buf.add(11.0, pose(8.0, 2.0, np.pi / 2)) == ""
    got, why = buf.lookup(10.25)
    assert why == ""
    # a quarter of the way: (2, 0.5), yaw 22.5 degrees
    np.testing.assert_allclose(got[:3, 3], [2.0, 0.5, 0.0], atol=1e-9)
    c, s = np.cos(np.pi / 8), np.sin(np.pi / 8)
    np.testing.assert_allclose(got[:3, :3], [[c, -s, 0], [s, c, 0], [0, 0, 1]], atol=1e-9)
    exact, _ = buf.lookup(11.0)
    np.testing.assert_allclose(exact, pose(8.0, 2.0, np.pi / 2), atol=1e-9)
    # slerp takes the short way round: from +170 to -170 degrees passes 180, not 0
    mid = interpolate_pose(pose(0, yaw=np.deg2rad(170)), pose(0, yaw=np.deg2rad(-170)), 0.5)
    np.testing.assert_allclose(mid[:2, 0], [-1.0, 0.0], atol=1e-9)


def test_no_pose_within_max_age():
    buf = PoseBuffer(PoseConfig(max_pose_age_s=0.2))
    none, why = buf.lookup(5.0)
    assert none is None and "no odometry" in why
    buf.add(10.0, pose(0.0))
    buf.add(10.1, pose(1.0))
    late, _ = buf.lookup(10.25)  # 0.15 s after the newest: held
    np.testing.assert_allclose(late[:3, 3], [1.0, 0.0, 0.0])
    for stamp, words in [(10.35, "newest pose is 0.250 s older"),
                         (9.7, "oldest kept pose is 0.300 s later")]:  # fmt: skip
        got, why = buf.lookup(stamp)
        assert got is None and "max_pose_age_s=0.2" in why and words in why
    buf.add(11.0, pose(9.0))  # a 0.9 s gap: its middle is 0.45 s from either end
    got, why = buf.lookup(10.55)
    assert got is None and "odometry gap of 0.900 s" in why


def test_bad_poses_are_refused_and_change_nothing():
    buf = PoseBuffer(PoseConfig(max_speed_mps=70.0, max_jump_m=5.0))
    assert buf.add(1.0, pose(0.0)) == ""
    nan = pose(1.0)
    nan[1, 3] = np.nan
    skew = pose(1.0)
    skew[0, 1] = 0.5
    cases = [
        (1.5, nan, "NaN"),
        (1.5, skew, "not a rotation"),
        (1.5, pose(1000.0), "jumped 1000.0 m in 0.500 s (at most 40.0 m"),  # 70 * 0.5 + 5
        (0.5, pose(0.1), "not newer"),
        (1.0, pose(0.1), "not newer"),
        (float("nan"), pose(0.1), "not finite"),
        (1.5, pose(2e6), "max_abs_coordinate_m"),
    ]
    for stamp, p, why in cases:
        assert why in buf.add(stamp, p)
    assert len(buf) == 1 and buf.refused == len(cases)
    got, _ = buf.lookup(1.0)
    np.testing.assert_allclose(got, pose(0.0))
    # a real re-anchoring: far away but reachable after enough time (70 m/s * 20 s + 5)
    assert buf.add(21.0, pose(1000.0)) == ""


def test_bounded_buffer_and_pose_problem():
    buf = PoseBuffer(PoseConfig(max_poses=3, max_pose_age_s=0.05))
    for i in range(5):
        buf.add(float(i), pose(float(i)))
    assert len(buf) == 3
    assert buf.lookup(0.0)[0] is None  # dropped
    assert pose_problem(np.eye(3)) == "pose must be 4x4, got shape (3, 3)"
    assert pose_problem("x") != ""
    with pytest.raises(ValueError, match="max_poses"):
        PoseConfig(max_poses=1)
