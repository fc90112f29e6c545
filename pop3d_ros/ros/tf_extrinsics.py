"""Camera extrinsics from TF (`extrinsics_source: tf`), where tf2_ros is installed.

tf2_ros comes with every ROS 2 install but not as a pip wheel, so it is imported lazily and
the node falls back to the rig file when it is missing. A camera whose transform is not (yet)
available also uses the rig, with a throttled warning from the node.
"""

from __future__ import annotations

import numpy as np

from pop3d_ros.geometry.transforms import make_transform


def transform_to_matrix(transform) -> np.ndarray:
    """4x4 matrix of a geometry_msgs/Transform (ROS quaternions are x, y, z, w)."""
    q, t = transform.rotation, transform.translation
    return make_transform([q.w, q.x, q.y, q.z], [t.x, t.y, t.z])


class TfExtrinsics:
    """Looks up camera optical frame -> `target_frame` transforms (latest available), and
    base frame -> output frame at a stamp (`lookup_at`)."""

    def __init__(self, node, target_frame: str):
        import tf2_ros  # ImportError where tf2 is not installed: the caller falls back

        self._tf2 = tf2_ros
        self.target_frame = target_frame
        self.buffer = tf2_ros.Buffer()
        self.listener = tf2_ros.TransformListener(self.buffer, node)

    def lookup(self, source_frame: str) -> np.ndarray | None:
        """cam_to_ego for `source_frame` (TF's latest), or None when TF cannot give it now."""
        return self.lookup_at(self.target_frame, source_frame, 0.0)

    def lookup_at(self, target_frame: str, source_frame: str, stamp: float) -> np.ndarray | None:
        """source -> target at `stamp` (seconds; 0 = the latest available, TF's `Time()`), or
        None when TF cannot give it (no waiting)."""
        from rclpy.time import Time

        try:
            stamped = self.buffer.lookup_transform(
                target_frame, source_frame, Time(nanoseconds=int(round(stamp * 1e9)))
            )
        except (
            self._tf2.LookupException,
            self._tf2.ConnectivityException,
            self._tf2.ExtrapolationException,
        ):
            return None
        return transform_to_matrix(stamped.transform)
