"""`pop3d render` (resumable cache on disk) and the synthetic Dataset + collate."""

import json

import numpy as np
import pytest

from pop3d_ros.cli import main
from pop3d_ros.data.dataset import SyntheticDataset, collate_samples, parse_seeds

ARGS = ["--num_frames", "2", "--image_width", "64", "--image_height", "36"]


def test_parse_seeds():
    assert parse_seeds("0-3") == [0, 1, 2, 3]
    assert parse_seeds("1,4,7") == [1, 4, 7]
    assert parse_seeds("0-1,9") == [0, 1, 9]
    for bad in ("", "a", "3-1", "1,,2"):
        with pytest.raises(ValueError, match="bad seed list"):
            parse_seeds(bad)


def test_render_resume_and_dataset(tmp_path, capsys):
    out = tmp_path / "ds"
    assert main(["render", "--out", str(out), "--seeds", "0-1", *ARGS]) == 0
    index = json.loads((out / "index.json").read_text())
    assert [(f["seed"], f["frame"]) for f in index["frames"]] == [(0, 0), (0, 1), (1, 0), (1, 1)]
    first = out / index["frames"][0]["file"]
    mtime = first.stat().st_mtime_ns
    assert main(["render", "--out", str(out), "--seeds", "0-1", *ARGS]) == 0
    assert first.stat().st_mtime_ns == mtime  # resumed: nothing re-rendered
    # other settings into the same directory are refused with a one-line error
    assert main(["render", "--out", str(out), "--seeds", "0", "--num_frames", "2"]) == 2
    assert "other settings" in capsys.readouterr().err

    disk = SyntheticDataset([1], root=out)
    fly = SyntheticDataset([1], frames=2, image_width=64, image_height=36)
    assert len(disk) == len(fly) == 2
    a, b = disk[1], fly[1]
    assert a["token"] == b["token"] == "synthetic-s1-f0001"
    for key in ("images", "lidar_points", "occupancy", "depth"):
        np.testing.assert_array_equal(a[key], b[key])
    batch = collate_samples([disk[0], disk[1]])
    assert tuple(batch["images"].shape) == (2, 6, 36, 64, 3)
    assert isinstance(batch["lidar_points"], list) or batch["lidar_points"].ndim == 3
    assert batch["prev"] == [None, "synthetic-s1-f0000"]
    with pytest.raises(ValueError, match="not rendered"):
        SyntheticDataset([5], root=out)
