"""Outputs in `target_frame`: the rigid transform from the model's frame (base_link) to the
frame the node publishes in, and its application to point arrays and boxes.

Direction: a transform here maps base_link coordinates into `target_frame`,
`p_target = R @ p_base + t` — TF's `lookup_transform(target_frame, base_link)`, i.e. the pose
of base_link expressed in `target_frame`. The static parameter
`target_transform: [x, y, z, qx, qy, qz, qw]` is that pose (ROS quaternion order).

Where no transform is known (no tf2_ros, TF has none at the stamp, no parameter) the outputs
stay in base_link, labelled base_link, and the note says why (diagnostics).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

import numpy as np

from pop3d_ros.geometry.transforms import make_transform


@dataclass(frozen=True)
class OutputTransform:
    """`matrix` (4x4) maps base-frame points into `frame`; `note` says where it came from."""

    frame: str
    matrix: np.ndarray
    note: str = ""

    @property
    def is_identity(self) -> bool:
        return bool(np.array_equal(self.matrix, np.eye(4)))

    def points(self, xyz: np.ndarray) -> np.ndarray:
        """(N, 3) points in `frame` (float32; the input itself when the transform is identity)."""
        xyz = np.asarray(xyz)
        if self.is_identity or xyz.size == 0:
            return xyz
        r, t = self.matrix[:3, :3], self.matrix[:3, 3]
        return (xyz.astype(np.float64) @ r.T + t).astype(np.float32)

    def boxes(self, centres: np.ndarray, sizes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Axis-aligned boxes (centres, sizes (N, 3)) -> their centres in `frame` and the sizes
        of the axis-aligned boxes that enclose them there (|R| @ size; the sizes are unchanged
        when R only permutes or flips axes)."""
        sizes = np.asarray(sizes)
        if self.is_identity or sizes.size == 0:
            return np.asarray(centres), sizes
        extent = sizes.astype(np.float64) @ np.abs(self.matrix[:3, :3]).T
        return self.points(centres), extent.astype(np.float32)

    def objects(self, objects: Sequence) -> tuple:
        """Grounded objects (`pipeline.grounding.GroundedObject`) with centre and size in
        `frame` (the enclosing axis-aligned box, as `boxes`); scores and members unchanged."""
        if self.is_identity or not objects:
            return tuple(objects)
        centres, sizes = self.boxes(
            np.array([o.center for o in objects]), np.array([o.size for o in objects])
        )
        return tuple(
            replace(o, center=c, size=sz) for o, c, sz in zip(objects, centres, sizes, strict=True)
        )


def pose_to_matrix(pose: Sequence[float]) -> np.ndarray:
    """4x4 of `[x, y, z, qx, qy, qz, qw]` (ValueError: one line, for a bad parameter)."""
    values = [float(v) for v in pose]
    if len(values) != 7 or not np.all(np.isfinite(values)):
        raise ValueError(f"target_transform needs 7 finite numbers [x, y, z, qx, qy, qz, qw], "
                         f"got {list(pose)}")  # fmt: skip
    x, y, z, qx, qy, qz, qw = values
    try:
        return make_transform([qw, qx, qy, qz], [x, y, z])
    except ValueError:
        raise ValueError(f"target_transform quaternion {values[3:]} is zero") from None


TfLookup = Callable[[str, str, float], np.ndarray | None]  # (target, source, stamp) -> 4x4


def resolve_output_transform(
    base_frame: str,
    target_frame: str,
    stamp: float,
    static_pose: Sequence[float] | None = None,
    tf_lookup: TfLookup | None = None,
    tf_problem: str = "",
) -> OutputTransform:
    """The transform for the outputs of the set stamped `stamp`.

    Order: same frame -> identity; the static `target_transform` pose when given (explicit
    wins); TF at the stamp (when `tf_lookup` is given and has one); else identity in
    `base_frame` with the reason.
    """
    identity = np.eye(4)
    if not target_frame or target_frame == base_frame:
        return OutputTransform(base_frame, identity, f"outputs in {base_frame}")
    if static_pose:
        return OutputTransform(
            target_frame, pose_to_matrix(static_pose), "target_transform parameter"
        )
    reasons = []
    if tf_lookup is not None:
        m = tf_lookup(target_frame, base_frame, stamp)
        if m is not None:
            return OutputTransform(target_frame, m, f"tf {base_frame} -> {target_frame} at stamp")
        reasons.append(f"tf has no {base_frame} -> {target_frame} at {stamp:.3f}")
    elif tf_problem:
        reasons.append(tf_problem)
    reasons.append("no target_transform parameter")
    return OutputTransform(
        base_frame,
        identity,
        f"target_frame {target_frame!r} not applied, outputs stay in {base_frame}: "
        + "; ".join(reasons),
    )
