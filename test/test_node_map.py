"""The node's online map over real DDS (`mapping: true`): poses from nav_msgs/Odometry, bad
odometry refused, the costmap of a hand-placed obstacle, save / clear / load, and query_map
answering for what has left the view.

The tiny random model predicts most voxels occupied (occupancy_bias 2), so every mapped set
leaves occupied voxels with language features; which ones the map holds is read back from the
node, and the checks compare the node's answers with each other and with the test's own
arithmetic on the message fields (cell of a point from OccupancyGrid.info)."""

from __future__ import annotations

import numpy as np
import pytest
from diagnostic_msgs.msg import DiagnosticArray
from lifecycle_msgs.msg import Transition
from nav_msgs.msg import OccupancyGrid, Odometry
from node_fixtures import CameraPublisher, diagnostics_values, lifecycle_call, query, start_node
from pipeline_fixtures import tiny_config, write_tiny_checkpoint
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
from ros_harness import wait_until
from sensor_msgs.msg import PointCloud2
from std_srvs.srv import Trigger

from pop3d_ros.ros.conversions import cloud_to_array, sec_to_stamp, stamp_to_sec

pytestmark = pytest.mark.ros

NODE = "/pop3d_occupancy"
MAP = {"mapping": True, "map_frame": "odom", "map_publish_period_s": 0.2}
LATCHED = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE,
                     durability=DurabilityPolicy.TRANSIENT_LOCAL)  # fmt: skip


class Rig:
    """Cameras and odometry of the test's ego, and the node's occupancy cloud (the proof that
    a set went through the worker, and so through the map)."""

    def __init__(self, ros, proc):
        self.ros, self.proc = ros, proc
        self.cams = CameraPublisher(ros)
        self.odom = ros.publisher(Odometry, "/odom", 10)
        self.cloud = ros.collect(PointCloud2, "/pop3d/occupancy_cloud")
        self.diag = ros.collect(DiagnosticArray, "/diagnostics")

    def connect(self, prime_from: float | None = 50.0):
        self.cams.wait_connected()
        assert wait_until(lambda: self.odom.get_subscription_count() >= 1, 30.0)
        if prime_from is not None:
            self.prime(prime_from)

    def prime(self, stamp: float):
        """Odometry at rest from `stamp` on until the node has some: a reader that has not
        yet matched this writer (discovery is not symmetric) drops what is written before."""
        stamps = iter(stamp + 0.1 * i for i in range(1000))

        def arrived():
            self.publish_odom(next(stamps))
            return int(self.map_diag(wait=1)["odom_kept"])

        assert wait_until(arrived, 30.0, interval=0.1), self.proc.output()

    def publish_odom(self, stamp, x=0.0, y=0.0, qw=1.0, frame="odom"):
        msg = Odometry()
        msg.header.stamp = sec_to_stamp(stamp)
        msg.header.frame_id, msg.child_frame_id = frame, "base_link"
        msg.pose.pose.position.x, msg.pose.pose.position.y = float(x), float(y)
        msg.pose.pose.orientation.w = float(qw)
        self.odom.publish(msg)

    def pose(self, stamp, x=0.0):
        """A good pose, and wait until the node keeps it (topics are not ordered across each
        other: a set published after its odometry may be processed before it arrives)."""
        kept = int(self.map_diag(wait=1)["odom_kept"])
        self.publish_odom(stamp, x=x)
        ok = wait_until(lambda: int(self.map_diag(wait=1)["odom_kept"]) > kept, 15.0)
        assert ok, self.proc.output()

    def run_set(self, stamp, timeout=30.0):
        """Publish the camera set `stamp` until the node's cloud for it arrives."""

        def done():
            self.cams.publish_set(stamp)
            return [m for m in list(self.cloud.messages)
                    if abs(stamp_to_sec(m.header.stamp) - stamp) < 1e-6]  # fmt: skip

        assert wait_until(done, timeout, interval=0.3), f"set {stamp}:\n{self.proc.output()}"

    def map_diag(self, wait: int = 2) -> dict:
        """The map's diagnostics, built after this call (the first may be in flight)."""
        self.diag.clear()
        return diagnostics_values(self.diag.wait_for(wait, 15.0)[-1])["map"][2]


def _trigger(ros, name):
    clients = ros.__dict__.setdefault("_trigger_clients", {})
    if name not in clients:
        clients[name] = ros.client(Trigger, name)
        ros.wait_for_service(clients[name], timeout=60.0)
    return ros.call(clients[name], Trigger.Request(), timeout=30.0)


def _query_map(ros, text="car", top_k=5):
    return query(ros, text, top_k=top_k, service="/query_map")


def _top(answer):
    return [(p.x, p.y, p.z) for p in answer.top_points], list(answer.top_scores)


def test_sets_without_a_pose_are_refused_with_the_reason(ros_node, node_process, tmp_path):
    write_tiny_checkpoint(tmp_path / "model.pt", occupancy_bias=2.0)
    proc = start_node(node_process, tmp_path, model_dir=str(tmp_path), **MAP)
    rig = Rig(ros_node, proc)
    rig.connect(prime_from=None)
    rig.run_set(100.0)  # no odometry at all
    values = wait_until(lambda: (v := rig.map_diag()) and int(v["sets_refused_no_pose"]) and v,
                        30.0)  # fmt: skip
    assert values, proc.output()
    assert "no odometry received yet" in values["last_set_refusal"]
    assert int(values["frames_integrated"]) == 0 and int(values["observed_voxels"]) == 0
    answer = _query_map(ros_node)
    assert not answer.success and "no language features" in answer.message

    rig.prime(60.0)
    rig.pose(101.0)  # a pose, but 2 s away from the next set
    rig.run_set(103.0)
    values = rig.map_diag()
    assert "max_pose_age_s=0.25" in values["last_set_refusal"], values
    assert int(values["frames_integrated"]) == 0

    rig.pose(104.0)  # positive control: a pose at the set's stamp maps it
    rig.run_set(104.0)
    values = rig.map_diag()
    assert int(values["frames_integrated"]) == 1, values
    assert int(values["occupied_voxels"]) > 0
    assert _query_map(ros_node).success
    proc.assert_alive()


def test_bad_odometry_is_refused_and_leaves_the_map_intact(ros_node, node_process, tmp_path):
    write_tiny_checkpoint(tmp_path / "model.pt", occupancy_bias=2.0)
    proc = start_node(node_process, tmp_path, model_dir=str(tmp_path), **MAP)
    rig = Rig(ros_node, proc)
    map_cloud = ros_node.collect(PointCloud2, "/pop3d/map_cloud", LATCHED)
    rig.connect()
    rig.pose(100.0)
    rig.run_set(100.0)
    before = rig.map_diag()
    assert int(before["frames_integrated"]) == 1, before
    kept = int(before["odom_kept"])

    rig.publish_odom(100.5, x=float("nan"))
    rig.publish_odom(100.6, x=1000.0)  # 1 km in 0.6 s
    rig.publish_odom(99.0, x=0.5)  # a stamp from the past
    rig.publish_odom(100.7, frame="map")  # another frame
    rig.publish_odom(100.8, qw=0.0)  # no rotation
    refused = wait_until(lambda: (v := rig.map_diag()) and int(v["odom_refused"]) >= 5 and v,
                         20.0)  # fmt: skip
    assert refused, proc.output()
    for kind in ("not_finite", "jump", "old_stamp", "wrong_frame", "not_rotation"):
        assert int(refused[f"odom_refused_{kind}"]) == 1, (kind, refused)
    assert int(refused["odom_kept"]) == kept  # none of them
    # The set at 100.6 has no pose (the jump was refused), so the map does not move there.
    rig.run_set(100.6)
    values = rig.map_diag()
    assert int(values["frames_integrated"]) == 1 and int(values["sets_refused_no_pose"]) == 1

    rig.pose(101.0, x=5.0)  # the vehicle goes on: mapped again
    rig.run_set(101.0)
    values = rig.map_diag()
    assert int(values["frames_integrated"]) == 2, values
    proc.assert_alive()
    assert _query_map(ros_node).success

    def cloud_after():
        m = map_cloud.last
        return m if m is not None and stamp_to_sec(m.header.stamp) == 101.0 else None

    msg = wait_until(cloud_after, 15.0)
    assert msg is not None and msg.header.frame_id == "odom"
    pts = cloud_to_array(msg)
    xyz = np.stack([pts["x"], pts["y"], pts["z"]], axis=1)
    assert len(xyz) == int(values["occupied_voxels"])
    # Two grids of +-25.6 m around x = 0 and x = 5: nothing near the 1 km jump, nothing NaN.
    assert np.isfinite(xyz).all() and np.abs(xyz[:, 0]).max() < 5.0 + 25.6 + 3.2


def test_costmap_of_a_hand_placed_obstacle(ros_node, node_process, tmp_path):
    """A map file made by the map core with known probabilities; the node loads it
    (map_file) and publishes the costmap. Cells are found from OccupancyGrid.info."""
    from mapping_fixtures import camera

    from pop3d_ros.mapping import FramePrediction, MapConfig, OnlineMap

    write_tiny_checkpoint(tmp_path / "model.pt", occupancy_bias=2.0)
    grid = tiny_config().voxel_grid  # 16 x 16 x 4 voxels of 3.2 x 3.2 x 1.6 m, z from -2 m
    prob = np.full(grid.shape, 0.05, np.float32)
    prob[:, :, 0] = 0.95  # the road layer (centres at z = -1.2 m): below the costmap's band
    prob[10, 5, 1] = 0.95  # the obstacle: centre (8.0, -8.0, 0.4), within 0.2-2.0 m
    prob[3, 12, 3] = 0.95  # a canopy at z = 3.6 m: above the band, so the column is free
    m = OnlineMap(MapConfig.for_grid(grid, visibility="all"))
    frame = FramePrediction(grid, prob, (camera((0.5, 0.5, 0.5)),))
    assert m.integrate(frame, np.eye(4), 1.0).accepted
    shifted = np.eye(4)
    shifted[:2, 3] = 51.2  # a second place: the corners between the two stay unknown
    assert m.integrate(frame, shifted, 2.0).accepted
    path = m.save(tmp_path / "hand.npz")

    costmaps = ros_node.collect(OccupancyGrid, "/pop3d/costmap", LATCHED)
    proc = start_node(node_process, tmp_path, model_dir=str(tmp_path), map_file=str(path),
                      **MAP)  # fmt: skip
    msg = costmaps.wait_for(1, 60.0)[-1]
    assert msg.header.frame_id == "odom"
    info = msg.info
    assert info.resolution == pytest.approx(3.2)
    data = np.asarray(msg.data, np.int8).reshape(info.height, info.width)

    def cell(x, y):
        col = int(np.floor((x - info.origin.position.x) / info.resolution))
        row = int(np.floor((y - info.origin.position.y) / info.resolution))
        return int(data[row, col])

    assert cell(8.0, -8.0) == 100  # the obstacle
    assert cell(8.0 + 51.2, -8.0 + 51.2) == 100  # seen again from the second place
    assert cell(-25.6 + 3.5 * 3.2, -25.6 + 12.5 * 3.2) == 0  # under the canopy: free
    assert cell(0.0 + 1.6, 1.6) == 0  # observed, nothing in the band
    assert cell(-20.0, 60.0) == -1  # never observed
    assert int((data == 100).sum()) == 2
    assert set(np.unique(data).tolist()) == {-1, 0, 100}
    proc.assert_alive()


def test_save_clear_and_load_round_trip(ros_node, node_process, tmp_path):
    write_tiny_checkpoint(tmp_path / "model.pt", occupancy_bias=2.0)
    path = tmp_path / "saved.npz"
    proc = start_node(node_process, tmp_path, lifecycle=True, model_dir=str(tmp_path),
                      map_file=str(path), **MAP)  # fmt: skip
    assert lifecycle_call(ros_node, NODE, Transition.TRANSITION_CONFIGURE), proc.output()
    answer = _query_map(ros_node)
    assert not answer.success and "inactive" in answer.message
    assert lifecycle_call(ros_node, NODE, Transition.TRANSITION_ACTIVATE)
    rig = Rig(ros_node, proc)
    rig.connect()
    rig.pose(100.0)
    rig.run_set(100.0)
    first = _query_map(ros_node)
    assert first.success and len(first.top_points) == 5, first.message

    saved = _trigger(ros_node, "/pop3d/save_map")
    assert saved.success and str(path) in saved.message, saved.message
    assert path.is_file()
    assert _trigger(ros_node, "/pop3d/clear_map").success
    cleared = _query_map(ros_node)
    assert not cleared.success and "no language features" in cleared.message
    assert int(rig.map_diag()["occupied_voxels"]) == 0

    assert lifecycle_call(ros_node, NODE, Transition.TRANSITION_DEACTIVATE)
    refused = _trigger(ros_node, "/pop3d/save_map")
    assert not refused.success and "inactive" in refused.message
    assert lifecycle_call(ros_node, NODE, Transition.TRANSITION_CLEANUP)
    assert lifecycle_call(ros_node, NODE, Transition.TRANSITION_CONFIGURE), proc.output()
    assert lifecycle_call(ros_node, NODE, Transition.TRANSITION_ACTIVATE)
    loaded = _query_map(ros_node)
    assert loaded.success, loaded.message
    points, scores = _top(loaded)
    points0, scores0 = _top(first)
    np.testing.assert_allclose(points, points0, atol=1e-4)
    np.testing.assert_allclose(scores, scores0, atol=1e-3)
    assert "loaded" in rig.map_diag()["source"]
    proc.assert_alive()


def test_query_map_answers_after_the_place_left_the_view(ros_node, node_process, tmp_path):
    write_tiny_checkpoint(tmp_path / "model.pt", occupancy_bias=2.0)
    proc = start_node(node_process, tmp_path, model_dir=str(tmp_path), **MAP)
    rig = Rig(ros_node, proc)
    rig.connect()
    rig.pose(100.0)
    rig.run_set(100.0)
    first = _query_map(ros_node, top_k=3)
    assert first.success, first.message
    points0, scores0 = _top(first)
    # Drive on 60 m per set: the grid (+-25.6 m) never sees the first place again.
    for i, x in enumerate((60.0, 120.0), start=1):
        rig.pose(100.0 + i, x=x)
        rig.run_set(100.0 + i)
    assert int(rig.map_diag()["frames_integrated"]) == 3
    later = _query_map(ros_node, top_k=3)
    assert later.success and later.header.frame_id == "odom"
    heat = cloud_to_array(later.heatmap)
    xyz = np.stack([heat["x"], heat["y"], heat["z"]], axis=1)
    assert xyz[:, 0].max() > 120.0 - 25.6  # the map holds the current place...
    for p, s in zip(points0, scores0, strict=True):  # ...and the first one, as it was
        assert p[0] < 120.0 - 25.6 - 3.2  # out of the current view
        hit = np.flatnonzero(np.abs(xyz - np.asarray(p, np.float32)).max(1) < 1e-3)
        assert hit.size == 1, p
        assert heat["score"][hit[0]] == pytest.approx(s, abs=1e-3)
    # The per-frame query knows only the current view (base_link, +-25.6 m).
    now = query(ros_node, "car", top_k=3)
    assert now.success and now.header.frame_id == "base_link"
    proc.assert_alive()


def test_tf_poses_without_tf2_ros_fail_configure_with_the_reason(ros_node, node_process, tmp_path):
    try:
        import tf2_ros  # noqa: F401
    except ImportError:
        pass
    else:  # a machine with tf2_ros configures; this checks the message where it is missing
        pytest.skip("tf2_ros is installed here")
    write_tiny_checkpoint(tmp_path / "model.pt", occupancy_bias=2.0)
    proc = start_node(node_process, tmp_path, lifecycle=True, model_dir=str(tmp_path),
                      pose_source="tf", **MAP)  # fmt: skip
    assert not lifecycle_call(ros_node, NODE, Transition.TRANSITION_CONFIGURE)
    assert lifecycle_call(ros_node, NODE) == "unconfigured"
    assert wait_until(lambda: "pose_source tf needs tf2_ros" in proc.output(), 10.0), proc.output()
    proc.assert_alive()


def test_mapping_off_creates_no_map_interfaces(ros_node, node_process, tmp_path):
    from node_fixtures import wait_model_state

    write_tiny_checkpoint(tmp_path / "model.pt", occupancy_bias=2.0)
    proc = start_node(node_process, tmp_path, model_dir=str(tmp_path))  # mapping: false
    wait_model_state(ros_node, proc, loaded=True)  # the node is up and serves /query_text
    services = {name for name, _ in ros_node.node.get_service_names_and_types()}
    assert "/query_text" in services
    assert not {"/query_map", "/pop3d/save_map", "/pop3d/clear_map"} & services
    assert ros_node.node.count_publishers("/pop3d/occupancy_cloud") == 1  # discovered
    assert ros_node.node.count_publishers("/pop3d/map_cloud") == 0
    assert ros_node.node.count_publishers("/pop3d/costmap") == 0
    assert ros_node.node.count_subscribers("/odom") == 0
    diag = ros_node.collect(DiagnosticArray, "/diagnostics")
    statuses = diagnostics_values(diag.wait_for(1, 15.0)[-1])
    assert "pipeline" in statuses and "map" not in statuses
