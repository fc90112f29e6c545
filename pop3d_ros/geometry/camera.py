"""Pinhole camera: intrinsics K and the camera-optical-frame -> ego (base_link) transform."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pop3d_ros.geometry.transforms import invert_transform


def scale_intrinsics(K, scale_x: float, scale_y: float) -> np.ndarray:
    """K for an image resized by (scale_x, scale_y).

    Pixel centres stay consistent under resizing: with the convention that pixel (0, 0)'s
    centre is at (0, 0), u' + 0.5 = (u + 0.5) * s, hence c' = (c + 0.5) * s - 0.5.
    """
    K = np.asarray(K, dtype=np.float64).copy()
    K[0, 0] *= scale_x
    K[0, 1] *= scale_x
    K[0, 2] = (K[0, 2] + 0.5) * scale_x - 0.5
    K[1, 1] *= scale_y
    K[1, 2] = (K[1, 2] + 0.5) * scale_y - 0.5
    return K


def validate_intrinsics(K) -> np.ndarray:
    """K as a 3x3 float64 array, or ValueError saying what is wrong (zero/NaN focal, ...)."""
    K = np.asarray(K, dtype=np.float64)
    if K.shape != (3, 3):
        raise ValueError(f"intrinsics must be 3x3, got shape {K.shape}")
    if not np.all(np.isfinite(K)):
        raise ValueError("intrinsics contain NaN or inf")
    if K[0, 0] <= 0 or K[1, 1] <= 0:
        raise ValueError(f"focal lengths must be positive, got fx={K[0, 0]}, fy={K[1, 1]}")
    if not np.allclose(K[2], [0.0, 0.0, 1.0]):
        raise ValueError(f"last row of K must be [0, 0, 1], got {K[2].tolist()}")
    return K


@dataclass
class PinholeCamera:
    """A calibrated camera. Optical frame: x right, y down, z forward (REP-103 optical)."""

    K: np.ndarray  # 3x3 intrinsics for an image of (width, height)
    cam_to_ego: np.ndarray  # 4x4: points in the optical frame -> ego frame (base_link)
    width: int
    height: int
    name: str = ""

    def __post_init__(self):
        self.K = validate_intrinsics(self.K)
        self.cam_to_ego = np.asarray(self.cam_to_ego, dtype=np.float64)
        if self.cam_to_ego.shape != (4, 4) or not np.all(np.isfinite(self.cam_to_ego)):
            raise ValueError(f"camera {self.name!r}: extrinsics must be a finite 4x4 matrix")
        if self.width <= 0 or self.height <= 0:
            raise ValueError(f"camera {self.name!r}: image size must be positive")

    @property
    def ego_to_cam(self) -> np.ndarray:
        return invert_transform(self.cam_to_ego)

    @property
    def center_ego(self) -> np.ndarray:
        """Optical centre in the ego frame."""
        return self.cam_to_ego[:3, 3].copy()

    def resized(self, width: int, height: int) -> PinholeCamera:
        """The same camera for an image resized to (width, height)."""
        K = scale_intrinsics(self.K, width / self.width, height / self.height)
        return PinholeCamera(K, self.cam_to_ego, width, height, self.name)

    def project(self, points_ego, min_depth: float = 0.1):
        """Project ego-frame points (..., 3) to pixels.

        Returns (uv (..., 2) float, depth (..., ) metres along the optical axis,
        valid (..., ) bool: in front of the camera by min_depth and inside the image).
        """
        p = np.asarray(points_ego, dtype=np.float64)
        t = self.ego_to_cam
        pc = p @ t[:3, :3].T + t[:3, 3]
        depth = pc[..., 2]
        safe = np.where(depth > min_depth, depth, 1.0)
        uvw = pc @ self.K.T
        uv = uvw[..., :2] / safe[..., None]
        inside = (
            (uv[..., 0] >= -0.5)
            & (uv[..., 0] < self.width - 0.5)
            & (uv[..., 1] >= -0.5)
            & (uv[..., 1] < self.height - 0.5)
        )
        return uv, depth, (depth > min_depth) & inside

    def pixel_rays(self, stride: int = 1):
        """Unit ray directions in the ego frame for pixel centres, shape (H', W', 3)."""
        us = np.arange(0, self.width, stride, dtype=np.float64)
        vs = np.arange(0, self.height, stride, dtype=np.float64)
        u, v = np.meshgrid(us, vs)
        pix = np.stack([u, v, np.ones_like(u)], axis=-1)
        dirs_cam = pix @ np.linalg.inv(self.K).T
        dirs = dirs_cam @ self.cam_to_ego[:3, :3].T
        return dirs / np.linalg.norm(dirs, axis=-1, keepdims=True)
