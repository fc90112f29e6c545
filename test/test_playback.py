"""Playback publisher over real rclpy / DDS: topics, stamps, intrinsics, compressed, drops."""

import time

import numpy as np
import pytest
from rclpy.node import Node
from rclpy.qos import QoSProfile, ReliabilityPolicy
from ros_harness import wait_until
from sensor_msgs.msg import CameraInfo, CompressedImage, Image

from pop3d_ros.data.synthetic import SyntheticWorld, WorldConfig
from pop3d_ros.geometry.rig import CAMERA_NAMES
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


def test_raw_playback(ros_context, ros_node, samples):
    cfg = PlaybackConfig(rate_hz=20.0, restamp=False)
    node, player, got, infos = _player(ros_context, ros_node, cfg)
    assert player.play(samples) == 2
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
    cmd = [shutil.which("pop3d"), "play", "--num_frames", "2", "--image_width", "64",
           "--image_height", "36", "--rate_hz", "5", "--loop"]  # fmt: skip
    proc = node_process(cmd)
    for cam in CAMERA_NAMES:
        msgs = got[cam].wait_for(2, timeout=60.0)
        assert (msgs[0].width, msgs[0].height, msgs[0].encoding) == (64, 36, "rgb8")
    assert info.wait_for(1, timeout=10.0)[0].k[0] > 0
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
    proc = node_process([shutil.which("pop3d"), "play", "--bag", str(bag), "--speed", "4",
                         "--loop"])  # fmt: skip
    for cam in CAMERA_NAMES:
        msgs = got[cam].wait_for(2, timeout=60.0)
        assert (msgs[0].width, msgs[0].height, msgs[0].encoding) == (64, 36, "rgb8")
    stamps = {c: got[c].messages[0].header.stamp for c in CAMERA_NAMES}
    assert info.wait_for(1, timeout=10.0)[0].k[0] > 0
    assert len({(s.sec, s.nanosec) for s in stamps.values()}) <= 2  # one or two sets
    proc.assert_alive()
    bad = node_process([shutil.which("pop3d"), "play", "--bag", str(tmp_path / "nope")])
    assert bad.proc.wait(60) == 2 and "no such bag directory" in bad.output()
