"""ROS-free conversion of images and intrinsics to the fields of ROS 2 messages.

The playback publisher fills rclpy messages from these dicts and the bag writer serialises
them with mcap_ros2, so both produce the same topics. Field names follow sensor_msgs.
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

from pop3d_ros.geometry.rig import CAMERA_NAMES


def optical_frame(camera: str) -> str:
    return f"{camera}_optical_frame"


def topics_for(camera: str, compressed: bool = False, relative: bool = False) -> dict[str, str]:
    """The camera's image and camera_info topics: absolute (what a bag records), or relative
    (what a publisher uses, so that its node's namespace moves them)."""
    prefix = "" if relative else "/"
    image = f"{prefix}{camera}/image_raw" + ("/compressed" if compressed else "")
    return {"image": image, "camera_info": f"{prefix}{camera}/camera_info"}


def stamp_fields(timestamp_us: int) -> dict:
    ns = int(timestamp_us) * 1000
    return {"sec": ns // 1_000_000_000, "nanosec": ns % 1_000_000_000}


def header_fields(timestamp_us: int, frame_id: str) -> dict:
    return {"stamp": stamp_fields(timestamp_us), "frame_id": frame_id}


def image_fields(rgb: np.ndarray, timestamp_us: int, frame_id: str) -> dict:
    """sensor_msgs/Image (rgb8) fields of an (H, W, 3) uint8 image."""
    rgb = np.ascontiguousarray(rgb, dtype=np.uint8)
    if rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ValueError(f"expected an (H, W, 3) RGB image, got shape {rgb.shape}")
    h, w, _ = rgb.shape
    header = header_fields(timestamp_us, frame_id)
    return {"header": header, "height": h, "width": w, "encoding": "rgb8", "is_bigendian": 0,
            "step": w * 3, "data": rgb.tobytes()}  # fmt: skip


def jpeg_bytes(rgb: np.ndarray, quality: int = 90) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.asarray(rgb, dtype=np.uint8)).save(buf, format="JPEG", quality=quality)
    return buf.getvalue()


def compressed_image_fields(rgb, timestamp_us: int, frame_id: str, quality: int = 90) -> dict:
    """sensor_msgs/CompressedImage (JPEG) fields."""
    return {"header": header_fields(timestamp_us, frame_id), "format": "rgb8; jpeg compressed bgr8",
            "data": jpeg_bytes(rgb, quality)}  # fmt: skip


def camera_info_fields(K, width: int, height: int, timestamp_us: int, frame_id: str) -> dict:
    """sensor_msgs/CameraInfo fields of an undistorted pinhole camera (D = 0)."""
    K = np.asarray(K, dtype=np.float64).reshape(3, 3)
    P = np.zeros((3, 4))
    P[:, :3] = K
    return {
        "header": header_fields(timestamp_us, frame_id),
        "height": int(height),
        "width": int(width),
        "distortion_model": "plumb_bob",
        "d": [0.0] * 5,
        "k": K.ravel().tolist(),
        "r": np.eye(3).ravel().tolist(),
        "p": P.ravel().tolist(),
        "binning_x": 0,
        "binning_y": 0,
        "roi": {"x_offset": 0, "y_offset": 0, "height": 0, "width": 0, "do_rectify": False},
    }


ODOM_TOPIC = "/odom"
ODOM_FRAME = "odom"  # REP-105: the continuous odometry frame (the map's default map_frame)
BASE_FRAME = "base_link"


def ego_twist(prev_pose, prev_us: int, pose, timestamp_us: int) -> dict:
    """geometry_msgs/Twist fields in base_link: the motion from prev_pose to pose (4x4
    ego -> world) over their stamps; zero without a previous pose."""
    zero = {"linear": {"x": 0.0, "y": 0.0, "z": 0.0}, "angular": {"x": 0.0, "y": 0.0, "z": 0.0}}
    dt = (int(timestamp_us) - int(prev_us)) * 1e-6 if prev_pose is not None else 0.0
    if dt <= 0:
        return zero
    a, b = np.asarray(prev_pose, np.float64), np.asarray(pose, np.float64)
    v = b[:3, :3].T @ (b[:3, 3] - a[:3, 3]) / dt
    rel = a[:3, :3].T @ b[:3, :3]
    rate = np.array([rel[2, 1] - rel[1, 2], rel[0, 2] - rel[2, 0], rel[1, 0] - rel[0, 1]])
    angle = np.arccos(np.clip((np.trace(rel) - 1) / 2, -1.0, 1.0))
    norm = np.linalg.norm(rate)
    w = rate / norm * angle / dt if norm > 1e-12 else np.zeros(3)
    return {"linear": dict(zip("xyz", map(float, v), strict=True)),
            "angular": dict(zip("xyz", map(float, w), strict=True))}  # fmt: skip


def odometry_fields(
    ego_to_world,
    timestamp_us: int,
    twist: dict | None = None,
    frame_id: str = ODOM_FRAME,
    child_frame_id: str = BASE_FRAME,
) -> dict:
    """nav_msgs/Odometry fields of an ego pose (4x4 base_link -> odom); covariances zero."""
    from pop3d_ros.geometry.transforms import matrix_to_quaternion

    t = np.asarray(ego_to_world, np.float64)
    w, x, y, z = matrix_to_quaternion(t[:3, :3])
    twist = twist or ego_twist(None, 0, t, timestamp_us)
    return {
        "header": header_fields(timestamp_us, frame_id),
        "child_frame_id": child_frame_id,
        "pose": {
            "pose": {
                "position": {"x": float(t[0, 3]), "y": float(t[1, 3]), "z": float(t[2, 3])},
                "orientation": {"x": float(x), "y": float(y), "z": float(z), "w": float(w)},
            },
            "covariance": [0.0] * 36,
        },
        "twist": {"twist": twist, "covariance": [0.0] * 36},
    }


def sample_messages(sample: dict, compressed: bool = False, stamp_us: int | None = None,
                    drop=(), jpeg_quality: int = 90, twist: dict | None = None):  # fmt: skip
    """(topic, type name, fields) of a sample: /odom first (the ego pose, where the sample
    has one, so a node has the set's pose when its images complete), then per camera image
    and camera_info. `twist`: the ego's motion (`ego_twist`), zero when not given."""
    stamp = int(sample["timestamp"] if stamp_us is None else stamp_us)
    if sample.get("ego_to_world") is not None and ODOM_TOPIC not in drop:
        yield ODOM_TOPIC, "nav_msgs/msg/Odometry", odometry_fields(sample["ego_to_world"], stamp,
                                                                   twist)  # fmt: skip
    _, H, W, _ = sample["images"].shape
    names = sample.get("camera_names", CAMERA_NAMES)
    for c, cam in enumerate(names):
        if cam in drop:
            continue
        frame, topics = optical_frame(cam), topics_for(cam, compressed)
        img = sample["images"][c]
        if compressed:
            yield (topics["image"], "sensor_msgs/msg/CompressedImage",
                   compressed_image_fields(img, stamp, frame, jpeg_quality))  # fmt: skip
        else:
            yield topics["image"], "sensor_msgs/msg/Image", image_fields(img, stamp, frame)
        yield (topics["camera_info"], "sensor_msgs/msg/CameraInfo",
               camera_info_fields(sample["intrinsics"][c], W, H, stamp, frame))  # fmt: skip
