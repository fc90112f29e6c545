"""RayIoU (SparseOcc, Liu et al. 2024): semantic occupancy scored along LiDAR-like query rays.

As SparseOcc computes it (`loaders/ray_metrics.py`, `loaders/ego_pose_dataset.py`,
`lib/dvr/dvr.cu` in MCG-NJU/SparseOcc):
- query rays: from the LiDAR origins of the frame and of the other frames of its scene,
  expressed in the frame's ego frame, kept where |x| and |y| lie 1 m inside the grid (39 m
  of 40 there), at most 8 spread evenly over the scene (`scene_origins`); from each, one ray
  per degree of azimuth at the pitch angles of `generate_lidar_rays` (`query_directions`);
- each ray walks the grid voxel by voxel (Amanatides-Woo) from its origin to the grid's
  edge; its depth is where it leaves the first occupied voxel (a class, not free), its class
  that voxel's; a ray that meets nothing ends at the grid's edge as free;
- rays whose ground truth meets nothing are dropped; per class c and threshold
  d in {1, 2, 4} m, TP = rays with class c in both and |depth_pred - depth_gt| < d;
  IoU = TP / (#gt c + #pred c - TP) over all frames, classes 0-16 (free excluded), a class
  absent from both nan-skipped; `ray_iou` = the mean over the three thresholds' class means.

Class ids are Occ3D's (0 others, 1-16 the 16 classes, 17 free). The walk is in metres on
the grid's own voxel edges, the same as SparseOcc's walk in voxel units on its cubic voxels.
Where SparseOcc gives a ray that meets nothing the class of the last voxel it crossed (free
in Occ3D, where every unoccupied voxel is free), such a ray is free here whatever that voxel
holds (the synthetic ground truth marks voxels below the ground as ignored).
"""

from __future__ import annotations

import math

import numpy as np

from pop3d_ros.data.classes import CLASS_NAMES
from pop3d_ros.geometry.grid import VoxelGrid

THRESHOLDS_M = (1.0, 2.0, 4.0)
# Occ3D's ids: 0 "others", then the project's 16 classes in the same order, 17 "free".
OCC3D_NAMES = ("others", *CLASS_NAMES, "free")
FREE = 17
MAX_ORIGINS = 8
ORIGIN_MARGIN_M = 1.0  # SparseOcc keeps origins with |x|, |y| < 39 on its 40 m grid


def query_directions() -> np.ndarray:
    """(R, 3) unit directions: SparseOcc's pitch angles (ten at -(pi/2 - atan(k + 1)), then
    steps of the last spacing up to 0.21 rad, nuScenes' LiDAR field of view) x azimuths
    0..359 degrees."""
    pitch = [-(math.pi / 2 - math.atan(k + 1)) for k in range(10)]
    while pitch[-1] < 0.21:
        pitch.append(pitch[-1] + (pitch[-1] - pitch[-2]))
    p = np.asarray(pitch)[:, None]
    a = np.deg2rad(np.arange(0, 360, 1))[None]
    dirs = np.stack([np.cos(p) * np.cos(a), np.cos(p) * np.sin(a), np.sin(p) * np.ones_like(a)], -1)
    return dirs.reshape(-1, 3).astype(np.float32)


def scene_origins(
    ego_to_world: list[np.ndarray], lidar_origins: list[np.ndarray], ref: int, grid: VoxelGrid
) -> np.ndarray:
    """(T, 3) query-ray origins of frame `ref`: every frame's LiDAR origin (`lidar_origins`
    in its own ego frame) in frame `ref`'s ego frame, kept inside the grid's x/y range less
    ORIGIN_MARGIN_M, at most MAX_ORIGINS spread evenly (SparseOcc's EgoPoseDataset)."""
    inv = np.linalg.inv(np.asarray(ego_to_world[ref], np.float64))
    lo, hi = np.asarray(grid.lower), np.asarray(grid.upper)
    out = []
    for pose, origin in zip(ego_to_world, lidar_origins, strict=True):
        world = np.asarray(pose, np.float64) @ np.append(np.asarray(origin, np.float64), 1.0)
        p = (inv @ world)[:3]
        if np.all(p[:2] > lo[:2] + ORIGIN_MARGIN_M) and np.all(p[:2] < hi[:2] - ORIGIN_MARGIN_M):
            out.append(p)
    if len(out) > MAX_ORIGINS:
        pick = np.round(np.linspace(0, len(out) - 1, MAX_ORIGINS)).astype(np.int64)
        out = [out[i] for i in pick]
    return np.asarray(out, np.float64).reshape(-1, 3)


def cast(labels: np.ndarray, origin, directions: np.ndarray, grid: VoxelGrid):
    """Walk rays from `origin` (3,) along unit `directions` (R, 3) through a grid of Occ3D
    class ids (X, Y, Z); returns (class (R,) of the first voxel holding a class 0-16, FREE
    where none; depth (R,) metres to where the ray leaves that voxel, or the grid)."""
    lab = np.asarray(labels).reshape(tuple(grid.shape))
    occ = lab < FREE
    o = np.asarray(origin, np.float64)
    d = np.asarray(directions, np.float64).reshape(-1, 3)
    lo = np.asarray(grid.lower, np.float64)
    size = np.asarray(grid.voxel_size, np.float64)
    shape = np.asarray(grid.shape)
    n = d.shape[0]
    v = np.broadcast_to(np.floor((o - lo) / size).astype(np.int64), (n, 3)).copy()
    step = np.where(d >= 0, 1, -1)
    with np.errstate(divide="ignore", invalid="ignore"):
        nxt = lo + (v + (step > 0)) * size
        t_max = np.where(d != 0, (nxt - o) / d, np.inf)
        t_delta = np.where(d != 0, size / np.abs(d), np.inf)
    cls = np.full(n, FREE, np.int64)
    depth = np.zeros(n)
    live = np.ones(n, bool)
    was_inside = np.zeros(n, bool)
    rows = np.arange(n)
    for _ in range(int(shape.sum()) * 2 + 4):
        if not live.any():
            break
        idx = rows[live]
        vi = v[idx]
        inside = np.all((vi >= 0) & (vi < shape), 1)
        # leaving the voxel: along the axis whose boundary comes first (ties: z, then y,
        # as SparseOcc's comparisons order them)
        tm = t_max[idx]
        axis = np.where(
            tm[:, 0] < tm[:, 1],
            np.where(tm[:, 0] < tm[:, 2], 0, 2),
            np.where(tm[:, 1] < tm[:, 2], 1, 2),
        )
        exit_t = tm[np.arange(idx.size), axis]
        gone = was_inside[idx] & ~inside
        hit = np.zeros(idx.size, bool)
        hit[inside] = occ[vi[inside, 0], vi[inside, 1], vi[inside, 2]]
        cls[idx[hit]] = lab[vi[hit, 0], vi[hit, 1], vi[hit, 2]]
        depth[idx[inside]] = exit_t[inside]  # for a ray that meets nothing: the grid's edge
        was_inside[idx[inside]] = True
        live[idx[hit | gone]] = False
        moving = idx[~(hit | gone)]
        ax = axis[~(hit | gone)]
        v[moving, ax] += step[moving, ax]
        t_max[moving, ax] += t_delta[moving, ax]
    return cls, depth


class RayIoU:
    """Accumulates SparseOcc's ray counts over frames (`add`), sums them over DDP ranks
    (`all_reduce`) and gives the `ray_iou*` keys (`result`)."""

    def __init__(self, directions: np.ndarray | None = None):
        self.directions = query_directions() if directions is None else np.asarray(directions)
        k = len(OCC3D_NAMES)
        self.gt = np.zeros(k, np.int64)
        self.pred = np.zeros(k, np.int64)
        self.tp = np.zeros((len(THRESHOLDS_M), k), np.int64)
        self.frames = 0

    def add(self, pred: np.ndarray, gt: np.ndarray, origins: np.ndarray, grid: VoxelGrid):
        """One frame: Occ3D class grids `pred` and `gt` on `grid`, query origins (T, 3)."""
        k = len(OCC3D_NAMES)
        for o in np.asarray(origins).reshape(-1, 3):
            c_gt, d_gt = cast(gt, o, self.directions, grid)
            c_pr, d_pr = cast(pred, o, self.directions, grid)
            keep = c_gt != FREE
            c_gt, d_gt, c_pr, d_pr = c_gt[keep], d_gt[keep], c_pr[keep], d_pr[keep]
            self.gt += np.bincount(c_gt, minlength=k)[:k]
            self.pred += np.bincount(c_pr, minlength=k)[:k]
            same = c_gt == c_pr
            err = np.abs(d_pr - d_gt)
            for j, th in enumerate(THRESHOLDS_M):
                self.tp[j] += np.bincount(c_gt[same & (err < th)], minlength=k)[:k]
        self.frames += 1

    def all_reduce(self) -> None:
        import torch
        import torch.distributed as dist

        if dist.is_available() and dist.is_initialized():
            for name in ("gt", "pred", "tp"):
                t = torch.from_numpy(getattr(self, name).copy())
                dist.all_reduce(t)
                setattr(self, name, t.numpy())

    def iou(self) -> np.ndarray:
        """(3, 17) IoU per threshold and class 0-16; nan where a class is in neither."""
        union = self.gt[None] + self.pred[None] - self.tp
        with np.errstate(invalid="ignore", divide="ignore"):
            return (self.tp / union)[:, :FREE]

    def result(self, digits: int | None = 4) -> dict:
        """The `ray_iou*` keys, rounded to `digits` (None: exact, for comparisons)."""
        if self.frames == 0:
            return {}
        iou = self.iou()

        def num(x):
            if not np.isfinite(x):
                return None
            return float(x) if digits is None else round(float(x), digits)

        def mean(x):
            return num(np.nanmean(x)) if np.isfinite(x).any() else None

        return {
            "ray_iou": mean(iou),
            **{f"ray_iou_{int(t)}m": mean(iou[j]) for j, t in enumerate(THRESHOLDS_M)},
            "ray_iou_per_class": {
                name: {f"{int(t)}m": num(iou[j, c]) for j, t in enumerate(THRESHOLDS_M)}
                for c, name in enumerate(OCC3D_NAMES[:FREE])
            },
        }
