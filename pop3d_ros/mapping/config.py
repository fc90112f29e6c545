"""Typed configuration of the online map: the store, its layers, the costmap, the poses."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

VISIBILITY_MODES = ("rays", "frustum", "all")


def _triple(value, name: str) -> tuple[float, float, float]:
    arr = np.broadcast_to(np.asarray(value, np.float64), (3,))
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} must be finite, got {value}")
    return tuple(float(v) for v in arr)


@dataclass
class MapConfig:
    """The sparse voxel map in `map_frame` and its occupancy and language layers.

    Occupancy fusion is OctoMap's: each visible voxel adds `observation_weight * logit(p)` of
    the frame's P(occupied) p (clipped to [observation_p_min, observation_p_max]) to its
    log-odds, which stays within [log_odds_min, log_odds_max] so a voxel can change its mind.
    """

    # Voxel edge lengths (m). `for_grid` takes the model's, so a map voxel is a model voxel.
    voxel_size: tuple[float, float, float] = (0.8, 0.8, 0.8)
    # Offset of the voxel lattice in map_frame (m): voxel (i, j, k) covers
    # origin + [i, i + 1) * voxel_size. `for_grid` aligns it with the model grid's voxel
    # boundaries (the ground layer of a vehicle at z = 0 stays one layer, not split in two).
    origin: tuple[float, float, float] = (0.0, 0.0, -2.0)
    block_size: int = 8  # voxels per block edge; storage is allocated per block (nvblox: 8)
    # Occupancy layer.
    occupied_log_odds: float = 0.0  # a voxel is occupied when its log-odds is above this
    log_odds_min: float = -2.0  # clamp below (OctoMap's 0.12 probability)
    log_odds_max: float = 3.5  # clamp above (OctoMap's 0.97 probability)
    observation_p_min: float = 0.12  # per-frame P(occupied) is clipped to at least this...
    observation_p_max: float = 0.97  # ...and at most this before its logit is added
    observation_weight: float = 1.0  # multiplies the per-frame logit (trust in one frame)
    # > 0: a voxel's observation also counts 1 / (1 + (d / range_scale_m)^2), d = its
    # horizontal distance from the ego (m): predictions miss more the farther they look.
    range_scale_m: float = 15.0
    range_free_only: bool = True  # apply the range weight to free evidence (logit < 0) only
    # Visibility rule: "rays" updates the voxels the cameras' rays reach up to and including
    # the first voxel this frame predicts occupied (frustum + occlusion); "frustum" every
    # voxel inside a camera frustum; "all" every voxel of the frame's grid (the naive map).
    visibility: str = "rays"
    ray_spacing_deg: float = 1.0  # angle between neighbouring camera rays (degrees)
    occluder_p: float = 0.5  # P(occupied) from which a voxel of the frame stops a ray
    # How occupied voxels stop a ray (visibility.RayVisibility.visible): "first" = at the
    # `occlusion_limit`-th occupied voxel it meets; "surface" = at an occupied voxel met
    # sideways or from below, or on stepping down out of occupied voxels it landed on from
    # above (a voxel holding the road is occupied, yet a ray grazing the road crosses
    # several such voxels before it meets the road), crossing at most `occlusion_limit`.
    occlusion: str = "surface"
    occlusion_limit: int = 8
    # Voxels the rule hides: "occupied" = they take occupied evidence (P > 0.5) but never
    # free evidence, so what is out of sight is never cleared while the model's guesses
    # behind occluders (mostly right) still count; "none" = untouched (docs/experiments/map.md)
    occluded_evidence: str = "occupied"
    # Language layer.
    language_every: int = 1  # fuse language features on every k-th integrated frame
    feature_weight_max: float = 20.0  # the running mean's weight stops growing here (memory)
    # A voxel whose log-odds drops to this or below loses its language feature.
    feature_release_log_odds: float = 0.0
    # Bounded memory: voxels farthest from the ego go first (whole blocks).
    max_voxels: int = 4_000_000  # stored voxels at most (allocated blocks x voxels per block)
    max_features: int = 300_000  # voxels with a language feature at most (~1 KB each, D=512)
    radius_m: float = 0.0  # > 0: blocks farther than this (horizontally) from the ego go

    def __post_init__(self):
        self.voxel_size = _triple(self.voxel_size, "voxel_size")
        self.origin = _triple(self.origin, "origin")
        if min(self.voxel_size) <= 0:
            raise ValueError(f"voxel_size must be positive, got {self.voxel_size}")
        if self.visibility not in VISIBILITY_MODES:
            raise ValueError(
                f"visibility must be one of {VISIBILITY_MODES}, got {self.visibility!r}"
            )
        if self.occluded_evidence not in ("none", "occupied"):
            raise ValueError(
                f"occluded_evidence must be none or occupied, got {self.occluded_evidence!r}"
            )
        if not self.log_odds_min < self.occupied_log_odds < self.log_odds_max:
            raise ValueError("need log_odds_min < occupied_log_odds < log_odds_max")
        if not 0.0 < self.observation_p_min < self.observation_p_max < 1.0:
            raise ValueError("need 0 < observation_p_min < observation_p_max < 1")
        if not 0.0 < self.occluder_p <= 1.0:
            raise ValueError(f"occluder_p must be in (0, 1], got {self.occluder_p}")
        if self.observation_weight <= 0 or self.feature_weight_max <= 0:
            raise ValueError("observation_weight and feature_weight_max must be > 0")
        if not 1 <= int(self.block_size) <= 32:
            raise ValueError(f"block_size must be in [1, 32], got {self.block_size}")
        if self.occlusion not in ("first", "surface"):
            raise ValueError(f"occlusion must be first or surface, got {self.occlusion!r}")
        if int(self.occlusion_limit) < 1:
            raise ValueError(f"occlusion_limit must be >= 1, got {self.occlusion_limit}")
        if int(self.language_every) < 1:
            raise ValueError(f"language_every must be >= 1, got {self.language_every}")
        if self.ray_spacing_deg <= 0:
            raise ValueError(f"ray_spacing_deg must be > 0, got {self.ray_spacing_deg}")
        if int(self.max_voxels) < int(self.block_size) ** 3 or int(self.max_features) < 0:
            raise ValueError("max_voxels must hold at least one block; max_features >= 0")
        if self.range_scale_m < 0:
            raise ValueError(f"range_scale_m must be >= 0, got {self.range_scale_m}")
        if self.radius_m < 0:
            raise ValueError(f"radius_m must be >= 0, got {self.radius_m}")

    @classmethod
    def for_grid(cls, grid, **overrides) -> MapConfig:
        """The map of a model on `grid` (VoxelGrid): its voxel size, and a lattice whose voxel
        faces are the grid's when base_link sits at the map origin; in z the lattice starts
        at the grid's floor, so the grid's layers fill whole blocks (a vehicle stays near one
        height; x and y move with it anyway)."""
        size = np.asarray(grid.voxel_size, np.float64)
        origin = np.mod(np.asarray(grid.lower, np.float64), size)
        origin = np.where(np.isclose(origin, size), 0.0, origin)
        origin[2] = float(grid.lower[2])
        kw = {"voxel_size": tuple(size), "origin": tuple(origin)}
        kw.update(overrides)
        return cls(**kw)


@dataclass
class CostmapConfig:
    """The 2D costmap projection (nav_msgs/OccupancyGrid semantics)."""

    ground_z: float = 0.0  # height of the ground in map_frame (m)
    # A column is lethal (100) where an occupied voxel's centre lies between these heights
    # above the ground (m); free (0) where a voxel of that band was observed and none is
    # occupied; unknown (-1) where no voxel of the band was ever observed.
    min_height: float = 0.2
    max_height: float = 2.0

    def __post_init__(self):
        if not np.isfinite([self.ground_z, self.min_height, self.max_height]).all():
            raise ValueError("costmap heights must be finite")
        if not self.max_height > self.min_height:
            raise ValueError("costmap max_height must be above min_height")


@dataclass
class PoseConfig:
    """Choosing and checking the map pose (base_frame -> map_frame) of a camera set."""

    max_poses: int = 400  # odometry messages kept (a bounded buffer; oldest dropped)
    max_pose_age_s: float = 0.25  # a set needs a pose at most this far from its stamp (s)
    # A pose that moves farther than max_speed_mps * dt + max_jump_m from the previous one
    # is a jump and refused (dt: seconds between the two stamps).
    max_speed_mps: float = 70.0
    max_jump_m: float = 5.0
    max_abs_coordinate_m: float = 1.0e6  # farther from the map origin: refused as corrupt

    def __post_init__(self):
        if int(self.max_poses) < 2:
            raise ValueError("max_poses must be >= 2 (interpolation needs two poses)")
        for name in ("max_pose_age_s", "max_speed_mps", "max_jump_m", "max_abs_coordinate_m"):
            value = float(getattr(self, name))
            if not np.isfinite(value) or value <= 0:
                raise ValueError(f"{name} must be a positive number, got {value}")
