"""Ground truth of a whole drive on a world-aligned grid, for scoring a map (issue 28).

A map lives in the world (map) frame on a voxel lattice fixed in that frame: voxel (i, j, k)
covers `origin + [i, i + 1) * voxel_size` per axis. The truth is rendered on that lattice:

- `drive_grid`: the world-aligned `VoxelGrid` that covers every frame's ego grid footprint.
- `static_concepts`: concept ids of the static primitives (zero velocity) and the ground;
  moving agents are left out, so a voxel where a moving agent only passed is EMPTY. The
  layers below the ground layer are IGNORE (solid earth, never observable).
- `moving_mask`: the voxels the moving agents occupy at one frame.
- `static_instances`: the static objects' world-frame boxes (grounding ground truth).
"""

from __future__ import annotations

import numpy as np

from pop3d_ros.data.classes import EMPTY
from pop3d_ros.data.synthetic.occupancy import concept_occupancy
from pop3d_ros.geometry.grid import VoxelGrid
from pop3d_ros.geometry.transforms import transform_points


def lattice_grid(lower, upper, origin, voxel_size) -> VoxelGrid:
    """The smallest grid on the lattice (`origin`, `voxel_size`) that covers [lower, upper]."""
    origin = np.asarray(origin, np.float64)
    size = np.asarray(voxel_size, np.float64)
    # a bound within 1e-6 voxel of a voxel face counts as on it (float noise of the offsets)
    i0 = np.floor((np.asarray(lower, np.float64) - origin) / size + 1e-6).astype(np.int64)
    i1 = np.ceil((np.asarray(upper, np.float64) - origin) / size - 1e-6).astype(np.int64)
    lo, hi = origin + i0 * size, origin + i1 * size
    return VoxelGrid(
        (float(lo[0]), float(hi[0])),
        (float(lo[1]), float(hi[1])),
        (float(lo[2]), float(hi[2])),
        tuple(int(n) for n in (i1 - i0)),
    )


def drive_grid(world, frames: int, ego_grid: VoxelGrid, origin, voxel_size) -> VoxelGrid:
    """The world-aligned grid covering the ego grid of frames 0..frames-1 of `world`."""
    corners = ego_grid.corners()
    pts = np.concatenate([transform_points(world.ego_to_world(i), corners) for i in range(frames)])
    return lattice_grid(pts.min(0), pts.max(0), origin, voxel_size)


def static_concepts(world, grid: VoxelGrid) -> np.ndarray:
    """uint8 (X, Y, Z) on a world-frame grid: concept id of the static world / EMPTY / IGNORE."""
    return concept_occupancy(world.scene, world.world_primitives(0, moving=False), np.eye(4), grid)


def moving_mask(world, index: int, grid: VoxelGrid) -> np.ndarray:
    """bool (X, Y, Z) on a world-frame grid: voxels a moving agent occupies at frame `index`."""
    prims = world.world_primitives(index, moving=True)
    occ = concept_occupancy(world.scene, prims, np.eye(4), grid, ground=False)
    return occ != EMPTY


def static_instances(world) -> dict:
    """The static objects of the whole street in the world frame: `instance_ids`,
    `instance_concepts`, `instance_centers`, `instance_sizes` (as `SyntheticWorld.instances`)."""
    return world.instances(world.world_primitives(0, moving=False), np.eye(4), reach=np.inf)
