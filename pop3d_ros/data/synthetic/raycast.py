"""Vectorised ray casting against the ground plane, yaw-rotated boxes and vertical cylinders.

All in the ego frame. Rays of one sensor share an origin. A sensor's rays form a 2D grid
(image rows x columns, or LiDAR beams x azimuths); each primitive is tested only against
the rectangle of the grid that its bounding box can cover (`RayGrid.cover`), so the cost
grows with the pixels objects occupy, not with rays x primitives.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pop3d_ros.data.synthetic.builder import BOX

_EPS = 1e-9


@dataclass
class Primitives:
    """Primitives of one frame in the ego frame (see scene.Scene for the fields)."""

    kind: np.ndarray
    center: np.ndarray
    half: np.ndarray
    yaw: np.ndarray
    cls: np.ndarray
    index: np.ndarray  # row in the scene's arrays (colour, texture)
    concept: np.ndarray | None = None  # (n,) uint8 concept ids (None: = cls)
    instance: np.ndarray | None = None  # (n,) int32 object ids (None: unknown, 0)

    def __post_init__(self):
        if self.concept is None:
            self.concept = np.asarray(self.cls, np.uint8).copy()
        if self.instance is None:
            self.instance = np.zeros(len(self.kind), np.int32)

    def __len__(self) -> int:
        return len(self.kind)

    def corners(self) -> np.ndarray:
        """(n, 8, 3) corners of each primitive's (yaw-aligned) bounding box."""
        sx = np.array([-1, 1, 1, -1, -1, 1, 1, -1], np.float64)
        sy = np.array([-1, -1, 1, 1, -1, -1, 1, 1], np.float64)
        sz = np.array([-1, -1, -1, -1, 1, 1, 1, 1], np.float64)
        lx = sx[None] * self.half[:, 0:1]
        ly = sy[None] * self.half[:, 1:2]
        c, s = np.cos(self.yaw)[:, None], np.sin(self.yaw)[:, None]
        x = self.center[:, 0:1] + c * lx - s * ly
        y = self.center[:, 1:2] + s * lx + c * ly
        z = self.center[:, 2:3] + sz[None] * self.half[:, 2:3]
        return np.stack([x, y, z], axis=-1)


def intersect_ground(origin, dirs, max_t: float):
    """t along unit `dirs` (M, 3) to the plane z = 0; inf where missed or beyond max_t."""
    dz = dirs[:, 2]
    with np.errstate(divide="ignore", invalid="ignore"):
        t = np.where(dz < -_EPS, -origin[2] / dz, np.inf)
    t[t > max_t] = np.inf
    return t


def intersect_box(origin, dirs, center, half, yaw):
    """(t, normal) of rays vs one yaw-rotated box; t = inf where missed."""
    c, s = np.cos(yaw), np.sin(yaw)
    rel = np.asarray(origin, np.float64) - center
    o = np.array([c * rel[0] + s * rel[1], -s * rel[0] + c * rel[1], rel[2]])
    d = np.stack([c * dirs[:, 0] + s * dirs[:, 1], -s * dirs[:, 0] + c * dirs[:, 1], dirs[:, 2]])
    with np.errstate(divide="ignore", invalid="ignore"):
        inv = 1.0 / d
        t1 = (-half[:, None] - o[:, None]) * inv
        t2 = (half[:, None] - o[:, None]) * inv
    tmin = np.where(np.isnan(t1), -np.inf, np.minimum(t1, t2))
    tmax = np.where(np.isnan(t1), np.inf, np.maximum(t1, t2))
    near = tmin.max(axis=0)
    far = tmax.min(axis=0)
    hit = (near <= far) & (near > 1e-6)
    t = np.where(hit, near, np.inf)
    axis = tmin.argmax(axis=0)
    n_local = np.zeros((3, len(t)))
    cols = np.arange(len(t))
    n_local[axis, cols] = -np.sign(d[axis, cols])
    normal = np.stack(
        [c * n_local[0] - s * n_local[1], s * n_local[0] + c * n_local[1], n_local[2]], axis=-1
    )
    return t, normal


def intersect_cylinder(origin, dirs, center, radius, half_height):
    """(t, normal) of rays vs one vertical cylinder with caps; t = inf where missed."""
    ox, oy = origin[0] - center[0], origin[1] - center[1]
    oz = origin[2]
    z0, z1 = center[2] - half_height, center[2] + half_height
    dx, dy, dz = dirs[:, 0], dirs[:, 1], dirs[:, 2]
    a = dx * dx + dy * dy
    b = 2 * (ox * dx + oy * dy)
    c = ox * ox + oy * oy - radius * radius
    disc = b * b - 4 * a * c
    with np.errstate(divide="ignore", invalid="ignore"):
        t_side = (-b - np.sqrt(np.maximum(disc, 0))) / (2 * a)
        z_side = oz + t_side * dz
        side_ok = (disc >= 0) & (a > _EPS) & (t_side > 1e-6) & (z_side >= z0) & (z_side <= z1)
        t_side = np.where(side_ok, t_side, np.inf)
        cap_z = np.where(dz < 0, z1, z0)
        t_cap = (cap_z - oz) / dz
        # inf * 0 for rays that miss or run parallel to a face: NaN there, masked out below
        cx = ox + t_cap * dx
        cy = oy + t_cap * dy
    cap_ok = (np.abs(dz) > _EPS) & (t_cap > 1e-6) & (cx * cx + cy * cy <= radius * radius)
    cap_ok &= np.where(dz < 0, oz > z1, oz < z0)
    t_cap = np.where(cap_ok, t_cap, np.inf)
    use_cap = t_cap < t_side
    t = np.minimum(t_side, t_cap)
    with np.errstate(invalid="ignore"):
        hx = ox + t_side * dx
        hy = oy + t_side * dy
        normal = np.stack([hx / radius, hy / radius, np.zeros_like(hx)], axis=-1)
    normal[use_cap] = 0.0
    normal[use_cap, 2] = np.where(dz[use_cap] < 0, 1.0, -1.0)
    normal[~np.isfinite(t)] = 0.0
    return t, normal


def intersect(prims: Primitives, i: int, origin, dirs):
    if prims.kind[i] == BOX:
        return intersect_box(origin, dirs, prims.center[i], prims.half[i], prims.yaw[i])
    return intersect_cylinder(origin, dirs, prims.center[i], prims.half[i, 0], prims.half[i, 2])


class RayGrid:
    """A sensor's rays as a (rows, cols) grid with a conservative cover test per primitive."""

    def __init__(self, origin, dirs: np.ndarray, max_t: float):
        self.origin = np.asarray(origin, np.float64)
        self.dirs = dirs  # (rows, cols, 3) unit vectors, ego frame
        self.max_t = float(max_t)

    def cover(self, corners: np.ndarray):
        """(row slice, col index array) of rays that may hit a box with these 8 corners."""
        raise NotImplementedError

    def cast(self, prims: Primitives):
        """Nearest hit per ray: t (rows, cols) (inf = nothing), primitive id (-1 = ground or
        nothing), normal (rows, cols, 3)."""
        rows, cols, _ = self.dirs.shape
        flat = self.dirs.reshape(-1, 3)
        t = intersect_ground(self.origin, flat, self.max_t).reshape(rows, cols)
        pid = np.full((rows, cols), -1, dtype=np.int32)
        normal = np.zeros((rows, cols, 3))
        normal[..., 2] = 1.0
        if len(prims):
            corners = prims.corners()
            dist = np.linalg.norm(prims.center[:, :2] - self.origin[:2], axis=1)
            reach = np.linalg.norm(prims.half[:, :2], axis=1)
            for i in np.nonzero(dist - reach < self.max_t)[0]:
                rs, cs = self.cover(corners[i])
                if cs is None or len(cs) == 0 or rs.stop <= rs.start:
                    continue
                d = self.dirs[rs][:, cs].reshape(-1, 3)
                ti, ni = intersect(prims, i, self.origin, d)
                ti = ti.reshape(rs.stop - rs.start, len(cs))
                cur = t[rs][:, cs]
                better = ti < np.minimum(cur, self.max_t)
                if not better.any():
                    continue
                r_idx, c_idx = np.nonzero(better)
                r_idx = r_idx + rs.start
                c_idx = cs[c_idx]
                t[r_idx, c_idx] = ti[better]
                pid[r_idx, c_idx] = i
                normal[r_idx, c_idx] = ni.reshape(better.shape + (3,))[better]
        return t, pid, normal


class CameraRays(RayGrid):
    """Pixel-centre rays of a pinhole camera; covers = projected bounding rectangle."""

    def __init__(self, camera, max_t: float):
        super().__init__(camera.center_ego, camera.pixel_rays(), max_t)
        self.camera = camera
        axis = camera.cam_to_ego[:3, 2]
        self.cos_axis = self.dirs @ axis  # depth = t * cos_axis

    def cover(self, corners):
        cam = self.camera
        uv, depth, _ = cam.project(corners, min_depth=0.05)
        if np.all(depth <= 0.05):
            return slice(0, 0), None
        if np.any(depth <= 0.05):  # straddles the image plane: test the whole image
            return slice(0, cam.height), np.arange(cam.width)
        u0 = max(int(np.floor(uv[:, 0].min())) - 1, 0)
        u1 = min(int(np.ceil(uv[:, 0].max())) + 2, cam.width)
        v0 = max(int(np.floor(uv[:, 1].min())) - 1, 0)
        v1 = min(int(np.ceil(uv[:, 1].max())) + 2, cam.height)
        if u1 <= u0 or v1 <= v0:
            return slice(0, 0), None
        return slice(v0, v1), np.arange(u0, u1)


class LidarRays(RayGrid):
    """A spinning multi-beam LiDAR: rows = beams (ascending elevation), cols = azimuths."""

    def __init__(self, origin, elevations_rad: np.ndarray, n_azimuth: int, max_t: float):
        self.elevations = np.asarray(elevations_rad, np.float64)
        self.azimuths = np.arange(n_azimuth) * (2 * np.pi / n_azimuth)
        el = self.elevations[:, None]
        az = self.azimuths[None, :]
        dirs = np.stack(
            [np.cos(el) * np.cos(az), np.cos(el) * np.sin(az), np.sin(el) * np.ones_like(az)],
            axis=-1,
        )
        super().__init__(origin, dirs, max_t)

    def cover(self, corners):
        rel = corners - self.origin
        dxy = np.linalg.norm(rel[:, :2], axis=1)
        n_az = len(self.azimuths)
        step = 2 * np.pi / n_az
        # horizontal distance to the footprint: nearest point of the (convex) footprint
        # is at least min over corners minus the footprint's size, so be conservative
        foot = rel[:4, :2]
        d_min = max(_point_polygon_distance(foot), 1e-3)
        d_max = dxy.max()
        z_lo, z_hi = rel[:, 2].min(), rel[:, 2].max()
        el_hi = np.arctan2(z_hi, d_min if z_hi > 0 else d_max)
        el_lo = np.arctan2(z_lo, d_max if z_lo > 0 else d_min)
        r0 = int(np.searchsorted(self.elevations, el_lo - 1e-6, side="left"))
        r1 = int(np.searchsorted(self.elevations, el_hi + 1e-6, side="right"))
        if d_min <= 1e-3:
            return slice(r0, r1), np.arange(n_az)
        ang = np.arctan2(rel[:4, 1], rel[:4, 0])
        mid = np.arctan2(foot[:, 1].mean(), foot[:, 0].mean())
        off = (ang - mid + np.pi) % (2 * np.pi) - np.pi
        lo, hi = mid + off.min(), mid + off.max()
        if hi - lo >= np.pi:
            return slice(r0, r1), np.arange(n_az)
        k0 = int(np.floor(lo / step)) - 1
        k1 = int(np.ceil(hi / step)) + 2
        return slice(r0, r1), np.arange(k0, k1) % n_az


def _point_polygon_distance(poly: np.ndarray) -> float:
    """Distance from the origin to a convex quadrilateral (4, 2); 0 if inside."""
    inside = True
    best = np.inf
    for k in range(4):
        a, b = poly[k], poly[(k + 1) % 4]
        ab = b - a
        cross = ab[0] * (-a[1]) - ab[1] * (-a[0])
        if k == 0:
            sign = np.sign(cross)
        elif np.sign(cross) != sign:
            inside = False
        u = np.clip(-(a @ ab) / max(ab @ ab, 1e-12), 0.0, 1.0)
        best = min(best, float(np.linalg.norm(a + u * ab)))
    return 0.0 if inside else best
