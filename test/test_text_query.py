"""query / top_k / classify on hand-made vectors with known answers."""

import numpy as np
import pytest
import torch

from pop3d_ros.text.query import class_scores, classify, normalise, query, top_k


def test_query_is_cosine_similarity():
    feats = np.array([[1.0, 0.0], [0.0, 2.0], [3.0, 3.0], [-1.0, 0.0]], dtype=np.float32)
    scores = query(feats, np.array([2.0, 0.0]))
    np.testing.assert_allclose(scores, [1.0, 0.0, np.sqrt(0.5), -1.0], atol=1e-6)
    # torch tensors are accepted as well
    np.testing.assert_allclose(query(torch.from_numpy(feats), torch.tensor([2.0, 0.0])), scores)


def test_query_mask_excludes_voxels_from_top_k():
    feats = np.eye(3, dtype=np.float32)
    scores = query(feats, [1.0, 0.0, 0.0], mask=[False, True, True])
    assert scores[0] == -np.inf
    idx, s = top_k(scores, 10)  # k larger than the finite scores: capped
    assert idx.tolist() in ([1, 2], [2, 1]) and len(s) == 2


def test_top_k_orders_best_first():
    idx, s = top_k(np.array([0.1, 0.9, -0.5, 0.7, 0.3]), 3)
    assert idx.tolist() == [1, 3, 4]
    np.testing.assert_allclose(s, [0.9, 0.7, 0.3])
    assert top_k(np.array([]), 5)[0].size == 0


def test_width_mismatch_is_an_error():
    with pytest.raises(ValueError, match="widths differ"):
        query(np.zeros((4, 3)), np.ones(5))


def test_classify_takes_max_over_a_class_phrases():
    # Class A has phrases along x and y, class B one phrase at 30 degrees. Per class the
    # best phrase counts: a feature along y is A (cos 1 vs 0.5), one at 30 degrees is B.
    a = np.array([[1.0, 0.0], [0.0, 1.0]])
    b = np.array([[np.cos(np.pi / 6), np.sin(np.pi / 6)]])
    feats = np.array([[0.0, 5.0], [np.cos(np.pi / 6), np.sin(np.pi / 6)], [1.0, -0.1]])
    np.testing.assert_allclose(
        class_scores(feats, {"A": a, "B": b})[1], [np.cos(np.pi / 6), 1.0], atol=1e-6
    )
    assert classify(feats, {"A": a, "B": b}).tolist() == [0, 1, 0]


def test_normalise_keeps_zero_rows_finite():
    out = normalise(np.array([[0.0, 0.0], [3.0, 4.0]]))
    np.testing.assert_allclose(out, [[0.0, 0.0], [0.6, 0.8]])
