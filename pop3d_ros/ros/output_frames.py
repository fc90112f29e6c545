"""The node's output frame: one `OutputTransform` per camera-set stamp (ROS side of
`pipeline.output_frame`: where TF comes from, caching, the warning)."""

from __future__ import annotations

from collections.abc import Callable

from pop3d_ros.pipeline.output_frame import OutputTransform, resolve_output_transform
from pop3d_ros.ros.tf_extrinsics import TfExtrinsics


class OutputFrames:
    """`for_stamp(stamp)` -> the transform for that set (cached, so a set's outputs and the
    queries answered from it use one transform); `current` is the last one (diagnostics)."""

    def __init__(self, node, params, tf: TfExtrinsics | None, warn: Callable[[str, str], None]):
        self.params, self._warn = params, warn
        self._tf, self._tf_problem = None, ""
        self._cache: dict[float, OutputTransform] = {}
        self.current = resolve_output_transform(
            params.base_frame, params.target_frame, 0.0, params.target_transform
        )
        if params.target_frame != params.base_frame and not params.target_transform:
            try:
                self._tf = tf or TfExtrinsics(node, params.base_frame)
            except ImportError as exc:
                self._tf_problem = f"tf2_ros is not installed ({exc})"

    def for_stamp(self, stamp: float) -> OutputTransform:
        out = self._cache.get(stamp)
        if out is None:
            p = self.params
            out = resolve_output_transform(
                p.base_frame,
                p.target_frame,
                stamp,
                p.target_transform,
                self._tf.lookup_at if self._tf is not None else None,
                self._tf_problem,
            )
            if out.frame != p.target_frame:
                self._warn("output_frame", out.note)
            self._cache = {**dict(list(self._cache.items())[-3:]), stamp: out}
        self.current = out
        return out
