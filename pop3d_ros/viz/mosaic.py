"""Six camera images as one picture: front row FL F FR, back row BL B BR."""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw

from pop3d_ros.geometry.rig import CAMERA_NAMES
from pop3d_ros.viz.palette import class_colors

LAYOUT = (("cam_front_left", "cam_front", "cam_front_right"),
          ("cam_back_left", "cam_back", "cam_back_right"))  # fmt: skip


def camera_mosaic(images, overlays=None, alpha: float = 0.5, names=CAMERA_NAMES,
                  labels: bool = True) -> np.ndarray:  # fmt: skip
    """uint8 (2H, 3W, 3) mosaic of (6, H, W, 3) images.

    `overlays`: (6, H, W) class ids (coloured by class; IGNORE left transparent) or
    (6, H, W, 3) RGB, blended with `alpha`.
    """
    images = np.asarray(images)
    if images.ndim != 4 or images.shape[0] != len(names) or images.shape[3] != 3:
        raise ValueError(f"images must be ({len(names)}, H, W, 3), got {images.shape}")
    out = images.astype(np.float64)
    if overlays is not None:
        ov = np.asarray(overlays)
        if ov.ndim == 3:
            mask = (ov < 16)[..., None]
            ov = class_colors(ov)
        else:
            mask = np.ones(ov.shape[:3] + (1,), bool)
        out = np.where(mask, (1 - alpha) * out + alpha * ov, out)
    out = out.astype(np.uint8)
    index = {n: i for i, n in enumerate(names)}
    rows = [np.concatenate([out[index[n]] for n in row], axis=1) for row in LAYOUT]
    mosaic = np.concatenate(rows, axis=0)
    if labels:
        pil = Image.fromarray(mosaic)
        draw = ImageDraw.Draw(pil)
        H, W = images.shape[1:3]
        for r, row in enumerate(LAYOUT):
            for c, name in enumerate(row):
                draw.text((c * W + 3, r * H + 2), name, fill=(255, 255, 255))
        mosaic = np.asarray(pil)
    return mosaic
