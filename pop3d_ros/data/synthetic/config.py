"""Configuration of the synthetic surround-view world."""

from __future__ import annotations

from dataclasses import dataclass, field

from pop3d_ros.geometry.grid import VoxelGrid

# Version of the world generator: bump when the same config renders different frames.
# Render and prepared-frame caches record it and refuse frames of another version.
# 2: long-tail objects and concept ids (data/concepts.py), instance ids, moving cyclists.
WORLD_VERSION = 2


@dataclass
class WorldConfig:
    """One procedural street drive. Everything is a pure function of these fields."""

    seed: int = 0  # scene, objects and motion; same seed -> byte-identical samples
    num_frames: int = 40  # frames in the drive (the street is generated long enough)
    frame_interval: float = 0.5  # seconds between frames (nuScenes key frames: 2 Hz)
    ego_speed: float = 8.0  # m/s along the street
    image_width: int = 256  # rendered image size; the rig's 1600x900 K is rescaled
    image_height: int = 144
    rig_file: str | None = None  # camera rig YAML; None = config/rig_nuscenes.yaml
    camera_range: float = 120.0  # metres; farther ground/objects render as sky/haze
    lidar_beams: int = 32  # vertical channels
    lidar_azimuths: int = 1080  # horizontal steps per revolution (~0.33 deg)
    lidar_elevation_deg: tuple[float, float] = (-30.67, 10.67)  # lowest, highest beam
    lidar_origin: tuple[float, float, float] = (0.94, 0.0, 1.84)  # in base_link (nuScenes)
    lidar_range: float = 70.0  # metres; farther returns are dropped
    density: float = 1.0  # multiplies how many objects are placed per metre of street
    moving_fraction: float = 0.4  # share of vehicles/pedestrians that move
    grid: VoxelGrid = field(default_factory=VoxelGrid)  # GT occupancy grid of `sample()`

    def __post_init__(self):
        if self.num_frames < 1:
            raise ValueError(f"num_frames must be >= 1, got {self.num_frames}")
        if self.image_width < 8 or self.image_height < 8:
            raise ValueError(f"image size too small: {self.image_width}x{self.image_height}")
        if self.frame_interval <= 0 or self.ego_speed < 0:
            raise ValueError("frame_interval must be > 0 and ego_speed >= 0")
        if self.lidar_beams < 1 or self.lidar_azimuths < 8:
            raise ValueError("lidar needs >= 1 beam and >= 8 azimuth steps")
