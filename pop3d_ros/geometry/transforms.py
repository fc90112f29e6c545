"""Rigid transforms as 4x4 matrices; quaternions in (w, x, y, z) order (nuScenes' order).

ROS messages order quaternions (x, y, z, w): convert at the ROS boundary, not here.
"""

from __future__ import annotations

import numpy as np


def quaternion_to_matrix(q_wxyz) -> np.ndarray:
    """Rotation matrix of a (w, x, y, z) quaternion; the quaternion need not be unit."""
    q = np.asarray(q_wxyz, dtype=np.float64)
    norm = np.linalg.norm(q)
    if q.shape != (4,) or not np.isfinite(norm) or norm < 1e-12:
        raise ValueError(f"invalid quaternion {q_wxyz!r}: need 4 finite numbers, not all zero")
    w, x, y, z = q / norm
    return np.array(
        [
            [1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)],
            [2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)],
            [2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)],
        ]
    )


def matrix_to_quaternion(rotation) -> np.ndarray:
    """(w, x, y, z) unit quaternion with w >= 0 of a 3x3 rotation matrix (Shepperd's method)."""
    m = np.asarray(rotation, dtype=np.float64)
    trace = m[0, 0] + m[1, 1] + m[2, 2]
    if trace > 0:
        s = 2.0 * np.sqrt(1.0 + trace)
        q = [0.25 * s, (m[2, 1] - m[1, 2]) / s, (m[0, 2] - m[2, 0]) / s, (m[1, 0] - m[0, 1]) / s]
    elif m[0, 0] > m[1, 1] and m[0, 0] > m[2, 2]:
        s = 2.0 * np.sqrt(1.0 + m[0, 0] - m[1, 1] - m[2, 2])
        q = [(m[2, 1] - m[1, 2]) / s, 0.25 * s, (m[0, 1] + m[1, 0]) / s, (m[0, 2] + m[2, 0]) / s]
    elif m[1, 1] > m[2, 2]:
        s = 2.0 * np.sqrt(1.0 + m[1, 1] - m[0, 0] - m[2, 2])
        q = [(m[0, 2] - m[2, 0]) / s, (m[0, 1] + m[1, 0]) / s, 0.25 * s, (m[1, 2] + m[2, 1]) / s]
    else:
        s = 2.0 * np.sqrt(1.0 + m[2, 2] - m[0, 0] - m[1, 1])
        q = [(m[1, 0] - m[0, 1]) / s, (m[0, 2] + m[2, 0]) / s, (m[1, 2] + m[2, 1]) / s, 0.25 * s]
    q = np.asarray(q)
    q /= np.linalg.norm(q)
    return q if q[0] >= 0 else -q


def make_transform(rotation=None, translation=None) -> np.ndarray:
    """4x4 transform from a 3x3 rotation (or a (w, x, y, z) quaternion) and a translation."""
    t = np.eye(4)
    if rotation is not None:
        r = np.asarray(rotation, dtype=np.float64)
        t[:3, :3] = quaternion_to_matrix(r) if r.shape == (4,) else r
    if translation is not None:
        t[:3, 3] = np.asarray(translation, dtype=np.float64)
    return t


def invert_transform(transform) -> np.ndarray:
    """Inverse of a rigid 4x4 transform, without a general matrix inverse."""
    t = np.asarray(transform, dtype=np.float64)
    inv = np.eye(4)
    inv[:3, :3] = t[:3, :3].T
    inv[:3, 3] = -t[:3, :3].T @ t[:3, 3]
    return inv


def transform_points(transform, points) -> np.ndarray:
    """Apply a 4x4 transform to points of shape (..., 3)."""
    t = np.asarray(transform)
    p = np.asarray(points)
    return p @ t[:3, :3].T + t[:3, 3]


def yaw_rotation(yaw: float) -> np.ndarray:
    """Rotation about +z (REP-103: x forward, y left, z up) by `yaw` radians."""
    c, s = np.cos(yaw), np.sin(yaw)
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


# Columns = the optical frame's axes (x right, y down, z forward) written in a body frame
# whose x looks forward, y left, z up (REP-103 vs. REP-103 optical convention).
OPTICAL_TO_BODY = np.array([[0.0, 0.0, 1.0], [-1.0, 0.0, 0.0], [0.0, -1.0, 0.0]])
