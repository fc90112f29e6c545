"""POP-3D evaluation labels from a LiDAR sweep (paper sec. 4).

1. Voxels crossed by a LiDAR ray (sensor origin -> return) are free (EMPTY).
2. Voxels holding returns are occupied and take the most frequent class of their points.
3. All other voxels were not observed and are ignored (IGNORE).

Rays are traversed by sampling points along them every `step` metres (half the smallest
voxel edge by default). This can miss a voxel that a ray only clips at a corner; such a voxel
stays IGNORE (unobserved), never wrongly free, so the protocol stays conservative.
"""

from __future__ import annotations

import numpy as np

from pop3d_ros.data.classes import EMPTY, IGNORE, NUM_CLASSES
from pop3d_ros.geometry.grid import VoxelGrid


def free_space(points, origin, grid: VoxelGrid, step: float | None = None, chunk: int = 4096):
    """(num_voxels,) bool: voxels crossed by rays from `origin` to each point (end excluded)."""
    points = np.asarray(points, dtype=np.float32)
    origin = np.asarray(origin, dtype=np.float32).reshape(1, 3)
    step = float(step or 0.5 * grid.voxel_size.min())
    free = np.zeros(grid.num_voxels, dtype=bool)
    lengths = np.linalg.norm(points - origin, axis=1)
    shape = np.array(grid.shape)
    lower = grid.lower.astype(np.float32)
    size = grid.voxel_size.astype(np.float32)
    for s in range(0, len(points), chunk):
        p, length = points[s : s + chunk], lengths[s : s + chunk]
        n_steps = int(np.ceil(length.max() / step)) if len(p) else 0
        if n_steps == 0:
            continue
        # Stop one step short of the return so its own voxel is not marked free.
        t = (np.arange(n_steps, dtype=np.float32) * step)[None, :] / np.maximum(length, 1e-6)[
            :, None
        ]
        keep = t < 1.0 - step / np.maximum(length, 1e-6)[:, None]
        pts = origin[None] + t[..., None] * (p - origin)[:, None, :]
        idx = np.floor((pts[keep] - lower) / size).astype(np.int64)
        inside = np.all((idx >= 0) & (idx < shape), axis=1)
        free[np.unique(grid.flat_index(idx[inside]))] = True
    return free


def evaluation_labels(
    points, labels, origin, grid: VoxelGrid, step: float | None = None, rays: str = "every-voxel"
):
    """Semantic and class-agnostic evaluation grids from one sweep.

    `rays`: "every-voxel" (`free_space`, the paper's rule) or "pop3d-code" (the authors'
    100 samples per ray to in-volume returns; `eval_conventions.pop3d_code_free_space`).

    Returns (semantic (X, Y, Z) uint8: class id / EMPTY / IGNORE, occupancy (X, Y, Z) uint8:
    1 occupied / 0 free / IGNORE). A voxel whose points all lack a class is occupied in the
    class-agnostic grid and IGNORE in the semantic one.
    """
    points = np.asarray(points, dtype=np.float32)
    labels = np.asarray(labels).astype(np.int64)
    sem = np.full(grid.num_voxels, IGNORE, dtype=np.uint8)
    occ = np.full(grid.num_voxels, IGNORE, dtype=np.uint8)
    if rays == "pop3d-code":
        from pop3d_ros.evaluation.conventions import pop3d_code_free_space

        free = pop3d_code_free_space(points, origin, grid)
    elif rays == "every-voxel":
        free = free_space(points, origin, grid, step)
    else:
        raise ValueError(f"unknown free-space rule {rays!r}")
    sem[free] = EMPTY
    occ[free] = 0
    idx, inside = grid.points_to_index(points)
    flat = grid.flat_index(idx[inside])
    occ[flat] = 1
    sem[flat] = IGNORE
    lab = labels[inside]
    known = lab < NUM_CLASSES
    votes = np.bincount(
        flat[known] * NUM_CLASSES + lab[known], minlength=grid.num_voxels * NUM_CLASSES
    )
    votes = votes.reshape(grid.num_voxels, NUM_CLASSES)
    has_vote = votes.sum(1) > 0
    # argmax takes the lowest class id on ties: deterministic.
    sem[has_vote] = votes[has_vote].argmax(1).astype(np.uint8)
    return sem.reshape(grid.shape), occ.reshape(grid.shape)


def class_agnostic_iou(predicted, reference, known) -> float | None:
    """IoU of two boolean occupancy grids over the `known` voxels (None: nothing occupied)."""
    p = np.asarray(predicted, bool) & known
    r = np.asarray(reference, bool) & known
    union = int((p | r).sum())
    return None if union == 0 else int((p & r).sum()) / union


def sample_ious(predicted, sample: dict, grid: VoxelGrid) -> dict:
    """Class-agnostic IoU of a predicted (X, Y, Z) bool grid against one sample.

    `protocol`: POP-3D's labels from the sample's LiDAR (unobserved voxels ignored), what the
    paper reports. `dense`: the full ground-truth occupancy where the sample has one
    (synthetic), which also counts voxels no sensor observes (e.g. building interiors).
    """
    _, occ = evaluation_labels(
        sample["lidar_points"], sample["lidar_labels"], sample["lidar_origin"], grid
    )
    out = {"protocol": class_agnostic_iou(predicted, occ == 1, occ != IGNORE), "dense": None}
    if "occupancy" in sample:
        gt = sample["occupancy"]
        out["dense"] = class_agnostic_iou(predicted, gt < EMPTY, gt != IGNORE)
    return out
