"""Training rays for rendering supervision (RenderOcc), built label-free from one sample.

A ray goes from a camera centre through the pixel where a LiDAR point projects; its targets
are the point's distance along the ray (depth), the 2D teacher's dense feature at that pixel
(the LangOcc idea: features, not class labels), the teacher's zero-shot class there (used
only for ray weights), and the 2D semantic class where a user has 2D maps (optional).

Auxiliary rays come from adjacent frames of the same drive, moved into the current ego frame
by the ego poses (`ego_to_world`). Weighted ray sampling (RenderOcc's WRS) weighs rays 1.0 in
the current frame, `adjacent_weight` in adjacent ones, 0 where an adjacent frame's ray hits
a movable class (decided from the teacher's zero-shot class, no labels), times the class
balance exp(0.005 (max_c n_c / n_c - 1)) over the candidate rays, and draws without
replacement.
"""

from __future__ import annotations

import zlib

import numpy as np
import torch

from pop3d_ros.data.classes import IGNORE, MOVABLE_CLASSES, NUM_CLASSES
from pop3d_ros.data.sample import project_points
from pop3d_ros.geometry.grid import VoxelGrid
from pop3d_ros.teachers.features import sample_feature_map

RAY_KEYS = (
    "ray_origin",
    "ray_dir",
    "ray_depth",
    "ray_features",
    "ray_class",
    "ray_semantic",
    "ray_time",
)


def frame_rays(
    sample: dict,
    teacher_features,
    classify,
    grid: VoxelGrid,
    to_current: np.ndarray | None = None,
    max_rays: int = 2048,
    time: int = 0,
) -> dict[str, torch.Tensor]:
    """Rays of one frame's cameras through its camera-visible LiDAR points, expressed in the
    current frame's ego frame (`to_current` (4, 4): this frame's ego -> current ego).

    Only points whose voxel lies inside `grid` (in the current frame) are kept; at most
    `max_rays` (point, camera) pairs, drawn uniformly (seeded by the frame token).
    `classify(features (M, D)) -> (M,)` class ids: the teacher's zero-shot classes.
    """
    t = np.eye(4) if to_current is None else np.asarray(to_current, np.float64)
    points = np.asarray(sample["lidar_points"], np.float64)
    cur = points @ t[:3, :3].T + t[:3, 3]
    _, inside = grid.points_to_index(cur)
    uv, valid = project_points(sample, points)
    valid &= inside[None]
    cam, pid = np.nonzero(valid)
    if max_rays > 0 and cam.size > max_rays:
        rng = np.random.default_rng(zlib.crc32(f"{sample.get('token', '')}/{time}".encode()))
        keep = np.sort(rng.choice(cam.size, max_rays, replace=False))
        cam, pid = cam[keep], pid[keep]
    cam_to_cur = t @ np.asarray(sample["cam_to_ego"], np.float64)  # (C, 4, 4)
    origin = cam_to_cur[cam, :3, 3]
    vec = cur[pid] - origin
    depth = np.linalg.norm(vec, axis=-1)
    hw = (int(sample["images"].shape[1]), int(sample["images"].shape[2]))
    d = int(teacher_features.shape[1])
    feats = torch.zeros(cam.size, d)
    for c in np.unique(cam):
        sel = np.nonzero(cam == c)[0]
        feats[sel] = sample_feature_map(teacher_features[c], uv[c, pid[sel]], hw)
    cls = classify(feats).numpy().astype(np.uint8) if cam.size else np.zeros(0, np.uint8)
    sem = np.full(cam.size, IGNORE, np.uint8)
    if sample.get("semantic") is not None and cam.size:
        px = np.clip(np.round(uv[cam, pid]).astype(np.int64), 0, [hw[1] - 1, hw[0] - 1])
        sem = np.asarray(sample["semantic"])[cam, px[:, 1], px[:, 0]].astype(np.uint8)
    return {
        "ray_origin": torch.from_numpy(origin.astype(np.float32)),
        "ray_dir": torch.from_numpy((vec / np.maximum(depth, 1e-9)[:, None]).astype(np.float32)),
        "ray_depth": torch.from_numpy(depth.astype(np.float32)),
        "ray_features": feats.half(),
        "ray_class": torch.from_numpy(cls),
        "ray_semantic": torch.from_numpy(sem),
        "ray_time": torch.full((cam.size,), int(time), dtype=torch.int8),
    }


def ray_voxels(
    origins, directions, depths, grid: VoxelGrid, step_voxels: float = 0.5
) -> tuple[np.ndarray, np.ndarray]:
    """Flat indices of the voxels rays cross before their end (samples every `step_voxels`
    of the smallest voxel edge, the last half step before the end excluded) and of the voxels
    holding their end points, each unique. Rays (R, 3) with unit directions, depths (R,)."""
    o = np.asarray(origins, np.float64).reshape(-1, 3)
    d = np.asarray(directions, np.float64).reshape(-1, 3)
    depth = np.asarray(depths, np.float64).reshape(-1)
    if depth.size == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    step = step_voxels * float(min(grid.voxel_size))
    ts = (np.arange(int(np.ceil(depth.max() / step))) + 0.5) * step
    r, k = np.nonzero(ts[None] < depth[:, None] - 0.5 * step)
    idx, inside = grid.points_to_index(o[r] + d[r] * ts[k, None])
    crossed = np.unique(grid.flat_index(idx[inside]))
    idx, inside = grid.points_to_index(o + d * depth[:, None])
    return crossed, np.unique(grid.flat_index(idx[inside]))


def ray_observations(
    rays: dict, grid: VoxelGrid, current_only: bool = True, step_voxels: float = 0.5
) -> np.ndarray:
    """int8 (N_vox,): 1 = a ray of the frame's candidate pool (of the current frame only, with
    `current_only`) ends there, 0 = crossed before an end, -1 = no ray reaches it (below the
    surfaces, behind them, above the highest return)."""
    sel = rays["ray_time"] == 0 if current_only else slice(None)
    crossed, ends = ray_voxels(
        rays["ray_origin"][sel].numpy(), rays["ray_dir"][sel].numpy(),
        rays["ray_depth"][sel].numpy(), grid, step_voxels,
    )  # fmt: skip
    obs = np.full(grid.num_voxels, -1, np.int8)
    obs[crossed] = 0
    obs[ends] = 1
    return obs


def unseen_voxels(rays: dict, grid: VoxelGrid, current_only: bool = False) -> torch.Tensor:
    """(N_vox,) bool: the voxels `ray_observations` finds no ray reaching; by default over
    every time offset of the pool."""
    return torch.from_numpy(ray_observations(rays, grid, current_only) == -1)


def relative_pose(current: dict, other: dict) -> np.ndarray:
    """(4, 4) transform from `other`'s ego frame to `current`'s ego frame."""
    cur = np.asarray(current["ego_to_world"], np.float64)
    oth = np.asarray(other["ego_to_world"], np.float64)
    return np.linalg.inv(cur) @ oth


def concat_rays(parts: list[dict]) -> dict[str, torch.Tensor]:
    return {k: torch.cat([p[k] for p in parts]) for k in RAY_KEYS}


def class_balance(classes: torch.Tensor) -> torch.Tensor:
    """RenderOcc's WRS-b weight per ray: exp(0.005 (max_c n_c / n_c - 1)) over its class's
    count n_c among `classes` (rays without a class count as one more class)."""
    ids = classes.long().clamp(max=NUM_CLASSES)
    counts = torch.bincount(ids, minlength=NUM_CLASSES + 1).float()
    present = counts > 0
    w = torch.ones(NUM_CLASSES + 1)
    w[present] = torch.exp(0.005 * (counts[present].max() / counts[present] - 1))
    return w[ids]


def select_rays(
    rays: dict,
    aux: bool,
    weighted: bool,
    num_rays: int,
    adjacent_weight: float = 0.3,
    dynamic_weight: float = 0.0,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Indices of the rays one training step renders for one frame.

    `aux` False keeps the current frame's rays only. Rays of adjacent frames that hit a
    movable class (teacher's zero-shot class) are dropped when `dynamic_weight` is 0.
    `weighted` draws `num_rays` without replacement with RenderOcc's weights (time x dynamic
    x class balance); otherwise every remaining ray is used.
    """
    time = rays["ray_time"].long()
    cls = rays["ray_class"].long()
    w = torch.where(time == 0, 1.0, adjacent_weight if aux else 0.0)
    movable = torch.isin(cls, torch.tensor(MOVABLE_CLASSES))
    w = torch.where((time != 0) & movable, torch.as_tensor(dynamic_weight) * (w > 0), w)
    cand = torch.nonzero(w > 0).squeeze(1)
    if not weighted or cand.numel() <= num_rays:
        return cand
    wc = w[cand] * class_balance(cls[cand])
    pick = torch.multinomial(wc, num_rays, replacement=False, generator=generator)
    return cand[pick].sort().values
