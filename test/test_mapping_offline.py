"""The offline map commands (`pop3d map`, `pop3d eval-map`) and the drive's ground truth on a
world-aligned lattice (data/synthetic/map_truth.py)."""

import json

import numpy as np
import pytest
from pipeline_fixtures import write_tiny_checkpoint

from pop3d_ros.cli import main
from pop3d_ros.data.classes import EMPTY, IGNORE
from pop3d_ros.data.synthetic import SyntheticWorld, WorldConfig
from pop3d_ros.data.synthetic.map_truth import (
    drive_grid,
    lattice_grid,
    moving_mask,
    static_concepts,
    static_instances,
)
from pop3d_ros.geometry.grid import VoxelGrid
from pop3d_ros.mapping import OnlineMap
from pop3d_ros.model.checkpoint import load_model

ISSUE_KEYS = (
    "map_iou", "map_iou_naive", "frame_iou_mean", "map_retrieval_map",
    "frame_retrieval_map_mean", "map_grounding_recall", "frame_grounding_recall_mean",
    "trail_fraction", "retention", "occluded_kept_fraction", "map_voxels", "map_bytes",
    "map_update_ms", "map_query_ms",
)  # fmt: skip


def test_lattice_grid_snaps_to_the_maps_voxels():
    g = lattice_grid([-1.0, 0.3, -2.0], [3.1, 1.0, 4.4], origin=[0.0, 0.0, 0.4], voxel_size=0.8)
    # x: floor(-1.25) = -2 .. ceil(3.875) = 4; y: 0 .. 2; z: -3 .. 5 (bounds on faces stay)
    np.testing.assert_allclose(g.lower, [-1.6, 0.0, -2.0])
    np.testing.assert_allclose(g.upper, [3.2, 1.6, 4.4])
    assert g.shape == (6, 2, 8)


def test_static_truth_leaves_moving_agents_out():
    world = SyntheticWorld(WorldConfig(seed=1, num_frames=4))
    s = world.scene
    moving = np.flatnonzero(np.any(s.velocity != 0, axis=1))
    static = np.flatnonzero(~np.any(s.velocity != 0, axis=1) & (s.center[:, 2] > 0.5))
    assert moving.size and static.size
    grid = VoxelGrid((-40, 200), (-30, 30), (-2.0, 4.4), (300, 75, 8))
    truth = static_concepts(world, grid)
    # the layer holding z = 0 is the ground, the layers below are unknown
    k_ground = int(np.floor((0.0 - grid.lower[2]) / grid.voxel_size[2]))
    ground = truth[:, :, k_ground]
    assert (truth[:, :, :k_ground] == IGNORE).all() and not np.isin(ground, [EMPTY, IGNORE]).any()
    for i, frame in ((moving[0], 2), (static[0], 0)):
        centre = s.positions_at(frame * world.config.frame_interval)[i]
        idx, inside = grid.points_to_index(centre[None])
        if not inside[0]:
            continue
        cell = tuple(idx[0])
        if i in moving:  # where the moving agent is now: free in the static truth
            assert moving_mask(world, frame, grid)[cell] and truth[cell] == EMPTY
        else:
            assert truth[cell] == s.concept[i] and not moving_mask(world, frame, grid)[cell]
    inst = static_instances(world)
    assert not np.isin(inst["instance_ids"], s.instance[moving]).any()
    assert np.isin(s.instance[static], inst["instance_ids"]).all()


def test_drive_grid_covers_every_frames_grid():
    world = SyntheticWorld(WorldConfig(seed=2, num_frames=5))
    ego = VoxelGrid((-25.6, 25.6), (-25.6, 25.6), (-2.0, 4.4), (64, 64, 8))
    g = drive_grid(world, 5, ego, origin=(0.0, 0.0, 0.4), voxel_size=0.8)
    for i in range(5):
        corners = ego.corners() @ world.ego_to_world(i)[:3, :3].T + world.ego_to_world(i)[:3, 3]
        assert (corners >= g.lower - 1e-6).all() and (corners <= g.upper + 1e-6).all()
    np.testing.assert_allclose(np.mod(g.lower - [0, 0, 0.4] + 1e-9, 0.8), 0, atol=1e-6)


@pytest.fixture(scope="module")
def tiny_v2(tmp_path_factory):
    path = tmp_path_factory.mktemp("ckpt") / "tiny.pt"
    return write_tiny_checkpoint(path, occupancy_bias=1.0, text_version=2)


def test_pop3d_map_writes_a_loadable_map_and_ply(tmp_path, tiny_v2):
    out, ply = tmp_path / "map.npz", tmp_path / "map.ply"
    args = ["map", "--checkpoint", str(tiny_v2), "--seeds", "7", "--frames", "3",
            "--out", str(out), "--ply", str(ply), "--map.language_every", "2"]  # fmt: skip
    assert main(args) == 0
    m = OnlineMap.load(out)
    st = m.stats()
    assert m.frames_integrated == 3 and st["occupied_voxels"] > 0 and m.feature_dim == 64
    assert m.config.language_every == 2
    header = ply.read_bytes().split(b"end_header\n")[0].decode()
    assert f"element vertex {st['occupied_voxels']}" in header
    assert "property ushort label" in header  # coloured and labelled by zero-shot class


def test_pop3d_eval_map_reports_the_issue_keys(tmp_path, tiny_v2):
    out = tmp_path / "report.json"
    args = ["eval-map", "--checkpoint", str(tiny_v2), "--seeds", "7", "--frames", "3",
            "--out", str(out)]  # fmt: skip
    assert main(args) == 0
    report = json.loads(out.read_text())
    missing = [k for k in ISSUE_KEYS if k not in report]
    assert not missing, missing
    for key in (
        "map_iou",
        "map_iou_naive",
        "frame_iou_mean",
        "retention",
        "trail_fraction",
        "occluded_kept_fraction",
        "map_iou_own_grid",
        "map_iou_naive_plain",
        "retention_naive",
        "frame_iou_mean_own_grid",
    ):
        assert report[key] is None or 0.0 <= report[key] <= 1.0, key  # fmt: skip
    assert report["map_voxels"] > 0 and report["map_bytes"] > 0 and report["map_update_ms"] > 0
    assert report["per_seed"]["7"]["frames"] == 3
    assert report["map_config"]["visibility"] == "rays"


def test_offline_commands_refuse_bad_input(tmp_path, tiny_v2, capsys):
    assert main(["eval-map", "--checkpoint", str(tiny_v2), "--data", "nuscenes",
                 "--out", str(tmp_path / "r.json")]) == 2  # fmt: skip
    assert main(["map", "--checkpoint", str(tmp_path / "none.pt"), "--out",
                 str(tmp_path / "m.npz")]) == 2  # fmt: skip
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and all(line.startswith("pop3d ") for line in err)
    # a MapConfig value is checked while the options are parsed (tyro: exit 2, the reason)
    with pytest.raises(SystemExit) as exc:
        main(["map", "--checkpoint", str(tiny_v2), "--visibility", "sometimes"])
    assert exc.value.code == 2 and "visibility must be one of" in capsys.readouterr().err


def test_the_lattice_is_the_models_unless_given(tmp_path, tiny_v2):
    out = tmp_path / "m.npz"
    common = ["map", "--checkpoint", str(tiny_v2), "--seeds", "7", "--frames", "1"]
    assert main([*common, "--out", str(out)]) == 0
    grid = load_model(tiny_v2)[0].cfg.voxel_grid
    m = OnlineMap.load(out)
    np.testing.assert_allclose(m.config.voxel_size, grid.voxel_size)
    assert m.config.origin[2] == pytest.approx(grid.lower[2])
    assert main([*common, "--out", str(out), "--map.origin", "0.1", "0.2", "0.3"]) == 0
    m = OnlineMap.load(out)
    np.testing.assert_allclose(m.config.origin, [0.1, 0.2, 0.3])
    np.testing.assert_allclose(m.config.voxel_size, grid.voxel_size)
