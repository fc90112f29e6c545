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
    args = ["--frames", "3", "--width", "64", "--height", "36", "--seed", "2"]
    assert main(["export-bag", "--out", str(out), *args]) == 0
    msgs = _read(out / "bag_0.mcap")
    assert len(msgs) == 3 * 12
    topics = {t for t, *_ in msgs}
    assert topics == {f"/{c}/{k}" for c in CAMERA_NAMES for k in ("image_raw", "camera_info")}
    world = SyntheticWorld(WorldConfig(seed=2, num_frames=3, image_width=64, image_height=36))
    stamps = [world.timestamp(i) * 1000 for i in range(3)]
    assert sorted({t for _, _, t, _ in msgs}) == stamps
    sample = world.sample(1, occupancy=False)
    for topic, schema, t_ns, msg in msgs:
        assert msg.header.stamp.sec * 10**9 + msg.header.stamp.nanosec == t_ns
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
    assert meta["storage_identifier"] == "mcap" and meta["message_count"] == 36
    assert meta["relative_file_paths"] == ["bag_0.mcap"]
    assert {t["topic_metadata"]["name"] for t in meta["topics_with_message_count"]} == topics
    assert meta["starting_time"]["nanoseconds_since_epoch"] == stamps[0]
    # refusing to overwrite, with a one-line error
    assert main(["export-bag", "--out", str(out), *args]) == 2


def test_export_bag_compressed(tmp_path):
    out = tmp_path / "cbag"
    args = ["--frames", "1", "--width", "64", "--height", "36", "--compressed"]
    assert main(["export-bag", "--out", str(out), *args]) == 0
    msgs = _read(out / "cbag_0.mcap")
    imgs = [m for m in msgs if m[0].endswith("/compressed")]
    assert len(imgs) == 6 and imgs[0][1] == "sensor_msgs/msg/CompressedImage"
    assert bytes(imgs[0][3].data[:2]) == b"\xff\xd8"  # JPEG magic
