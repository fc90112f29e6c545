"""The map part of `make demo` (issue 28), ROS-free: the static world's ground truth of the
drive, which object has left the view by the last frame, the pictures `map_bev.png` and
`map_query_<q>.png`, and what `/query_map` returned against the ground truth.

"In view" means inside the model's grid around the ego (the model predicts nothing beyond
it): an object is out of view in the last frame when its centre lies outside the last
frame's grid, and was seen when it lay inside an earlier frame's grid."""

from __future__ import annotations

import numpy as np

from pop3d_ros.data.concepts import CONCEPT_ID
from pop3d_ros.data.synthetic.map_truth import drive_grid, static_instances
from pop3d_ros.geometry.transforms import invert_transform, transform_points
from pop3d_ros.pipeline.grounding import ground_objects

# (ground-truth concept, query text), tried in this order for the object out of view.
OUT_OF_VIEW_CHOICES = (
    ("fire_hydrant", "fire hydrant"), ("ambulance", "ambulance"), ("bus", "a parked bus"),
    ("pedestrian", "pedestrian"), ("car", "car"), ("barrier", "barrier"),
    ("traffic_cone", "traffic cone"), ("manmade", "building"),
)  # fmt: skip
STAIRS = ("stairs", "stairs")
MAP_MIN_SCORE = 0.9  # grounding threshold of the demo's map queries (as the frame queries)
MATCH_RADIUS_M = 1.5  # an object finds an instance whose centre lies this close


def drive_truth(world, frames: int, ego_grid) -> dict:
    """Static instances, ego trajectory, and for each instance the frames whose grid holds it."""
    inst = static_instances(world)
    centres = np.asarray(inst["instance_centers"], np.float64).reshape(-1, 3)
    poses = [world.ego_to_world(i) for i in range(frames)]
    in_view = np.zeros((len(centres), frames), bool)
    for f, pose in enumerate(poses):
        _, in_view[:, f] = ego_grid.points_to_index(
            transform_points(invert_transform(pose), centres)
        )
    size = np.asarray(ego_grid.voxel_size, np.float64)
    origin = np.array([0.0, 0.0, float(ego_grid.lower[2])])  # the map's lattice (for_grid)
    grid = drive_grid(world, frames, ego_grid, origin, size)
    return {
        "concepts": np.asarray(inst["instance_concepts"]),
        "centres": centres,
        "in_view": in_view,
        "trajectory": np.stack([p[:3, 3] for p in poses]),
        "grid": grid,
    }


def out_of_view_query(truth: dict) -> tuple[str, str] | None:
    """(concept, text) of the first choice with an instance seen earlier and out of view in
    the last frame; None when the drive has none."""
    left = truth["in_view"][:, :-1].any(1) & ~truth["in_view"][:, -1]
    for concept, text in OUT_OF_VIEW_CHOICES:
        if np.any(left & (truth["concepts"] == CONCEPT_ID[concept])):
            return concept, text
    return None


def map_query_report(answer: dict, truth: dict, concept: str) -> dict:
    """A `/query_map` answer (collected by demo_ros) against the target's instances: objects
    grounded from the heatmap at MAP_MIN_SCORE, which instances they find within
    MATCH_RADIUS_M, and whether those instances are out of view in the last frame."""
    mine = truth["concepts"] == CONCEPT_ID[concept]
    seen = truth["in_view"].any(1) & mine
    gt = truth["centres"][seen]
    gone = ~truth["in_view"][seen, -1]
    report = {k: answer[k] for k in ("text", "success", "message", "top_points", "top_scores")}
    report.update({"target": concept, "gt_instances_seen": int(seen.sum()),
                   "gt_instances_out_of_view_at_end": int(gone.sum())})  # fmt: skip
    heat = answer.get("heatmap")
    if not answer["success"] or heat is None or not len(heat):
        return report
    centres = np.stack([heat["x"], heat["y"], heat["z"]], axis=-1).astype(np.float64)
    objects = ground_objects(centres, heat["score"], truth["grid"].voxel_size, MAP_MIN_SCORE)
    obj = np.stack([o.center for o in objects]) if objects else np.zeros((0, 3))
    d = np.linalg.norm(gt[:, None] - obj[None], axis=-1) if len(obj) and len(gt) else None
    found = d.min(1) <= MATCH_RADIUS_M if d is not None else np.zeros(len(gt), bool)
    top = np.asarray(answer["top_points"], np.float64).reshape(-1, 3)
    near = np.linalg.norm(gt[:, None] - top[None], axis=-1).min(1) if len(top) and len(gt) else []
    report.update({
        "min_score": MAP_MIN_SCORE,
        "objects_total": len(objects),
        "gt_instances_found": int(found.sum()),
        "gt_out_of_view_found": int((found & gone).sum()),
        "top_point_nearest_instance_m": round(float(np.min(near)), 2) if len(near) else None,
    })  # fmt: skip
    return report
