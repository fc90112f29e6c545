"""The volume an evaluation is scored on, which may differ from the model's own grid.

POP-3D (and TPVFormer, whose code it builds on) define the volume in the LiDAR sensor frame:
100 x 100 x 8 voxels over x, y in [-51.2, 51.2] m and z in [-5, 3] m of LIDAR_TOP
(vobecant/POP3D `config/pop3d_maskclip_12ep.py`: `point_cloud_range`, `grid_size`). Our
models predict on a grid in `base_link`; on nuScenes LIDAR_TOP sits 0.94 m ahead of and
1.84 m above `base_link` (yaw -90 deg), so the same numbers in `base_link` are another volume.

`pop3d-nuscenes` scores a model on POP-3D's exact volume, per sample: evaluation labels are
built in the LiDAR frame (points and ray origin moved there by the sample's `lidar_to_ego`),
and each evaluation voxel takes the prediction of the model voxel holding its centre (mapped
to `base_link`); evaluation voxels outside the model's grid count as predicted empty. A model
whose grid is that volume expressed in `base_link` is scored voxel for voxel.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pop3d_ros.geometry.grid import VoxelGrid
from pop3d_ros.geometry.transforms import invert_transform, transform_points

FRAMES = ("base_link", "lidar")


@dataclass(frozen=True)
class EvalVolume:
    """A named evaluation volume: a voxel grid in `frame` ("base_link" or "lidar")."""

    name: str  # "model" (the checkpoint's own grid) or a preset name
    grid: VoxelGrid  # voxels in `frame`
    frame: str = "base_link"  # "lidar": the sample's LiDAR sensor frame (`lidar_to_ego`)

    def describe(self) -> dict:
        return {"name": self.name, "frame": self.frame, **self.grid.to_dict()}


# POP-3D's volume (module docstring).
POP3D_NUSCENES = EvalVolume(
    "pop3d-nuscenes", VoxelGrid((-51.2, 51.2), (-51.2, 51.2), (-5.0, 3.0), (100, 100, 8)), "lidar"
)
VOLUMES = {"pop3d-nuscenes": POP3D_NUSCENES}


def choose_volume(name: str, model_grid: VoxelGrid, data: str, checkpoint_meta: dict) -> EvalVolume:
    """`--volume` -> EvalVolume. "auto": the volume the checkpoint names (`meta.eval_volume`)
    if any, else `pop3d-nuscenes` on nuScenes data, else the model's own grid."""
    if name == "auto":
        name = checkpoint_meta.get("eval_volume") or (
            "pop3d-nuscenes" if data == "nuscenes" else "model"
        )
    if name == "model":
        return EvalVolume("model", model_grid, "base_link")
    if name not in VOLUMES:
        raise ValueError(f"unknown evaluation volume {name!r}; one of {['model', *VOLUMES]}")
    return VOLUMES[name]


def lidar_to_ego(sample: dict) -> np.ndarray:
    """(4, 4) LiDAR sensor -> base_link of a sample (nuScenes samples carry it)."""
    if "lidar_to_ego" not in sample:
        raise ValueError(
            f"sample {sample.get('token')!r} has no lidar_to_ego: cannot evaluate in the "
            "LiDAR frame (use --volume model)"
        )
    return np.asarray(sample["lidar_to_ego"], np.float64)


class VolumeMap:
    """Moves one sample's points into the volume's frame and maps volume voxels onto the
    model's grid (flat model voxel per volume voxel, -1 outside the model's grid)."""

    def __init__(self, volume: EvalVolume, model_grid: VoxelGrid):
        self.volume = volume
        self.model_grid = model_grid
        self._cache: dict[bytes, tuple[np.ndarray, np.ndarray]] = {}

    @property
    def identity(self) -> bool:
        return self.volume.frame == "base_link" and self.volume.grid == self.model_grid

    def to_volume_frame(self, sample: dict) -> np.ndarray:
        """(4, 4) base_link -> the volume's frame for this sample."""
        if self.volume.frame == "base_link":
            return np.eye(4)
        return invert_transform(lidar_to_ego(sample))

    def voxel_map(self, sample: dict) -> np.ndarray:
        """(volume voxels,) int64: the model voxel holding each volume voxel's centre, or -1."""
        ego_from_vol = invert_transform(self.to_volume_frame(sample))
        key = np.round(ego_from_vol, 6).tobytes()
        if key not in self._cache:
            centres = self.volume.grid.centers().reshape(-1, 3)
            idx, inside = self.model_grid.points_to_index(transform_points(ego_from_vol, centres))
            flat = np.where(
                inside, self.model_grid.flat_index(np.where(inside[:, None], idx, 0)), -1
            )
            self._cache = {key: flat.astype(np.int64)}  # one mounting at a time
        return self._cache[key]
