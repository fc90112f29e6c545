"""Network inputs from a sample: images resized to the model input, calibration for that
size, and the lifting's sampling grids (cached by calibration, as the node does)."""

from __future__ import annotations

import hashlib

import numpy as np
import torch
import torch.nn.functional as F

from pop3d_ros.geometry.camera import PinholeCamera, scale_intrinsics


def resize_images(images: np.ndarray, image_hw: tuple[int, int]) -> torch.Tensor:
    """uint8 (N, H, W, 3) -> uint8 (N, 3, h, w) at the model's input size (antialiased)."""
    x = torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2)
    if tuple(x.shape[-2:]) == tuple(image_hw):
        return x.contiguous()
    y = F.interpolate(
        x.float(), size=tuple(image_hw), mode="bilinear", antialias=True, align_corners=False
    )
    return y.round().clamp(0, 255).to(torch.uint8)


def resized_intrinsics(sample: dict, image_hw: tuple[int, int]) -> np.ndarray:
    """(N, 3, 3) float32 intrinsics for images resized to image_hw."""
    h, w = int(sample["images"].shape[1]), int(sample["images"].shape[2])
    sy, sx = image_hw[0] / h, image_hw[1] / w
    return np.stack([scale_intrinsics(k, sx, sy) for k in sample["intrinsics"]]).astype(np.float32)


def model_inputs(sample: dict, image_hw: tuple[int, int]) -> dict:
    """The per-frame network inputs that do not depend on the grid (cacheable on disk)."""
    return {
        "images": resize_images(sample["images"], image_hw),
        "intrinsics": torch.from_numpy(resized_intrinsics(sample, image_hw)),
        "cam_to_ego": torch.from_numpy(np.asarray(sample["cam_to_ego"], np.float32)),
    }


class SamplingCache:
    """`compute_sampling` results keyed by calibration bytes (a rig rarely changes).

    Returns the encoder's calibration inputs in `cfg.encoder_input_names` order after the
    images: (sampling_grid, sampling_mask) or, for a depth-bin lifting, (sampling_grid,
    sampling_mask, sampling_depth); call the model as `model(images, *sampling(...))`.
    """

    def __init__(self, cfg, max_entries: int = 16):
        self.cfg = cfg
        self.max_entries = max_entries
        self._cache: dict[str, tuple[torch.Tensor, ...]] = {}

    def __call__(self, intrinsics, cam_to_ego) -> tuple[torch.Tensor, ...]:
        from pop3d_ros.model.depth import compute_sampling_depth
        from pop3d_ros.model.lifting import compute_sampling

        k = np.asarray(intrinsics, np.float32)
        e = np.asarray(cam_to_ego, np.float32)
        key = hashlib.sha1(k.tobytes() + e.tobytes()).hexdigest()
        if key not in self._cache:
            h, w = self.cfg.image_size
            cams = [PinholeCamera(k[i], e[i], w, h) for i in range(len(k))]
            lift = self.cfg.lifting
            g, m = compute_sampling(
                cams, self.cfg.voxel_grid, self.cfg.feature_hw, (h, w), lift.min_depth
            )
            value = (torch.from_numpy(g), torch.from_numpy(m))
            if lift.depth_bins:
                d = compute_sampling_depth(cams, self.cfg.voxel_grid, lift)
                value = (*value, torch.from_numpy(d))
            if len(self._cache) >= self.max_entries:
                self._cache.pop(next(iter(self._cache)))
            self._cache[key] = value
        return self._cache[key]

    def batch(self, intrinsics: torch.Tensor, cam_to_ego: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """Stacked (B, N, N_vox, 2) grids, (B, N, N_vox) masks (and (B, N, N_vox) depth bin
        coordinates for a depth-bin lifting) for a batch."""
        per_frame = [self(intrinsics[b], cam_to_ego[b]) for b in range(intrinsics.shape[0])]
        return tuple(torch.stack(parts) for parts in zip(*per_frame, strict=True))


def camera_list(intrinsics, cam_to_ego, image_hw: tuple[int, int]) -> list[PinholeCamera]:
    """PinholeCameras of (N, 3, 3) intrinsics and (N, 4, 4) extrinsics at the input size."""
    k = np.asarray(intrinsics, np.float64)
    e = np.asarray(cam_to_ego, np.float64)
    return [PinholeCamera(k[i], e[i], int(image_hw[1]), int(image_hw[0])) for i in range(len(k))]
