"""The installed node exits within 2 s of a real SIGINT or SIGTERM in every state: while the
model loads, while inference runs, with use_sim_time and no /clock (no timer ever fires),
and with no cameras at all. launch sends SIGINT, then SIGTERM after 5 s; systemd and
`docker stop` send SIGTERM."""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

import pytest
from node_fixtures import CameraPublisher, query, start_node, wait_model_state
from pipeline_fixtures import write_tiny_checkpoint
from ros_harness import wait_until
from sensor_msgs.msg import PointCloud2

pytestmark = pytest.mark.ros

ROOT = Path(__file__).resolve().parents[1]
EXIT_WITHIN_S = 2.0


def _signal_and_time(proc, sig) -> tuple[float, int]:
    t0 = time.monotonic()
    os.kill(proc.pid, sig)
    try:
        rc = proc.proc.wait(10.0)
    except Exception:  # noqa: BLE001 - reported below with the output
        rc = None
    return time.monotonic() - t0, rc


def _loading(ros_node, tmp_path, start):
    # The default model with an empty ONNX cache: the load exports ONNX first (seconds).
    proc = start_node(
        start, tmp_path, backend="onnxruntime", model_dir=str(ROOT / "models" / "default"),
        cache_dir=str(tmp_path / "cache"), model_retry_s=0.0,
    )  # fmt: skip
    answer = wait_until(lambda: query(ros_node, "car").message, 60.0, interval=0.05)
    assert "model not loaded: loading" in answer, answer
    return proc, None


def _tiny_model_node(ros_node, tmp_path, start, **params):
    write_tiny_checkpoint(tmp_path / "model.pt", occupancy_bias=2.0)
    proc = start_node(start, tmp_path, model_dir=str(tmp_path), **params)
    wait_model_state(ros_node, proc, loaded=True, timeout=60.0)
    return proc


def _inference(ros_node, tmp_path, start):
    cloud = ros_node.collect(PointCloud2, "/pop3d/occupancy_cloud")
    proc = _tiny_model_node(ros_node, tmp_path, start)
    cams = CameraPublisher(ros_node)
    cams.wait_connected()
    stop = threading.Event()

    def publish():
        n = 0
        while not stop.is_set():
            cams.publish_set(10.0 + 0.1 * n)
            n += 1
            time.sleep(0.1)

    thread = threading.Thread(target=publish, daemon=True)
    thread.start()
    assert wait_until(lambda: len(cloud.messages) >= 2, 60.0), proc.output()
    return proc, (stop, thread)


def _sim_time_without_clock(ros_node, tmp_path, start):
    return _tiny_model_node(ros_node, tmp_path, start, use_sim_time=True), None


def _no_cameras(ros_node, tmp_path, start):
    return _tiny_model_node(ros_node, tmp_path, start), None


STATES = {
    "model_loading": _loading,
    "inference_running": _inference,
    "sim_time_no_clock": _sim_time_without_clock,
    "no_cameras": _no_cameras,
}


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
@pytest.mark.parametrize("state", list(STATES))
def test_node_exits_promptly_on_signal(ros_node, node_process, tmp_path, state, sig):
    proc, publisher = STATES[state](ros_node, tmp_path, node_process)
    proc.assert_alive()
    try:
        seconds, rc = _signal_and_time(proc, sig)
    finally:
        if publisher is not None:
            publisher[0].set()
            publisher[1].join(2.0)
    print(f"{state} {sig.name}: exit {rc} after {seconds:.2f} s")
    assert rc == 0, f"exit code {rc} after {seconds:.2f} s:\n{proc.output()}"
    assert seconds < EXIT_WITHIN_S, f"took {seconds:.2f} s to exit:\n{proc.output()}"
    assert "Traceback" not in proc.output(), proc.output()
