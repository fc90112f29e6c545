"""Which voxels of a frame's grid its cameras see: the map's visibility rule.

A voxel is seen when a camera ray reaches it: the ray leaves the camera inside the image
(the frustum) and every voxel it crossed before is predicted free by this frame. The first
voxel that the frame predicts occupied is seen (it is the surface) and stops the ray; what
lies behind it is occluded and keeps its state in the map. This is the camera-visibility
mask of the Occ3D-style evaluation (`evaluation/occ3d.py`), cast through the frame's own
prediction instead of a depth map, since the node has no depth.

The grid and the cameras are fixed in base_link, so each ray's voxel sequence is fixed too:
`RayVisibility` walks every ray once (a 6-connected voxel walk: where a ray crosses an edge
or a corner exactly, it steps one axis at a time and visits the voxels in between, so a
ray never slips between two diagonal occupied voxels), and each frame only looks up which
of those voxels are occupied: a prefix count per ray says which voxels lie behind an
occupied one.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict

import numpy as np

from pop3d_ros.geometry.grid import VoxelGrid


def camera_rays(camera, spacing_deg: float) -> np.ndarray:
    """Unit directions (R, 3) in the ego frame of rays through the image of a PinholeCamera,
    `spacing_deg` apart at the image centre (pixel centres at integer coordinates)."""
    K = camera.K
    step = np.tan(np.deg2rad(spacing_deg))
    su, sv = max(step * K[0, 0], 1e-3), max(step * K[1, 1], 1e-3)
    us = np.arange(-0.5 + su / 2, camera.width - 0.5, su)
    vs = np.arange(-0.5 + sv / 2, camera.height - 0.5, sv)
    u, v = np.meshgrid(us, vs)
    d = np.stack([(u - K[0, 2]) / K[0, 0], (v - K[1, 2]) / K[1, 1], np.ones_like(u)], -1)
    d = d.reshape(-1, 3) @ np.asarray(camera.cam_to_ego)[:3, :3].T
    return d / np.linalg.norm(d, axis=1, keepdims=True)


START, SIDE, DOWN, UP = 0, 1, 2, 3  # how a ray entered a voxel: first voxel, x/y step, z step


def walk_rays(origin, dirs, grid: VoxelGrid) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The voxels each ray from `origin` along `dirs` (R, 3) crosses inside `grid`, in order.

    Returns (cells int32 (E,) flat voxel indices, ray by ray; starts int64 (R + 1,) offsets;
    entry int8 (E,) how the ray entered each voxel: START, SIDE (an x or y step), DOWN or UP
    (a z step; the grid's z is up, as base_link's)).
    A 6-connected walk (Amanatides & Woo, stepping one axis at a time on ties, x before y
    before z). A ray starting outside the grid starts where it enters it.
    """
    origin = np.asarray(origin, np.float64).reshape(3)
    dirs = np.asarray(dirs, np.float64).reshape(-1, 3)
    size, lower, shape = grid.voxel_size, grid.lower, np.asarray(grid.shape)
    r = dirs.shape[0]
    # continuous voxel coordinates: origin g0, direction d (voxels per metre)
    g0 = (origin - lower) / size
    d = dirs / size
    with np.errstate(divide="ignore", invalid="ignore"):
        inv = np.where(d != 0, 1.0 / d, np.inf)
        t_lo = np.where(d != 0, (0.0 - g0) * inv, -np.inf)
        t_hi = np.where(d != 0, (shape - g0) * inv, np.inf)
    t_near = np.minimum(t_lo, t_hi)
    t_far = np.maximum(t_lo, t_hi)
    inside0 = np.all((g0 >= 0) & (g0 < shape))
    t_enter = np.zeros(r) if inside0 else np.maximum(np.max(t_near, 1), 0.0)
    t_exit = np.min(np.where(d != 0, t_far, np.inf), 1)
    ok = t_exit > t_enter
    start = g0 + d * (t_enter[:, None] + 1e-9)
    cell = np.clip(np.floor(start).astype(np.int64), 0, shape - 1)
    step = np.sign(d).astype(np.int64)
    with np.errstate(divide="ignore", invalid="ignore"):
        nxt = np.where(step > 0, cell + 1, cell).astype(np.float64)
        t_max = np.where(step != 0, (nxt - g0) * inv, np.inf)
        t_delta = np.abs(inv)
    strides = np.array([shape[1] * shape[2], shape[2], 1], np.int64)
    active = ok.copy()
    records = [np.where(active, cell @ strides, -1)]
    kinds = [np.full(r, START, np.int8)]
    rows = np.arange(r)
    for _ in range(int(shape.sum()) + 3):
        if not active.any():
            break
        axis = np.argmin(t_max, axis=1)  # the first minimum: ties step x, then y, then z
        cell[rows, axis] += step[rows, axis]
        t_max[rows, axis] += t_delta[rows, axis]
        active &= np.all((cell >= 0) & (cell < shape), axis=1)
        records.append(np.where(active, cell @ strides, -1))
        kind = np.where(axis < 2, SIDE, np.where(step[rows, 2] < 0, DOWN, UP))
        kinds.append(kind.astype(np.int8))
    walk = np.stack(records, axis=1)
    valid = walk >= 0
    counts = valid.sum(1)
    starts = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    return walk[valid].astype(np.int32), starts, np.stack(kinds, axis=1)[valid]


class RayVisibility:
    """The voxels of `grid` that the cameras' rays reach, for any predicted occupancy."""

    def __init__(self, grid: VoxelGrid, rays):
        """`rays`: (origin (3,), unit directions (R, 3)) pairs in the grid's frame."""
        self.grid = grid
        cells, entry, starts, offset = [], [], [np.zeros(1, np.int64)], 0
        for origin, dirs in rays:
            c, s, e = walk_rays(origin, dirs, grid)
            cells.append(c)
            entry.append(e)
            starts.append(s[1:] + offset)
            offset += c.size
        self.cells = np.concatenate(cells) if cells else np.zeros(0, np.int32)
        self.entry = np.concatenate(entry) if entry else np.zeros(0, np.int8)
        starts = np.concatenate(starts)
        lengths = np.diff(starts)
        keep = lengths > 0
        self.starts = starts[:-1][keep]
        self.lengths = lengths[keep]
        self.last = self.starts + self.lengths - 1
        self.frustum = np.zeros(grid.num_voxels, bool)
        self.frustum[self.cells] = True

    @classmethod
    def for_cameras(cls, grid: VoxelGrid, cameras, spacing_deg: float = 1.0) -> RayVisibility:
        """Rays `spacing_deg` apart through each PinholeCamera's image (base_link)."""
        return cls(grid, [(np.asarray(c.cam_to_ego)[:3, 3], camera_rays(c, spacing_deg))
                          for c in cameras])  # fmt: skip

    @property
    def num_rays(self) -> int:
        return int(self.starts.size)

    def visible(self, occupied: np.ndarray, rule: str = "first", limit: int = 1) -> np.ndarray:
        """bool (num_voxels,): the voxels the rays reach, given this frame's occluders
        `occupied` (bool, num_voxels or X, Y, Z). A camera's own voxel never stops its rays.

        rule "first": a ray sees up to and including its `limit`-th occupied voxel (1: the
        first, the surface). rule "surface": a ray sees an occupied voxel it enters sideways
        or from below and stops there (a wall, a car's side); one it lands on from above (a
        horizontal surface lies inside: the road, a roof) it crosses, running over the
        occupied voxels of that surface, and stops before it steps down out of them (below
        the surface); it never crosses more than `limit` occupied voxels.
        """
        n = self.grid.num_voxels
        occ = np.take(np.asarray(occupied, bool).reshape(-1), self.cells)
        occ[self.starts] = False
        # Occupied entries strictly before each entry, over all rays. int16 wraps around,
        # but a difference within one ray (at most sum(grid.shape) entries) stays exact.
        before = np.cumsum(occ, dtype=np.int16)
        before -= occ.view(np.int8)
        before -= np.repeat(before[self.starts], self.lengths)
        blocked = before >= limit
        if rule == "surface":
            prev = np.empty_like(occ)
            prev[1:] = occ[:-1]
            prev[self.starts] = False
            hit = occ & ~prev & (self.entry != DOWN)  # seen, stops the ray after it
            hit[self.last] = False
            stop = np.zeros(occ.size, np.int8)
            stop[1:] = hit[:-1]
            stop |= (prev & (self.entry == DOWN)).view(np.int8)  # stepping below: not seen
            stops = np.cumsum(stop, dtype=np.int16)
            stops -= np.repeat(stops[self.starts], self.lengths)
            blocked |= stops > 0
        elif rule != "first":
            raise ValueError(f"unknown visibility rule {rule!r}: first or surface")
        target = np.where(blocked, n, self.cells)  # n: a sink for blocked entries
        seen = np.zeros(n + 1, bool)
        seen[target] = True
        return seen[:n]


class VisibilityCache:
    """`RayVisibility` per calibration (grid, cameras, spacing): the rig rarely changes."""

    def __init__(self, max_entries: int = 4):
        self.max_entries = max_entries
        self._cache: OrderedDict[str, RayVisibility] = OrderedDict()

    def get(self, grid: VoxelGrid, cameras, spacing_deg: float) -> RayVisibility:
        h = hashlib.sha1(repr((grid.to_dict(), float(spacing_deg))).encode())
        for cam in cameras:
            h.update(np.asarray(cam.K, np.float64).tobytes())
            h.update(np.asarray(cam.cam_to_ego, np.float64).tobytes())
            h.update(np.asarray([cam.width, cam.height], np.int64).tobytes())
        key = h.hexdigest()
        if key in self._cache:
            self._cache.move_to_end(key)
            return self._cache[key]
        vis = RayVisibility.for_cameras(grid, cameras, spacing_deg)
        self._cache[key] = vis
        while len(self._cache) > self.max_entries:
            self._cache.popitem(last=False)
        return vis
