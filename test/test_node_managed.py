"""The production node over real DDS: the managed lifecycle walk, `ros2 param set` through
`<node>/set_parameters`, no work for unwatched outputs, and two nodes in namespaces.

Every negative (no cloud, a refused value changed nothing) is asserted only after a positive
that proves the pipeline was live at that moment."""

from __future__ import annotations

import threading
import time

import numpy as np
import psutil
import pytest
import yaml
from diagnostic_msgs.msg import DiagnosticArray
from lifecycle_msgs.msg import Transition
from node_fixtures import (
    CameraPublisher,
    diagnostics_values,
    get_parameters,
    lifecycle_call,
    query,
    set_parameters,
    start_node,
    wait_model_state,
)
from pipeline_fixtures import write_tiny_checkpoint
from ros_harness import find_installed_executable, ros_node_command, wait_until
from sensor_msgs.msg import PointCloud2
from visualization_msgs.msg import MarkerArray

from pop3d_ros.ros.conversions import cloud_to_array, stamp_to_sec

pytestmark = pytest.mark.ros

NODE = "/pop3d_occupancy"


def _stamped(collector, stamp: float):
    return [m for m in list(collector.messages) if abs(stamp_to_sec(m.header.stamp) - stamp) < 1e-6]


def _publish_until(cams, collector, stamp: float, proc, timeout: float = 60.0):
    """Publish the set `stamp` until a cloud stamped with it arrives; that cloud."""

    def arrived():
        cams.publish_set(stamp)
        return _stamped(collector, stamp)

    got = wait_until(arrived, timeout, interval=0.5)
    assert got, f"no cloud for stamp {stamp}:\n{proc.output()}"
    return got[-1]


def _settled(diag, key: str):
    """(value,) once two diagnostics in a row report the same `key`, else None."""
    a = int(_pipeline_diag(diag)[key])
    return (a,) if int(_pipeline_diag(diag)[key]) == a else None


def _pipeline_diag(diag) -> dict:
    diag.clear()
    return diagnostics_values(diag.wait_for(1, 15.0)[-1])["pipeline"][2]


# -- lifecycle ------------------------------------------------------------------------------------
def test_lifecycle_walk_and_no_output_while_inactive(ros_node, node_process, tmp_path):
    write_tiny_checkpoint(tmp_path / "model.pt", occupancy_bias=2.0)
    cloud = ros_node.collect(PointCloud2, "/pop3d/occupancy_cloud")
    proc = start_node(node_process, tmp_path, lifecycle=True, model_dir=str(tmp_path))
    assert lifecycle_call(ros_node, NODE) == "unconfigured", proc.output()
    cams = CameraPublisher(ros_node)

    assert lifecycle_call(ros_node, NODE, Transition.TRANSITION_CONFIGURE), proc.output()
    assert lifecycle_call(ros_node, NODE) == "inactive"
    assert lifecycle_call(ros_node, NODE, Transition.TRANSITION_ACTIVATE)
    assert lifecycle_call(ros_node, NODE) == "active"
    cams.wait_connected()
    _publish_until(cams, cloud, 100.0, proc)  # live

    assert lifecycle_call(ros_node, NODE, Transition.TRANSITION_DEACTIVATE)
    assert lifecycle_call(ros_node, NODE) == "inactive"
    # No camera subscription while inactive, and queries say why they are refused.
    assert wait_until(lambda: ros_node.node.count_subscribers("/cam_front/image_raw") == 0, 30.0)
    assert ros_node.node.count_subscribers("/cam_back/camera_info") == 0
    answer = query(ros_node, "car")
    assert not answer.success and "inactive" in answer.message
    for i in range(5):
        cams.publish_set(200.0 + i)

    assert lifecycle_call(ros_node, NODE, Transition.TRANSITION_ACTIVATE)
    cams.wait_connected()
    _publish_until(cams, cloud, 300.0, proc)  # live again: everything before it is final
    assert not any(_stamped(cloud, 200.0 + i) for i in range(5))
    assert query(ros_node, "car").success

    assert lifecycle_call(ros_node, NODE, Transition.TRANSITION_DEACTIVATE)
    assert lifecycle_call(ros_node, NODE, Transition.TRANSITION_CLEANUP)
    assert lifecycle_call(ros_node, NODE) == "unconfigured"
    assert wait_until(lambda: ros_node.node.count_publishers("/pop3d/occupancy_cloud") == 0, 30.0)
    assert lifecycle_call(ros_node, NODE, Transition.TRANSITION_UNCONFIGURED_SHUTDOWN)
    assert lifecycle_call(ros_node, NODE) == "finalized"
    proc.assert_alive()
    assert proc.stop(timeout=30.0) == 0, proc.output()
    assert "Traceback" not in proc.output()


def test_bad_parameters_fail_configure_with_the_reason(ros_node, node_process, tmp_path):
    write_tiny_checkpoint(tmp_path / "model.pt", occupancy_bias=2.0)
    proc = start_node(node_process, tmp_path, lifecycle=True, model_dir=str(tmp_path),
                      backend="no_such_backend")  # fmt: skip
    assert lifecycle_call(ros_node, NODE) == "unconfigured", proc.output()
    assert not lifecycle_call(ros_node, NODE, Transition.TRANSITION_CONFIGURE)
    assert lifecycle_call(ros_node, NODE) == "unconfigured"
    assert wait_until(lambda: "configure failed: parameter backend='no_such_backend'" in
                      proc.output(), 10.0), proc.output()  # fmt: skip
    # Unconfigured, configure-time parameters may change; a missing model fails configure.
    results = set_parameters(ros_node, NODE, backend="torch", model_dir=str(tmp_path / "none"))
    assert all(r.successful for r in results), [r.reason for r in results]
    assert not lifecycle_call(ros_node, NODE, Transition.TRANSITION_CONFIGURE)
    assert wait_until(lambda: "checkpoint not found" in proc.output(), 10.0), proc.output()
    (result,) = set_parameters(ros_node, NODE, model_dir=str(tmp_path))
    assert result.successful, result.reason
    assert lifecycle_call(ros_node, NODE, Transition.TRANSITION_CONFIGURE), proc.output()
    # Configured: the model's parameters are read-only until cleanup.
    (result,) = set_parameters(ros_node, NODE, checkpoint="other.pt")
    assert not result.successful and "read when the node is configured" in result.reason
    assert get_parameters(ros_node, NODE, "checkpoint") == ["model.pt"]


# -- run-time parameters --------------------------------------------------------------------------
def test_runtime_parameters_change_output_and_invalid_ones_change_nothing(
    ros_node, node_process, tmp_path
):
    write_tiny_checkpoint(tmp_path / "model.pt", occupancy_bias=2.0)
    cloud = ros_node.collect(PointCloud2, "/pop3d/occupancy_cloud")
    markers = ros_node.collect(MarkerArray, "/pop3d/occupancy_markers")
    diag = ros_node.collect(DiagnosticArray, "/diagnostics")
    proc = start_node(node_process, tmp_path, model_dir=str(tmp_path))
    wait_model_state(ros_node, proc, loaded=True)
    cams = CameraPublisher(ros_node)
    cams.wait_connected()
    stamp = iter(np.arange(1000.0, 2000.0, 1.0))

    first = _publish_until(cams, cloud, next(stamp), proc)
    full = first.width
    assert full > 0 and [f.name for f in first.fields] == ["x", "y", "z", "occupancy"]
    # No query and no vocabulary: the language head never ran.
    values = _pipeline_diag(diag)
    assert float(values["language_head_ms"]) == 0.0 and float(values["inference_ms"]) > 0
    occupancy = cloud_to_array(first)["occupancy"]
    threshold = float(np.quantile(occupancy, 0.5))

    # Valid values apply on the next set.
    results = set_parameters(ros_node, NODE, occupancy_threshold=threshold, marker_alpha=0.25)
    assert all(r.successful for r in results), [r.reason for r in results]
    msg = _publish_until(cams, cloud, next(stamp), proc)
    assert 0 < msg.width < full
    assert np.all(cloud_to_array(msg)["occupancy"] >= threshold - 1e-6)
    assert wait_until(lambda: _stamped_markers(markers, msg), 10.0)
    assert {round(c.a, 4) for c in _stamped_markers(markers, msg)[-1].markers[0].colors} == {0.25}

    (result,) = set_parameters(ros_node, NODE, vocabulary=["car", "tree", "road"])
    assert result.successful, result.reason
    msg = _publish_until(cams, cloud, next(stamp), proc)
    assert [f.name for f in msg.fields][-1] == "label"
    assert set(cloud_to_array(msg)["label"].tolist()) <= {0, 1, 2}
    assert float(_pipeline_diag(diag)["language_head_last_ms"]) > 0  # needed every frame now

    pose = [1.0, 2.0, 3.0, 0.0, 0.0, 0.0, 1.0]
    results = set_parameters(ros_node, NODE, target_frame="odom", target_transform=pose)
    assert all(r.successful for r in results), [r.reason for r in results]
    moved = _publish_until(cams, cloud, next(stamp), proc)
    assert moved.header.frame_id == "odom"
    a, b = cloud_to_array(msg), cloud_to_array(moved)
    assert b.size == a.size
    np.testing.assert_allclose(b["x"] - a["x"], 1.0, atol=1e-4)
    np.testing.assert_allclose(b["z"] - a["z"], 3.0, atol=1e-4)

    # Invalid values are refused with the reason, and nothing changes.
    refused = {
        "occupancy_threshold": (1.5, "occupancy_threshold must be in (0, 1)"),
        "marker_alpha": (2.0, "marker_alpha must be in [0, 1]"),
        "vocabulary": (["qwertyuiop zxcv"], "vocabulary"),
        "target_transform": ([1.0] * 6, "target_transform"),
        "model_dir": ("/elsewhere", "read when the node is configured; restart the node"),
        "threads": (1, "read when the node is configured"),
    }
    before = get_parameters(ros_node, NODE, *refused)
    for name, (value, reason) in refused.items():
        (result,) = set_parameters(ros_node, NODE, **{name: value})
        assert not result.successful, name
        assert reason in result.reason, (name, result.reason)
    assert get_parameters(ros_node, NODE, *refused) == before
    again = _publish_until(cams, cloud, next(stamp), proc)
    assert again.header.frame_id == "odom" and [f.name for f in again.fields][-1] == "label"
    assert again.width == moved.width


def _stamped_markers(markers, cloud_msg):
    want = stamp_to_sec(cloud_msg.header.stamp)
    out = []
    for m in list(markers.messages):
        if m.markers and abs(stamp_to_sec(m.markers[0].header.stamp) - want) < 1e-6:
            out.append(m)
    return out


# -- work only for what is watched ----------------------------------------------------------------
def test_unwatched_node_idles_and_still_answers(ros_node, node_process, tmp_path):
    """No subscriber: for ten seconds of six streaming cameras the node decodes and runs
    nothing (it only keeps the newest set), and a query then runs one inference on it. What
    idling saves in CPU is a benchmark figure (`make bench`: idle_vs_watched_cpu): the cost
    of receiving the images over DDS, which remains, depends on the transport a machine
    gets (shared memory or UDP)."""
    write_tiny_checkpoint(tmp_path / "model.pt", occupancy_bias=2.0)
    diag = ros_node.collect(DiagnosticArray, "/diagnostics")
    proc = start_node(node_process, tmp_path, model_dir=str(tmp_path))
    wait_model_state(ros_node, proc, loaded=True)
    cams = CameraPublisher(ros_node)
    cams.wait_connected()
    stop = threading.Event()

    def stream():
        n = 0
        while not stop.is_set():
            cams.publish_set(500.0 + 0.1 * n)
            n += 1
            time.sleep(0.1)

    thread = threading.Thread(target=stream, daemon=True)
    thread.start()
    try:
        # Positive first: sets arrive and match, and the node says it idles.
        assert wait_until(lambda: int(_pipeline_diag(diag)["sets_idle"]) >= 5, 60.0)
        level, message, values = diagnostics_values(diag.wait_for(1, 15.0)[-1])["pipeline"]
        assert values["idle"] == "true" and "idle" in message
        node = psutil.Process(proc.pid)
        cpu0, t0 = sum(node.cpu_times()[:2]), time.monotonic()
        sets0 = int(_pipeline_diag(diag)["sets_idle"])
        time.sleep(10.0)
        cpu1, t1 = sum(node.cpu_times()[:2]), time.monotonic()
        values = _pipeline_diag(diag)
        share = (cpu1 - cpu0) / (t1 - t0)
        print(f"idle node: {cpu1 - cpu0:.2f} CPU s in {t1 - t0:.1f} s ({100 * share:.1f} % of a "
              f"core), {int(values['sets_idle']) - sets0} sets kept, none run")  # fmt: skip
        assert int(values["sets_idle"]) - sets0 >= 10  # the cameras kept streaming
        assert int(values["sets_processed"]) == 0
        # Nothing was decoded or inferred; receiving (a size check per image) is all it did.
        assert float(values["receive_ms"]) > 0
        assert "convert_ms" not in values and "inference_ms" not in values
        stop.set()
        thread.join(5.0)
        # One more set, known to have arrived (the matcher counted it) before the query.
        matched = wait_until(lambda: _settled(diag, "sets_matched"), 30.0)
        assert matched is not None
        final = 900.0
        assert wait_until(lambda: cams.publish_set(final) or
                          int(_pipeline_diag(diag)["sets_matched"]) > matched[0], 30.0)  # fmt: skip
        answer = query(ros_node, "car", top_k=3)
        assert answer.success, answer.message
        assert stamp_to_sec(answer.header.stamp) == pytest.approx(final, abs=1e-6)
        values = _pipeline_diag(diag)
        assert int(values["sets_processed"]) == 1
        assert float(values["query_language_head_ms"]) > 0
    finally:
        stop.set()


# -- namespaces -----------------------------------------------------------------------------------
def test_two_namespaced_nodes_publish_and_answer_independently(ros_node, node_process, tmp_path):
    """/a and /b, each with its own six cameras, started as `ros2 launch ... namespace:=`
    does (`-r __ns:=`), with the shipped params file (its key, one value changed) first."""
    write_tiny_checkpoint(tmp_path / "model.pt", occupancy_bias=2.0)
    exe = find_installed_executable("pop3d_ros", "occupancy_node")
    shipped = yaml.safe_load((exe.parents[2] / "share/pop3d_ros/config/occupancy.yaml").read_text())
    (key,) = shipped
    shipped[key]["ros__parameters"]["marker_alpha"] = 0.37
    shipped_file = tmp_path / "occupancy.yaml"
    shipped_file.write_text(yaml.safe_dump(shipped))
    extra = tmp_path / "override.yaml"
    test_values = {"backend": "torch", "model_dir": str(tmp_path), "max_camera_time_diff": 0.02}
    extra.write_text(yaml.safe_dump({key: {"ros__parameters": test_values}}))
    procs, cams, clouds = {}, {}, {}
    for ns in ("/a", "/b"):
        clouds[ns] = ros_node.collect(PointCloud2, f"{ns}/pop3d/occupancy_cloud")
        ros_args = ["--params-file", str(extra), "-r", f"__ns:={ns}"]
        procs[ns] = node_process(ros_node_command(exe, shipped_file, extra_ros_args=ros_args))
        cams[ns] = CameraPublisher(ros_node, namespace=ns)
    for ns, proc in procs.items():

        def loaded(ns=ns, proc=proc):
            proc.assert_alive()
            return (
                "model not loaded" not in query(ros_node, "car", service=f"{ns}/query_text").message
            )

        assert wait_until(loaded, 90.0, interval=0.5), proc.output()
        cams[ns].wait_connected()
        assert get_parameters(ros_node, f"{ns}/pop3d_occupancy", "marker_alpha") == [0.37]
    assert ros_node.node.count_publishers("/pop3d/occupancy_cloud") == 0
    assert ros_node.node.count_subscribers("/cam_front/image_raw") == 0

    a = _publish_until(cams["/a"], clouds["/a"], 11.0, procs["/a"])
    b = _publish_until(cams["/b"], clouds["/b"], 22.0, procs["/b"])
    assert a.width > 0 and b.width > 0
    # Each again after the other's: any cross-talk would have shown up by then.
    _publish_until(cams["/a"], clouds["/a"], 33.0, procs["/a"])
    _publish_until(cams["/b"], clouds["/b"], 44.0, procs["/b"])
    assert not _stamped(clouds["/a"], 22.0) and not _stamped(clouds["/b"], 11.0)
    assert not _stamped(clouds["/b"], 33.0)
    for ns, stamp in (("/a", 33.0), ("/b", 44.0)):
        answer = query(ros_node, "car", service=f"{ns}/query_text")
        assert answer.success and stamp_to_sec(answer.header.stamp) == stamp, answer.message
    for proc in procs.values():
        assert proc.stop(timeout=30.0) == 0, proc.output()
