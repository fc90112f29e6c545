"""The camera rig: per-camera extrinsics (optical frame -> base_link) and nominal intrinsics.

A rig file (config/rig_nuscenes.yaml) gives each camera a translation and either a yaw
(optical axis heading, pitch 0) or a full (w, x, y, z) quaternion `rotation` of the optical
frame in base_link.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import yaml

from pop3d_ros.geometry.camera import PinholeCamera
from pop3d_ros.geometry.transforms import OPTICAL_TO_BODY, make_transform, yaw_rotation

CAMERA_NAMES = (
    "cam_front",
    "cam_front_right",
    "cam_back_right",
    "cam_back",
    "cam_back_left",
    "cam_front_left",
)

DEFAULT_RIG_FILE = Path(__file__).resolve().parents[2] / "config" / "rig_nuscenes.yaml"


class RigError(ValueError):
    """A rig file that cannot be used, with the file and the problem in the message."""


def optical_rotation_from_yaw(yaw_deg: float) -> np.ndarray:
    """Rotation of an optical frame whose axis looks horizontally at heading `yaw_deg`."""
    return yaw_rotation(np.deg2rad(yaw_deg)) @ OPTICAL_TO_BODY


def _camera_from_entry(name: str, entry: dict, width: int, height: int) -> PinholeCamera:
    if "rotation" in entry:
        rotation = np.asarray(entry["rotation"], dtype=np.float64)
    elif "yaw_deg" in entry:
        rotation = optical_rotation_from_yaw(float(entry["yaw_deg"]))
    else:
        raise RigError(f"camera {name!r} needs 'rotation' (w, x, y, z) or 'yaw_deg'")
    intr = entry.get("intrinsics", {})
    K = np.array(
        [
            [float(intr.get("fx", 0.0)), 0.0, float(intr.get("cx", (width - 1) / 2))],
            [0.0, float(intr.get("fy", 0.0)), float(intr.get("cy", (height - 1) / 2))],
            [0.0, 0.0, 1.0],
        ]
    )
    cam_to_ego = make_transform(rotation, entry.get("translation", [0.0, 0.0, 0.0]))
    return PinholeCamera(K, cam_to_ego, width, height, name)


def load_rig(path=None, names=None, width=None, height=None) -> list[PinholeCamera]:
    """Cameras of a rig file, in the order of `names` (default: the file's order).

    `width`/`height` rescale the nominal intrinsics to another image size.
    """
    path = Path(path) if path else DEFAULT_RIG_FILE
    try:
        doc = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise RigError(f"{path}: cannot read rig file ({exc.strerror})") from exc
    except yaml.YAMLError as exc:
        raise RigError(f"{path}: not valid YAML ({exc})") from exc
    if not isinstance(doc, dict) or not isinstance(doc.get("cameras"), dict):
        raise RigError(f"{path}: expected a mapping with a 'cameras' mapping")
    base_w, base_h = int(doc.get("image_width", 1600)), int(doc.get("image_height", 900))
    entries = doc["cameras"]
    names = list(names) if names else list(entries)
    cameras = []
    for name in names:
        if name not in entries:
            raise RigError(f"{path}: no camera {name!r} (has {sorted(entries)})")
        try:
            cam = _camera_from_entry(name, entries[name], base_w, base_h)
        except (ValueError, TypeError) as exc:
            raise RigError(f"{path}: camera {name!r}: {exc}") from exc
        if width and height:
            cam = cam.resized(int(width), int(height))
        cameras.append(cam)
    return cameras
