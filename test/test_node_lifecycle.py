"""The installed node with the shipped parameters file: missing and corrupt model (node up,
ERROR in diagnostics and query answers), recovery when a valid model appears, memory across a
playback, clean Ctrl-C shutdown."""

from __future__ import annotations

import time

import pytest
from diagnostic_msgs.msg import DiagnosticArray
from node_fixtures import (
    CameraPublisher,
    diagnostics_values,
    query,
    wait_model_state,
)
from pipeline_fixtures import write_tiny_checkpoint
from ros_harness import (
    find_installed_executable,
    ros_node_command,
    wait_until,
    write_params_file,
)
from sensor_msgs.msg import PointCloud2

from pop3d_ros.ros.conversions import stamp_to_sec

pytestmark = pytest.mark.ros


def _start(node_process, tmp_path, **overrides):
    """The node with the installed config/occupancy.yaml, then `overrides` on top."""
    exe = find_installed_executable("pop3d_ros", "occupancy_node")
    shipped = exe.parents[2] / "share" / "pop3d_ros" / "config" / "occupancy.yaml"
    params = {"backend": "torch", "diagnostics_period_s": 0.5, "model_retry_s": 1.0}
    params.update(overrides)
    extra = write_params_file(tmp_path / "override.yaml", "pop3d_occupancy", params)
    return node_process(
        ros_node_command(exe, shipped, extra_ros_args=["--params-file", str(extra)])
    )


def _model_status(collector):
    collector.clear()
    return diagnostics_values(collector.wait_for(1, 10.0)[-1])["model"]


def _publish_until_output(cams, cloud, stamp, timeout=30.0):
    def arrived():
        cams.publish_set(stamp)
        last = cloud.last
        return last is not None and stamp_to_sec(last.header.stamp) == pytest.approx(
            stamp, abs=1e-6
        )

    return wait_until(arrived, timeout, interval=0.5)


def test_missing_then_corrupt_then_valid_model(ros_node, node_process, tmp_path):
    model_dir = tmp_path / "models"
    model_dir.mkdir()
    diag = ros_node.collect(DiagnosticArray, "/diagnostics")
    cloud = ros_node.collect(PointCloud2, "/pop3d/occupancy_cloud")
    proc = _start(node_process, tmp_path, model_dir=str(model_dir))
    cams = CameraPublisher(ros_node)

    # Missing model: the node is up, says why, and survives images.
    r = wait_model_state(ros_node, proc, loaded=False, timeout=60.0, reason="checkpoint not found")
    assert r.success is False and "checkpoint not found" in r.message
    level, msg, values = _model_status(diag)
    assert level == 2 and "checkpoint not found" in msg and str(model_dir) in values["checkpoint"]
    cams.wait_connected()
    cams.publish_set(1.0)
    time.sleep(1.0)
    proc.assert_alive()

    # Corrupt model: still up, ERROR names the file's problem.
    (model_dir / "model.pt").write_bytes(b"this is not a checkpoint")
    # generous: the first load that gets past the file check imports torch (slow when busy)
    assert wait_until(lambda: "not a readable checkpoint" in _model_status(diag)[1], 120.0)
    assert "not a readable checkpoint" in query(ros_node, "car").message
    proc.assert_alive()

    # A valid model appears: the periodic retry loads it and outputs flow.
    write_tiny_checkpoint(model_dir / "model.pt", occupancy_bias=2.0)
    wait_model_state(ros_node, proc, loaded=True, timeout=60.0)
    assert _model_status(diag)[0] == 0
    assert _publish_until_output(cams, cloud, 5.0), proc.output()
    assert query(ros_node, "car").success

    # Ctrl-C: clean exit with status 0.
    assert proc.stop(timeout=15.0) == 0, proc.output()


@pytest.mark.slow
def test_memory_flat_across_playback(ros_node, node_process, tmp_path):
    """1 minute of six cameras at 12 Hz (the nuScenes rate), 320x180 rgb8 (larger than the
    synthetic default 256x144); RSS growth after warm-up is reported and bounded."""
    write_tiny_checkpoint(tmp_path / "model.pt", occupancy_bias=2.0)
    cloud = ros_node.collect(PointCloud2, "/pop3d/occupancy_cloud")
    proc = _start(node_process, tmp_path, model_dir=str(tmp_path))
    cams = CameraPublisher(ros_node)
    wait_model_state(ros_node, proc, loaded=True, timeout=60.0)
    cams.wait_connected()
    period, duration, warmup = 1.0 / 12.0, 60.0, 10.0
    start = time.monotonic()
    samples = []
    n = 0
    while (now := time.monotonic()) - start < duration:
        cams.publish_set(100.0 + n * period)
        n += 1
        if n % 12 == 0:
            samples.append((now - start, proc.rss_bytes()))
            if n % 60 == 0:
                query(ros_node, "car", top_k=5)
        time.sleep(max(0.0, start + n * period - time.monotonic()))
    proc.assert_alive()
    outputs = len(cloud.messages)
    after_warmup = [rss for t, rss in samples if t >= warmup]
    growth_mb = (after_warmup[-1] - after_warmup[0]) / 2**20
    peak_mb = max(rss for _, rss in samples) / 2**20
    print(
        f"memory: {n} sets published at 12 Hz ({cams.w}x{cams.h} rgb8), {outputs} outputs, "
        f"RSS {after_warmup[0] / 2**20:.1f} -> {after_warmup[-1] / 2**20:.1f} MB "
        f"(growth {growth_mb:+.1f} MB over {duration - warmup:.0f} s, peak {peak_mb:.1f} MB)"
    )
    assert outputs >= 10, proc.output()
    assert growth_mb < 25.0, f"RSS grew {growth_mb:.1f} MB after warm-up: {samples}"


def test_compressed_best_effort_publishers_and_vocabulary(ros_node, node_process, tmp_path):
    """JPEG/PNG CompressedImage from best-effort publishers (auto reliability follows them);
    a vocabulary adds the `label` field and class colours."""
    import cv2
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    from sensor_msgs.msg import CompressedImage
    from visualization_msgs.msg import MarkerArray

    from pop3d_ros.pipeline.messages import CLASS_PALETTE
    from pop3d_ros.ros.conversions import sec_to_stamp

    write_tiny_checkpoint(tmp_path / "model.pt", occupancy_bias=2.0)
    cloud = ros_node.collect(PointCloud2, "/pop3d/occupancy_cloud")
    markers = ros_node.collect(MarkerArray, "/pop3d/occupancy_markers")
    diag = ros_node.collect(DiagnosticArray, "/diagnostics")
    vocab = ["car", "tree", "road"]
    proc = _start(
        node_process,
        tmp_path,
        model_dir=str(tmp_path),
        image_transport="compressed",
        vocabulary=vocab,
    )
    cams = CameraPublisher(ros_node)  # CameraInfo publishers (raw image topics stay unused)
    qos = QoSProfile(depth=2, reliability=ReliabilityPolicy.BEST_EFFORT)
    pubs = {
        n: ros_node.publisher(CompressedImage, f"/{n}/image_raw/compressed", qos)
        for n in cams.names
    }
    encoded = {}
    for i, n in enumerate(cams.names):
        ext = ".jpg" if i % 2 else ".png"
        encoded[n] = (ext[1:], cv2.imencode(ext, cams.images[n])[1].tobytes())
    wait_model_state(ros_node, proc, loaded=True, timeout=60.0)
    for n in cams.names:
        ros_node.wait_for_subscribers(f"/{n}/image_raw/compressed", 1, 30.0)

    def publish(stamp):
        for n in cams.names:
            cams.info_pubs[n].publish(cams.info(n))
            msg = CompressedImage(format=encoded[n][0], data=encoded[n][1])
            msg.header.stamp = sec_to_stamp(stamp)
            pubs[n].publish(msg)

    stamp = 50.0

    def arrived():
        publish(stamp)
        last = cloud.last
        return last is not None and stamp_to_sec(last.header.stamp) == pytest.approx(
            stamp, abs=1e-6
        )

    assert wait_until(arrived, 30.0, interval=0.5), proc.output()
    msg = cloud.last
    assert [f.name for f in msg.fields] == ["x", "y", "z", "occupancy", "label"]
    import numpy as np

    dtype = np.dtype([("x", "<f4"), ("y", "<f4"), ("z", "<f4"), ("o", "<f4"), ("label", "<u2")])
    labels = np.frombuffer(bytes(msg.data), dtype=dtype)["label"]
    assert labels.size == msg.width and set(labels.tolist()) <= {0, 1, 2}
    marker = wait_until(lambda: markers.last, 10.0).markers[0]
    palette = {tuple(np.round(c, 4)) for c in CLASS_PALETTE[:3].tolist()}
    assert {tuple(np.round([c.r, c.g, c.b], 4)) for c in marker.colors} <= palette
    diag.clear()
    cams_status = diagnostics_values(diag.wait_for(1, 10.0)[-1])["cameras"][2]
    assert cams_status["cam_front_reliability"] == "best_effort"


def test_tf_extrinsics_source_reports_and_keeps_publishing(ros_node, node_process, tmp_path):
    """`extrinsics_source: tf`: with tf2_ros the node looks transforms up (no TF publisher
    here, so it falls back to the rig per camera); without tf2_ros it says so and uses the
    rig. Either way diagnostics name the source and output keeps coming."""
    write_tiny_checkpoint(tmp_path / "model.pt", occupancy_bias=2.0)
    cloud = ros_node.collect(PointCloud2, "/pop3d/occupancy_cloud")
    diag = ros_node.collect(DiagnosticArray, "/diagnostics")
    proc = _start(node_process, tmp_path, model_dir=str(tmp_path), extrinsics_source="tf")
    cams = CameraPublisher(ros_node)
    wait_model_state(ros_node, proc, loaded=True, timeout=60.0)
    cams.wait_connected()
    assert _publish_until_output(cams, cloud, 500.0), proc.output()
    note = _model_status(diag)[2]["extrinsics"]
    assert note.startswith("tf ") or "tf2_ros is not installed" in note, note
