"""Geometry (ROS-free): rigid transforms, pinhole cameras, the voxel grid, the camera rig."""

from pop3d_ros.geometry.camera import PinholeCamera, scale_intrinsics
from pop3d_ros.geometry.grid import VoxelGrid
from pop3d_ros.geometry.transforms import (
    invert_transform,
    make_transform,
    matrix_to_quaternion,
    quaternion_to_matrix,
    transform_points,
)

__all__ = [
    "PinholeCamera",
    "VoxelGrid",
    "invert_transform",
    "make_transform",
    "matrix_to_quaternion",
    "quaternion_to_matrix",
    "scale_intrinsics",
    "transform_points",
]
