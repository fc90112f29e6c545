"""Playback publisher over real rclpy / DDS: topics, stamps, intrinsics, compressed, drops."""

import time

import numpy as np
import pytest
from nav_msgs.msg import Odometry
from rclpy.node import Node
from rclpy.qos import QoSProfile, ReliabilityPolicy
from ros_harness import wait_until
from sensor_msgs.msg import CameraInfo, CompressedImage, Image

from pop3d_ros.data.synthetic import SyntheticWorld, WorldConfig
from pop3d_ros.geometry.rig import CAMERA_NAMES
from pop3d_ros.geometry.transforms import quaternion_to_matrix
from pop3d_ros.ros.conversions import compressed_rgb
from pop3d_ros.ros.playback import CameraPlayback, PlaybackConfig


@pytest.fixture(scope="module")
def samples():
    world = SyntheticWorld(WorldConfig(seed=3, num_frames=2, image_width=64, image_height=36))
    return [world.sample(i, occupancy=False) for i in range(2)]


def _player(ros_context, ros_node, config, compressed=False):
    node = Node("pop3d_play_test", context=ros_context)
    player = CameraPlayback(node, config)
    img_type = CompressedImage if compressed else Image
    suffix = "image_raw/compressed" if compressed else "image_raw"
    # a reliable subscriber does not match a best-effort publisher: subscribe like the config
    qos = QoSProfile(depth=10, reliability=ReliabilityPolicy.BEST_EFFORT)
    qos = qos if config.reliability == "best_effort" else 10
    got = {c: ros_node.collect(img_type, f"/{c}/{suffix}", qos) for c in CAMERA_NAMES}
    infos = {c: ros_node.collect(CameraInfo, f"/{c}/camera_info", qos) for c in CAMERA_NAMES}
    for c in CAMERA_NAMES:
        ros_node.wait_for_subscribers(f"/{c}/{suffix}")
        ros_node.wait_for_subscribers(f"/{c}/camera_info")
    return node, player, got, infos


def _stamp_us(stamp) -> int:
    return stamp.sec * 10**6 + stamp.nanosec // 1000


def _check_odometry(msg, sample):
    """/odom holds the sample's ego pose (odom <- base_link)."""
    assert (msg.header.frame_id, msg.child_frame_id) == ("odom", "base_link")
    p, q = msg.pose.pose.position, msg.pose.pose.orientation
    np.testing.assert_allclose([p.x, p.y, p.z], sample["ego_to_world"][:3, 3], atol=1e-5)
    rot = quaternion_to_matrix([q.w, q.x, q.y, q.z])
    np.testing.assert_allclose(rot, sample["ego_to_world"][:3, :3], atol=1e-6)


def test_raw_playback(ros_context, ros_node, samples):
    cfg = PlaybackConfig(rate_hz=20.0, restamp=False)
    odom = ros_node.collect(Odometry, "/odom")
    node, player, got, infos = _player(ros_context, ros_node, cfg)
    ros_node.wait_for_subscribers("/odom")
    assert player.play(samples) == 2
    poses = odom.wait_for(2)
    for msg, sample in zip(poses, samples, strict=True):
        _check_odometry(msg, sample)
        assert _stamp_us(msg.header.stamp) == sample["timestamp"]  # the set's stamp
    # the twist: the ego's motion between the two samples, in base_link (8 m/s forward)
    a, b = samples[0]["ego_to_world"], samples[1]["ego_to_world"]
    v = b[:3, :3].T @ (b[:3, 3] - a[:3, 3]) / ((samples[1]["timestamp"] - samples[0]["timestamp"])
                                               * 1e-6)  # fmt: skip
    lin = poses[1].twist.twist.linear
    np.testing.assert_allclose([lin.x, lin.y, lin.z], v, atol=1e-3)
    assert poses[0].twist.twist.linear.x == 0.0
    for c, cam in enumerate(CAMERA_NAMES):
        msgs = got[cam].wait_for(2)
        info = infos[cam].wait_for(2)[0]
        assert msgs[0].encoding == "rgb8" and msgs[0].header.frame_id == f"{cam}_optical_frame"
        img = np.frombuffer(bytes(msgs[0].data), np.uint8).reshape(36, 64, 3)
        np.testing.assert_array_equal(img, samples[0]["images"][c])
        stamp = msgs[1].header.stamp.sec * 10**6 + msgs[1].header.stamp.nanosec // 1000
        assert stamp == samples[1]["timestamp"]  # same stamp on all six cameras
        np.testing.assert_allclose(np.reshape(info.k, (3, 3)), samples[0]["intrinsics"][c],
                                   rtol=1e-6)  # fmt: skip
        assert (info.width, info.height) == (64, 36) and info.p[0] == info.k[0]
    node.destroy_node()


def test_compressed_best_effort_with_dropped_camera(ros_context, ros_node, samples):
    cfg = PlaybackConfig(compressed=True, reliability="best_effort", drop_cameras=("cam_back",),
                         jitter_s=0.01, restamp=True)  # fmt: skip
    node, player, got, _ = _player(ros_context, ros_node, cfg, compressed=True)
    # best effort: no retransmission, so repeat until discovery has matched both ends
    sent = []
    for _ in range(50):
        sent.append(player.publish_sample(samples[0]))
        if got["cam_front"].messages:
            break
        time.sleep(0.1)
    front = got["cam_front"].wait_for(1)[0]
    rgb = compressed_rgb(front)
    assert rgb.shape == (36, 64, 3)
    assert np.abs(rgb.astype(int) - samples[0]["images"][0]).mean() < 12  # JPEG loss
    t = front.header.stamp.sec * 10**6 + front.header.stamp.nanosec // 1000
    assert min(abs(t - s) for s in sent) <= 10_000  # the set's stamp, moved by the jitter
    # The dropped camera's topic is live (its publisher matched our subscriber) and sets
    # published after that reached the other cameras: only then is its silence a result.
    back_pub = player._pubs["cam_back"][0]  # noqa: SLF001 - the playback's own publisher
    assert wait_until(lambda: back_pub.get_subscription_count() >= 1, 30.0)
    for cam in ("cam_front_left", "cam_back_left", "cam_back_right"):
        seen = len(got[cam].messages)
        for _ in range(50):
            player.publish_sample(samples[1])
            if len(got[cam].messages) > seen:
                break
            time.sleep(0.1)
        assert len(got[cam].messages) > seen, cam
    assert got["cam_back"].messages == []


def test_bad_config():
    with pytest.raises(ValueError, match="reliability"):
        PlaybackConfig(reliability="sometimes")
    with pytest.raises(ValueError, match="ack_timeout_s"):
        PlaybackConfig(ack_timeout_s=-1.0)


def test_pop3d_play_command_publishes_the_six_cameras(ros_node, node_process):
    """`pop3d play` as a user runs it (README): a looping drive reaches a subscriber."""
    import shutil

    got = {c: ros_node.collect(Image, f"/{c}/image_raw") for c in CAMERA_NAMES}
    info = ros_node.collect(CameraInfo, "/cam_front/camera_info")
    odom = ros_node.collect(Odometry, "/odom")
    cmd = [shutil.which("pop3d"), "play", "--num_frames", "2", "--image_width", "64",
           "--image_height", "36", "--rate_hz", "5", "--loop"]  # fmt: skip
    proc = node_process(cmd)
    for cam in CAMERA_NAMES:
        msgs = got[cam].wait_for(2, timeout=60.0)
        assert (msgs[0].width, msgs[0].height, msgs[0].encoding) == (64, 36, "rgb8")
    assert info.wait_for(1, timeout=10.0)[0].k[0] > 0
    # the drive of seed 0 (the command's default): each /odom is one of its two ego poses,
    # stamped like the camera set that follows it
    world = SyntheticWorld(WorldConfig(seed=0, num_frames=2, image_width=64, image_height=36))
    poses = [world.ego_to_world(i) for i in range(2)]
    msgs = odom.wait_for(3, timeout=30.0)
    for msg in msgs:
        p = msg.pose.pose.position
        assert min(np.abs(np.array([p.x, p.y, p.z]) - q[:3, 3]).max() for q in poses) < 1e-4
    stamps = {_stamp_us(m.header.stamp) for m in got["cam_front"].messages}
    assert {_stamp_us(m.header.stamp) for m in msgs[:2]} <= stamps
    proc.assert_alive()


def test_pop3d_play_bag_publishes_an_exported_bag(ros_node, node_process, tmp_path):
    """`pop3d export-bag` then `pop3d play --bag`: every camera's images and CameraInfo
    arrive, restamped as one set per recorded frame."""
    import shutil

    from pop3d_ros.cli import main

    bag = tmp_path / "drive"
    assert main(["export-bag", "--out", str(bag), "--num_frames", "2", "--image_width", "64",
                 "--image_height", "36", "--seed", "4"]) == 0  # fmt: skip
    got = {c: ros_node.collect(Image, f"/{c}/image_raw") for c in CAMERA_NAMES}
    info = ros_node.collect(CameraInfo, "/cam_back/camera_info")
    odom = ros_node.collect(Odometry, "/odom")
    proc = node_process([shutil.which("pop3d"), "play", "--bag", str(bag), "--speed", "4",
                         "--loop"])  # fmt: skip
    for cam in CAMERA_NAMES:
        msgs = got[cam].wait_for(2, timeout=60.0)
        assert (msgs[0].width, msgs[0].height, msgs[0].encoding) == (64, 36, "rgb8")
    world = SyntheticWorld(WorldConfig(seed=4, num_frames=2, image_width=64, image_height=36))
    recorded = odom.wait_for(2, timeout=30.0)
    p = recorded[0].pose.pose.position
    assert min(np.abs([p.x - world.ego_to_world(i)[0, 3]]).max() for i in range(2)) < 1e-4
    # restamped like its camera set
    assert _stamp_us(recorded[1].header.stamp) in {_stamp_us(m.header.stamp)
                                                   for m in got["cam_front"].messages}  # fmt: skip
    stamps = {c: got[c].messages[0].header.stamp for c in CAMERA_NAMES}
    assert info.wait_for(1, timeout=10.0)[0].k[0] > 0
    assert len({(s.sec, s.nanosec) for s in stamps.values()}) <= 2  # one or two sets
    proc.assert_alive()
    bad = node_process([shutil.which("pop3d"), "play", "--bag", str(tmp_path / "nope")])
    assert bad.proc.wait(60) == 2 and "no such bag directory" in bad.output()
