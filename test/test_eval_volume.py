"""POP-3D's evaluation volume (LIDAR_TOP frame) on the tiny nuScenes fixture, checked against
hand-derived geometry. The fixture's LIDAR_TOP sits at (0.94, 0, 1.84) m in base_link with
yaw -90 deg, so a LiDAR-frame point (x, y, z) is (y + 0.94, -x, z + 1.84) in base_link and
POP-3D's volume x, y in [-51.2, 51.2], z in [-5, 3] (LiDAR) is x in [-50.26, 52.14],
y in [-51.2, 51.2], z in [-3.16, 4.84] in base_link: lidar voxel (i, j, k) is base_link
voxel (j, 99 - i, k) of that box."""

import sys
from pathlib import Path

import numpy as np
import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))
from test_eval_conventions import FixedOccupancy  # noqa: E402
from train_fixtures import tiny_model_config  # noqa: E402

from pop3d_ros.data.nuscenes import NuScenesReader  # noqa: E402
from pop3d_ros.data.nuscenes_fixture import FIXTURE_POINTS, write_nuscenes_fixture  # noqa: E402
from pop3d_ros.evaluation.labels import evaluation_labels  # noqa: E402
from pop3d_ros.evaluation.protocol import Evaluator  # noqa: E402
from pop3d_ros.evaluation.volume import (  # noqa: E402
    POP3D_NUSCENES,
    VolumeMap,
    choose_volume,
)
from pop3d_ros.evaluation.zeroshot import ZeroShotClassifier, class_phrase_embeddings  # noqa: E402
from pop3d_ros.geometry.grid import VoxelGrid  # noqa: E402
from pop3d_ros.model.config import GridConfig  # noqa: E402
from pop3d_ros.text.synthetic_text import SyntheticTextSpace  # noqa: E402

BOX_IN_BASE_LINK = GridConfig((-50.26, 52.14), (-51.2, 51.2), (-3.16, 4.84), (100, 100, 8))


@pytest.fixture(scope="module")
def sample(tmp_path_factory):
    root = tmp_path_factory.mktemp("nus")
    write_nuscenes_fixture(root, scenes=1, samples_per_scene=1)
    return NuScenesReader(root).sample("s0_k0")


def test_model_preset_is_the_volume_in_base_link():
    from pop3d_ros.model.config import get_preset

    assert get_preset("pop3d-nuscenes").grid == BOX_IN_BASE_LINK


def test_volume_is_pop3d_grid_in_the_lidar_frame():
    v = POP3D_NUSCENES
    assert v.frame == "lidar" and v.grid.shape == (100, 100, 8)
    assert v.grid.lower.tolist() == [-51.2, -51.2, -5.0] and v.grid.upper.tolist() == [
        51.2,
        51.2,
        3.0,
    ]
    grid = VoxelGrid((-8, 8), (-8, 8), (-2, 2), (8, 8, 2))
    assert choose_volume("auto", grid, "nuscenes", {}) is POP3D_NUSCENES
    assert choose_volume("auto", grid, "synthetic", {}).grid == grid
    assert choose_volume("auto", grid, "nuscenes", {"eval_volume": "model"}).name == "model"
    with pytest.raises(ValueError, match="unknown evaluation volume"):
        choose_volume("kitti", grid, "nuscenes", {})


def test_points_move_to_the_lidar_frame(sample):
    vmap = VolumeMap(POP3D_NUSCENES, BOX_IN_BASE_LINK.voxel_grid())
    T = vmap.to_volume_frame(sample)
    back = sample["lidar_points"] @ T[:3, :3].T + T[:3, 3]
    assert np.allclose(back, FIXTURE_POINTS[:, :3], atol=1e-4)  # the raw .pcd.bin points
    assert np.allclose(T[:3, :3] @ sample["lidar_origin"] + T[:3, 3], 0.0, atol=1e-5)


def test_volume_voxels_map_onto_the_base_link_box(sample):
    vmap = VolumeMap(POP3D_NUSCENES, BOX_IN_BASE_LINK.voxel_grid())
    vox = vmap.voxel_map(sample)
    assert (vox >= 0).all() and len(np.unique(vox)) == 100 * 100 * 8  # one to one
    i, j, k = np.unravel_index(np.arange(vox.size), (100, 100, 8))
    assert np.array_equal(vox, (j * 100 + (99 - i)) * 8 + k)
    # The plain pop3d-base grid in base_link (x in [-51.2, 51.2], z in [-5, 3]) is another
    # volume: 1.84 m lower, so its top metre of POP-3D's volume falls outside it.
    other = VolumeMap(POP3D_NUSCENES, GridConfig().voxel_grid()).voxel_map(sample)
    assert (other < 0).mean() == pytest.approx(2 / 8, abs=0.02)


def test_oracle_in_base_link_scores_perfectly_on_pop3d_volume(sample):
    space = SyntheticTextSpace()
    # Labels by hand from the raw LiDAR-frame points (sensor at the origin).
    _, occ_l = evaluation_labels(
        FIXTURE_POINTS[:, :3], sample["lidar_labels"], [0, 0, 0], POP3D_NUSCENES.grid
    )
    assert (occ_l == 1).sum() >= 3 and (occ_l == 0).sum() > 10
    oracle = np.zeros((100, 100, 8), bool)
    i, j, k = np.nonzero(occ_l == 1)
    oracle[j, 99 - i, k] = True
    cfg = tiny_model_config()
    cfg.grid = BOX_IN_BASE_LINK
    model = FixedOccupancy(oracle, space.class_embeddings(), 0)
    clf = ZeroShotClassifier(class_phrase_embeddings(space))
    res = Evaluator(model, cfg, clf, volume=POP3D_NUSCENES).run([sample], show=False).result()
    assert res["iou"] == pytest.approx(1.0) and res["iou_mean_empty_occupied"] == pytest.approx(1.0)
    assert res["conventions"]["volume"]["name"] == "pop3d-nuscenes"
    # Shifted by one voxel along base_link x, it misses every occupied voxel.
    model.occ = torch.from_numpy(np.roll(oracle, 1, axis=0).astype(np.float32))
    res = Evaluator(model, cfg, clf, volume=POP3D_NUSCENES).run([sample], show=False).result()
    assert res["iou"] == pytest.approx(0.0)
