"""Publish the camera topics of a rosbag2 MCAP directory (`pop3d play --bag DIR`).

Reads the MCAP files listed in the bag's metadata.yaml (or every `*.mcap` in the directory)
and publishes each message, CDR as recorded, on its topic with its recorded type, paced by
the recorded log times divided by `rate`. `restamp` replaces header stamps by the time of
publishing (camera sets keep equal stamps), so a node that drops old data accepts a bag
recorded long ago. Publishers are reliable, keep last `depth`.
"""

from __future__ import annotations

import importlib
import time
from pathlib import Path

import yaml
from mcap.reader import make_reader
from rclpy.qos import QoSProfile, ReliabilityPolicy
from rclpy.serialization import deserialize_message

from pop3d_ros.ros.conversions import sec_to_stamp


def bag_files(bag_dir) -> list[Path]:
    """The MCAP files of a rosbag2 directory, in recorded order."""
    bag_dir = Path(bag_dir)
    if not bag_dir.is_dir():
        raise FileNotFoundError(f"{bag_dir}: no such bag directory")
    meta = bag_dir / "metadata.yaml"
    if meta.is_file():
        info = yaml.safe_load(meta.read_text()).get("rosbag2_bagfile_information", {})
        if info.get("storage_identifier") not in (None, "mcap"):
            raise ValueError(f"{bag_dir}: storage {info['storage_identifier']!r}; only mcap")
        files = [bag_dir / p for p in info.get("relative_file_paths", [])]
    else:
        files = sorted(bag_dir.glob("*.mcap"))
    missing = [str(f) for f in files if not f.is_file()]
    if not files or missing:
        raise FileNotFoundError(f"{bag_dir}: no MCAP files ({missing or 'none listed'})")
    return files


def message_type(type_name: str):
    """The rclpy message class of 'pkg/msg/Type'."""
    pkg, kind, name = type_name.split("/")
    try:
        return getattr(importlib.import_module(f"{pkg}.{kind}"), name)
    except (ImportError, AttributeError) as exc:
        raise ValueError(f"message type {type_name} is not installed") from exc


def read_bag(bag_dir):
    """Yield (topic, type name, log time ns, CDR bytes) in log-time order."""
    for path in bag_files(bag_dir):
        with open(path, "rb") as f:
            reader = make_reader(f)
            for schema, channel, message in reader.iter_messages(log_time_order=True):
                yield channel.topic, schema.name, message.log_time, message.data


class BagPlayer:
    def __init__(self, node, rate: float = 1.0, restamp: bool = True, depth: int = 2):
        if rate <= 0:
            raise ValueError("rate must be > 0")
        self.node, self.rate, self.restamp = node, rate, restamp
        self.qos = QoSProfile(depth=depth, reliability=ReliabilityPolicy.RELIABLE)
        self.publishers: dict[str, tuple] = {}
        self.published = 0

    def _publisher(self, topic: str, type_name: str):
        if topic not in self.publishers:
            cls = message_type(type_name)
            # Relative: the recorded names land in the player's namespace (the root: as recorded).
            pub = self.node.create_publisher(cls, topic.lstrip("/"), self.qos)
            self.publishers[topic] = (cls, pub)
        return self.publishers[topic]

    def play(self, bag_dir) -> int:
        """Publish the whole bag once; returns the number of messages published."""
        start_wall = start_log = None
        stamp_of: dict[int, object] = {}  # recorded log time -> publish-time stamp
        for topic, type_name, log_ns, data in read_bag(bag_dir):
            cls, pub = self._publisher(topic, type_name)
            if start_log is None:
                start_wall, start_log = time.monotonic(), log_ns
            delay = start_wall + (log_ns - start_log) * 1e-9 / self.rate - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            msg = deserialize_message(data, cls)
            if self.restamp and hasattr(msg, "header"):
                if log_ns not in stamp_of:
                    stamp_of = {log_ns: sec_to_stamp(time.time())}
                msg.header.stamp = stamp_of[log_ns]
            pub.publish(msg)
            self.published += 1
        return self.published
