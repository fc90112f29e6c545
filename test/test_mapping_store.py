"""The sparse store: lattice, block addressing, bounded memory (eviction order), byte counts."""

import numpy as np
import pytest
from mapping_fixtures import camera

from pop3d_ros.geometry.grid import VoxelGrid
from pop3d_ros.geometry.transforms import make_transform
from pop3d_ros.mapping import FramePrediction, MapConfig, OnlineMap
from pop3d_ros.mapping.store import (
    VOXEL_BYTES,
    VoxelStore,
    feature_bytes,
    pack_blocks,
    unpack_blocks,
)


def test_lattice_and_block_addressing():
    s = VoxelStore(voxel_size=(0.5, 0.5, 1.0), origin=(0.0, 0.0, 0.25), block_size=4)
    # (1.2, -0.1, 0.2): x 1.2 / 0.5 -> 2; y -0.1 / 0.5 -> -1; z (0.2 - 0.25) / 1 -> -1
    assert s.voxel_index([[1.2, -0.1, 0.2]]).tolist() == [[2, -1, -1]]
    np.testing.assert_allclose(s.voxel_centres([[2, -1, -1]]), [[1.25, -0.25, -0.25]])
    idx = np.array([[2, -1, -1], [3, 0, 0], [-5, 7, 9]])
    assert (s.find(idx) == -1).all()  # nothing stored yet
    addr = s.ensure(idx)
    # (2, -1, -1) and (3, 0, 0) lie in blocks (0, -1, -1) and (0, 0, 0); (-5, 7, 9) in (-2, 1, 2)
    assert s.num_blocks == 3 and s.num_voxels == 3 * 64
    np.testing.assert_array_equal(s.address_index(addr), idx)
    np.testing.assert_array_equal(s.find(idx), addr)
    coords = np.array([[0, -1, -1], [-2, 1, 2], [(1 << 20) - 1, -(1 << 20), 0]])
    np.testing.assert_array_equal(unpack_blocks(pack_blocks(coords)), coords)
    with pytest.raises(ValueError, match="addressable"):
        s.ensure([[10**8, 0, 0]])


def line_frame(n):
    """A 1-voxel-thick row of n voxels along x, all occupied (P 0.9)."""
    grid = VoxelGrid((0, n), (0, 1), (0, 1), (n, 1, 1))
    return FramePrediction(grid, np.full((n, 1, 1), 0.9, np.float32), (camera((0.5, 0.5, 0.5)),))


def test_eviction_drops_the_farthest_voxels_first():
    # one voxel per block: block centres are voxel centres, at x = 0.5 ... 5.5
    cfg = MapConfig(voxel_size=1.0, origin=0.0, block_size=1, visibility="all", max_voxels=3)
    m = OnlineMap(cfg)
    report = m.integrate(line_frame(6), make_transform(None, [0.0, 0.0, 0.0]), 1.0)
    assert report.evicted_blocks == 3
    kept = sorted(m.occupied_index()[0][:, 0].tolist())
    assert kept == [0, 1, 2]  # the ego is at x = 0: 3.5, 4.5, 5.5 m away went first
    # the ego drives to x = 6 and sees x in [6, 9): the old voxels are now the farthest
    m.integrate(line_frame(3), make_transform(None, [6.0, 0.0, 0.0]), 2.0)
    assert sorted(m.occupied_index()[0][:, 0].tolist()) == [6, 7, 8]
    assert m.stats()["stored_voxels"] <= 3


def test_radius_and_feature_bounds():
    cfg = MapConfig(voxel_size=1.0, origin=0.0, block_size=1, visibility="all", radius_m=2.0)
    m = OnlineMap(cfg)
    m.integrate(line_frame(6), np.eye(4), 1.0)  # centres 0.5 .. 5.5 m from the ego at x = 0
    assert sorted(m.occupied_index()[0][:, 0].tolist()) == [0, 1]
    grid = VoxelGrid((0, 4), (0, 1), (0, 1), (4, 1, 1))
    feats = np.eye(4, dtype=np.float32)
    f = FramePrediction(grid, np.full((4, 1, 1), 0.9, np.float32), (camera((0.5, 0.5, 0.5)),),
                        np.arange(4), feats)  # fmt: skip
    cfg = MapConfig(voxel_size=1.0, origin=0.0, block_size=1, visibility="all", max_features=2)
    m = OnlineMap(cfg)
    m.integrate(f, np.eye(4), 1.0)
    assert m.num_features == 2 and sorted(m.occupied_index()[0][:, 0].tolist()) == [0, 1]


def test_bytes_per_voxel_are_counted():
    s = VoxelStore(1.0, 0.0, block_size=8, feature_dim=512)
    s.ensure([[0, 0, 0]])
    # log-odds 4 + updates 2 + feature row 4; bf16 x 512 + weight 4 + norm 4 + owner 8 + centre 12
    assert VOXEL_BYTES == 10 and feature_bytes(512) == 1052
    per_block = 512 * 10 + 24 + 8 + 8 + 1
    assert s.nbytes() == per_block
    s.fuse_features(s.find([[0, 0, 0]]), np.ones((1, 512), np.float32), [1.0], 5.0)
    assert s.nbytes() == per_block + 1052


def test_released_feature_rows_keep_the_pool_dense():
    s = VoxelStore(1.0, 0.0, block_size=2, feature_dim=4)
    idx = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0], [1, 1, 0]])
    addr = s.ensure(idx)
    vecs = np.eye(4, dtype=np.float32)
    s.fuse_features(addr, vecs, np.ones(4), 10.0)
    rows = s.feature_row.reshape(-1)[addr]
    s.remove_features(rows[[0, 2]])  # voxels (0,0,0) and (0,1,0) lose theirs
    assert s.num_features == 2
    left = s.feature_row.reshape(-1)[addr]
    assert left[0] == -1 and left[2] == -1 and sorted(left[[1, 3]].tolist()) == [0, 1]
    np.testing.assert_allclose(s.feature_values(left[[1, 3]]), vecs[[1, 3]])
    np.testing.assert_array_equal(s.feature_owner[left[[1, 3]]], addr[[1, 3]])
    np.testing.assert_allclose(s.feature_centre[left[[1, 3]]], [[1.5, 0.5, 0.5], [1.5, 1.5, 0.5]])


def test_a_long_drive_stays_within_the_bounds():
    # 2,000 camera sets along a straight street (1 m voxels, 8 x 8 x 2 grid, language on)
    grid = VoxelGrid((0, 8), (-4, 4), (0, 2), (8, 8, 2))
    prob = np.full(grid.shape, 0.1, np.float32)
    prob[:, :, 0] = 0.9  # the road
    prob[:, 0, 1] = prob[:, -1, 1] = 0.9  # kerb walls
    occ = np.flatnonzero(prob.reshape(-1) >= 0.5)
    rng = np.random.default_rng(0)
    feats = rng.standard_normal((occ.size, 8)).astype(np.float32)
    f = FramePrediction(grid, prob, (camera((0.5, 0.0, 1.5)),), occ, feats)
    cfg = MapConfig(voxel_size=1.0, origin=0.0, block_size=4, max_voxels=20 * 64,
                    max_features=600)  # fmt: skip
    m = OnlineMap(cfg)
    peak_voxels = peak_features = 0
    for i in range(2000):
        report = m.integrate(f, make_transform(None, [2.0 * i, 0.0, 0.0]), 0.5 * i)
        assert report.accepted
        peak_voxels = max(peak_voxels, m.store.num_voxels)
        peak_features = max(peak_features, m.num_features)
    assert peak_voxels <= 20 * 64 and peak_features <= 600
    # what the last set saw is all there: 8 x 8 road voxels ahead of the ego at x = 3998
    idx, _ = m.occupied_index()
    road = idx[idx[:, 2] == 0]
    assert ((road[:, 0] >= 3998) & (road[:, 0] < 4006)).sum() == 64
    assert idx[:, 0].min() > 3998 - 40  # the far past is gone
