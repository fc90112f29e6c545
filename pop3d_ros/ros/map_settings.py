"""The node's map parameters as the map core's typed configs (`mapping/config.py`)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from pop3d_ros.mapping.config import CostmapConfig, MapConfig, PoseConfig

DEFAULT_MAP_FILE = "~/.ros/pop3d_map.npz"  # where save_map writes when map_file is ""


@dataclass(frozen=True)
class MapSettings:
    overrides: dict  # MapConfig fields set by parameters (the lattice is the model grid's)
    poses: PoseConfig
    costmap: CostmapConfig
    save_path: Path  # where pop3d/save_map writes
    load_path: Path | None  # the map file to start from (map_file), None = start empty

    def map_config(self, grid) -> MapConfig:
        """The map on the model grid's lattice (a map voxel is a model voxel)."""
        return MapConfig.for_grid(grid, **self.overrides)


def map_settings(p) -> MapSettings:
    """MapSettings of NodeParams `p`; ValueError (one line, naming the parameter) when invalid."""
    if int(p.map_language_every) < 1:
        raise ValueError("parameter map_language_every must be >= 1")
    if int(p.map_max_voxels) < 512:
        raise ValueError("parameter map_max_voxels must be >= 512 (one block of 8^3 voxels)")
    if not float(p.map_radius_m) >= 0:
        raise ValueError("parameter map_radius_m must be >= 0 (0 = no radius)")
    if not float(p.map_publish_period_s) > 0:
        raise ValueError("parameter map_publish_period_s must be > 0")
    if p.map_file and not str(p.map_file).endswith(".npz"):
        raise ValueError(f"parameter map_file={p.map_file!r}: a map file ends with .npz")
    overrides = {
        "max_voxels": int(p.map_max_voxels),
        "radius_m": float(p.map_radius_m),
        "language_every": int(p.map_language_every),
    }
    try:
        MapConfig(**overrides)
        poses = PoseConfig(max_pose_age_s=float(p.max_pose_age_s))
        costmap = CostmapConfig(
            ground_z=float(p.costmap_ground_z),
            min_height=float(p.costmap_min_height),
            max_height=float(p.costmap_max_height),
        )
    except ValueError as exc:
        raise ValueError(f"map parameters: {exc}") from None
    given = Path(p.map_file).expanduser() if p.map_file else None
    return MapSettings(
        overrides=overrides,
        poses=poses,
        costmap=costmap,
        save_path=given or Path(DEFAULT_MAP_FILE).expanduser(),
        load_path=given,
    )
