"""Ground-truth semantic occupancy of a frame on any `VoxelGrid` (ego frame).

The grid is built in concept ids (`data/concepts.py`) and read as class ids through
`concept_to_class`, so both grids agree by construction. A voxel takes a primitive's
concept when the (closed) primitive, grown by `tol`, overlaps the voxel, so every surface
point a ray can hit lies in a voxel marked with some concept. The
ground plane z = 0 fills the voxel layer that contains z = 0 (where LiDAR ground returns
fall) with the ground region's concept; layers below it are solid earth, never observable:
IGNORE. Everything else is EMPTY. Small objects (and long-tail manmade / vegetation objects
such as stairs) are written after plain buildings and vegetation so they win where they
overlap.
"""

from __future__ import annotations

import numpy as np

from pop3d_ros.data.classes import CLASS_ID, EMPTY, IGNORE
from pop3d_ros.data.concepts import concept_to_class
from pop3d_ros.data.synthetic.builder import BOX
from pop3d_ros.data.synthetic.raycast import Primitives
from pop3d_ros.data.synthetic.scene import Scene
from pop3d_ros.geometry.grid import VoxelGrid

_BACKGROUND = (CLASS_ID["manmade"], CLASS_ID["vegetation"])


def semantic_occupancy(
    scene: Scene, prims: Primitives, ego_to_world: np.ndarray, grid: VoxelGrid, tol: float = 1e-3
) -> np.ndarray:
    """uint8 (X, Y, Z): class id / EMPTY / IGNORE for primitives given in the ego frame."""
    return concept_to_class(concept_occupancy(scene, prims, ego_to_world, grid, tol))


def concept_occupancy(
    scene: Scene,
    prims: Primitives,
    ego_to_world: np.ndarray,
    grid: VoxelGrid,
    tol: float = 1e-3,
    ground: bool = True,
) -> np.ndarray:
    """uint8 (X, Y, Z): concept id / EMPTY / IGNORE for primitives given in the ego frame
    (`ground=False`: the primitives alone, no ground layer and no IGNORE below it)."""
    X, Y, Z = grid.shape
    occ = np.full(grid.shape, EMPTY, dtype=np.uint8)
    lower, size = grid.lower, grid.voxel_size
    k_ground = int(np.floor((0.0 - lower[2]) / size[2]))
    if ground and k_ground >= 0:
        centers = grid.centers()[:, :, 0, :2].astype(np.float64)
        world = centers @ ego_to_world[:2, :2].T + ego_to_world[:2, 3]
        occ[:, :, : min(k_ground, Z)] = IGNORE
        if k_ground < Z:
            occ[:, :, k_ground] = scene.ground_concept(world[..., 0], world[..., 1])[0]
    if not len(prims):
        return occ
    corners = prims.corners()
    order = np.argsort(~np.isin(prims.concept, _BACKGROUND), kind="stable")
    for i in order:
        zlo = max(prims.center[i, 2] - prims.half[i, 2] - tol, 0.0)
        zhi = prims.center[i, 2] + prims.half[i, 2] + tol
        k0 = max(int(np.floor((zlo - lower[2]) / size[2])), 0)
        k1 = min(int(np.floor((zhi - lower[2]) / size[2])), Z - 1)
        lo = corners[i, :, :2].min(axis=0) - tol
        hi = corners[i, :, :2].max(axis=0) + tol
        i0, j0 = np.maximum(np.floor((lo - lower[:2]) / size[:2]).astype(int), 0)
        i1 = min(int(np.floor((hi[0] - lower[0]) / size[0])), X - 1)
        j1 = min(int(np.floor((hi[1] - lower[1]) / size[1])), Y - 1)
        if k1 < k0 or i1 < i0 or j1 < j0:
            continue
        vx = lower[0] + (np.arange(i0, i1 + 1) + 0.5) * size[0]
        vy = lower[1] + (np.arange(j0, j1 + 1) + 0.5) * size[1]
        dx, dy = np.meshgrid(prims.center[i, 0] - vx, prims.center[i, 1] - vy, indexing="ij")
        sx, sy = size[0] / 2, size[1] / 2
        hx, hy = prims.half[i, 0] + tol, prims.half[i, 1] + tol
        if prims.kind[i] == BOX:
            c, s = abs(np.cos(prims.yaw[i])), abs(np.sin(prims.yaw[i]))
            cs, ss = np.cos(prims.yaw[i]), np.sin(prims.yaw[i])
            # separating axis test: world x, world y, box u, box w
            m = np.abs(dx) <= hx * c + hy * s + sx
            m &= np.abs(dy) <= hx * s + hy * c + sy
            m &= np.abs(dx * cs + dy * ss) <= hx + sx * c + sy * s
            m &= np.abs(-dx * ss + dy * cs) <= hy + sx * s + sy * c
        else:
            ex = np.maximum(np.abs(dx) - sx, 0.0)
            ey = np.maximum(np.abs(dy) - sy, 0.0)
            m = ex * ex + ey * ey <= hx * hx
        block = occ[i0 : i1 + 1, j0 : j1 + 1, k0 : k1 + 1]
        block[m] = prims.concept[i]
    return occ
