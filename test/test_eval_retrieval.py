"""Long-tail retrieval AP and grounding (evaluation/retrieval.py) against hand-computed values."""

import numpy as np
import pytest

from pop3d_ros.data.classes import IGNORE
from pop3d_ros.data.concepts import CONCEPT_ID
from pop3d_ros.evaluation.retrieval import RetrievalMetrics, average_precision, voxel_concepts
from pop3d_ros.geometry.grid import VoxelGrid


def test_average_precision_by_hand():
    # relevant at ranks 1 and 3: (1/1 + 2/3) / 2
    assert average_precision([0.9, 0.8, 0.7, 0.6], [1, 0, 1, 0]) == pytest.approx(5 / 6)
    # a third relevant item never retrieved adds precision 0: (1 + 2/3) / 3
    assert average_precision([0.9, 0.8, 0.7, 0.6], [1, 0, 1, 0], 3) == pytest.approx(5 / 9)
    # order comes from the scores, not the input order: relevant at ranks 3 and 4
    assert average_precision([0.1, 0.9, 0.3, 0.8], [1, 0, 1, 0]) == pytest.approx(
        (1 / 3 + 2 / 4) / 2
    )
    # ties keep input order
    assert average_precision([0.5, 0.5], [0, 1]) == pytest.approx(0.5)
    assert np.isnan(average_precision([0.5], [0]))
    with pytest.raises(ValueError):
        average_precision([0.5, 0.4], [1, 1], 1)


def test_voxel_concepts_majority_per_voxel():
    grid = VoxelGrid(x_range=(0, 2), y_range=(0, 1), z_range=(0, 1), shape=(2, 1, 1))
    pts = np.array([[0.5, 0.5, 0.5]] * 3 + [[1.5, 0.5, 0.5]] + [[5, 5, 5]], np.float32)
    stairs, man = CONCEPT_ID["stairs"], CONCEPT_ID["manmade"]
    con = np.array([stairs, stairs, man, IGNORE, stairs], np.uint8)
    # voxel 0: 2 stairs vs 1 building; voxel 1: only an unlabelled point; last point outside
    assert voxel_concepts(pts, con, grid).tolist() == [stairs, IGNORE]


def test_retrieval_and_grounding_by_hand():
    stairs, man = CONCEPT_ID["stairs"], CONCEPT_ID["manmade"]
    queries = {"stairs": (np.array([1.0, 0, 0]), np.array([0, 1.0, 0])),
               "bench": (np.array([0, 0, 1.0]), np.array([0, 1.0, 0]))}  # fmt: skip
    rm = RetrievalMetrics(queries, min_score=0.55, match_radius=1.5)
    # voxels v0..v5; v5 is stairs the model missed (not predicted occupied); v3 unobserved
    occupied = np.array([1, 1, 1, 1, 1, 0], bool)
    observed = np.array([1, 1, 1, 0, 1, 1], bool)
    gt = np.array([stairs, stairs, man, IGNORE, man, stairs], np.uint8)
    student = np.array([[1, 0, 0], [0.6, 0.8, 0], [0, 1, 0], [0.8, 0.6, 0],
                        [0.5, 0, 0.75**0.5]])  # fmt: skip
    centres = np.array([[0, 0, 0], [1, 0, 0], [5, 0, 0], [6, 0, 0], [10, 0, 0], [2, 0, 0.0]])
    instances = {
        "ids": np.array([1, 2, 3, 4]),
        "concepts": np.array([stairs, stairs, stairs, man]),
        "centres": np.array([[0.5, 0, 0], [9, 0, 0], [0, 0, 0], [5, 0, 0.0]]),
        "points": np.array([5, 2, 0, 9]),
    }
    rm.add(gt_concepts=gt, observed=observed, occupied=occupied, student=student,
           centres=centres, voxel_size=1.0, teacher_voxels=np.array([0, 2, 5]),
           teacher=np.array([[0, 1, 0], [0, 1, 0], [1, 0, 0.0]]), instances=instances)  # fmt: skip
    res = rm.result()
    # student ranks v0 (1.0), v1 (0.6), v4 (0.5), v2 (0): stairs at ranks 1, 2 of 3 relevant
    assert res["retrieval_map"] == pytest.approx(2 / 3, abs=1e-4)
    # parent query ranks v2 (1), v1 (0.8), v0 (0), v4 (0): stairs at ranks 2, 3
    assert res["retrieval_map_parent"] == pytest.approx((1 / 2 + 2 / 3) / 3, abs=1e-4)
    # teacher ranks v5 (1), v0 (0), v2 (0): stairs at ranks 1, 2
    assert res["retrieval_map_teacher"] == pytest.approx(2 / 3, abs=1e-4)
    assert 0 <= res["retrieval_map_chance"] <= 2 / 3 + 1e-4  # the best any ranking does
    assert set(res["retrieval_per_concept"]) == {"stairs"}  # no bench in this frame
    assert res["retrieval_per_concept"]["stairs"]["frames"] == 1
    # grounding: v0 + v1 (>= 0.55, adjacent) -> centre (0 * 1 + 1 * 0.6) / 1.6 = 0.375; v3
    # (0.8) alone at x = 6. Instance 1 (0.5 m away) found, instance 2 (3 m) not, instance 3
    # has no LiDAR return (not in view), instance 4 is another concept.
    assert res["grounding_instances"] == 2
    assert res["grounding_recall"] == pytest.approx(0.5)
    assert res["grounding_center_error"] == pytest.approx(0.125)
    assert res["grounding_objects_per_query"] == pytest.approx(2.0)
