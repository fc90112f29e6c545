"""Pictures and summary numbers of `make demo` (ROS-free: works on collected arrays)."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from pop3d_ros.data.classes import CLASS_ID
from pop3d_ros.data.concepts import CONCEPT_ID, PARENT
from pop3d_ros.data.sample import cameras_of
from pop3d_ros.evaluation.labels import sample_ious
from pop3d_ros.geometry.grid import occupancy_of_points
from pop3d_ros.pipeline.grounding import ground_objects
from pop3d_ros.viz.demo_views import (
    labels_grid,
    mosaic_with_points,
    occupancy_comparison,
    occupancy_slices,
    query_heatmap,
    save_png,
)
from pop3d_ros.viz.mosaic import camera_mosaic

# The class or long-tail concept a query should find, to check its top voxels against the
# ground truth (classes against the class grid, concepts against the concept grid).
QUERY_TARGET = {
    "car": "car",
    "pedestrian": "pedestrian",
    "building": "manmade",
    "a parked bus": "bus",
    "stairs": "stairs",
    "a staircase": "stairs",
    "fire hydrant": "fire_hydrant",
    "ambulance": "ambulance",
}
# Grounding in the demo: voxels scoring at least this (cosine) form objects; an object
# finds a ground-truth instance whose box centre lies within MATCH_RADIUS_M of its centre.
GROUNDING_MIN_SCORE = 0.9
MATCH_RADIUS_M = 1.5


def slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", text.lower()).strip("_") or "empty"


def predicted_occupancy(cloud: np.ndarray, grid) -> tuple[np.ndarray, np.ndarray]:
    """(occupied bool grid, class-label grid) of a node cloud."""
    centres = np.stack([cloud["x"], cloud["y"], cloud["z"]], axis=-1)
    labels = cloud["label"] if "label" in cloud.dtype.names else None
    return occupancy_of_points(centres, grid).astype(bool), labels_grid(grid, centres, labels)


def _mean(values) -> float | None:
    values = [v for v in values if v is not None]
    return float(np.mean(values)) if values else None


def top_precision(points, gt_grid: np.ndarray, grid, target_id: int) -> float | None:
    """Share of the top voxels whose ground-truth class (or concept) is the query's."""
    if not points:
        return None
    idx, inside = grid.points_to_index(np.asarray(points))
    found = gt_grid[tuple(idx[inside].T)]
    return float(np.mean(found == target_id)) if found.size else None


def target_grid(sample: dict, target: str) -> tuple[np.ndarray, int]:
    """(ground-truth grid, id) to check a query's answer: concepts on the concept grid."""
    if target in PARENT:
        return sample["occupancy_concept"], CONCEPT_ID[target]
    return sample["occupancy"], CLASS_ID[target]


def grounding_report(heat, sample: dict, grid, target: str) -> dict:
    """Objects grounded from the node's heatmap (`pipeline.grounding.ground_objects`) vs the
    ground-truth instances of the target concept with LiDAR returns in the grid."""
    centres = np.stack([heat["x"], heat["y"], heat["z"]], axis=-1).astype(np.float64)
    objects = ground_objects(centres, heat["score"], grid.voxel_size, GROUNDING_MIN_SCORE)
    _, inside = grid.points_to_index(sample["lidar_points"])
    seen_ids = set(np.unique(sample["lidar_instances"][inside]).tolist()) - {0}
    cid = CONCEPT_ID[target]
    pairs = zip(sample["instance_ids"], sample["instance_concepts"], strict=True)
    mine = [k for k, (i, c) in enumerate(pairs) if c == cid and int(i) in seen_ids]
    gt = sample["instance_centers"][mine].astype(np.float64).reshape(-1, 3)
    obj = np.stack([o.center for o in objects]) if objects else np.zeros((0, 3))
    d = np.linalg.norm(gt[:, None] - obj[None], axis=-1) if len(obj) else None
    found = (d.min(1) <= MATCH_RADIUS_M) if d is not None else np.zeros(len(gt), bool)
    return {
        "min_score": GROUNDING_MIN_SCORE,
        "objects": [
            {
                "center": [round(float(v), 2) for v in o.center],
                "size": [round(float(v), 2) for v in o.size],
                "max_score": round(o.max_score, 4),
                "num_voxels": o.num_voxels,
            }
            for o in objects[:5]
        ],  # fmt: skip
        "objects_total": len(objects),
        "gt_instances_in_view": len(gt),
        "gt_instances_found": int(found.sum()),
        "gt_instance_centers": [[round(float(v), 2) for v in c] for c in gt],
        "center_error_m": [round(float(v), 2) for v in d.min(1)[found]] if d is not None else [],
    }


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
        target = QUERY_TARGET.get(q["text"])
        if q["success"] and target:
            entry["expected"] = target
            gt_grid, target_id = target_grid(last_sample, target)
            in_view = int((gt_grid == target_id).sum())
            entry["expected_voxels_in_grid"] = in_view
            # Precision of the top-10 voxels; only meaningful when the target is in the grid.
            entry["top10_precision"] = (
                top_precision(q["top_points"][:10], gt_grid, grid, target_id) if in_view else None
            )
            if len(q.get("heatmap", ())) and "instance_ids" in last_sample:
                entry["grounding"] = grounding_report(q["heatmap"], last_sample, grid, target)
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


def write_map_report(out: Path, map_cloud, map_answers, truth: dict, diag: dict) -> dict:
    """`map_bev.png`, `map_query_<q>.png` and the summary's `map` entry: the node's map
    (`/pop3d/map_cloud`, world frame = odom) and its `/query_map` answers against the
    static world's instances (demo_map.py)."""
    from demo_map import map_query_report

    from pop3d_ros.viz.demo_views import map_bev, map_query_view

    grid = truth["grid"]
    result = {k.split("/", 1)[1]: diag[k] for k in diag if k.startswith("map/")}
    for key in ("frames_integrated", "occupied_voxels", "feature_voxels", "sets_refused"):
        if key in result:
            result[key] = int(result[key])
    pictures = []
    if map_cloud is not None and len(map_cloud):
        centres = np.stack([map_cloud["x"], map_cloud["y"], map_cloud["z"]], axis=-1)
        labels = map_cloud["label"] if "label" in map_cloud.dtype.names else None
        title = f"map, {len(centres)} voxels"  # by zero-shot class, ego path in black
        save_png(map_bev(grid, centres, labels, truth["trajectory"], title), out / "map_bev.png")
        pictures.append("map_bev.png")
    queries = []
    for concept, answer in map_answers:
        entry = map_query_report(answer, truth, concept)
        heat = answer.get("heatmap")
        if answer["success"] and heat is not None and len(heat):
            mine = truth["concepts"] == CONCEPT_ID[concept]
            marks = {"instances": truth["centres"][mine], "ego": truth["trajectory"][-1:]}
            centres = np.stack([heat["x"], heat["y"], heat["z"]], axis=-1)
            name = f"map_query_{slug(answer['text'])}.png"
            title = f"query_map: {answer['text']}"  # red: its instances; white: the ego at the end
            save_png(map_query_view(grid, centres, heat["score"], marks, title), out / name)
            pictures.append(name)
        queries.append(entry)
    result.update({"queries": queries, "pictures": pictures})
    return result
