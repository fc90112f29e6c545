"""Grounded objects from `/query_text` (`min_score`) on the installed node with the shipped
default model, on a frame of a held-out synthetic drive played over DDS.

The expectation comes from the drive's scene, not from the node: the cars of the frame are the
world's car primitives (a car is a body box standing on the ground plus a cabin box on top), in
`base_link` (the ego frame the world reports them in).
"""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from node_fixtures import query, wait_model_state
from ros_harness import find_installed_executable, ros_node_command, wait_until, write_params_file
from sensor_msgs.msg import PointCloud2
from visualization_msgs.msg import Marker, MarkerArray

from pop3d_ros.data.classes import CLASS_ID
from pop3d_ros.data.synthetic.world import SyntheticWorld
from pop3d_ros.model.checkpoint import read_checkpoint
from pop3d_ros.model.config import ModelConfig
from pop3d_ros.ros.playback import CameraPlayback, PlaybackConfig

pytestmark = [pytest.mark.ros, pytest.mark.slow]  # ~20 s: renders a frame, starts the node

MODEL_DIR = Path(__file__).resolve().parents[1] / "models" / "default"
SEED, FRAME = 1001, 2  # held out: the default model trains on seeds 0-39
# A grounded car's centre is the score-weighted mean of the voxels the cameras see. Voxel
# centres are off the true surface by up to half a voxel (0.4 m on the default model's 0.8 m
# grid) and the seen voxels are the car's near side, pulling the centre up to half a car
# width (0.9 m) towards the ego: 1.3 m, rounded to 1.5 m -- the radius of the issue's
# `grounding_recall`. (Measured offline on this frame: 0.8 m for the nearest car.)
MATCH_M = 1.5
# The best object must lie on a car: parked cars less than a voxel apart form one group,
# whose centre lies between them, up to half a car length (~2.3 m) from each car's centre;
# 2.5 m still excludes every non-car object (the nearest is a pole or building metres away).
ON_CAR_M = 2.5
# Grouping threshold relative to the query's best score: the default model scores car voxels
# near its top score (~0.99) and a typical voxel near 0 (median measured ~0.006).
RELATIVE_MIN_SCORE = 0.8


def stamp_ns(header) -> int:
    return header.stamp.sec * 1_000_000_000 + header.stamp.nanosec


def car_boxes(world: SyntheticWorld, frame: int) -> tuple[np.ndarray, float]:
    """(centres (N, 3) of the frame's car bodies in the ego frame, highest car top (m))."""
    prims, _ = world.primitives(frame)
    car = prims.cls == CLASS_ID["car"]
    on_ground = np.isclose(prims.center[:, 2] - prims.half[:, 2], 0.0, atol=1e-6)
    top = float((prims.center[car, 2] + prims.half[car, 2]).max())
    return prims.center[car & on_ground], top


def test_query_text_min_score_grounds_cars(ros_node, node_process, tmp_path):
    grid = ModelConfig.from_dict(read_checkpoint(MODEL_DIR / "model.pt")["config"]).voxel_grid
    world = SyntheticWorld(seed=SEED, num_frames=FRAME + 1)
    sample = world.sample(FRAME, grid=grid, occupancy=False)
    cars, car_top = car_boxes(world, FRAME)
    assert len(cars) >= 3

    exe = find_installed_executable("pop3d_ros", "occupancy_node")
    shipped = exe.parents[2] / "share" / "pop3d_ros" / "config" / "occupancy.yaml"
    extra = write_params_file(
        tmp_path / "override.yaml",
        "pop3d_occupancy",
        {"model_dir": str(MODEL_DIR), "backend": "torch"},  # no ONNX export: faster
    )
    proc = node_process(
        ros_node_command(exe, shipped, extra_ros_args=["--params-file", str(extra)])
    )
    cloud = ros_node.collect(PointCloud2, "/pop3d/occupancy_cloud")
    boxes = ros_node.collect(MarkerArray, "/pop3d/query_objects")
    playback = CameraPlayback(ros_node.node, PlaybackConfig(restamp=False, depth=2))
    wait_model_state(ros_node, proc, loaded=True, timeout=120.0)
    for topic in playback.topics():
        ros_node.wait_for_subscribers(topic, 1, 30.0)
    ros_node.wait_for_topic("/pop3d/query_objects", 30.0)
    stamp = playback.publish_sample(sample) * 1000

    def processed():
        proc.assert_alive()
        return any(stamp_ns(m.header) == stamp for m in cloud.messages)

    assert wait_until(processed, 60.0, interval=0.1), proc.output()

    # min_score 0: today's answer, no objects.
    base = query(ros_node, "car", top_k=1)
    assert base.success and stamp_ns(base.header) == stamp, base.message
    assert len(base.objects) == 0
    top_score = float(base.top_scores[0])
    assert top_score > 0.5, f"'car' scores at most {top_score}: is the model trained?"

    min_score = RELATIVE_MIN_SCORE * top_score
    answer = query(ros_node, "car", top_k=1, min_score=min_score)
    assert answer.success, answer.message
    objects = list(answer.objects)
    assert objects, f"no object above {min_score:.3f}"
    centres = np.array([[o.center.x, o.center.y, o.center.z] for o in objects])
    summary = [
        (np.round(c, 2).tolist(), o.num_voxels, round(o.max_score, 3))
        for c, o in zip(centres, objects, strict=True)
    ]
    print(f"\n{len(objects)} objects for 'car' >= {min_score:.3f}: {summary}")

    # The nearest car of the scene is grounded: an object's centre lies on it.
    nearest = cars[np.argmin(np.linalg.norm(cars[:, :2], axis=1))]
    d_nearest = np.linalg.norm(centres[:, :2] - nearest[:2], axis=1).min()
    assert d_nearest <= MATCH_M, f"no object within {MATCH_M} m of the car at {nearest}"
    # The best object lies on a car, at the height of cars. (Lower-ranked objects may not:
    # the issue-19 default also gives a trailer and a facade >= 0.8 of the top score here.)
    d_best = np.linalg.norm(cars[:, :2] - centres[0, :2], axis=1).min()
    assert d_best <= ON_CAR_M, f"the best object is {d_best:.2f} m from any car"
    dz = float(grid.voxel_size[2])
    assert -dz < centres[0, 2] < car_top + dz, centres[0, 2]
    # Well-formed objects: best first, scores above the threshold, the best voxel inside the
    # first object's box, sizes whole voxels.
    peaks = [o.max_score for o in objects]
    assert peaks == sorted(peaks, reverse=True)
    assert all(o.mean_score >= min_score - 1e-6 and o.num_voxels >= 1 for o in objects)
    assert objects[0].max_score == pytest.approx(top_score, abs=1e-6)
    for o in objects:
        size = np.array([o.size.x, o.size.y, o.size.z])
        cells = size / grid.voxel_size
        np.testing.assert_allclose(cells, np.round(cells), atol=1e-3)
        assert np.prod(np.round(cells)) >= o.num_voxels
    best = answer.top_points[0]
    first = objects[0]
    for p, c, s in ((best.x, first.center.x, first.size.x), (best.y, first.center.y,
                    first.size.y), (best.z, first.center.z, first.size.z)):  # fmt: skip
        assert abs(p - c) <= s + 1e-3  # within the box whatever the weighting

    # RViz markers of this answer: DELETEALL, then a box and a label per object.
    def markers():
        return next(
            (
                m
                for m in boxes.messages
                if len(m.markers) == 1 + 2 * len(objects)
                and stamp_ns(m.markers[-1].header) == stamp
            ),
            None,
        )

    arr = wait_until(markers, 10.0, interval=0.1)
    assert arr is not None, [len(m.markers) for m in boxes.messages]
    assert arr.markers[0].action == Marker.DELETEALL
    cubes = [m for m in arr.markers if m.type == Marker.CUBE]
    labels = [m for m in arr.markers if m.type == Marker.TEXT_VIEW_FACING]
    assert len(cubes) == len(labels) == len(objects)
    assert all(m.header.frame_id == "base_link" for m in cubes)
    assert labels[0].text.startswith("car ")

    # Bad thresholds: answered with the reason; the node keeps answering.
    for bad in (math.nan, 1.5, -0.2):
        r = query(ros_node, "car", min_score=bad)
        assert not r.success and "min_score" in r.message, (bad, r.message)
        assert len(r.objects) == 0
    proc.assert_alive()
    assert query(ros_node, "car", min_score=1.0).success

    # The README's Python client with --min-score prints the objects.
    example = Path(__file__).resolve().parents[1] / "examples" / "query_text_client.py"
    run = subprocess.run(
        [sys.executable, str(example), "car", "--top-k", "1", "--min-score", f"{min_score:.4f}"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    assert run.stdout.count("  object ") == len(objects), run.stdout
