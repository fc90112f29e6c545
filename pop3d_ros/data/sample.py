"""The sample format (docs/architecture.md): validation, projection, disk round trip."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from pop3d_ros.atomic import atomic_path
from pop3d_ros.geometry.camera import PinholeCamera

# key -> (dtype, shape pattern); None in a pattern = any size, strings name shared sizes
ARRAY_KEYS = {
    "images": (np.uint8, ("C", "H", "W", 3)),
    "intrinsics": (np.float32, ("C", 3, 3)),
    "cam_to_ego": (np.float32, ("C", 4, 4)),
    "ego_to_world": (np.float32, (4, 4)),
    "lidar_points": (np.float32, ("N", 3)),
    "lidar_labels": (np.uint8, ("N",)),
    "lidar_origin": (np.float32, (3,)),
}
OPTIONAL_ARRAY_KEYS = {
    "occupancy": (np.uint8, (None, None, None)),
    "depth": (np.float32, ("C", "H", "W")),
    "semantic": (np.uint8, ("C", "H", "W")),
    "lidar_to_ego": (np.float32, (4, 4)),  # LiDAR sensor -> ego (nuScenes: LIDAR_TOP)
    # synthetic world v2: concept ids (data/concepts.py) and objects
    "concept": (np.uint8, ("C", "H", "W")),
    "lidar_concepts": (np.uint8, ("N",)),
    "lidar_instances": (np.int32, ("N",)),
    "occupancy_concept": (np.uint8, (None, None, None)),
    "instance_ids": (np.int32, ("M",)),
    "instance_concepts": (np.uint8, ("M",)),
    "instance_centers": (np.float32, ("M", 3)),
    "instance_sizes": (np.float32, ("M", 3)),
}
META_KEYS = ("token", "scene", "timestamp", "prev", "next", "camera_names")


class SampleError(ValueError):
    """A sample dict that does not follow the format, with the key and the problem."""


def validate_sample(sample: dict) -> dict:
    """Check keys, dtypes and shapes; returns the sample or raises SampleError."""
    if not isinstance(sample, dict):
        raise SampleError(f"a sample must be a dict, got {type(sample).__name__}")
    for key in META_KEYS + tuple(ARRAY_KEYS):
        if key not in sample:
            raise SampleError(f"sample is missing key {key!r}")
    sizes: dict[str, int] = {"C": len(sample["camera_names"])}
    for key, (dtype, pattern) in {**ARRAY_KEYS, **OPTIONAL_ARRAY_KEYS}.items():
        if key not in sample:
            continue
        arr = sample[key]
        if not isinstance(arr, np.ndarray) or arr.dtype != dtype:
            got = getattr(arr, "dtype", type(arr).__name__)
            raise SampleError(f"sample[{key!r}] must be a {np.dtype(dtype)} array, got {got}")
        if arr.ndim != len(pattern):
            raise SampleError(f"sample[{key!r}] must have {len(pattern)} dims, got {arr.shape}")
        for dim, want in zip(arr.shape, pattern, strict=True):
            if isinstance(want, str):
                want = sizes.setdefault(want, dim)
            if want is not None and dim != want:
                raise SampleError(f"sample[{key!r}] has shape {arr.shape}, expected {pattern}")
    if not isinstance(sample["timestamp"], int | np.integer):
        raise SampleError("sample['timestamp'] must be an int (microseconds)")
    return sample


def cameras_of(sample: dict) -> list[PinholeCamera]:
    """PinholeCamera objects for the sample's images."""
    _, H, W, _ = sample["images"].shape
    return [
        PinholeCamera(K, T, W, H, name)
        for K, T, name in zip(
            sample["intrinsics"], sample["cam_to_ego"], sample["camera_names"], strict=True
        )
    ]


def project_points(sample: dict, points=None, min_depth: float = 0.1):
    """Project ego-frame points (default: the sample's LiDAR) into every camera.

    Returns (uv float32 (C, N, 2) pixel coordinates, valid bool (C, N): in front of the
    camera and inside its image). A point is camera-visible where any row of valid is True.
    """
    pts = sample["lidar_points"] if points is None else np.asarray(points)
    uvs, valid = [], []
    for cam in cameras_of(sample):
        uv, _, ok = cam.project(pts, min_depth=min_depth)
        uvs.append(uv.astype(np.float32))
        valid.append(ok)
    return np.stack(uvs), np.stack(valid)


def save_sample(sample: dict, path) -> None:
    """One compressed .npz per sample (metadata as a JSON string)."""
    path = Path(path)
    arrays = {k: v for k, v in sample.items() if isinstance(v, np.ndarray)}
    meta = {k: v for k, v in sample.items() if not isinstance(v, np.ndarray)}
    with atomic_path(path, suffix=".npz") as tmp:  # np.savez appends .npz otherwise
        np.savez_compressed(tmp, __meta__=np.array(json.dumps(meta)), **arrays)


def load_sample(path) -> dict:
    with np.load(path, allow_pickle=False) as data:
        sample = {k: data[k] for k in data.files if k != "__meta__"}
        sample.update(json.loads(str(data["__meta__"])))
    return sample
