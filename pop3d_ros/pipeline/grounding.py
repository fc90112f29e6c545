"""Grounded objects from a query heatmap: connected groups of voxels that score high.

POP-3D localises a text query by thresholding the voxel-to-text similarity heatmap (paper
sec. 3.3). `ground_objects` turns the voxels that pass the threshold into objects: the
connected groups under the 26-neighbourhood (voxels that share a face, an edge or a corner),
each summarised by its score-weighted centre, axis-aligned extent and scores.

Order ("best first"): by the group's highest voxel score, descending; ties by mean score,
then by voxel count (both descending), then by the smallest input index (deterministic). The
peak score orders the groups because it is the one statistic that agrees with the query's
top-k list: the best voxel of the heatmap always lies in the first object, and the first
object's peak is at least every later object's.

Numpy only (no scipy): neighbours are found by binary search over sorted linear voxel keys
(memory O(N), independent of how far apart the voxels are) and groups by union-find with
vectorised hooking and pointer jumping.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class GroundedObject:
    """One connected group of voxels scoring at least the threshold."""

    center: np.ndarray  # (3,) score-weighted centre of the group's voxels (m)
    size: np.ndarray  # (3,) axis-aligned extent (m), whole voxels included
    max_score: float  # highest voxel score of the group
    mean_score: float  # mean voxel score of the group
    num_voxels: int  # voxels in the group
    voxel_indices: np.ndarray  # (num_voxels,) int64 indices into the input arrays, ascending


# The 13 offsets of the 26-neighbourhood with a positive first non-zero component: each
# neighbouring pair is found once, from its lower voxel.
_OFFSETS = np.array(
    [
        (dx, dy, dz)
        for dx in (-1, 0, 1)
        for dy in (-1, 0, 1)
        for dz in (-1, 0, 1)
        if (dx, dy, dz) > (0, 0, 0)
    ],
    dtype=np.int64,
)


def _voxel_size(voxel_size) -> np.ndarray:
    size = np.broadcast_to(np.asarray(voxel_size, dtype=np.float64), (3,)).copy()
    if not np.all(np.isfinite(size)) or np.any(size <= 0):
        raise ValueError(f"voxel_size must be positive and finite, got {voxel_size}")
    return size


def _components(cells: np.ndarray) -> np.ndarray:
    """(N,) component label (the smallest member index) of integer cells (N, 3) >= 0."""
    n = cells.shape[0]
    dims = cells.max(axis=0) + 3  # one spare cell each side: offsets never wrap
    strides = np.array([dims[1] * dims[2], dims[2], 1], dtype=np.int64)
    keys = (cells + 1) @ strides
    order = np.argsort(keys, kind="stable")
    sk = keys[order]  # work on sorted positions: sorted queries keep the searches cache-local
    # Repeated cells (the same voxel listed twice) are neighbours of each other.
    same = np.flatnonzero(sk[1:] == sk[:-1])
    src, dst = [same + 1], [same]
    for off in _OFFSETS @ strides:
        pos = np.searchsorted(sk, sk + off)
        hit = np.flatnonzero(sk[np.minimum(pos, n - 1)] == sk + off)
        src.append(hit)
        dst.append(pos[hit])
    u, v = np.concatenate(src), np.concatenate(dst)
    parent = np.arange(n, dtype=np.int64)
    while True:
        pu, pv = parent[u], parent[v]  # roots (parent is fully compressed here)
        cross = pu != pv
        if not cross.any():
            break
        u, v, pu, pv = u[cross], v[cross], pu[cross], pv[cross]  # intra-tree edges stay so
        np.minimum.at(parent, np.maximum(pu, pv), np.minimum(pu, pv))  # hook larger root
        while True:  # pointer jumping until every voxel points at its root
            grand = parent[parent]
            if np.array_equal(grand, parent):
                break
            parent = grand
    smallest = np.full(n, n, dtype=np.int64)  # per root: the smallest input index
    np.minimum.at(smallest, parent, order)
    label = np.empty(n, dtype=np.int64)
    label[order] = smallest[parent]
    return label


def ground_objects(
    centres: np.ndarray, scores: np.ndarray, voxel_size, min_score: float
) -> list[GroundedObject]:
    """Connected groups (26-neighbourhood) of the voxels scoring >= `min_score`, best first.

    centres: (N, 3) voxel centres (m) on one regular grid; scores: (N,) their scores (e.g.
    cosine similarity to a text query); voxel_size: scalar or (3,) edge lengths (m);
    min_score: > 0 (the scores weight the centre, so they must be positive). Voxels are
    neighbours when their grid cells differ by at most one along every axis. See the module
    docstring for the order.
    """
    centres = np.asarray(centres, dtype=np.float64).reshape(-1, 3)
    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    if centres.shape[0] != scores.shape[0]:
        raise ValueError(f"{centres.shape[0]} centres but {scores.shape[0]} scores")
    min_score = float(min_score)
    if not np.isfinite(min_score) or min_score <= 0:
        raise ValueError(f"min_score must be positive and finite, got {min_score}")
    size = _voxel_size(voxel_size)
    keep = np.flatnonzero(np.isfinite(scores) & (scores >= min_score))
    if keep.size == 0:
        return []
    pts, val = centres[keep], scores[keep]
    cells = np.rint((pts - pts.min(axis=0)) / size).astype(np.int64)
    label = _components(cells)
    roots, group = np.unique(label, return_inverse=True)
    m = roots.size
    count = np.bincount(group, minlength=m)
    total = np.bincount(group, weights=val, minlength=m)
    peak = np.full(m, -np.inf)
    np.maximum.at(peak, group, val)
    centre = (
        np.stack(
            [np.bincount(group, weights=val * pts[:, d], minlength=m) for d in range(3)], axis=1
        )
        / total[:, None]
    )
    lo = np.full((m, 3), np.inf)
    hi = np.full((m, 3), -np.inf)
    np.minimum.at(lo, group, pts)
    np.maximum.at(hi, group, pts)
    extent = hi - lo + size
    mean = total / count
    # roots are the smallest member index in `keep` order, i.e. the smallest input index.
    rank = np.lexsort((roots, -count, -mean, -peak))
    members = np.argsort(group, kind="stable")
    starts = np.concatenate([[0], np.cumsum(count)])
    out = []
    for g in rank:
        idx = keep[members[starts[g] : starts[g + 1]]]
        out.append(
            GroundedObject(
                center=centre[g],
                size=extent[g],
                max_score=float(peak[g]),
                mean_score=float(mean[g]),
                num_voxels=int(count[g]),
                voxel_indices=idx.astype(np.int64),
            )
        )
    return out


def rank_and_ground(
    centres: np.ndarray,
    scores: np.ndarray,
    voxel_size,
    top_k: int,
    min_score: float,
    max_objects: int,
) -> tuple[np.ndarray, tuple[GroundedObject, ...], list[str]]:
    """A query's answer over scored voxels: (indices of the `top_k` best scores, best first;
    the objects scoring >= `min_score` (none when it is 0), best first, at most
    `max_objects`; notes). Shared by the per-frame query and the map's query."""
    scores = np.asarray(scores, np.float32).reshape(-1)
    k = min(int(top_k), scores.size)
    if k > 0:
        part = np.argpartition(-scores, k - 1)[:k]
        top = part[np.argsort(-scores[part], kind="stable")]
    else:
        top = np.zeros(0, dtype=np.int64)
    notes, objects = [], ()
    if float(min_score) > 0:
        found = ground_objects(centres, scores, voxel_size, min_score)
        objects = tuple(found[: int(max_objects)])
        if len(found) > len(objects):
            notes.append(f"{len(found)} objects above min_score, the best {len(objects)} kept")
    return top, objects, notes
