"""Grounded objects: connected groups (26-neighbourhood) of voxels above a score threshold."""

from __future__ import annotations

import numpy as np
import pytest

from pop3d_ros.geometry.grid import VoxelGrid
from pop3d_ros.pipeline.grounding import GroundedObject, ground_objects


def _centres(cells, size=(1.0, 1.0, 1.0), origin=(0.0, 0.0, 0.0)):
    """Centres of integer cells on a grid with the given voxel size and lower corner."""
    cells = np.asarray(cells, dtype=np.float64)
    return np.asarray(origin) + (cells + 0.5) * np.asarray(size)


def test_two_separate_blobs_best_first():
    a = [(0, 0, 0), (1, 0, 0), (0, 1, 0)]  # peak 0.6
    b = [(5, 5, 2), (5, 6, 2)]  # peak 0.9, two cells away from nothing
    cells = a + b
    scores = np.array([0.5, 0.6, 0.4, 0.9, 0.3])
    objs = ground_objects(_centres(cells), scores, 1.0, min_score=0.2)
    assert len(objs) == 2 and all(isinstance(o, GroundedObject) for o in objs)
    first, second = objs
    assert first.num_voxels == 2 and sorted(first.voxel_indices.tolist()) == [3, 4]
    assert second.num_voxels == 3 and sorted(second.voxel_indices.tolist()) == [0, 1, 2]
    assert first.max_score == pytest.approx(0.9) and first.mean_score == pytest.approx(0.6)
    assert second.max_score == pytest.approx(0.6) and second.mean_score == pytest.approx(0.5)


def test_diagonal_corner_contact_joins_and_a_gap_separates():
    # (0,0,0) and (1,1,1) touch at one corner only: one group under 26-connectivity.
    objs = ground_objects(_centres([(0, 0, 0), (1, 1, 1)]), [0.5, 0.5], 1.0, 0.1)
    assert len(objs) == 1 and objs[0].num_voxels == 2
    # Edge contact too.
    objs = ground_objects(_centres([(0, 0, 0), (1, 1, 0)]), [0.5, 0.5], 1.0, 0.1)
    assert len(objs) == 1
    # One empty cell between them along any axis: two groups.
    for cells in ([(0, 0, 0), (2, 0, 0)], [(0, 0, 0), (2, 2, 2)], [(0, 0, 0), (1, 2, 1)]):
        assert len(ground_objects(_centres(cells), [0.5, 0.5], 1.0, 0.1)) == 2


def test_weighted_centre_and_size_by_hand():
    size = (0.5, 0.25, 2.0)
    origin = (-10.0, 4.0, -5.0)
    cells = [(0, 0, 0), (1, 0, 0), (2, 1, 1)]  # (1,0,0)-(2,1,1) touch at an edge
    scores = [0.2, 0.4, 0.6]
    obj = ground_objects(_centres(cells, size, origin), scores, size, 0.1)[0]
    # centres: x = -10 + (i + 0.5) * 0.5 -> -9.75, -9.25, -8.75
    #          y = 4 + (j + 0.5) * 0.25 -> 4.125, 4.125, 4.375
    #          z = -5 + (k + 0.5) * 2   -> -4, -4, -2
    # weights 0.2, 0.4, 0.6 (sum 1.2)
    ex = (0.2 * -9.75 + 0.4 * -9.25 + 0.6 * -8.75) / 1.2
    ey = (0.2 * 4.125 + 0.4 * 4.125 + 0.6 * 4.375) / 1.2
    ez = (0.2 * -4 + 0.4 * -4 + 0.6 * -2) / 1.2
    np.testing.assert_allclose(obj.center, [ex, ey, ez], rtol=0, atol=1e-12)
    # extent: 3 cells in x (1.5 m), 2 in y (0.5 m), 2 in z (4 m), whole voxels included.
    np.testing.assert_allclose(obj.size, [1.5, 0.5, 4.0], rtol=0, atol=1e-12)
    assert obj.num_voxels == 3 and obj.max_score == pytest.approx(0.6)
    assert obj.mean_score == pytest.approx(0.4)


def test_threshold_drops_voxels_and_can_split_a_group():
    cells = [(0, 0, 0), (1, 0, 0), (2, 0, 0)]
    objs = ground_objects(_centres(cells), [0.8, 0.1, 0.7], 1.0, 0.3)  # bridge below
    assert [o.voxel_indices.tolist() for o in objs] == [[0], [2]]
    np.testing.assert_allclose(objs[0].size, [1.0, 1.0, 1.0])
    assert ground_objects(_centres(cells), [0.8, 0.1, 0.7], 1.0, 0.05)[0].num_voxels == 3
    assert ground_objects(_centres(cells), [0.1, 0.2, 0.0], 1.0, 0.3) == []
    # NaN scores never join a group.
    objs = ground_objects(_centres(cells), [0.8, np.nan, 0.7], 1.0, 0.3)
    assert len(objs) == 2


def test_a_score_exactly_at_min_score_is_kept():
    cells = [(0, 0, 0), (1, 0, 0), (5, 0, 0)]
    objs = ground_objects(_centres(cells), [0.25, 0.5, 0.2499], 1.0, 0.25)  # ">=", not ">"
    assert [o.voxel_indices.tolist() for o in objs] == [[0, 1]]
    assert objs[0].num_voxels == 2 and objs[0].max_score == pytest.approx(0.5)


def test_ties_broken_by_mean_then_count():
    cells = [(0, 0, 0), (0, 0, 1), (4, 0, 0), (8, 0, 0), (8, 0, 1), (8, 1, 1)]
    scores = [0.9, 0.5, 0.9, 0.9, 0.5, 0.5]  # peaks equal; means 0.7, 0.9, 0.633
    objs = ground_objects(_centres(cells), scores, 1.0, 0.1)
    assert [o.voxel_indices.tolist() for o in objs] == [[2], [0, 1], [3, 4, 5]]
    scores = [0.9, 0.9, 0.5, 0.9, 0.9, 0.9]  # groups 1 and 3: same peak and mean
    objs = ground_objects(_centres(cells), scores, 1.0, 0.1)
    assert [o.voxel_indices.tolist() for o in objs] == [[3, 4, 5], [0, 1], [2]]


def test_duplicate_voxels_join_and_bad_arguments_raise():
    objs = ground_objects(_centres([(0, 0, 0), (0, 0, 0)]), [0.5, 0.7], 1.0, 0.1)
    assert len(objs) == 1 and objs[0].num_voxels == 2
    c = _centres([(0, 0, 0)])
    for bad in (0.0, -0.1, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="min_score"):
            ground_objects(c, [0.5], 1.0, bad)
    with pytest.raises(ValueError, match="voxel_size"):
        ground_objects(c, [0.5], 0.0, 0.1)
    with pytest.raises(ValueError, match="scores"):
        ground_objects(c, [0.5, 0.6], 1.0, 0.1)
    assert ground_objects(np.zeros((0, 3)), np.zeros(0), 1.0, 0.1) == []


def _bfs_groups(cells: np.ndarray) -> set[frozenset[int]]:
    """Reference: breadth-first search over cells, neighbours = Chebyshev distance <= 1."""
    n = len(cells)
    seen, groups = np.zeros(n, bool), set()
    for s in range(n):
        if seen[s]:
            continue
        seen[s], queue, group = True, [s], []
        while queue:
            i = queue.pop()
            group.append(i)
            near = np.flatnonzero((np.abs(cells - cells[i]).max(axis=1) <= 1) & ~seen)
            seen[near] = True
            queue.extend(near.tolist())
        groups.add(frozenset(group))
    return groups


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_random_voxel_sets_match_breadth_first_search(seed):
    grid = VoxelGrid()  # 1.024 x 1.024 x 1 m voxels from (-51.2, -51.2, -5)
    rng = np.random.default_rng(seed)
    flat = rng.choice(grid.num_voxels // 40, size=300, replace=False)  # dense corner: chains
    cells = np.stack(np.unravel_index(flat, (25, 20, 8)), axis=1)
    centres = grid.centers()[cells[:, 0], cells[:, 1], cells[:, 2]]
    scores = rng.uniform(0, 1, len(cells))
    objs = ground_objects(centres, scores, grid.voxel_size, 0.3)
    keep = np.flatnonzero(scores >= 0.3)
    expected = {frozenset(keep[list(g)].tolist()) for g in _bfs_groups(cells[keep])}
    assert {frozenset(o.voxel_indices.tolist()) for o in objs} == expected
    peaks = [o.max_score for o in objs]
    assert peaks == sorted(peaks, reverse=True)
    assert objs[0].max_score == pytest.approx(scores.max())
    for o in objs:
        w = scores[o.voxel_indices]
        np.testing.assert_allclose(
            o.center, (w[:, None] * centres[o.voxel_indices]).sum(0) / w.sum(), atol=1e-5
        )


# -- the pipeline's query with min_score ------------------------------------------------------
@pytest.fixture(scope="module")
def pipeline(tmp_path_factory):
    from pipeline_fixtures import random_images, rig_cameras, write_tiny_checkpoint

    from pop3d_ros.export.runtime import load_runtime
    from pop3d_ros.pipeline.occupancy import OccupancyPipeline
    from pop3d_ros.text.synthetic_text import SyntheticTextSpace

    ckpt = write_tiny_checkpoint(tmp_path_factory.mktemp("m") / "model.pt", occupancy_bias=2.0)
    runtime = load_runtime(ckpt, backend="torch", log=lambda _s: None)
    pipe = OccupancyPipeline(runtime, SyntheticTextSpace(dim=64))
    pipe.infer(random_images(6, 64, 96), rig_cameras(96, 64), stamp=3.0)
    return pipe


def test_pipeline_query_returns_objects_above_min_score(pipeline):
    latest = pipeline.latest
    base = pipeline.query("car")
    assert base.success and base.objects == ()  # min_score 0: today's answer, no objects
    threshold = float(np.quantile(base.scores, 0.9))  # the best tenth of the voxels
    q = pipeline.query("car", min_score=threshold)
    assert q.success and len(q.objects) >= 2, q.message  # several: the tests below bite
    np.testing.assert_array_equal(q.scores, base.scores)
    members = np.concatenate([o.voxel_indices for o in q.objects])
    assert len(np.unique(members)) == len(members)
    np.testing.assert_array_equal(np.sort(members), np.flatnonzero(q.scores >= threshold))
    # The best voxel of the heatmap lies in the first object.
    assert q.top[0] in q.objects[0].voxel_indices
    assert q.objects[0].max_score == pytest.approx(float(q.scores[q.top[0]]))
    # Distinct objects never touch: integer grid indices from inference, not the centres.
    for a in range(len(q.objects)):
        for b in range(a + 1, len(q.objects)):
            ia = latest.indices[q.objects[a].voxel_indices]
            ib = latest.indices[q.objects[b].voxel_indices]
            cheb = np.abs(ia[:, None, :] - ib[None, :, :]).max(axis=-1)
            assert cheb.min() >= 2
    for o in q.objects:
        w = q.scores[o.voxel_indices].astype(np.float64)
        expect = (w[:, None] * latest.centres[o.voxel_indices]).sum(0) / w.sum()
        np.testing.assert_allclose(o.center, expect, atol=1e-4)


def test_pipeline_max_objects_and_bad_min_score(pipeline):
    from dataclasses import replace

    scores = pipeline.query("car").scores
    low = float(np.quantile(scores, 0.9))
    every = pipeline.query("car", min_score=low).objects
    assert len(every) >= 2
    old = pipeline.config
    pipeline.config = replace(old, max_objects=1)
    try:
        q = pipeline.query("car", min_score=low)
    finally:
        pipeline.config = old
    assert len(q.objects) == 1 and q.objects[0].voxel_indices.tolist() == (
        every[0].voxel_indices.tolist()
    )
    assert f"{len(every)} objects above min_score" in q.message
    assert pipeline.query("car", min_score=1.0).success  # a cosine of 1 is a valid threshold
    for bad, reason in ((float("nan"), "finite"), (1.5, "[0, 1]"), (-0.2, "[0, 1]")):
        r = pipeline.query("car", min_score=bad)
        assert not r.success and "min_score" in r.message and reason in r.message, r.message
