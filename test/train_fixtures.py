"""Tiny hand-made frames and a tiny model config for the training tests (fast on 1 thread).

The frames are not the synthetic world (its tests live with the data work): a flat ground
of one class and a few boxes of others, with matching camera images and LiDAR returns, so
the tests exercise training and evaluation without rendering.
"""

from __future__ import annotations

import numpy as np

from pop3d_ros.data.classes import CLASS_ID
from pop3d_ros.geometry.rig import CAMERA_NAMES, load_rig
from pop3d_ros.model.config import (
    BackboneConfig,
    DecoderConfig,
    GridConfig,
    HeadsConfig,
    ModelConfig,
)

IMAGE_HW = (48, 80)


def tiny_model_config() -> ModelConfig:
    return ModelConfig(
        name="test-tiny",
        image_size=(32, 64),
        grid=GridConfig(
            x_range=(-8.0, 8.0), y_range=(-8.0, 8.0), z_range=(-2.0, 2.0), shape=(8, 8, 2)
        ),
        backbone=BackboneConfig(depth=18, out_channels=8, output_stride=8, last_stage=3),
        decoder=DecoderConfig(bev_channels=16, n_blocks=1, n_down_blocks=0, voxel_channels=8),
        heads=HeadsConfig(occ_hidden=16, lang_hidden=16, clip_dim=512, n_blocks=2),
    )


def tiny_sample(seed: int) -> dict:
    """A frame with ground (driveable_surface) at z = -1.8 m and two 'car' boxes."""
    rng = np.random.default_rng(seed)
    h, w = IMAGE_HW
    cams = load_rig(width=w, height=h)
    # LiDAR: ground points in a disc + points on two box faces.
    r = rng.uniform(2.0, 9.0, 600)
    a = rng.uniform(-np.pi, np.pi, 600)
    ground = np.stack([r * np.cos(a), r * np.sin(a), np.full(600, -1.8)], 1)
    centres = rng.uniform(-6, 6, (2, 2))
    boxes = np.concatenate(
        [
            np.stack(
                [
                    c[0] + rng.uniform(-1, 1, 150),
                    c[1] + rng.uniform(-1, 1, 150),
                    rng.uniform(-1.5, 0.5, 150),
                ],
                1,
            )
            for c in centres
        ]
    )
    points = np.concatenate([ground, boxes]).astype(np.float32)
    labels = np.concatenate(
        [np.full(600, CLASS_ID["driveable_surface"]), np.full(300, CLASS_ID["car"])]
    ).astype(np.uint8)
    # Images and per-pixel classes: splat the points so appearance matches the geometry.
    images = np.full((6, h, w, 3), 120, np.uint8)
    semantic = np.full((6, h, w), 255, np.uint8)
    for c, cam in enumerate(cams):
        uv, _, valid = cam.project(points)
        px = np.round(uv[valid]).astype(int)
        px[:, 0] = px[:, 0].clip(0, w - 1)
        px[:, 1] = px[:, 1].clip(0, h - 1)
        lab = labels[valid]
        images[c, px[:, 1], px[:, 0]] = np.where(
            (lab == CLASS_ID["car"])[:, None], [220, 30, 30], [40, 40, 40]
        )
        semantic[c, px[:, 1], px[:, 0]] = lab
    return {
        "token": f"tiny-{seed}",
        "scene": "tiny",
        "timestamp": seed,
        "prev": None,
        "next": None,
        "camera_names": list(CAMERA_NAMES),
        "images": images,
        "intrinsics": np.stack([cam.K for cam in cams]).astype(np.float32),
        "cam_to_ego": np.stack([cam.cam_to_ego for cam in cams]).astype(np.float32),
        "ego_to_world": np.eye(4, dtype=np.float32),
        "lidar_points": points,
        "lidar_labels": labels,
        "lidar_origin": np.array([0.0, 0.0, 0.0], np.float32),
        "semantic": semantic,
    }
