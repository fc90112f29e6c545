"""The occupancy node's /diagnostics content: model, pipeline, cameras."""

from __future__ import annotations

import time

from pop3d_ros.ros import conversions as conv
from pop3d_ros.ros.diagnostics import ERROR, OK, WARN, array, status


def build_diagnostics(node):
    """DiagnosticArray with three statuses: model (backend), pipeline (latency, rates, drops,
    invalid input by reason) and cameras (receive rate and staleness each)."""
    p = node.params
    hw = node.get_fully_qualified_name()
    now = time.monotonic()
    statuses = []

    runtime = node.runtime
    if not node.active:
        level, msg = OK, f"node {node.state}"
    elif node.pipeline is None:
        level = WARN if node.model_loading and not node.model_error else ERROR
        msg = f"model not loaded: {node.model_status()}"
    else:
        level, msg = OK, f"{runtime.backend_name} backend"
    statuses.append(
        status(
            f"{node.get_name()}: model",
            level,
            msg,
            {
                "backend_requested": p.backend,
                "backend": runtime.backend_name if runtime else "",
                "engine": runtime.description if runtime else "",
                "precision_requested": p.precision,
                "precision": runtime.precision if runtime else "",
                "precision_note": runtime.precision_note if runtime else "",
                "threads": "inference {}, executor {}".format(*p.thread_plan),
                "checkpoint": str(p.checkpoint_path),
                "error": node.model_error,
                "loading": str(node.model_loading).lower(),
                "state": node.state,
                "retry_s": p.model_retry_s,
                "extrinsics": node.extrinsics_note,
                "output_frame": node.outputs.current.frame,
                "output_transform": node.outputs.current.note,
            },
            hw,
        )
    )

    last, mean = node.stages.snapshot()
    idle = node.active and node.pipeline is not None and not node.watched()
    values = {f"{k}_ms": v for k, v in sorted(mean.items())}
    values.update({f"{k}_last_ms": v for k, v in sorted(last.items())})
    stats = node.matcher.stats
    values.update(
        {
            "output_rate_hz": node.output_rate.rate(now),
            "sets_processed": node.sets_processed,
            "sets_idle": node.sets_idle,
            "idle": str(idle).lower(),
            "sets_matched": stats.sets_emitted,
            "sets_dropped": node.slot.dropped,
            "frames_dropped": stats.frames_dropped,
            "late_frames": stats.late_frames,
            "inference_errors": node.inference_errors,
            "queries": node.queries,
            "invalid_messages": sum(node.invalid.values()),
            "markers_spliced": node.serializer.spliced,
        }
    )
    values.update({f"invalid_{k}": v for k, v in sorted(node.invalid.items())})
    level, msg = OK, "ok"
    if node.last_latency_s > p.max_latency_warn_s:
        level, msg = WARN, f"latency {node.last_latency_s:.2f} s > {p.max_latency_warn_s} s"
    if node.invalid:
        kinds = ", ".join(f"{k} x{v}" for k, v in sorted(node.invalid.items()))
        msg = f"{msg}; invalid input: {kinds}" if level else f"invalid input: {kinds}"
    if idle:
        note = "idle: no subscriber to markers or cloud, no consumer of every frame; keeping "
        note += "the latest camera set for queries"
        msg = note if msg == "ok" else f"{msg}; {note}"
    statuses.append(status(f"{node.get_name()}: pipeline", level, msg, values, hw))

    stale = node.matcher.staleness(now)
    cam_values, silent = {}, []
    for name in p.camera_names:
        cam_values[f"{name}_rate_hz"] = node.input_rates[name].rate(now)
        cam_values[f"{name}_age_s"] = stale[name] if stale[name] != float("inf") else "never"
        cam_values[f"{name}_reliability"] = node.reliability.get(name, "waiting for publisher")
        cam_values[f"{name}_calibration"] = "camera_info" if name in node.intrinsics else "rig"
        if stale[name] > p.camera_stale_s:
            silent.append(name)
    if silent:
        level, msg = WARN, f"no images for > {p.camera_stale_s} s from: {', '.join(silent)}"
    else:
        level, msg = OK, "all cameras publishing"
    statuses.append(status(f"{node.get_name()}: cameras", level, msg, cam_values, hw))
    if node.mapper is not None:
        statuses.append(node.mapper.diagnostics(hw))
    header = conv.make_header(time.time(), p.target_frame)
    header.stamp = node.get_clock().now().to_msg()
    return array(header, statuses)
