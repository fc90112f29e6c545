"""Pictures and summary numbers of `make demo` (ROS-free: works on collected arrays)."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from pop3d_ros.data.classes import CLASS_ID
from pop3d_ros.data.sample import cameras_of
from pop3d_ros.training.eval_labels import sample_ious
from pop3d_ros.training.targets import occupancy_target
from pop3d_ros.viz.demo_views import (
    labels_grid,
    mosaic_with_points,
    occupancy_comparison,
    occupancy_slices,
    query_heatmap,
    save_png,
)
from pop3d_ros.viz.mosaic import camera_mosaic

# The class a query should find, to check its top voxels against the ground truth.
QUERY_CLASS = {
    "car": "car",
    "pedestrian": "pedestrian",
    "building": "manmade",
    "a parked bus": "bus",
}


def slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", text.lower()).strip("_") or "empty"


def predicted_occupancy(cloud: np.ndarray, grid) -> tuple[np.ndarray, np.ndarray]:
    """(occupied bool grid, class-label grid) of a node cloud."""
    centres = np.stack([cloud["x"], cloud["y"], cloud["z"]], axis=-1)
    labels = cloud["label"] if "label" in cloud.dtype.names else None
    return occupancy_target(centres, grid).astype(bool), labels_grid(grid, centres, labels)


def _mean(values) -> float | None:
    values = [v for v in values if v is not None]
    return float(np.mean(values)) if values else None


def top_class_precision(points, gt_occupancy: np.ndarray, grid, class_name: str) -> float | None:
    """Share of the top voxels whose ground-truth class is the query's class."""
    if not points:
        return None
    idx, inside = grid.points_to_index(np.asarray(points))
    found = gt_occupancy[tuple(idx[inside].T)]
    return float(np.mean(found == CLASS_ID[class_name])) if found.size else None


def write_report(out: Path, samples, frames, queries, grid, vocabulary) -> dict:
    pictures = []

    def save(image, name):
        save_png(image, out / name)
        pictures.append(name)

    processed = [f for f in frames if f["cloud"] is not None]
    ious = [
        sample_ious(predicted_occupancy(f["cloud"], grid)[0], sample, grid)
        for f, sample in zip(frames, samples, strict=False)
        if f["cloud"] is not None
    ]
    result = {
        "frames_published": len(frames),
        "frames_processed": len(processed),
        "frame_latency_s": [round(f["latency_s"], 3) for f in frames],
        "iou_per_frame": [v["protocol"] for v in ious],
        "iou_vs_ground_truth": _mean(v["protocol"] for v in ious),
        "iou_vs_ground_truth_protocol": "POP-3D: voxels observed by LiDAR rays (synthetic LiDAR)",
        "iou_vs_dense_ground_truth": _mean(v["dense"] for v in ious),
    }
    last_sample = samples[len(frames) - 1] if frames else samples[-1]
    cameras = cameras_of(last_sample)
    save(camera_mosaic(last_sample["images"]), "cameras.png")
    if frames and frames[-1]["cloud"] is not None:
        _, classes = predicted_occupancy(frames[-1]["cloud"], grid)
        save(occupancy_comparison(last_sample["occupancy"], classes, grid), "bev_occupancy.png")
        save(occupancy_slices(classes, grid), "occupancy_slices.png")

    answers = []
    for q in queries:
        entry = {k: q.get(k) for k in ("text", "success", "message", "round_trip_ms")}
        entry["top_score"] = q["top_scores"][0] if q.get("top_scores") else None
        entry["top_points"] = q.get("top_points", [])[:5]
        target = QUERY_CLASS.get(q["text"])
        if q["success"] and target:
            entry["expected_class"] = target
            in_view = int((last_sample["occupancy"] == CLASS_ID[target]).sum())
            entry["expected_class_voxels_in_grid"] = in_view
            # Precision is only meaningful when the class is in the grid at all.
            entry["top_class_precision"] = (
                top_class_precision(q["top_points"], last_sample["occupancy"], grid, target)
                if in_view
                else None
            )
        if q["success"] and len(q.get("heatmap", ())):
            heat = q["heatmap"]
            centres = np.stack([heat["x"], heat["y"], heat["z"]], axis=-1)
            name = slug(q["text"])
            save(query_heatmap(grid, centres, heat["score"], f"query: {q['text']}"),
                 f"heatmap_{name}.png")  # fmt: skip
            top = np.asarray(q["top_points"], dtype=np.float64).reshape(-1, 3)
            save(mosaic_with_points(last_sample["images"], cameras, top), f"cameras_{name}.png")
        answers.append(entry)
    result["queries"] = answers
    result["vocabulary"] = list(vocabulary)
    result["pictures"] = pictures
    return result
