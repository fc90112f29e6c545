"""`pop3d export-bag`: the MCAP reads back with the right topics, types, counts, stamps."""

import numpy as np
import yaml
from mcap.reader import make_reader
from mcap_ros2.decoder import DecoderFactory

from pop3d_ros.cli import main
from pop3d_ros.data.synthetic import SyntheticWorld, WorldConfig
from pop3d_ros.geometry.rig import CAMERA_NAMES


def _read(path):
    with open(path, "rb") as f:
        reader = make_reader(f, decoder_factories=[DecoderFactory()])
        return [(ch.topic, sc.name, m.log_time, msg)
                for sc, ch, m, msg in reader.iter_decoded_messages()]  # fmt: skip


def test_export_bag_reads_back(tmp_path):
    out = tmp_path / "bag"
    args = ["--num_frames", "3", "--image_width", "64", "--image_height", "36", "--seed", "2"]
    assert main(["export-bag", "--out", str(out), *args]) == 0
    msgs = _read(out / "bag_0.mcap")
    assert len(msgs) == 3 * 13
    topics = {t for t, *_ in msgs}
    cameras = {f"/{c}/{k}" for c in CAMERA_NAMES for k in ("image_raw", "camera_info")}
    assert topics == cameras | {"/odom"}
    world = SyntheticWorld(WorldConfig(seed=2, num_frames=3, image_width=64, image_height=36))
    stamps = [world.timestamp(i) * 1000 for i in range(3)]
    assert sorted({t for _, _, t, _ in msgs}) == stamps
    sample = world.sample(1, occupancy=False)
    for topic, schema, t_ns, msg in msgs:
        assert msg.header.stamp.sec * 10**9 + msg.header.stamp.nanosec == t_ns
        if topic == "/odom":
            _check_odometry(msg, schema, world, stamps.index(t_ns))
            continue
        cam = topic.split("/")[1]
        assert msg.header.frame_id == f"{cam}_optical_frame"
        if topic.endswith("image_raw"):
            assert schema == "sensor_msgs/msg/Image" and msg.encoding == "rgb8"
            if t_ns == stamps[1]:
                img = np.frombuffer(bytes(msg.data), np.uint8).reshape(36, 64, 3)
                np.testing.assert_array_equal(img, sample["images"][CAMERA_NAMES.index(cam)])
        else:
            assert schema == "sensor_msgs/msg/CameraInfo"
            assert (msg.width, msg.height) == (64, 36)
            K = sample["intrinsics"][CAMERA_NAMES.index(cam)]
            np.testing.assert_allclose(np.reshape(msg.k, (3, 3)), K, rtol=1e-6)
            assert msg.p[3] == 0.0 and list(msg.d) == [0.0] * 5
    meta = yaml.safe_load((out / "metadata.yaml").read_text())["rosbag2_bagfile_information"]
    assert meta["storage_identifier"] == "mcap" and meta["message_count"] == 39
    assert meta["relative_file_paths"] == ["bag_0.mcap"]
    assert {t["topic_metadata"]["name"] for t in meta["topics_with_message_count"]} == topics
    assert meta["starting_time"]["nanoseconds_since_epoch"] == stamps[0]
    # refusing to overwrite, with a one-line error
    assert main(["export-bag", "--out", str(out), *args]) == 2


def _check_odometry(msg, schema, world, frame):
    """/odom is the world's ego pose at the frame (odom <- base_link), with the ego's motion
    since the previous frame in base_link as the twist (zero on the first frame)."""
    from pop3d_ros.geometry.transforms import quaternion_to_matrix

    assert schema == "nav_msgs/msg/Odometry"
    assert (msg.header.frame_id, msg.child_frame_id) == ("odom", "base_link")
    pose = world.ego_to_world(frame)
    p, q = msg.pose.pose.position, msg.pose.pose.orientation
    np.testing.assert_allclose([p.x, p.y, p.z], pose[:3, 3], atol=1e-5)
    np.testing.assert_allclose(quaternion_to_matrix([q.w, q.x, q.y, q.z]), pose[:3, :3], atol=1e-6)
    v = msg.twist.twist.linear
    if frame == 0:
        assert (v.x, v.y, v.z) == (0.0, 0.0, 0.0)
    else:  # 8 m/s along the street, a little lateral wobble
        prev = world.ego_to_world(frame - 1)
        dt = world.config.frame_interval
        np.testing.assert_allclose(pose[:3, :3].T @ (pose[:3, 3] - prev[:3, 3]) / dt,
                                   [v.x, v.y, v.z], atol=1e-4)  # fmt: skip
        assert 7.9 < v.x < 8.1


def test_export_bag_compressed(tmp_path):
    out = tmp_path / "cbag"
    args = ["--num_frames", "1", "--image_width", "64", "--image_height", "36", "--compressed"]
    assert main(["export-bag", "--out", str(out), *args]) == 0
    msgs = _read(out / "cbag_0.mcap")
    assert [m[0] for m in msgs][0] == "/odom"  # the pose comes before its camera set
    imgs = [m for m in msgs if m[0].endswith("/compressed")]
    assert len(imgs) == 6 and imgs[0][1] == "sensor_msgs/msg/CompressedImage"
    assert bytes(imgs[0][3].data[:2]) == b"\xff\xd8"  # JPEG magic


def _installed_type_hash(type_name: str) -> str:
    """The RIHS01 hash the installed ROS interface package ships (share/<pkg>/msg/T.json)."""
    import json
    import os
    from pathlib import Path

    pkg, _, name = type_name.split("/")
    for prefix in os.environ.get("AMENT_PREFIX_PATH", "").split(os.pathsep):
        path = Path(prefix, "share", pkg, "msg", f"{name}.json")
        if path.is_file():
            hashes = json.loads(path.read_text())["type_hashes"]
            return next(h["hash_string"] for h in hashes if h["type_name"] == type_name)
    raise AssertionError(f"{type_name}: no type description installed")


def test_rosbags_anyreader_reads_every_message_and_camera_sets(tmp_path):
    """The third-party `rosbags` reader (what many tools use) matches metadata.yaml topics to
    MCAP channels by QoS and type hash; every message must come back, six cameras per stamp."""
    from pathlib import Path

    from rosbags.highlevel import AnyReader
    from rosbags.typesys import Stores, get_typestore

    out = tmp_path / "bag"
    args = ["--num_frames", "4", "--image_width", "64", "--image_height", "36", "--seed", "5"]
    assert main(["export-bag", "--out", str(out), *args]) == 0
    world = SyntheticWorld(WorldConfig(seed=5, num_frames=4, image_width=64, image_height=36))
    by_stamp: dict[int, set] = {}
    count = odom = 0
    with AnyReader([Path(out)], default_typestore=get_typestore(Stores.ROS2_JAZZY)) as reader:
        for conn in reader.connections:
            assert conn.digest == _installed_type_hash(conn.msgtype), conn.topic
            qos = conn.ext.offered_qos_profiles
            assert len(qos) == 1 and qos[0].reliability.name == "RELIABLE", conn.topic
        for conn, t_ns, raw in reader.messages():
            msg = reader.deserialize(raw, conn.msgtype)
            stamp = msg.header.stamp.sec * 10**9 + msg.header.stamp.nanosec
            assert stamp == t_ns
            if conn.msgtype == "sensor_msgs/msg/Image":
                by_stamp.setdefault(stamp, set()).add(conn.topic.split("/")[1])
                assert (msg.width, msg.height, msg.encoding) == (64, 36, "rgb8")
            if conn.topic == "/odom":
                frames = [world.timestamp(i) * 1000 for i in range(4)]
                _check_odometry(msg, conn.msgtype, world, frames.index(stamp))
                odom += 1
            count += 1
    assert count == 4 * 13 and odom == 4
    assert sorted(by_stamp) == [world.timestamp(i) * 1000 for i in range(4)]
    assert all(cams == set(CAMERA_NAMES) for cams in by_stamp.values())
