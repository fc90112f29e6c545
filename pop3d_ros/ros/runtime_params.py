"""`ros2 param set` on the occupancy node: what changes at run time, what is refused, and why.

Run-time parameters (`params.RUNTIME_PARAMETERS`: threshold, vocabulary, marker opacity,
output frame, diagnostics limits) apply from the next camera set on. Every other parameter
(model, backend, precision, threads, cameras, rig, transport, ...) is read when the node is
configured: the plain node refuses a change while it runs (restart it), a managed node
accepts one only while unconfigured (deactivate and clean it up, set, configure again). An
invalid value is refused with the reason, and then nothing changes: the callback rejects the
whole request before anything is applied.
"""

from __future__ import annotations

from dataclasses import fields

from rcl_interfaces.msg import SetParametersResult

from pop3d_ros.ros.params import RUNTIME_PARAMETERS, NodeParams, from_values


def _refuse(reason: str) -> SetParametersResult:
    return SetParametersResult(successful=False, reason=reason)


def on_set_parameters(node, changes) -> SetParametersResult:
    """rclpy on-set-parameters callback of the occupancy node (`node`: an OccupancyCore)."""
    names = {f.name for f in fields(NodeParams)}
    ours = {c.name: c.value for c in changes if c.name in names}
    if not ours:
        return SetParametersResult(successful=True)  # use_sim_time and the like: rclpy's
    values = {name: node.get_parameter(name).value for name in names}
    values.update(ours)
    try:
        candidate = from_values(values)
    except ValueError as exc:
        return _refuse(str(exc))
    load_time = sorted(set(ours) - set(RUNTIME_PARAMETERS))
    if load_time and node.configured:
        how = (
            "deactivate and clean up the node, set it, then configure again"
            if node.managed
            else "restart the node with the new value"
        )
        return _refuse(f"{', '.join(load_time)}: read when the node is configured; {how}")
    if not node.configured or node.params is None:
        return SetParametersResult(successful=True)  # read at the next configure
    try:
        apply_runtime(node, candidate, set(ours))
    except Exception as exc:  # noqa: BLE001 - e.g. a vocabulary the text space cannot encode
        return _refuse(f"{', '.join(sorted(ours))}: {exc}")
    return SetParametersResult(successful=True)


def apply_runtime(node, new: NodeParams, changed: set[str]) -> None:
    """Prepare everything that can fail first, then swap it in (nothing changes on error)."""
    from pop3d_ros.ros.output_frames import OutputFrames

    pipe = node.pipeline
    encoded = None
    pipeline_change = {"occupancy_threshold", "vocabulary"} & changed
    if pipe is not None and pipeline_change:
        encoded = pipe.encode_vocabulary(new.vocabulary)  # TextEncodingError: refused
    outputs = node.outputs
    if {"target_frame", "target_transform"} & changed:
        outputs = OutputFrames(node, new, node.tf, lambda k, text: node._warn(k, text, 30.0))
    old_period = node.params.diagnostics_period_s
    node.params = new
    if node.outputs is not None:
        node.outputs = outputs
    if pipe is not None and pipeline_change:
        pipe.reconfigure(new.occupancy_threshold, new.vocabulary, encoded)
    if new.diagnostics_period_s != old_period:
        node.restart_diagnostics_timer()
    node.log.info(
        "parameters changed: " + ", ".join(f"{n}={getattr(new, n)!r}" for n in sorted(changed))
    )
