"""The map's node parameters and odometry conversion, without DDS (node_map, map_settings)."""

from __future__ import annotations

import numpy as np
import pytest
from nav_msgs.msg import Odometry

from pop3d_ros.ros.map_settings import map_settings
from pop3d_ros.ros.node_map import odometry_pose, refusal_kind
from pop3d_ros.ros.params import NodeParams


def test_map_parameters_are_checked_with_the_parameter_named():
    for bad, name in (
        ({"map_language_every": 0}, "map_language_every"),
        ({"map_max_voxels": 10}, "map_max_voxels"),
        ({"map_radius_m": -1.0}, "map_radius_m"),
        ({"map_publish_period_s": 0.0}, "map_publish_period_s"),
        ({"map_file": "map.pkl"}, "map_file"),
        ({"max_pose_age_s": 0.0}, "max_pose_age_s"),
        ({"costmap_min_height": 2.0, "costmap_max_height": 1.0}, "max_height"),
        ({"pose_source": "gps"}, "pose_source"),
        ({"map_frame": " "}, "map_frame"),
    ):
        with pytest.raises(ValueError, match=name):
            NodeParams(mapping=True, **bad).validate()
    s = map_settings(NodeParams(map_file="~/maps/a.npz", map_language_every=3))
    assert s.load_path == s.save_path and str(s.save_path).endswith("maps/a.npz")
    assert "~" not in str(s.save_path)
    assert s.overrides["language_every"] == 3
    empty = map_settings(NodeParams())
    assert empty.load_path is None and empty.save_path.name == "pop3d_map.npz"


def _odom(x=1.0, y=2.0, z=0.5, q=(0.0, 0.0, 0.0, 1.0)):
    msg = Odometry()
    p, o = msg.pose.pose.position, msg.pose.pose.orientation
    p.x, p.y, p.z = x, y, z
    o.x, o.y, o.z, o.w = q
    return msg


def test_odometry_pose_is_base_to_frame_and_refuses_what_is_not_a_pose():
    s = np.sqrt(0.5)
    pose, why = odometry_pose(_odom(q=(0.0, 0.0, s, s)))  # 90 degrees about z
    assert why == ""
    # base_link's x axis points along the frame's y axis; its origin sits at (1, 2, 0.5).
    np.testing.assert_allclose(pose @ [1.0, 0.0, 0.0, 1.0], [1.0, 3.0, 0.5, 1.0], atol=1e-9)
    assert odometry_pose(_odom(x=float("nan")))[0] is None
    assert odometry_pose(_odom(q=(0.0, 0.0, 0.0, float("inf"))))[0] is None
    pose, why = odometry_pose(_odom(q=(0.0, 0.0, 0.0, 0.0)))
    assert pose is None and refusal_kind(why) == "not_rotation"


def test_refusal_kinds_of_the_pose_buffer_reasons():
    from pop3d_ros.mapping import PoseBuffer

    buf = PoseBuffer()
    eye = np.eye(4)
    assert buf.add(10.0, eye) == ""
    assert refusal_kind(buf.add(9.0, eye)) == "old_stamp"
    far = eye.copy()
    far[0, 3] = 1000.0
    assert refusal_kind(buf.add(10.5, far)) == "jump"
    nan = eye.copy()
    nan[0, 3] = np.nan
    assert refusal_kind(buf.add(11.0, nan)) == "not_finite"
    assert refusal_kind(buf.lookup(20.0)[1]) == "no_pose"
    assert refusal_kind(PoseBuffer().lookup(1.0)[1]) == "no_pose"
