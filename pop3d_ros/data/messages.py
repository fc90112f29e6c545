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


def sample_messages(sample: dict, compressed: bool = False, stamp_us: int | None = None,
                    drop=(), jpeg_quality: int = 90):  # fmt: skip
    """(topic, type name, fields) for each camera of a sample: image then camera_info."""
    stamp = int(sample["timestamp"] if stamp_us is None else stamp_us)
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
