"""Atomic writes: the rename happens only when the writer finishes."""

import numpy as np
import pytest

from pop3d_ros.atomic import atomic_path, write_bytes_atomic, write_text_atomic


def test_a_finished_write_replaces_the_file_and_leaves_no_temporary(tmp_path):
    path = tmp_path / "index.json"
    path.write_text("old")
    write_text_atomic(path, "new")
    write_bytes_atomic(tmp_path / "engine.plan", b"\x00\x01")
    assert path.read_text() == "new"
    assert (tmp_path / "engine.plan").read_bytes() == b"\x00\x01"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["engine.plan", "index.json"]


def test_a_failed_write_keeps_the_old_file_and_removes_its_temporary(tmp_path):
    path = tmp_path / "frame.pt"
    path.write_text("old")
    with pytest.raises(RuntimeError), atomic_path(path) as tmp:
        tmp.write_text("half a fr")
        raise RuntimeError("killed mid-write")
    assert path.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["frame.pt"]


def test_suffix_matches_the_name_numpy_writes(tmp_path):
    path = tmp_path / "calib.npz"
    with atomic_path(path, suffix=".npz") as tmp:
        np.savez(tmp, x=np.arange(3))  # np.savez appends .npz unless the name ends in it
    with np.load(path) as z:
        assert z["x"].tolist() == [0, 1, 2]
    assert [p.name for p in tmp_path.iterdir()] == ["calib.npz"]
