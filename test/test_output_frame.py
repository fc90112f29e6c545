"""Outputs in target_frame: the transform math (core, no ROS), and the installed node over DDS
with a static `target_transform`: markers, cloud, query answer checked against a rotation
computed here independently (axis-angle -> Rodrigues; the node gets the quaternion)."""

from __future__ import annotations

import numpy as np
import pytest

from pop3d_ros.pipeline.output_frame import (
    OutputTransform,
    pose_to_matrix,
    resolve_output_transform,
)

AXIS = np.array([0.3, -0.2, 1.0]) / np.linalg.norm([0.3, -0.2, 1.0])
ANGLE = np.deg2rad(35.0)
T = np.array([12.3, -4.7, 0.9])


def rodrigues(axis, angle):
    k = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    return np.eye(3) + np.sin(angle) * k + (1 - np.cos(angle)) * k @ k


R = rodrigues(AXIS, ANGLE)
# ROS order [x, y, z, qx, qy, qz, qw]: the pose of base_link in the target frame.
POSE = [*T, *(np.sin(ANGLE / 2) * AXIS), np.cos(ANGLE / 2)]


def test_points_and_boxes_map_base_into_target():
    out = resolve_output_transform("base_link", "map", 1.0, POSE)
    assert out.frame == "map" and "target_transform" in out.note
    p = np.array([[1.0, 2.0, 3.0], [-5.0, 0.5, 0.0]], np.float32)
    np.testing.assert_allclose(out.points(p), p @ R.T + T, atol=1e-5)
    c, s = out.boxes(p, np.array([[4.0, 2.0, 1.5], [1, 1, 1]], np.float32))
    np.testing.assert_allclose(c, p @ R.T + T, atol=1e-5)
    # The enclosing axis-aligned box of the rotated box: its 8 corners' extent.
    corners = np.array([[sx, sy, sz] for sx in (-2, 2) for sy in (-1, 1) for sz in (-0.75, 0.75)])
    rc = corners @ R.T
    np.testing.assert_allclose(s[0], rc.max(0) - rc.min(0), atol=1e-5)
    assert out.points(np.zeros((0, 3), np.float32)).shape == (0, 3)


def test_resolution_order_and_reasons():
    same = resolve_output_transform("base_link", "base_link", 1.0, POSE)
    assert same.is_identity and same.frame == "base_link"
    seen = []

    def tf(target, source, stamp):
        seen.append((target, source, stamp))
        return pose_to_matrix([1, 2, 3, 0, 0, 0, 1]) if stamp > 5 else None

    hit = resolve_output_transform("base_link", "odom", 7.5, None, tf)
    assert hit.frame == "odom" and seen[-1] == ("odom", "base_link", 7.5)
    np.testing.assert_allclose(hit.points(np.zeros((1, 3))), [[1, 2, 3]])
    miss = resolve_output_transform("base_link", "odom", 2.0, None, tf)
    assert miss.frame == "base_link" and miss.is_identity
    assert "tf has no base_link -> odom" in miss.note and "outputs stay in base_link" in miss.note
    static = resolve_output_transform("base_link", "odom", 2.0, POSE, tf)
    assert static.frame == "odom" and "target_transform" in static.note  # explicit wins
    none = resolve_output_transform("base_link", "odom", 2.0, [], None, "tf2_ros is not installed")
    assert none.frame == "base_link" and "tf2_ros is not installed" in none.note


def test_bad_target_transform_is_one_line():
    with pytest.raises(ValueError, match="7 finite numbers"):
        pose_to_matrix([1, 2, 3])
    with pytest.raises(ValueError, match="quaternion"):
        pose_to_matrix([0, 0, 0, 0, 0, 0, 0])
    assert OutputTransform("x", np.eye(4)).is_identity


# ----------------------------------------------------------------------------- over DDS
def _on_lattice(points_target, grid_ranges, shape):
    """Map target-frame points back to base_link (independent inverse) and return their voxel
    indices; asserts each is a voxel centre of the grid."""
    base = (np.asarray(points_target, np.float64) - T) @ R  # R^T (p - t), row form
    lo = np.array([r[0] for r in grid_ranges])
    size = np.array([(r[1] - r[0]) / n for r, n in zip(grid_ranges, shape, strict=True)])
    f = (base - lo) / size - 0.5
    np.testing.assert_allclose(f, np.round(f), atol=1e-3)
    idx = np.round(f).astype(int)
    assert np.all(idx >= 0) and np.all(idx < np.array(shape))
    return idx


@pytest.mark.ros
@pytest.mark.slow  # ~25 s: its own node process (model load) on a loaded 2-core machine
def test_node_publishes_in_target_frame(tmp_path):
    import rclpy
    from diagnostic_msgs.msg import DiagnosticArray
    from node_fixtures import (
        CameraPublisher,
        diagnostics_values,
        query,
        start_node,
        wait_model_state,
    )
    from pipeline_fixtures import write_tiny_checkpoint
    from rclpy.context import Context
    from ros_harness import NodeProcess, RosTestNode, wait_until
    from sensor_msgs.msg import PointCloud2
    from visualization_msgs.msg import MarkerArray

    from pop3d_ros.ros.conversions import stamp_to_sec

    write_tiny_checkpoint(tmp_path / "model.pt", occupancy_bias=2.0)
    ranges, shape = [(-25.6, 25.6), (-25.6, 25.6), (-2.0, 4.4)], (16, 16, 4)  # tiny_config
    context = Context()
    rclpy.init(context=context)
    ros = RosTestNode(context, "pop3d_frame_test")
    procs = []
    try:
        markers = ros.collect(MarkerArray, "/pop3d/occupancy_markers")
        cloud = ros.collect(PointCloud2, "/pop3d/occupancy_cloud")
        diag = ros.collect(DiagnosticArray, "/diagnostics")
        cams = CameraPublisher(ros)

        def start(cmd):
            procs.append(NodeProcess(cmd))
            return procs[-1]

        proc = start_node(
            start, tmp_path, model_dir=str(tmp_path), cache_dir=str(tmp_path / "cache"),
            target_frame="map", target_transform=[float(v) for v in POSE],
        )  # fmt: skip
        wait_model_state(ros, proc, loaded=True)
        cams.wait_connected()
        stamp = 500.0

        def arrived():
            cams.publish_set(stamp)
            c = cloud.last
            return c is not None and stamp_to_sec(c.header.stamp) == pytest.approx(stamp)

        assert wait_until(arrived, 60.0, interval=0.5), proc.output()
        msg = cloud.last
        assert msg.header.frame_id == "map"
        pts = np.frombuffer(bytes(msg.data), dtype="<f4").reshape(msg.width, 4)[:, :3]
        idx = _on_lattice(pts, ranges, shape)
        assert len({tuple(i) for i in idx}) == len(idx) > 0  # distinct voxels
        assert wait_until(lambda: markers.last is not None, 10.0)
        (marker,) = markers.last.markers
        assert marker.header.frame_id == "map"
        mpts = np.array([(p.x, p.y, p.z) for p in marker.points])
        np.testing.assert_allclose(sorted(map(tuple, mpts)), sorted(map(tuple, pts)), atol=1e-4)

        r = query(ros, "car", top_k=3)
        assert r.success, r.message
        assert r.header.frame_id == "map" and r.heatmap.header.frame_id == "map"
        heat = np.frombuffer(bytes(r.heatmap.data), dtype="<f4").reshape(r.heatmap.width, 4)
        np.testing.assert_allclose(
            sorted(map(tuple, heat[:, :3])), sorted(map(tuple, pts)), atol=1e-4
        )
        top = np.array([(p.x, p.y, p.z) for p in r.top_points])
        _on_lattice(top, ranges, shape)
        best = heat[np.argmax(heat[:, 3]), :3]
        np.testing.assert_allclose(top[0], best, atol=1e-4)

        # Grounded objects: the best voxel alone above min_score -> one single-voxel object,
        # centred on that voxel in `map`, sized as the voxel's box rotated into `map`.
        g = query(ros, "car", top_k=1, min_score=float(r.top_scores[0]) - 1e-6)
        assert g.success and g.objects, g.message
        obj = g.objects[0]
        assert obj.num_voxels == 1, obj
        np.testing.assert_allclose([obj.center.x, obj.center.y, obj.center.z], best, atol=1e-4)
        voxel = np.array([(hi - lo) / n for (lo, hi), n in zip(ranges, shape, strict=True)])
        np.testing.assert_allclose(
            [obj.size.x, obj.size.y, obj.size.z], np.abs(R) @ voxel, atol=1e-4
        )

        diag.clear()
        values = diagnostics_values(diag.wait_for(1, 10.0)[-1])["model"][2]
        assert values["output_frame"] == "map"
        assert values["output_transform"] == "target_transform parameter"
    finally:
        for p in procs:
            p.stop()
        ros.close()
        rclpy.shutdown(context=context)


def test_node_params_thread_plan_and_target_transform():
    from pop3d_ros.ros.params import NodeParams

    p = NodeParams(threads=3)
    p.validate()
    assert p.thread_plan == (3, 3) and p.target_transform == []  # all zeros = none
    one = NodeParams(threads=1, target_transform=[1, 2, 3, 0, 0, 0, 1])
    one.validate()
    assert one.thread_plan == (1, 2) and one.target_transform == [1.0, 2.0, 3.0, 0, 0, 0, 1.0]
    with pytest.raises(ValueError, match="7 finite numbers"):
        NodeParams(target_transform=[1.0, 2.0]).validate()
    with pytest.raises(ValueError, match="threads"):
        NodeParams(threads=-1).validate()
    with pytest.raises(ValueError, match="precision"):
        NodeParams(precision="int4").validate()
