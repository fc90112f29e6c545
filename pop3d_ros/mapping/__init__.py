"""The online open-vocabulary map (issue 28): camera sets fused into one sparse voxel store in
map_frame, with occupancy, language and costmap layers as views of it. Imports no rclpy: the
ROS node only wires topics to `OnlineMap` and `PoseBuffer`."""

from pop3d_ros.mapping.config import CostmapConfig, MapConfig, PoseConfig
from pop3d_ros.mapping.frame import FramePrediction
from pop3d_ros.mapping.io import MapFileError
from pop3d_ros.mapping.online_map import IntegrationReport, MapCloud, OnlineMap
from pop3d_ros.mapping.poses import PoseBuffer

__all__ = [
    "CostmapConfig",
    "FramePrediction",
    "IntegrationReport",
    "MapCloud",
    "MapConfig",
    "MapFileError",
    "OnlineMap",
    "PoseBuffer",
    "PoseConfig",
]
