"""The installed node's output rate under a real camera load (part of `make bench`).

Three processes, as on a robot: the installed `occupancy_node` (shipped parameters, ONNX
Runtime), a `pop3d play` publisher (six cameras at 12 Hz, looping a short synthetic drive at
the given resolution), and this process counting `/pop3d/occupancy_cloud` messages for a fixed
window after the first one arrived. The node's own /diagnostics (per-stage means, input rates,
drops) at the end of the window is kept as the profile of where the time went. A private
ROS_DOMAIN_ID keeps the run apart from other ROS processes on the machine.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path


def _installed_node() -> Path:
    from ament_index_python.packages import get_package_prefix

    return Path(get_package_prefix("pop3d_ros")) / "lib" / "pop3d_ros" / "occupancy_node"


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGINT)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(5)


class _Counter:
    """Counts clouds and keeps the last /diagnostics values (own context and executor)."""

    def __init__(self):
        import rclpy
        from diagnostic_msgs.msg import DiagnosticArray
        from rclpy.executors import SingleThreadedExecutor
        from rclpy.qos import QoSProfile, ReliabilityPolicy
        from sensor_msgs.msg import PointCloud2

        self.context = rclpy.Context()
        rclpy.init(context=self.context)
        self.node = rclpy.create_node("pop3d_bench_node_rate", context=self.context)
        self.times: list[float] = []
        self.diag: dict[str, str] = {}
        qos = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
        self.node.create_subscription(PointCloud2, "pop3d/occupancy_cloud", self._cloud, qos)
        self.node.create_subscription(DiagnosticArray, "/diagnostics", self._diag, 10)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        self._thread = threading.Thread(target=self.executor.spin, daemon=True)
        self._thread.start()

    def _cloud(self, _msg) -> None:
        self.times.append(time.monotonic())

    def _diag(self, msg) -> None:
        for st in msg.status:
            for kv in st.values:
                self.diag[kv.key] = kv.value

    def close(self) -> None:
        import rclpy

        self.executor.shutdown()
        self.node.destroy_node()
        rclpy.shutdown(context=self.context)
        self._thread.join(5)


def node_rate(
    checkpoint: Path,
    cache_dir: Path,
    hw: tuple[int, int],
    seconds: float = 30.0,
    rate_hz: float = 12.0,
    threads: int = 0,
    precision: str = "fp32",
    start_timeout: float = 180.0,
    say=print,
    executable: Path | None = None,
    mapping: bool = False,
    executor: str = "events",
) -> dict:
    """Occupancy messages per second over `seconds`, six `hw` rgb8 streams at `rate_hz`.
    `mapping`: the node maps every set (`mapping:=true`, poses from the player's /odom, so
    map_frame odom) and the language head runs on each; the map's counters are returned."""
    # All three processes (node, publisher, this counter) share a private domain. Full-size
    # images (`large_images`) get, unless the user chose one, the setting the README
    # recommends for a whole system with six 4 MB streams: the default transports cannot
    # carry them at 12 Hz through the default 512 KB shared-memory segment (37 of 60 sets
    # complete), and it stays compatible with default processes (test_dds_interop.py). The
    # publisher's ack pacing is then off: with large socket buffers acks come only with the
    # writer's heartbeat (measured: 2 Hz per camera at 224x128 with pacing on).
    old = {k: os.environ.get(k) for k in ("ROS_DOMAIN_ID", "FASTDDS_BUILTIN_TRANSPORTS")}
    os.environ["ROS_DOMAIN_ID"] = str(100 + os.getpid() % 100)
    large_images = hw[0] * hw[1] * 3 * 6 > 512 * 1024
    if large_images:
        os.environ.setdefault("FASTDDS_BUILTIN_TRANSPORTS", "DEFAULT?sockets_size=8MB")
    env = dict(os.environ)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        cmd = [
            str(executable or _installed_node()), "--ros-args",
            "-p", "backend:=onnxruntime",
            "-p", f"model_dir:={checkpoint.parent.resolve()}",
            "-p", f"checkpoint:={checkpoint.name}",
            "-p", f"cache_dir:={cache_dir}",
            "-p", f"threads:={threads}",
            "-p", f"precision:={precision}",
            "-p", f"executor:={executor}",
        ]  # fmt: skip
        if mapping:
            cmd += ["-p", "mapping:=true", "-p", "map_frame:=odom"]
        play = [
            sys.executable, "-m", "pop3d_ros.cli", "play", "--seed", "1000", "--num_frames", "3",
            "--image_width", str(hw[1]), "--image_height", str(hw[0]), "--rate_hz", str(rate_hz),
            "--loop", "--ack_timeout_s", "0" if large_images else "0.1",
        ]  # fmt: skip
        node_log, play_log = open(tmp / "node.log", "w+"), open(tmp / "play.log", "w+")  # noqa: SIM115
        counter = _Counter()
        procs = []
        try:
            procs.append(subprocess.Popen(cmd, env=env, stdout=node_log, stderr=subprocess.STDOUT,
                                          start_new_session=True))  # fmt: skip
            procs.append(subprocess.Popen(play, env=env, stdout=play_log, stderr=subprocess.STDOUT,
                                          start_new_session=True))  # fmt: skip
            t_end = time.monotonic() + start_timeout
            while not counter.times and time.monotonic() < t_end:
                if any(p.poll() is not None for p in procs):
                    break
                time.sleep(0.5)
            if not counter.times:
                node_log.seek(0)
                play_log.seek(0)
                raise RuntimeError(
                    f"no occupancy within {start_timeout:.0f} s at {hw}; node log tail:\n"
                    f"{node_log.read()[-2000:]}\nplay log tail:\n{play_log.read()[-1000:]}"
                )
            say(f"[bench] node at {hw[1]}x{hw[0]}: first cloud, counting for {seconds:.0f} s")
            time.sleep(2.0)  # settle: the first sets after load are not steady state
            n0, t0 = len(counter.times), time.monotonic()
            time.sleep(seconds)
            n1, t1 = len(counter.times), time.monotonic()
            diag = dict(counter.diag)
        finally:
            for p in reversed(procs):
                _stop(p)
            counter.close()
            for k, v in old.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v
    keys = ("_ms", "rate_hz", "dropped", "threads", "precision", "engine")
    if mapping:  # how many sets the map took, and why it refused others
        keys += ("frames_integrated", "refused", "occupied_voxels", "feature_voxels")
    profile = {k: v for k, v in diag.items() if any(s in k for s in keys) and "last" not in k}
    return {
        "hz": (n1 - n0) / (t1 - t0),
        "clouds": n1 - n0,
        "seconds": t1 - t0,
        "image_hw": list(hw),
        "input_rate_hz_per_camera": rate_hz,
        "mapping": mapping,
        "node_diagnostics": profile,
    }
