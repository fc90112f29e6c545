"""Map files: save/load round trip, refusal of crafted / truncated / pickled files, PLY."""

import io
import json
import zipfile

import numpy as np
import pytest
from mapping_fixtures import camera

from pop3d_ros.geometry.grid import VoxelGrid
from pop3d_ros.geometry.transforms import make_transform, yaw_rotation
from pop3d_ros.mapping import FramePrediction, MapConfig, MapFileError, OnlineMap
from pop3d_ros.mapping.io import write_ply


def small_map(tmp_path=None):
    grid = VoxelGrid((0, 4), (0, 2), (0, 1), (4, 2, 1))
    prob = np.array([[0.9, 0.2], [0.8, 0.1], [0.3, 0.95], [0.7, 0.6]], np.float32)[..., None]
    rng = np.random.default_rng(0)
    feats = rng.standard_normal((8, 16)).astype(np.float32)
    f = FramePrediction(grid, prob, (camera((0.5, 0.5, 0.5)),), np.arange(8), feats)
    m = OnlineMap(MapConfig(voxel_size=1.0, origin=0.0, block_size=2, visibility="all"))
    m.integrate(f, make_transform(yaw_rotation(0.3), [5.0, -2.0, 0.0]), 100.0)
    m.integrate(f, make_transform(yaw_rotation(0.35), [5.5, -2.0, 0.0]), 100.5)
    return m


class Marker:
    """Unpickling this creates a file: the loader must never unpickle anything."""

    path = None

    def __reduce__(self):
        return (open, (str(Marker.path), "w"))


def test_round_trip(tmp_path):
    m = small_map()
    path = m.save(tmp_path / "map.npz")
    back = OnlineMap.load(path)
    idx, lo = m.occupied_index()
    idx2, lo2 = back.occupied_index()
    order, order2 = np.lexsort(idx.T), np.lexsort(idx2.T)
    np.testing.assert_array_equal(idx[order], idx2[order2])
    np.testing.assert_array_equal(lo[order], lo2[order2])
    assert back.stats() == m.stats()
    assert back.last_stamp == 100.5 and back.frames_integrated == 2
    np.testing.assert_allclose(back.last_pose, m.last_pose)
    emb = np.random.default_rng(1).standard_normal(16)
    a, b = m.query(emb, top_k=5), back.query(emb, top_k=5)
    np.testing.assert_allclose(np.sort(a.scores), np.sort(b.scores))
    np.testing.assert_allclose(a.centres[a.top], b.centres[b.top])
    # the loaded map goes on integrating (its last pose and stamp guard the next set)
    assert not back.integrate(*_next_set(jump=True)).accepted
    assert back.integrate(*_next_set(jump=False)).accepted


def _next_set(jump):
    grid = VoxelGrid((0, 1), (0, 1), (0, 1), (1, 1, 1))
    f = FramePrediction(grid, np.full((1, 1, 1), 0.9, np.float32), (camera((0.5, 0.5, 0.5)),))
    return f, make_transform(None, [5000.0 if jump else 6.0, -2.0, 0.0]), 101.0


def test_a_config_of_another_lattice_is_refused(tmp_path):
    path = small_map().save(tmp_path / "map.npz")
    with pytest.raises(MapFileError, match="voxel_size"):
        OnlineMap.load(path, MapConfig(voxel_size=0.5, origin=0.0, block_size=2))
    same = MapConfig(voxel_size=1.0, origin=0.0, block_size=2, max_voxels=10_000)
    assert OnlineMap.load(path, same).config.max_voxels == 10_000


def _members(path) -> dict:
    with np.load(path) as data:
        return {k: data[k] for k in data.files}


def _write(path, members: dict) -> None:
    buf = io.BytesIO()
    np.savez(buf, **members)  # numpy's default allow_pickle=True on save: object arrays pickle
    path.write_bytes(buf.getvalue())


def _refused(path, match):
    with pytest.raises(MapFileError, match=match) as err:
        OnlineMap.load(path)
    assert "\n" not in str(err.value)


def test_crafted_files_are_refused_and_run_nothing(tmp_path):
    good = small_map().save(tmp_path / "good.npz")
    members = _members(good)
    Marker.path = tmp_path / "pwned"
    # a plain pickle under a map file's name
    import pickle

    (tmp_path / "pickle.npz").write_bytes(pickle.dumps(Marker()))
    _refused(tmp_path / "pickle.npz", "not an npz archive")
    # a member holding an object array: numpy would unpickle it with allow_pickle=True
    evil = dict(members, log_odds=np.array([Marker()], dtype=object))
    _write(tmp_path / "object.npz", evil)
    _refused(tmp_path / "object.npz", "cannot read arrays|dtype")
    assert not Marker.path.exists()
    # truncated
    data = good.read_bytes()
    (tmp_path / "cut.npz").write_bytes(data[: len(data) // 2])
    _refused(tmp_path / "cut.npz", "not an npz archive|cannot read")
    # an extra member
    _write(tmp_path / "extra.npz", dict(members, payload=np.zeros(3)))
    _refused(tmp_path / "extra.npz", "unexpected members")
    # another schema version
    schema = json.loads(members["schema"].tobytes())
    schema["version"] = 99
    _write(tmp_path / "v99.npz", dict(members, schema=np.frombuffer(json.dumps(schema).encode(),
                                                                    np.uint8)))  # fmt: skip
    _refused(tmp_path / "v99.npz", "version")
    # values the store cannot hold
    lo = members["log_odds"].copy()
    lo[0, 0] = np.nan
    _write(tmp_path / "nan.npz", dict(members, log_odds=lo))
    _refused(tmp_path / "nan.npz", "log-odds")
    addr = members["feature_address"].copy()
    addr[0] = 10**9
    _write(tmp_path / "addr.npz", dict(members, feature_address=addr))
    _refused(tmp_path / "addr.npz", "feature addresses")
    shape = dict(members, updates=members["updates"][:1])
    _write(tmp_path / "shape.npz", shape)
    _refused(tmp_path / "shape.npz", "shape")
    # an archive that unpacks beyond the byte limit
    with pytest.raises(MapFileError, match="limit"):
        OnlineMap.load(good, max_bytes=100)
    _refused(tmp_path / "missing.npz", "no such map file")
    assert not Marker.path.exists()


def test_not_a_zip_member_list_is_checked_before_reading(tmp_path):
    path = tmp_path / "names.npz"
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("../../escape.npy", b"x")
    _refused(path, "unexpected members")


def _read_ply(path):
    raw = path.read_bytes()
    end = raw.index(b"end_header\n") + len(b"end_header\n")
    header = raw[:end].decode("ascii").splitlines()
    return header, raw[end:]


def test_ply_binary_and_ascii(tmp_path):
    centres = np.array([[1.0, 2.0, 3.0], [-4.5, 0.25, 1.5]], np.float32)
    occ = np.array([0.75, 0.5], np.float32)
    rgb = np.array([[255, 0, 10], [1, 2, 3]], np.uint8)
    header, body = _read_ply(write_ply(tmp_path / "a.ply", centres, occ, rgb, labels=[3, 65535]))
    assert header[:2] == ["ply", "format binary_little_endian 1.0"]
    assert "element vertex 2" in header and header[-1] == "end_header"
    props = [h.split()[1:] for h in header if h.startswith("property")]
    assert props == [["float", "x"], ["float", "y"], ["float", "z"], ["float", "occupancy"],
                     ["uchar", "red"], ["uchar", "green"], ["uchar", "blue"],
                     ["ushort", "label"]]  # fmt: skip
    assert len(body) == 2 * (4 * 4 + 3 + 2)
    rec = np.frombuffer(body, dtype=[("p", "<f4", 4), ("c", "u1", 3), ("l", "<u2")])
    np.testing.assert_array_equal(rec["p"][:, :3], centres)
    np.testing.assert_array_equal(rec["p"][:, 3], occ)
    np.testing.assert_array_equal(rec["c"], rgb)
    assert rec["l"].tolist() == [3, 65535]
    header, body = _read_ply(write_ply(tmp_path / "b.ply", centres, occ, rgb, binary=False))
    assert header[1] == "format ascii 1.0"
    rows = [line.split() for line in body.decode().splitlines()]
    assert rows == [["1", "2", "3", "0.75", "255", "0", "10"],
                    ["-4.5", "0.25", "1.5", "0.5", "1", "2", "3"]]  # fmt: skip


def test_cloud_labels_by_class_embedding():
    m = small_map()
    rows = m.store.feature_row.reshape(-1)
    feats = m.store.feature_values(np.arange(m.num_features))
    classes = {0: feats[:1], 1: -feats[:1]}  # class 0 = the first feature's direction
    cloud = m.cloud(classes)
    assert cloud.labels.dtype == np.uint16 and len(cloud.labels) == len(cloud.centres)
    idx = m.store.voxel_index(cloud.centres)
    first = m.store.find(idx) == m.store.feature_owner[0]
    assert cloud.labels[first].tolist() == [0]
    assert rows.max() >= 0 and np.all(cloud.occupancy > 0.5)
