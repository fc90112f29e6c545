"""Training rays for rendering supervision (RenderOcc), built label-free from one sample.

A ray goes from a camera centre through the pixel where a LiDAR point projects; its targets
are the point's distance along the ray (depth), the 2D teacher's dense feature at that pixel
(the LangOcc idea: features, not class labels), the teacher's zero-shot class there (used
only for ray weights), and the 2D semantic class where a user has 2D maps (optional).

Auxiliary rays come from adjacent frames of the same drive, moved into the current ego frame
by the ego poses (`ego_to_world`). Weighted ray sampling (RenderOcc's WRS,
`mmdet3d/datasets/ray.py: generate_rays`) weighs rays 1.0 in the current frame,
`adjacent_weight` in adjacent ones, 0 where an adjacent frame's ray hits a movable class
(decided from the teacher's zero-shot class, no labels), times the class balance
exp(0.005 (max_c n_c / n_c - 1)), and draws without replacement. The weights are kept as
logarithms and drawn by Gumbel top-k (the same distribution as sequential draws without
replacement), so no count ratio can overflow them: RenderOcc's float32 exp overflows once
max_c n_c / n_c exceeds about 17,700, and the draw then fails.
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
    with_features: bool = True,
) -> dict[str, torch.Tensor]:
    """Rays of one frame's cameras through its camera-visible LiDAR points, expressed in the
    current frame's ego frame (`to_current` (4, 4): this frame's ego -> current ego).

    Only points whose voxel lies inside `grid` (in the current frame) are kept; at most
    `max_rays` (point, camera) pairs, drawn uniformly (seeded by the frame token; 0 = all).
    `classify(features (M, D)) -> (M,)` class ids: the teacher's zero-shot classes.
    `with_features` False returns each ray's camera (`ray_camera` uint8) and pixel (`ray_uv`
    float32 (R, 2)) instead of its teacher feature, for sampling the feature map later.
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
    out = {
        "ray_origin": torch.from_numpy(origin.astype(np.float32)),
        "ray_dir": torch.from_numpy((vec / np.maximum(depth, 1e-9)[:, None]).astype(np.float32)),
        "ray_depth": torch.from_numpy(depth.astype(np.float32)),
        "ray_class": torch.from_numpy(cls),
        "ray_semantic": torch.from_numpy(sem),
        "ray_time": torch.full((cam.size,), int(time), dtype=torch.int8),
    }
    if with_features:
        out["ray_features"] = feats.half()
    else:
        out["ray_camera"] = torch.from_numpy(cam.astype(np.uint8))
        out["ray_uv"] = torch.from_numpy(uv[cam, pid].astype(np.float32).reshape(-1, 2))
    return out


def ray_voxels(
    origins, directions, depths, grid: VoxelGrid, step_voxels: float = 0.5, chunk: int = 8192
) -> tuple[np.ndarray, np.ndarray]:
    """Flat indices of the voxels rays cross before their end (samples every `step_voxels`
    of the smallest voxel edge, the last half step before the end excluded) and of the voxels
    holding their end points, each unique. Rays (R, 3) with unit directions, depths (R,);
    walked `chunk` rays at a time, so a frame's whole ray set fits in memory."""
    o = np.asarray(origins, np.float64).reshape(-1, 3)
    d = np.asarray(directions, np.float64).reshape(-1, 3)
    depth = np.asarray(depths, np.float64).reshape(-1)
    if depth.size == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    step = step_voxels * float(min(grid.voxel_size))
    ts = (np.arange(int(np.ceil(depth.max() / step))) + 0.5) * step
    crossed = []
    for a in range(0, depth.size, chunk):
        oc, dc, zc = o[a : a + chunk], d[a : a + chunk], depth[a : a + chunk]
        r, k = np.nonzero(ts[None] < zc[:, None] - 0.5 * step)
        idx, inside = grid.points_to_index(oc[r] + dc[r] * ts[k, None])
        crossed.append(np.unique(grid.flat_index(idx[inside])))
    idx, inside = grid.points_to_index(o + d * depth[:, None])
    return np.unique(np.concatenate(crossed)), np.unique(grid.flat_index(idx[inside]))


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


def log_class_balance(classes: torch.Tensor, counts: torch.Tensor | None = None) -> torch.Tensor:
    """log of RenderOcc's WRS-b weight per ray, 0.005 (max_c n_c / n_c - 1), float64.

    n_c is the count of the ray's class among `classes` (RenderOcc's `wrs_use_batch`) or, when
    `counts` (NUM_CLASSES + 1,) is given, over the whole training set (RenderOcc's default,
    `nusc_class_nums`). Rays without a class count as one more class. A class with no count
    weighs as a class seen once. Never exponentiated here: see `weighted_draw`."""
    ids = classes.long().clamp(max=NUM_CLASSES)
    if counts is None:
        counts = torch.bincount(ids, minlength=NUM_CLASSES + 1)
    n = counts.double().clamp_min(1.0)
    return (0.005 * (n.max() / n - 1.0))[ids]


def class_balance(classes: torch.Tensor) -> torch.Tensor:
    """RenderOcc's WRS-b weight per ray, exp of `log_class_balance` over `classes` (for
    reading; may be inf where the count ratio is extreme; `select_rays` never uses it)."""
    return torch.exp(log_class_balance(classes))


def weighted_draw(
    log_weights: torch.Tensor, k: int, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Indices of `k` draws without replacement with probability proportional to
    exp(log_weights) (-inf = never drawn): Gumbel top-k, distributed as torch.multinomial
    without replacement but computed on logarithms, so any weight ratio is fine. Fewer than
    `k` when fewer have finite weight; sorted."""
    lw = log_weights.double()
    finite = torch.isfinite(lw)
    n = int(finite.sum())
    if n <= k:
        return torch.nonzero(finite).squeeze(1)
    u = torch.rand(lw.shape, generator=generator, dtype=torch.float64).clamp(1e-300, 1.0)
    keys = torch.where(finite, lw - torch.log(-torch.log(u)), -torch.inf)
    return torch.topk(keys, k).indices.sort().values


def time_log_weight(
    time: torch.Tensor,
    cls: torch.Tensor,
    adjacent_weight: float = 0.3,
    dynamic_weight: float = 0.0,
) -> torch.Tensor:
    """log of RenderOcc's WRS-a weight per ray (float64): 1 in the current frame,
    `adjacent_weight` in adjacent frames, `dynamic_weight` (0 = -inf) where an adjacent
    frame's ray hits a movable class."""
    adjacent = time.long() != 0
    movable = torch.isin(cls.long(), torch.tensor(MOVABLE_CLASSES))
    w = torch.where(adjacent, float(adjacent_weight), 1.0).double()
    w = torch.where(adjacent & movable, float(dynamic_weight), w)
    return torch.log(w)


def select_rays(
    rays: dict,
    aux: bool,
    weighted: bool,
    num_rays: int,
    adjacent_weight: float = 0.3,
    dynamic_weight: float = 0.0,
    generator: torch.Generator | None = None,
    class_counts: torch.Tensor | None = None,
) -> torch.Tensor:
    """Indices of the rays one training step renders for one frame.

    `aux` False keeps the current frame's rays only. Rays of adjacent frames that hit a
    movable class (teacher's zero-shot class) are dropped when `dynamic_weight` is 0.
    `weighted` draws `num_rays` without replacement with RenderOcc's weights (time x dynamic
    x class balance over the candidates, or over `class_counts` when given); otherwise every
    remaining ray is used.
    """
    time = rays["ray_time"].long()
    cls = rays["ray_class"].long()
    lw = time_log_weight(time, cls, adjacent_weight, dynamic_weight)
    if not aux:
        lw = torch.where(time == 0, lw, -torch.inf)
    cand = torch.nonzero(torch.isfinite(lw)).squeeze(1)
    if not weighted or cand.numel() <= num_rays:
        return cand
    lwc = lw[cand] + log_class_balance(cls[cand], class_counts)
    return cand[weighted_draw(lwc, num_rays, generator)]
