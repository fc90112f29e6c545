"""Publish samples as the six camera topics (image_raw or image_raw/compressed + camera_info)
and /odom (nav_msgs/Odometry, the ego pose, just before each set).

`CameraPlayback(node, PlaybackConfig(...))` is a library class: `pop3d play`, the demo and the
node tests use it. Message fields come from the ROS-free `pop3d_ros.data.messages`.
"""

from __future__ import annotations

import array
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

import numpy as np
from nav_msgs.msg import Odometry
from rclpy.duration import Duration
from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CameraInfo, CompressedImage, Image

from pop3d_ros.data.messages import (
    ODOM_FRAME,
    camera_info_fields,
    compressed_image_fields,
    ego_twist,
    image_fields,
    odometry_fields,
    optical_frame,
    topics_for,
)
from pop3d_ros.geometry.rig import CAMERA_NAMES


@dataclass
class PlaybackConfig:
    """How samples are published."""

    rate_hz: float = 2.0  # camera sets per second
    compressed: bool = False  # publish JPEG sensor_msgs/CompressedImage instead of raw Image
    reliability: Literal["reliable", "best_effort"] = "reliable"  # publisher QoS
    depth: int = 5  # publisher history depth (KEEP_LAST)
    restamp: bool = True  # stamp with the node clock now; False: the sample's own timestamp
    jitter_s: float = 0.0  # each camera's stamp moves by up to +- this much (robustness tests)
    drop_cameras: tuple[str, ...] = ()  # cameras never published
    drop_prob: float = 0.0  # chance that one camera's image is skipped in a frame
    jpeg_quality: int = 90  # for compressed
    noise_seed: int = 0  # jitter / drop randomness
    # Reliable only: after each image, wait up to this long until every subscriber has
    # acknowledged it (0 = don't). One process writing six images back to back overflows
    # Fast DDS's default 512 KB shared-memory segment; the lost sample is repaired only at
    # the next heartbeat, seconds later. Waiting for the acks paces the writes instead, with
    # default DDS settings (README, "DDS settings for six large image streams").
    # With large socket buffers (FASTDDS_BUILTIN_TRANSPORTS=DEFAULT?sockets_size=8MB) acks
    # come only with the writer's periodic heartbeat: set 0 there.
    ack_timeout_s: float = 0.1
    # nav_msgs/Odometry of the samples' ego poses (frame `odom_frame` <- base_link), published
    # just before each camera set with its stamp; "" = none. Reliable, keep last 10. Relative,
    # like the camera topics, so the player node's namespace moves it.
    odom_topic: str = "odom"
    odom_frame: str = ODOM_FRAME

    def __post_init__(self):
        if self.reliability not in ("reliable", "best_effort"):
            raise ValueError(f"reliability must be reliable|best_effort, got {self.reliability!r}")
        if self.rate_hz <= 0:
            raise ValueError(f"rate_hz must be > 0, got {self.rate_hz}")
        if self.ack_timeout_s < 0:
            raise ValueError(f"ack_timeout_s must be >= 0, got {self.ack_timeout_s}")


def _fill(msg, fields: dict):
    for key, value in fields.items():
        if isinstance(value, dict):
            _fill(getattr(msg, key), value)
        elif isinstance(value, bytes):
            setattr(msg, key, array.array("B", value))
        else:
            setattr(msg, key, value)
    return msg


class CameraPlayback:
    """Publishers for the cameras of a node; publish one sample or play a sequence."""

    def __init__(self, node, config: PlaybackConfig | None = None, camera_names=CAMERA_NAMES):
        self.node = node
        self.config = config or PlaybackConfig()
        c = self.config
        unknown = set(c.drop_cameras) - set(camera_names)
        if unknown:
            raise ValueError(f"unknown cameras to drop: {sorted(unknown)}")
        qos = QoSProfile(
            depth=c.depth,
            history=HistoryPolicy.KEEP_LAST,
            reliability=ReliabilityPolicy.RELIABLE
            if c.reliability == "reliable"
            else ReliabilityPolicy.BEST_EFFORT,
        )
        self.camera_names = list(camera_names)
        self._image_type = CompressedImage if c.compressed else Image
        self._pubs = {}
        for cam in self.camera_names:
            topics = topics_for(cam, c.compressed, relative=True)
            self._pubs[cam] = (
                node.create_publisher(self._image_type, topics["image"], qos),
                node.create_publisher(CameraInfo, topics["camera_info"], qos),
            )
        self._odom = None
        if c.odom_topic:
            self._odom = node.create_publisher(Odometry, c.odom_topic, 10)
        self._prev_pose = None  # (ego pose, sample timestamp) of the last set: the twist
        self._rng = np.random.default_rng(c.noise_seed)
        self._ack_timeout = None
        if c.reliability == "reliable" and c.ack_timeout_s > 0:
            self._ack_timeout = Duration(nanoseconds=int(c.ack_timeout_s * 1e9))
        self.frames_published = 0

    def topics(self) -> list[str]:
        """The camera topics (image and camera_info per camera): what the node subscribes
        whatever its settings; /odom is `odom_publisher` (subscribed only by a mapping node)."""
        return [p.topic_name for pair in self._pubs.values() for p in pair]

    @property
    def odom_publisher(self):
        """The nav_msgs/Odometry publisher, or None (`odom_topic` "")."""
        return self._odom

    def _publish_odometry(self, sample: dict, stamp_us: int) -> None:
        pose = sample.get("ego_to_world")
        if self._odom is None or pose is None:
            return
        ts = int(sample["timestamp"])
        twist = ego_twist(*(self._prev_pose or (None, 0)), pose, ts)
        self._prev_pose = (pose, ts)
        fields = odometry_fields(pose, stamp_us, twist, frame_id=self.config.odom_frame)
        self._odom.publish(_fill(Odometry(), fields))

    def publish_sample(self, sample: dict, stamp_us: int | None = None) -> int:
        """Publish one camera set with one stamp (plus jitter); returns the stamp in us."""
        c = self.config
        if stamp_us is None:
            if c.restamp:
                stamp_us = self.node.get_clock().now().nanoseconds // 1000
            else:
                stamp_us = int(sample["timestamp"])
        self._publish_odometry(sample, stamp_us)
        names = sample.get("camera_names", self.camera_names)
        _, H, W, _ = sample["images"].shape
        for i, cam in enumerate(names):
            if cam in c.drop_cameras or cam not in self._pubs:
                continue
            if c.drop_prob > 0 and self._rng.random() < c.drop_prob:
                continue
            t = stamp_us
            if c.jitter_s > 0:
                t += int(self._rng.uniform(-c.jitter_s, c.jitter_s) * 1e6)
            frame = optical_frame(cam)
            if c.compressed:
                fields = compressed_image_fields(sample["images"][i], t, frame, c.jpeg_quality)
            else:
                fields = image_fields(sample["images"][i], t, frame)
            img_pub, info_pub = self._pubs[cam]
            info_pub.publish(
                _fill(CameraInfo(), camera_info_fields(sample["intrinsics"][i], W, H, t, frame))
            )
            img_pub.publish(_fill(self._image_type(), fields))
            if self._ack_timeout is not None:
                img_pub.wait_for_all_acked(self._ack_timeout)
        self.frames_published += 1
        return stamp_us

    def play(self, samples: Iterable[dict], max_frames: int | None = None,
             stop: threading.Event | None = None) -> int:  # fmt: skip
        """Publish samples at `rate_hz` (wall clock) until exhausted, max_frames or stop."""
        period = 1.0 / self.config.rate_hz
        next_t = time.monotonic()
        count = 0
        for sample in samples:
            if (max_frames is not None and count >= max_frames) or (stop and stop.is_set()):
                break
            delay = next_t - time.monotonic()
            if delay > 0:
                if stop is not None:
                    if stop.wait(delay):
                        break
                else:
                    time.sleep(delay)
            self.publish_sample(sample)
            count += 1
            next_t += period
        return count
