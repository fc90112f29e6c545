"""Production-node measurements of `make bench` (issue 31), side by side in one run:

- the heads' Softplus as exported now (relu(x) - log(sigmoid(|x|))) vs ONNX's Softplus op,
  the same encoder interleaved under ONNX Runtime (`softplus_rewrite_speedup`);
- a frame with the language head on demand vs on every frame, as before
  (`language_on_demand_speedup`);
- where the encoder's time goes: ONNX Runtime's own profile, per op type, fp32 and int8;
- `query_ms_idle`: a query to the installed node while nobody watches its outputs (it runs
  one inference on the latest camera set, then the language head, then answers);
- `idle_vs_watched_cpu`: the installed node's CPU while nobody watches its outputs over its CPU
  with a cloud subscriber, the same camera stream arriving;
- `shutdown_s`: SIGINT to exit of the installed node in each state; the worst is the figure.
"""

from __future__ import annotations

import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import numpy as np


def bench_softplus(checkpoint: Path, feed: dict, tmp: Path, repeat: int, threads: int) -> dict:
    import onnxruntime as ort
    from bench_deploy import interleaved

    from pop3d_ros.model.checkpoint import load_model
    from pop3d_ros.model.onnx_io import export_encoder_onnx

    model, _ = load_model(checkpoint)
    paths = {"softplus_op": tmp / "enc_softplus.onnx", "rewritten": tmp / "enc_rewritten.onnx"}
    export_encoder_onnx(model, paths["softplus_op"], rewrite_softplus=False)
    export_encoder_onnx(model, paths["rewritten"])
    sessions = {}
    for name, path in paths.items():
        so = ort.SessionOptions()
        so.intra_op_num_threads = threads
        sessions[name] = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    outs = {k: s.run(None, feed) for k, s in sessions.items()}
    diff = max(float(np.abs(a - b).max()) for a, b in zip(*outs.values(), strict=True))
    t = interleaved({k: (lambda s=s: s.run(None, feed)) for k, s in sessions.items()}, repeat)
    return {
        "softplus_rewrite_speedup": t["softplus_op"]["median_ms"] / t["rewritten"]["median_ms"],
        "max_abs_output_difference": diff,
        "encoder": t,
        "profile_softplus_op": ort_op_profile(paths["softplus_op"], feed, threads),
        "profile_rewritten": ort_op_profile(paths["rewritten"], feed, threads),
    }


def ort_op_profile(path: Path, feed: dict, threads: int, runs: int = 3) -> dict:
    """{op type: mean ms per run} from ONNX Runtime's profiler, largest first, plus shares."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.enable_profiling = True
    with tempfile.TemporaryDirectory() as tmp:
        so.profile_file_prefix = str(Path(tmp) / "ort")
        sess = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
        sess.run(None, feed)  # warm-up, profiled too: dropped below by counting runs
        for _ in range(runs):
            sess.run(None, feed)
        events = json.loads(Path(sess.end_profiling()).read_text())
    per_op: dict[str, list[float]] = defaultdict(list)
    for e in events:
        if e.get("cat") == "Node" and e.get("name", "").endswith("_kernel_time"):
            per_op[e["args"]["op_name"]].append(e["dur"] / 1e3)
    totals = {op: sum(v) / (runs + 1) for op, v in per_op.items()}
    all_ms = sum(totals.values()) or 1.0
    return {
        op: {"ms": round(ms, 2), "share": round(ms / all_ms, 3)}
        for op, ms in sorted(totals.items(), key=lambda kv: -kv[1])
    }


def bench_language_on_demand(runtime, text_encoder, images, cameras, repeat: int) -> dict:
    """One frame through the pipeline with the language head on demand (no query, no
    vocabulary: it does not run) vs on every frame (a hook that always asks: the node's
    behaviour before, and what a map or a colouring vocabulary costs)."""
    from bench_deploy import interleaved

    from pop3d_ros.pipeline.occupancy import OccupancyPipeline

    on_demand = OccupancyPipeline(runtime, text_encoder)
    every = OccupancyPipeline(runtime, text_encoder)
    every.language_hooks.append(lambda _r: True)
    t = interleaved(
        {
            "every_frame": lambda: every.infer(images, cameras, 0.0),
            "on_demand": lambda: on_demand.infer(images, cameras, 0.0),
        },
        repeat,
    )
    return {
        "language_on_demand_speedup": t["every_frame"]["median_ms"] / t["on_demand"]["median_ms"],
        "frame": t,
    }


# -- the installed node: idle query latency and shutdown time ------------------------------------
def _installed_node() -> str:
    from ament_index_python.packages import get_package_prefix

    return str(Path(get_package_prefix("pop3d_ros")) / "lib" / "pop3d_ros" / "occupancy_node")


class _Client:
    """A client node in its own context: query, lifecycle, cloud counter."""

    def __init__(self):
        import threading

        import rclpy
        from rclpy.executors import SingleThreadedExecutor
        from rclpy.qos import QoSProfile

        from pop3d_ros.srv import QueryText

        self.context = rclpy.Context()
        rclpy.init(context=self.context)
        self.node = rclpy.create_node("pop3d_bench_production", context=self.context)
        self.query_client = self.node.create_client(
            QueryText, "query_text", qos_profile=QoSProfile(depth=100)
        )
        self.clouds = 0
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        self._thread = threading.Thread(target=self.executor.spin, daemon=True)
        self._thread.start()

    def subscribe_cloud(self) -> None:
        from rclpy.qos import QoSProfile, ReliabilityPolicy
        from sensor_msgs.msg import PointCloud2

        def count(_msg):
            self.clouds += 1

        qos = QoSProfile(depth=2, reliability=ReliabilityPolicy.RELIABLE)
        self._sub = self.node.create_subscription(PointCloud2, "pop3d/occupancy_cloud", count, qos)

    def call(self, client, request, timeout: float = 120.0):
        import threading

        if not client.wait_for_service(timeout_sec=timeout):
            raise RuntimeError(f"{client.srv_name} not available")
        done = threading.Event()
        future = client.call_async(request)
        future.add_done_callback(lambda _f: done.set())
        if not done.wait(timeout):
            raise RuntimeError(f"no answer from {client.srv_name}")
        return future.result()

    def query(self, text: str = "car"):
        from pop3d_ros.srv import QueryText

        return self.call(self.query_client, QueryText.Request(text=text, top_k=5))

    def transition(self, transition_id: int) -> bool:
        from lifecycle_msgs.msg import Transition
        from lifecycle_msgs.srv import ChangeState

        client = self.node.create_client(ChangeState, "pop3d_occupancy/change_state")
        request = ChangeState.Request(transition=Transition(id=transition_id))
        return self.call(client, request).success

    def close(self) -> None:
        import rclpy

        self.executor.shutdown()
        self.node.destroy_node()
        rclpy.shutdown(context=self.context)


class _Private:
    """A private ROS_DOMAIN_ID for the node, the publisher and the client (restored after)."""

    def __enter__(self):
        self.old = os.environ.get("ROS_DOMAIN_ID")
        os.environ["ROS_DOMAIN_ID"] = str(150 + os.getpid() % 80)
        return self

    def __exit__(self, *exc):
        if self.old is None:
            os.environ.pop("ROS_DOMAIN_ID", None)
        else:
            os.environ["ROS_DOMAIN_ID"] = self.old


def _start(cmd: list[str], log: Path) -> subprocess.Popen:
    return subprocess.Popen(cmd, stdout=open(log, "w"), stderr=subprocess.STDOUT,  # noqa: SIM115
                            start_new_session=True)  # fmt: skip


def _wait_log(log: Path, text: str, timeout: float, proc=None) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if text in log.read_text(errors="replace"):
            return
        if proc is not None and proc.poll() is not None:
            break
        time.sleep(0.05)
    raise RuntimeError(f"{text!r} not in {log} after {timeout} s:\n{log.read_text()[-2000:]}")


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)


def _play(hw, rate: float, log: Path) -> subprocess.Popen:
    return _start([sys.executable, "-m", "pop3d_ros.cli", "play", "--seed", "1000", "--frames",
                   "3", "--width", str(hw[1]), "--height", str(hw[0]), "--rate", str(rate),
                   "--loop"], log)  # fmt: skip


def query_ms_idle(checkpoint: Path, cache_dir: Path, hw, queries: int = 7, say=print) -> dict:
    """Round trip of a query to the installed node (ONNX Runtime) while nothing subscribes
    to its outputs: each query finds a newer camera set and runs it first."""
    with _Private(), tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        node = _start([_installed_node(), "--ros-args", "-p", "backend:=onnxruntime",
                       "-p", f"model_dir:={checkpoint.parent.resolve()}",
                       "-p", f"checkpoint:={checkpoint.name}", "-p", f"cache_dir:={cache_dir}"],
                      tmp / "node.log")  # fmt: skip
        play = _play(hw, 2.0, tmp / "play.log")
        client = _Client()
        try:
            _wait_log(tmp / "node.log", "model loaded", 300.0, node)
            end = time.monotonic() + 120.0
            while not client.query().success:  # until the first camera set has arrived
                if time.monotonic() > end:
                    raise RuntimeError("the idle node never answered a query")
                time.sleep(0.5)
            samples = []
            for _ in range(queries):
                time.sleep(0.6)  # the player (2 Hz) has published a newer set by now
                t0 = time.perf_counter()
                answer = client.query()
                samples.append((time.perf_counter() - t0) * 1e3)
                if not answer.success:
                    raise RuntimeError(f"query failed: {answer.message}")
            say(f"[bench] idle query: {statistics.median(samples):.0f} ms median")
        finally:
            client.close()
            for p in (play, node):
                _stop(p)
    return {"median_ms": statistics.median(samples), "min_ms": min(samples),
            "max_ms": max(samples), "queries": queries, "image_hw": list(hw)}  # fmt: skip


def idle_vs_watched_cpu(
    checkpoint: Path, cache_dir: Path, hw, seconds: float = 10.0, rate: float = 4.0, say=print
) -> dict:
    """CPU of the installed node (ONNX Runtime) while the same camera stream arrives, first
    with nobody watching its outputs, then with a subscriber to its cloud: what idling saves.
    Receiving the images over DDS stays in both figures."""
    import psutil

    def share(proc, clouds0=0):
        cpu0, t0 = sum(proc.cpu_times()[:2]), time.monotonic()
        time.sleep(seconds)
        return (sum(proc.cpu_times()[:2]) - cpu0) / (time.monotonic() - t0)

    with _Private(), tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        node = _start([_installed_node(), "--ros-args", "-p", "backend:=onnxruntime",
                       "-p", f"model_dir:={checkpoint.parent.resolve()}",
                       "-p", f"checkpoint:={checkpoint.name}", "-p", f"cache_dir:={cache_dir}"],
                      tmp / "node.log")  # fmt: skip
        play = _play(hw, rate, tmp / "play.log")
        client = _Client()
        try:
            _wait_log(tmp / "node.log", "model loaded", 300.0, node)
            end = time.monotonic() + 120.0
            while not client.query().success:  # camera sets arrive
                if time.monotonic() > end:
                    raise RuntimeError("the idle node never answered a query")
                time.sleep(0.5)
            proc = psutil.Process(node.pid)
            idle = share(proc)
            client.subscribe_cloud()
            end = time.monotonic() + 120.0
            while client.clouds < 3 and time.monotonic() < end:
                time.sleep(0.1)
            clouds0 = client.clouds
            watched = share(proc)
            clouds = client.clouds - clouds0
        finally:
            client.close()
            for p in (play, node):
                _stop(p)
    say(f"[bench] node CPU: idle {100 * idle:.1f} % of a core, watched {100 * watched:.1f} %"
        f" ({clouds} clouds in {seconds:.0f} s)")  # fmt: skip
    return {"idle_vs_watched_cpu": idle / max(watched, 1e-9), "idle_cpu_share": idle,
            "watched_cpu_share": watched, "watched_clouds": clouds, "seconds": seconds,
            "camera_rate_hz": rate, "image_hw": list(hw)}  # fmt: skip


def shutdown_times(checkpoint: Path, hw, say=print) -> dict:
    """Seconds from SIGINT to exit of the installed node in each state."""
    from lifecycle_msgs.msg import Transition

    def plain(tmp, *extra):
        model = [f"model_dir:={checkpoint.parent.resolve()}", f"checkpoint:={checkpoint.name}"]
        return [_installed_node(), *extra, "--ros-args", "-p", "backend:=onnxruntime",
                "-p", model[0], "-p", model[1], "-p", f"cache_dir:={tmp / 'cache'}"]  # fmt: skip

    def loading(tmp, client):  # inside the ONNX export (empty cache)
        node = _start(plain(tmp), tmp / "node.log")
        _wait_log(tmp / "node.log", "exporting", 300.0, node)
        return node, []

    def inferring(tmp, client):
        node = _start(plain(tmp), tmp / "node.log")
        client.subscribe_cloud()
        play = _play(hw, 12.0, tmp / "play.log")
        end = time.monotonic() + 300.0
        while client.clouds < 3 and time.monotonic() < end:
            time.sleep(0.1)
        return node, [play]

    def no_cameras(tmp, client):
        node = _start(plain(tmp), tmp / "node.log")
        _wait_log(tmp / "node.log", "model loaded", 300.0, node)
        return node, []

    def lifecycle_unconfigured(tmp, client):
        node = _start(plain(tmp, "--lifecycle"), tmp / "node.log")
        from lifecycle_msgs.srv import GetState

        get_state = client.node.create_client(GetState, "pop3d_occupancy/get_state")
        if not get_state.wait_for_service(timeout_sec=120.0):
            raise RuntimeError("the managed node did not come up")
        return node, []

    def lifecycle_active(tmp, client):
        node = _start(plain(tmp, "--lifecycle"), tmp / "node.log")
        client.subscribe_cloud()
        play = _play(hw, 12.0, tmp / "play.log")
        if not (client.transition(Transition.TRANSITION_CONFIGURE)
                and client.transition(Transition.TRANSITION_ACTIVATE)):  # fmt: skip
            raise RuntimeError("lifecycle transitions failed")
        end = time.monotonic() + 300.0
        while client.clouds < 3 and time.monotonic() < end:
            time.sleep(0.1)
        return node, [play]

    states = {"model_loading": loading, "inference_running": inferring,
              "no_cameras": no_cameras, "lifecycle_unconfigured": lifecycle_unconfigured,
              "lifecycle_active": lifecycle_active}  # fmt: skip
    out = {}
    for name, setup in states.items():
        with _Private(), tempfile.TemporaryDirectory() as tmp:
            tmp = Path(tmp)
            client = _Client()
            others = []
            node = None
            try:
                node, others = setup(tmp, client)
                t0 = time.perf_counter()
                os.kill(node.pid, signal.SIGINT)
                rc = node.wait(60)
                out[name] = {"seconds": time.perf_counter() - t0, "exit_code": rc}
                say(f"[bench] shutdown {name}: {out[name]['seconds']:.2f} s (exit {rc})")
            finally:
                client.close()
                for p in others + ([node] if node is not None else []):
                    _stop(p)
    worst = max(out, key=lambda k: out[k]["seconds"])
    return {"shutdown_s": out[worst]["seconds"], "worst_state": worst, "states": out}
