"""A tiny nuScenes-format dataset written to disk, for tests (ours and other components').

Geometry is chosen so that results can be computed by hand: every ego pose has yaw 90 deg,
each camera frame is taken 1 m further along world +x than its LiDAR frame, the LiDAR is
mounted at (0.94, 0, 1.84) with yaw -90 deg (as on the nuScenes car), and every LiDAR file
holds the same FIXTURE_POINTS with lidarseg indices FIXTURE_LIDARSEG.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image

from pop3d_ros.data.nuscenes import CHANNELS, LIDAR_CHANNEL, LIDARSEG_TO_CLASS

S2 = float(np.sqrt(0.5))
OPTICAL_Q = [0.5, -0.5, 0.5, -0.5]  # optical frame looking along ego +x
YAW90_Q = [S2, 0.0, 0.0, S2]
LIDAR_Q = [S2, 0.0, 0.0, -S2]
LIDAR_T = [0.94, 0.0, 1.84]
FIXTURE_POINTS = np.array(
    [[1, 0, 0, 5, 0], [0, 2, -1, 6, 1], [10, 0, 0, 7, 2], [0, -5, 0.5, 8, 3], [3, 3, 0, 9, 4]],
    dtype=np.float32,
)
FIXTURE_LIDARSEG = np.array([17, 24, 0, 19, 30], dtype=np.uint8)
CAMERA_YAWS = [0.0, -55.0, -110.0, 180.0, 110.0, 55.0]


def camera_color(index: int) -> tuple[int, int, int]:
    return (40 * index, 100, 200 - 30 * index)


def _yaw_optical_q(yaw_deg: float) -> list[float]:
    """(w, x, y, z) of an optical frame whose axis looks at heading yaw_deg in the ego frame."""
    h = np.deg2rad(yaw_deg) / 2
    qz = np.array([np.cos(h), 0.0, 0.0, np.sin(h)])
    w1, x1, y1, z1 = qz
    w2, x2, y2, z2 = OPTICAL_Q
    return [
        w1 * w2 - x1 * x2 - y1 * y2 - z1 * z2,
        w1 * x2 + x1 * w2 + y1 * z2 - z1 * y2,
        w1 * y2 - x1 * z2 + y1 * w2 + z1 * x2,
        w1 * z2 + x1 * y2 - y1 * x2 + z1 * w2,
    ]


def write_nuscenes_fixture(
    root,
    scenes: int = 2,
    samples_per_scene: int = 3,
    image_size=(64, 36),
    version: str = "v1.0-mini",
) -> dict:
    """Write the fixture under `root`; returns {"scenes": [names], "samples": [tokens]}."""
    root = Path(root)
    tables = {
        k: []
        for k in (
            "scene",
            "sample",
            "sample_data",
            "calibrated_sensor",
            "ego_pose",
            "sensor",
            "category",
            "lidarseg",
            "log",
        )
    }
    W, H = image_size
    for i, name in enumerate(LIDARSEG_TO_CLASS):
        tables["category"].append({"token": f"cat{i}", "name": name, "description": "", "index": i})
    calib = {}
    for c, ch in enumerate(list(CHANNELS) + [LIDAR_CHANNEL]):
        tables["sensor"].append(
            {
                "token": f"sensor_{ch}",
                "channel": ch,
                "modality": "lidar" if ch == LIDAR_CHANNEL else "camera",
            }
        )
        if ch == LIDAR_CHANNEL:
            rec = {"translation": LIDAR_T, "rotation": LIDAR_Q, "camera_intrinsic": []}
        else:
            K = [[50.0, 0.0, (W - 1) / 2], [0.0, 50.0, (H - 1) / 2], [0.0, 0.0, 1.0]]
            rec = {
                "translation": [1.7, 0.0, 1.5],
                "rotation": _yaw_optical_q(CAMERA_YAWS[c]),
                "camera_intrinsic": K,
            }
        calib[ch] = {"token": f"calib_{ch}", "sensor_token": f"sensor_{ch}", **rec}
        tables["calibrated_sensor"].append(calib[ch])
    out_scenes, out_samples = [], []
    for s in range(scenes):
        name = f"scene-{s + 1:04d}"
        tokens = [f"s{s}_k{k}" for k in range(samples_per_scene)]
        tables["scene"].append(
            {
                "token": f"scene{s}",
                "name": name,
                "log_token": "log0",
                "nbr_samples": samples_per_scene,
                "description": "",
                "first_sample_token": tokens[0],
                "last_sample_token": tokens[-1],
            }
        )
        for k, tok in enumerate(tokens):
            ts = 1_500_000_000_000_000 + s * 100_000_000 + k * 500_000
            tables["sample"].append(
                {
                    "token": tok,
                    "timestamp": ts,
                    "scene_token": f"scene{s}",
                    "prev": tokens[k - 1] if k else "",
                    "next": tokens[k + 1] if k + 1 < len(tokens) else "",
                }
            )
            base = [100.0 + 5 * k, 200.0 + 50 * s, 0.0]
            for c, ch in enumerate(list(CHANNELS) + [LIDAR_CHANNEL]):
                sd_tok = f"{tok}_{ch}"
                pose = list(base) if ch == LIDAR_CHANNEL else [base[0] + 1.0, base[1], 0.0]
                tables["ego_pose"].append(
                    {
                        "token": f"pose_{sd_tok}",
                        "translation": pose,
                        "rotation": YAW90_Q,
                        "timestamp": ts,
                    }
                )
                if ch == LIDAR_CHANNEL:
                    fn = f"samples/{ch}/{sd_tok}.pcd.bin"
                    (root / fn).parent.mkdir(parents=True, exist_ok=True)
                    FIXTURE_POINTS.tofile(root / fn)
                    seg = f"lidarseg/{version}/{sd_tok}_lidarseg.bin"
                    (root / seg).parent.mkdir(parents=True, exist_ok=True)
                    FIXTURE_LIDARSEG.tofile(root / seg)
                    tables["lidarseg"].append(
                        {"token": sd_tok, "sample_data_token": sd_tok, "filename": seg}
                    )
                    fmt, w, h = "pcd", 0, 0
                else:
                    fn = f"samples/{ch}/{sd_tok}.jpg"
                    (root / fn).parent.mkdir(parents=True, exist_ok=True)
                    Image.new("RGB", (W, H), camera_color(c)).save(root / fn, quality=95)
                    fmt, w, h = "jpg", W, H
                tables["sample_data"].append(
                    {
                        "token": sd_tok,
                        "sample_token": tok,
                        "ego_pose_token": f"pose_{sd_tok}",
                        "calibrated_sensor_token": f"calib_{ch}",
                        "timestamp": ts,
                        "fileformat": fmt,
                        "is_key_frame": True,
                        "height": h,
                        "width": w,
                        "filename": fn,
                        "prev": "",
                        "next": "",
                    }
                )
        out_scenes.append(name)
        out_samples.extend(tokens)
    tables["log"].append({"token": "log0", "location": "fixture"})
    (root / version).mkdir(parents=True, exist_ok=True)
    for name, rows in tables.items():
        (root / version / f"{name}.json").write_text(json.dumps(rows))
    return {"scenes": out_scenes, "samples": out_samples}
