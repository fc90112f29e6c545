"""The map pose of a camera set: odometry kept in a bounded buffer, checked, interpolated.

`PoseBuffer.add(stamp, pose)` takes base_link -> map_frame poses (from nav_msgs/Odometry or
any source) and refuses bad ones with a reason: not finite, not a rigid transform, beyond
`max_abs_coordinate_m`, a stamp not newer than the newest pose, or a jump farther than
`max_speed_mps * dt + max_jump_m` from the newest pose. A refused pose leaves the buffer as
it was, so the map never sees it. A jump is judged against the newest accepted pose: if the
odometry really re-anchored, the gap allowed grows with time and the new trajectory is taken
once it is physically reachable.

`PoseBuffer.lookup(stamp)` interpolates between the two poses around the stamp (linear
translation, spherical-linear rotation); a stamp after the newest pose takes the newest if it
is within `max_pose_age_s`; a stamp with no pose within `max_pose_age_s` gets none, with a
reason.
"""

from __future__ import annotations

import threading
from collections import deque

import numpy as np

from pop3d_ros.geometry.transforms import matrix_to_quaternion, quaternion_to_matrix
from pop3d_ros.mapping.config import PoseConfig


def pose_problem(pose, config: PoseConfig | None = None) -> str:
    """Why `pose` (4x4) is not a usable rigid transform ("" when it is)."""
    config = config or PoseConfig()
    try:
        m = np.asarray(pose, np.float64)
    except (TypeError, ValueError):
        return "pose is not a 4x4 matrix of numbers"
    if m.shape != (4, 4):
        return f"pose must be 4x4, got shape {m.shape}"
    if not np.all(np.isfinite(m)):
        return "pose contains NaN or inf"
    r = m[:3, :3]
    if not np.allclose(r.T @ r, np.eye(3), atol=1e-3) or np.linalg.det(r) < 0:
        return "pose rotation is not a rotation matrix"
    if not np.allclose(m[3], [0, 0, 0, 1]):
        return "pose last row must be [0, 0, 0, 1]"
    if np.abs(m[:3, 3]).max() > config.max_abs_coordinate_m:
        return (f"pose translation {np.abs(m[:3, 3]).max():.3g} m exceeds "
                f"max_abs_coordinate_m={config.max_abs_coordinate_m:g}")  # fmt: skip
    return ""


def transition_problem(prev_pose, prev_stamp, pose, stamp, config: PoseConfig) -> str:
    """Why moving from (prev_pose, prev_stamp) to (pose, stamp) is a jump ("" when not)."""
    if prev_pose is None:
        return ""
    dist = float(np.linalg.norm(np.asarray(pose)[:3, 3] - np.asarray(prev_pose)[:3, 3]))
    dt = max(float(stamp) - float(prev_stamp), 0.0)
    allowed = config.max_speed_mps * dt + config.max_jump_m
    if dist > allowed:
        limits = f"max_speed_mps={config.max_speed_mps:g}, max_jump_m={config.max_jump_m:g}"
        return f"pose jumped {dist:.1f} m in {dt:.3f} s (at most {allowed:.1f} m: {limits})"
    return ""


def interpolate_pose(pose0, pose1, alpha: float) -> np.ndarray:
    """The rigid transform a fraction `alpha` in [0, 1] of the way from pose0 to pose1."""
    a, b = np.asarray(pose0, np.float64), np.asarray(pose1, np.float64)
    q0, q1 = matrix_to_quaternion(a[:3, :3]), matrix_to_quaternion(b[:3, :3])
    dot = float(np.dot(q0, q1))
    if dot < 0:  # the shorter way round
        q1, dot = -q1, -dot
    if dot > 0.9995:
        q = q0 + alpha * (q1 - q0)
    else:
        theta = np.arccos(np.clip(dot, -1.0, 1.0))
        q = (np.sin((1 - alpha) * theta) * q0 + np.sin(alpha * theta) * q1) / np.sin(theta)
    out = np.eye(4)
    out[:3, :3] = quaternion_to_matrix(q / np.linalg.norm(q))
    out[:3, 3] = (1 - alpha) * a[:3, 3] + alpha * b[:3, 3]
    return out


class PoseBuffer:
    """Bounded, checked odometry; thread-safe (the node adds from one callback and looks up
    from another)."""

    def __init__(self, config: PoseConfig | None = None):
        self.config = config or PoseConfig()
        self._poses: deque[tuple[float, np.ndarray]] = deque(maxlen=int(self.config.max_poses))
        self._lock = threading.Lock()
        self.refused = 0  # poses refused so far
        self.last_refusal = ""

    def __len__(self) -> int:
        return len(self._poses)

    def clear(self) -> None:
        with self._lock:
            self._poses.clear()

    @property
    def newest_stamp(self) -> float | None:
        with self._lock:
            return self._poses[-1][0] if self._poses else None

    def add(self, stamp: float, pose) -> str:
        """Keep a pose; returns "" or why it was refused (the buffer is unchanged then)."""
        problem = ""
        try:
            stamp = float(stamp)
        except (TypeError, ValueError):
            problem = f"pose stamp {stamp!r} is not a number"
        if not problem and not np.isfinite(stamp):
            problem = f"pose stamp {stamp} is not finite"
        problem = problem or pose_problem(pose, self.config)
        with self._lock:
            if not problem and self._poses:
                last_stamp, last_pose = self._poses[-1]
                if stamp <= last_stamp:
                    problem = (f"pose stamp {stamp:.3f} is not newer than the newest pose "
                               f"({last_stamp:.3f})")  # fmt: skip
                else:
                    problem = transition_problem(last_pose, last_stamp, pose, stamp, self.config)
            if problem:
                self.refused += 1
                self.last_refusal = problem
                return problem
            self._poses.append((stamp, np.asarray(pose, np.float64).copy()))
            return ""

    def lookup(self, stamp: float) -> tuple[np.ndarray | None, str]:
        """(pose at `stamp` or None, "" or why there is none)."""
        age = self.config.max_pose_age_s
        with self._lock:
            poses = list(self._poses)
        if not poses:
            return None, "no odometry received yet"
        stamps = np.array([s for s, _ in poses])
        i = int(np.searchsorted(stamps, stamp, side="right"))
        if i == 0:
            gap = stamps[0] - stamp
            if gap > age:
                return None, (f"no pose within max_pose_age_s={age:g} s of the set's stamp: "
                              f"the oldest kept pose is {gap:.3f} s later")  # fmt: skip
            return poses[0][1].copy(), ""
        if i == len(poses):
            gap = stamp - stamps[-1]
            if gap > age:
                return None, (f"no pose within max_pose_age_s={age:g} s of the set's stamp: "
                              f"the newest pose is {gap:.3f} s older")  # fmt: skip
            return poses[-1][1].copy(), ""
        (s0, p0), (s1, p1) = poses[i - 1], poses[i]
        if min(stamp - s0, s1 - stamp) > age:
            return None, (f"no pose within max_pose_age_s={age:g} s of the set's stamp "
                          f"(odometry gap of {s1 - s0:.3f} s)")  # fmt: skip
        return interpolate_pose(p0, p1, (stamp - s0) / (s1 - s0)), ""
