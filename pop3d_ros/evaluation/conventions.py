"""Evaluation conventions where POP-3D's paper and its code (vobecant/POP3D) differ.

The defaults follow the paper (sec. 4) as written; each switch can instead follow the
authors' code, so the effect of every difference can be measured (`pop3d eval --convention
KEY=VALUE`). Every `pop3d eval` JSON names the conventions it used (`describe`).

What the code does (POP3D `dataloader/dataset_wrapper.py`, `eval.py`):
- free space: 100 evenly spaced samples on the ray from the LiDAR origin to each return
  inside the volume (returns outside it cast no ray), each sample's voxel marked free;
- out-of-range points: every point is voxelised with its coordinates clipped to the volume,
  so a point outside it is evaluated at the boundary voxel nearest to it;
- LiDAR-mIoU point set: the per-camera lists of points projecting into that image are
  concatenated, so a point seen by two cameras counts twice.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields

import numpy as np

from pop3d_ros.geometry.grid import VoxelGrid

CHOICES = {
    "free_space": ("every-voxel", "pop3d-code"),
    "out_of_range": ("exclude", "clip"),
    "lidar_points": ("unique", "per-camera"),
}


@dataclass(frozen=True)
class EvalConventions:
    """One choice per convention; the defaults are the paper's reading (module docstring)."""

    # "every-voxel": every voxel a ray from the sensor to any return crosses is free (sampled
    # every half voxel edge, the return's own voxel excluded). "pop3d-code": the authors'
    # 100 samples per ray, rays only to returns inside the volume.
    free_space: str = "every-voxel"
    # LiDAR mIoU (student and teacher): "exclude" points outside the volume, or "clip" them
    # to the nearest boundary voxel as the authors' voxelisation does.
    out_of_range: str = "exclude"
    # LiDAR mIoU: each camera-visible point counted "unique"ly once (the student's voxel
    # label; the teacher's features summed over the cameras that see it), or once
    # "per-camera" that sees it (the teacher labelled from that camera's features).
    lidar_points: str = "unique"

    def __post_init__(self):
        for f in fields(self):
            value = getattr(self, f.name)
            if value not in CHOICES[f.name]:
                raise ValueError(
                    f"evaluation convention {f.name}={value!r}: one of {CHOICES[f.name]}"
                )


def parse_conventions(items: list[str] | None) -> EvalConventions:
    """["free_space=pop3d-code", ...] -> EvalConventions (a clear error on bad input)."""
    kw = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or key not in CHOICES:
            raise ValueError(
                f"--convention {item!r}: expected KEY=VALUE, KEY one of {list(CHOICES)}"
            )
        kw[key] = value
    return EvalConventions(**kw)


def describe(conv: EvalConventions) -> dict:
    """The conventions of one evaluation, for its JSON: the switches and the fixed rules."""
    return {
        **asdict(conv),
        "miou_classes": "classes absent from the ground truth of every evaluated frame are "
        "excluded from mIoU; a class present in it and never predicted counts 0",
        "voxel_ignore": "voxels no LiDAR ray observed; semantically also voxels whose points "
        "all lack a class",
        "voxel_label": "most frequent class of the voxel's points (ties: lowest class id)",
        "lidar_point_ignore": "points without a class; points no camera sees",
        "iou": "IoU of the occupied class",
        "iou_mean_empty_occupied": "mean of the empty and occupied IoUs (POP-3D's eval prints "
        "this as its class-agnostic number)",
        "miou": "over the classes + empty; occupied voxels take the best-matching class prompt",
    }


def pop3d_code_free_space(points, origin, grid: VoxelGrid, samples: int = 100) -> np.ndarray:
    """(num_voxels,) bool: the authors' free space. Rays only to the returns strictly inside
    the volume; `samples` evenly spaced points from the origin to the return (both ends
    included), each clipped into the volume and marked free (the return's own voxel is set
    occupied afterwards by the caller)."""
    p = np.asarray(points, np.float64)
    origin = np.asarray(origin, np.float64).reshape(1, 3)
    lower, upper = grid.lower, grid.upper
    p = p[np.all((p > lower) & (p < upper), axis=1)]
    free = np.zeros(grid.num_voxels, bool)
    t = np.linspace(0.0, 1.0, samples)
    for s in range(0, len(p), 2048):
        chunk = p[s : s + 2048]
        pts = origin[None] + t[None, :, None] * (chunk - origin)[:, None, :]
        pts = np.clip(pts.reshape(-1, 3), lower, upper - 1e-3)
        idx = np.floor((pts - lower) / grid.voxel_size).astype(np.int64)
        idx = np.minimum(idx, np.array(grid.shape) - 1)
        free[np.unique(grid.flat_index(idx))] = True
    return free


def point_voxels(points, grid: VoxelGrid, out_of_range: str) -> tuple[np.ndarray, np.ndarray]:
    """(voxel index (N, 3), evaluated (N,) bool) of LiDAR points under `out_of_range`."""
    if out_of_range == "exclude":
        return grid.points_to_index(points)
    p = np.clip(np.asarray(points, np.float64), grid.lower, grid.upper - 1e-3)
    idx = np.floor((p - grid.lower) / grid.voxel_size).astype(np.int64)
    idx = np.clip(idx, 0, np.array(grid.shape) - 1)
    return idx, np.ones(len(idx), bool)
