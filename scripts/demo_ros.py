"""The ROS side of `make demo`: camera playback, occupancy/diagnostics subscriptions and
`/query_text` calls, all over real DDS to the node running in its own process."""

from __future__ import annotations

import threading
import time

import numpy as np
import rclpy
from diagnostic_msgs.msg import DiagnosticArray
from rclpy.executors import SingleThreadedExecutor
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import PointCloud2

from pop3d_ros.ros.conversions import cloud_to_array
from pop3d_ros.ros.playback import CameraPlayback, PlaybackConfig
from pop3d_ros.srv import QueryText

CLOUD_TOPIC = "pop3d/occupancy_cloud"
SERVICE = "query_text"
MAP_CLOUD_TOPIC = "pop3d/map_cloud"
MAP_SERVICE = "query_map"


def stamp_ns(header) -> int:
    return header.stamp.sec * 1_000_000_000 + header.stamp.nanosec


class DemoClient:
    """Context manager owning an rclpy context, a node and a spinning executor thread."""

    def __enter__(self):
        self.context = rclpy.Context()
        rclpy.init(context=self.context)
        self.node = rclpy.create_node("pop3d_demo", context=self.context)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        self.clouds: dict[int, np.ndarray] = {}
        self.last_diagnostics: DiagnosticArray | None = None
        self.model_status: tuple[int, str] | None = None  # (level, message) from /diagnostics
        self._cond = threading.Condition()
        qos = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
        self.node.create_subscription(PointCloud2, CLOUD_TOPIC, self._on_cloud, qos)
        self.node.create_subscription(DiagnosticArray, "/diagnostics", self._on_diag, 10)
        self.playback = CameraPlayback(self.node, PlaybackConfig(restamp=False, depth=2))
        self.client = self.node.create_client(QueryText, SERVICE)
        self.map_client = self.node.create_client(QueryText, MAP_SERVICE)
        self.map_cloud: np.ndarray | None = None  # the node's latest map (transient local)
        latched = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE,
                             durability=DurabilityPolicy.TRANSIENT_LOCAL)  # fmt: skip
        self.node.create_subscription(PointCloud2, MAP_CLOUD_TOPIC, self._on_map, latched)
        self._thread = threading.Thread(target=self.executor.spin, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self.executor.shutdown()
        self.node.destroy_node()
        rclpy.shutdown(context=self.context)
        self._thread.join(5)

    def _on_cloud(self, msg: PointCloud2) -> None:
        with self._cond:
            self.clouds[stamp_ns(msg.header)] = cloud_to_array(msg).copy()
            self._cond.notify_all()

    def _on_map(self, msg: PointCloud2) -> None:
        with self._cond:
            self.map_cloud = cloud_to_array(msg).copy()
            self.map_stamp = stamp_ns(msg.header)
            self._cond.notify_all()

    def wait_map(self, stamp_us: int, timeout: float = 15.0) -> np.ndarray | None:
        """The map cloud once it includes the set `stamp_us` (the map's stamp is its newest
        set's), or the latest one after `timeout`."""
        with self._cond:
            self._cond.wait_for(lambda: self.map_cloud is not None
                                and self.map_stamp >= stamp_us * 1000, timeout)  # fmt: skip
            return self.map_cloud

    def _on_diag(self, msg: DiagnosticArray) -> None:
        for status in msg.status:
            if status.name.endswith(": model"):
                level = status.level
                level = level[0] if isinstance(level, bytes | bytearray) else int(level)
                self.model_status = (level, status.message)
        if any(s.name.endswith(": pipeline") for s in msg.status):
            self.last_diagnostics = msg

    def wait_ready(self, proc, timeout: float) -> bool:
        """The service exists, every camera topic has a subscriber (the node's) and the
        node's diagnostics report its model loaded (images before that are not used)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                return False
            pubs = self.playback._pubs.values()  # noqa: SLF001 - read-only
            model_ok = self.model_status is not None and self.model_status[0] == 0
            if (
                model_ok
                and self.client.service_is_ready()
                and all(p.get_subscription_count() > 0 for pair in pubs for p in pair)
                and self.playback.odom_publisher.get_subscription_count() > 0
            ):
                return True
            time.sleep(0.2)
        return False

    def play(self, samples, proc, frame_timeout: float, say) -> list[dict]:
        """Publish each sample and wait for the node's cloud with that stamp."""
        frames = []
        for i, sample in enumerate(samples):
            stamp_us = self.playback.publish_sample(sample)
            key = stamp_us * 1000
            t0 = time.monotonic()
            with self._cond:
                got = self._cond.wait_for(
                    lambda k=key: k in self.clouds or proc.poll() is not None, frame_timeout
                )
                cloud = self.clouds.get(key)
            latency = time.monotonic() - t0
            if proc.poll() is not None:
                raise RuntimeError(f"the node exited with code {proc.returncode}")
            n = 0 if cloud is None else len(cloud)
            status = f"{n} occupied voxels after {latency:.2f} s" if got else "no cloud (timeout)"
            say(f"frame {i + 1}/{len(samples)}: {status}")
            frames.append({"stamp_us": stamp_us, "cloud": cloud, "latency_s": latency})
        return frames

    def query(self, text: str, top_k: int = 10, timeout: float = 30.0, on_map=False) -> dict:
        """/query_text (or /query_map with `on_map`) and its answer as plain values."""
        t0 = time.monotonic()
        client = self.map_client if on_map else self.client
        future = client.call_async(QueryText.Request(text=text, top_k=top_k))
        deadline = t0 + timeout
        while not future.done() and time.monotonic() < deadline:
            time.sleep(0.01)
        if not future.done():
            return {"text": text, "success": False, "message": "no answer (timeout)"}
        r = future.result()
        heat = cloud_to_array(r.heatmap)
        return {
            "text": text,
            "success": bool(r.success),
            "message": r.message,
            "round_trip_ms": (time.monotonic() - t0) * 1e3,
            "top_points": [[p.x, p.y, p.z] for p in r.top_points],
            "top_scores": [float(s) for s in r.top_scores],
            "heatmap": heat.copy(),
        }

    def diagnostics(self) -> tuple[dict, dict]:
        """(mean per-stage latency in ms, all pipeline diagnostic values)."""
        deadline = time.monotonic() + 5.0
        while self.last_diagnostics is None and time.monotonic() < deadline:
            time.sleep(0.1)
        if self.last_diagnostics is None:
            return {}, {}
        values = {}
        for status in self.last_diagnostics.status:
            for kv in status.values:
                values[f"{status.name.split(': ')[-1]}/{kv.key}"] = kv.value
        stage_ms = {}
        for key, value in values.items():
            name = key.split("/", 1)[1]
            if key.startswith("pipeline/") and name.endswith("_ms") and "_last_" not in name:
                try:
                    stage_ms[name[:-3]] = float(value)
                except ValueError:
                    pass
        return stage_ms, values
