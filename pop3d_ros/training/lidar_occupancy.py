"""Occupancy targets from LiDAR without the sensor's ring pattern (issue 19, item 1).

POP-3D marks every voxel without a LiDAR return empty. With a 32-beam sweep that teaches the
sensor's rings: the ground between two rings has no return, so it is labelled empty, and
the network learns concentric rings instead of a road. The rules here keep the recipe
label-free (LiDAR and ego poses only) and switch on one at a time:

- `free_space="rays"`: a voxel is free only where a ray crossed it; voxels no ray reached
  are UNOBSERVED (a weak "empty", see `losses.OccupancyLoss`), not free.
- `core_z`: a ray sample frees its voxel only in the central `core_z` fraction of the voxel's
  height. A LiDAR on the roof meets the ground at a grazing angle, so a ray skims the empty
  upper part of many ground voxels (the ground lies mid-voxel) before it lands; without this
  rule those voxels come out free and the rings come back.
- `sweeps`: returns of adjacent frames of the drive, moved into this frame by the ego poses
  (ego-motion compensation). The rings of a sweep 4 m away fall between this sweep's rings.
- `remove_moving`: a voxel hit only in adjacent sweeps stays occupied only if more sweeps hit
  it than saw through it. A moving car's returns from another frame lie where this frame's
  rays (and the other sweeps') pass freely, so they drop out; the static ground, hit by most
  sweeps, stays. The current sweep's own returns are always kept: they are where things are now.

Target codes (uint8): 0 free, 1 occupied, UNOBSERVED (weak empty), IGNORE.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Literal

import numpy as np

from pop3d_ros.data.classes import IGNORE
from pop3d_ros.geometry.grid import VoxelGrid
from pop3d_ros.geometry.transforms import transform_points

UNOBSERVED = 2  # occ_target code: no ray reached the voxel (trained as a down-weighted empty)


@dataclass
class LidarOccupancyConfig:
    """How LiDAR sweeps become the occupancy target."""

    # "points": POP-3D (a voxel with a return is occupied, every other voxel empty).
    # "rays": free only where a ray crossed; the rest UNOBSERVED.
    free_space: Literal["points", "rays"] = "points"
    # Fraction of a voxel's height (centred) in which a ray sample marks it free; 1.0 = anywhere.
    core_z: float = 1.0
    # Adjacent frames (offsets in the drive, e.g. (-2, -1, 1, 2)) whose sweeps are aggregated.
    sweeps: tuple[int, ...] = ()
    # Drop adjacent sweeps' returns in voxels that at least `moving_votes` more sweeps saw
    # through than hit (moving objects).
    remove_moving: bool = False
    moving_votes: int = 1
    # Metres between ray samples; None = half the smallest voxel edge.
    step: float | None = None
    # Also average the teacher's features at the adjacent sweeps' returns (in voxels occupied
    # in the target) into the language-head targets (`targets.voxel_feature_targets`).
    sweep_features: bool = False

    def validate(self) -> None:
        if self.free_space not in ("points", "rays"):
            raise ValueError(f"free_space must be points or rays, got {self.free_space!r}")
        if not 0.0 < self.core_z <= 1.0:
            raise ValueError(f"core_z must be in (0, 1], got {self.core_z}")
        if any(int(o) == 0 for o in self.sweeps):
            raise ValueError("sweeps are offsets of other frames; 0 is the current frame")
        if self.moving_votes < 1:
            raise ValueError(f"moving_votes must be >= 1, got {self.moving_votes}")
        if self.sweep_features and not self.sweeps:
            raise ValueError("sweep_features needs sweeps")
        if self.free_space == "points" and (self.sweeps or self.remove_moving):
            raise ValueError("sweeps and remove_moving need free_space='rays'")

    def to_dict(self) -> dict:
        d = asdict(self)
        d["sweeps"] = [int(o) for o in self.sweeps]
        if not self.sweep_features:
            del d["sweep_features"]  # caches prepared before the option keep their settings
        return d


def sweep_evidence(points, origin, grid: VoxelGrid, core_z: float = 1.0, step=None):
    """(hit, free): (num_voxels,) bool each, for one sweep given in the grid's frame.

    `hit`: voxels holding a return. `free`: voxels a ray from `origin` to a return passed
    through (inside the central `core_z` of the voxel's height), minus the hit voxels.
    """
    points = np.asarray(points, np.float32).reshape(-1, 3)
    origin = np.asarray(origin, np.float32).reshape(1, 3)
    hit = np.zeros(grid.num_voxels, bool)
    idx, inside = grid.points_to_index(points)
    hit[grid.flat_index(idx[inside])] = True
    free = np.zeros(grid.num_voxels, bool)
    step = float(step or 0.5 * grid.voxel_size.min())
    lower = grid.lower.astype(np.float32)
    size = grid.voxel_size.astype(np.float32)
    shape = np.array(grid.shape)
    lengths = np.linalg.norm(points - origin, axis=1)
    chunk = 2048
    for s in range(0, len(points), chunk):
        p, length = points[s : s + chunk], np.maximum(lengths[s : s + chunk], 1e-6)
        n_steps = int(np.ceil(length.max() / step))
        t = np.arange(n_steps, dtype=np.float32)[None] * step / length[:, None]
        # Stop one step short of the return so its own voxel is not freed.
        keep = t < 1.0 - step / length[:, None]
        q = origin + t[keep][:, None] * np.repeat(p - origin, keep.sum(1), axis=0)
        rel = (q - lower) / size
        vox = np.floor(rel).astype(np.int64)
        ok = np.all((vox >= 0) & (vox < shape), axis=1)
        if core_z < 1.0:
            ok &= np.abs(rel[:, 2] - vox[:, 2] - 0.5) <= 0.5 * core_z
        free[grid.flat_index(vox[ok])] = True
    return hit, free & ~hit


def lidar_occupancy_target(
    sample: dict,
    grid: VoxelGrid,
    cfg: LidarOccupancyConfig,
    neighbour: Callable[[dict, int], dict | None] | None = None,
) -> np.ndarray:
    """(X, Y, Z) uint8 occupancy target of `sample` under `cfg` (module docstring).

    `neighbour(sample, offset)` returns the frame `offset` steps away in the same drive, or
    None at the drive's ends (needed for `cfg.sweeps`).
    """
    cfg.validate()
    if cfg.free_space == "points":
        occ = np.zeros(grid.num_voxels, np.uint8)
        idx, inside = grid.points_to_index(sample["lidar_points"])
        occ[grid.flat_index(idx[inside])] = 1
        return occ.reshape(grid.shape)
    if cfg.sweeps and neighbour is None:
        raise ValueError("multi-sweep targets need the drive's adjacent frames (neighbour)")
    from pop3d_ros.training.rays import relative_pose

    hit_now, free_now = sweep_evidence(
        sample["lidar_points"], sample["lidar_origin"], grid, cfg.core_z, cfg.step
    )
    hits = np.zeros(grid.num_voxels, np.int32)
    frees = free_now.astype(np.int32)
    for off in cfg.sweeps:
        other = neighbour(sample, int(off))
        if other is None:
            continue
        to_current = relative_pose(sample, other)
        h, f = sweep_evidence(
            transform_points(to_current, other["lidar_points"]).astype(np.float32),
            transform_points(to_current, other["lidar_origin"]).astype(np.float32),
            grid,
            cfg.core_z,
            cfg.step,
        )
        hits += h
        frees += f
    if cfg.remove_moving:
        # A hit from another frame is dropped when the sweeps that saw through the voxel
        # (this one included) outvote the hits by `moving_votes`.
        adjacent = (hits > 0) & (frees < hits + cfg.moving_votes)
    else:
        adjacent = hits > 0
    occupied = hit_now | adjacent
    occ = np.full(grid.num_voxels, UNOBSERVED, np.uint8)
    occ[frees > 0] = 0
    occ[occupied] = 1
    return occ.reshape(grid.shape)


def target_quality(target, gt, visible=None) -> dict:
    """How well an occupancy target matches dense ground truth (synthetic; never in training).

    `gt` (X, Y, Z) uint8 semantic occupancy (class id occupied, EMPTY free, IGNORE unknown);
    `visible` optional bool mask (e.g. Occ3D-style camera visibility) limiting the voxels.
    Returns the share of voxels the target labels (occupied or free), the precision of its
    occupied and free labels, the recall of occupied GT voxels, and the IoU of the target
    read as "occupied vs rest" over the known GT voxels.
    """
    from pop3d_ros.data.classes import EMPTY

    t = np.asarray(target).reshape(-1)
    g = np.asarray(gt).reshape(-1)
    known = g != IGNORE
    if visible is not None:
        known &= np.asarray(visible, bool).reshape(-1)
    gt_occ = known & (g != EMPTY)
    t_occ, t_free = (t == 1) & known, (t == 0) & known
    labelled = t_occ | t_free

    def ratio(a, b):
        return float(a) / float(b) if b else float("nan")

    return {
        "labelled": ratio(labelled.sum(), known.sum()),
        "occupied_precision": ratio((t_occ & gt_occ).sum(), t_occ.sum()),
        "free_precision": ratio((t_free & ~gt_occ).sum(), t_free.sum()),
        "occupied_recall": ratio((t_occ & gt_occ).sum(), gt_occ.sum()),
        "iou": ratio((t_occ & gt_occ).sum(), (t_occ | gt_occ).sum()),
    }
