"""nuScenes reader on a tiny fixture: tables, transforms (hand-computed), labels, dataset."""

import numpy as np
import pytest

from pop3d_ros.data.classes import CLASS_ID, IGNORE
from pop3d_ros.data.dataset import NuScenesDataset, collate_samples
from pop3d_ros.data.nuscenes import LIDARSEG_TO_CLASS, NuScenesError, NuScenesReader
from pop3d_ros.data.nuscenes_fixture import camera_color, write_nuscenes_fixture
from pop3d_ros.data.sample import project_points, validate_sample
from pop3d_ros.geometry.transforms import OPTICAL_TO_BODY


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    root = tmp_path_factory.mktemp("nusc")
    write_nuscenes_fixture(root)
    return root


def test_tokens_and_sample_format(root):
    reader = NuScenesReader(root)
    tokens = reader.sample_tokens()
    assert tokens == [f"s{s}_k{k}" for s in range(2) for k in range(3)]
    assert reader.sample_tokens(scenes=["scene-0002"]) == ["s1_k0", "s1_k1", "s1_k2"]
    s = validate_sample(reader.sample("s0_k1"))
    assert s["scene"] == "scene-0001" and s["prev"] == "s0_k0" and s["next"] == "s0_k2"
    assert reader.sample("s0_k0")["prev"] is None
    assert s["timestamp"] == 1_500_000_000_500_000
    assert s["images"].shape == (6, 36, 64, 3)
    for c in range(6):  # camera order follows CAMERA_NAMES
        np.testing.assert_allclose(s["images"][c].mean((0, 1)), camera_color(c), atol=3)


def test_transforms_hand_computed(root):
    s = NuScenesReader(root).sample("s1_k2")
    # ego (LiDAR time) at (110, 250, 0) yaw 90; the camera frame was taken at (111, 250, 0):
    # the camera at (1.7, 0, 1.5) in its ego is at (1.7, -1.0, 1.5) in the sample's ego
    front = s["cam_to_ego"][0]
    np.testing.assert_allclose(front[:3, 3], [1.7, -1.0, 1.5], atol=1e-5)
    np.testing.assert_allclose(front[:3, :3], OPTICAL_TO_BODY, atol=1e-6)
    np.testing.assert_allclose(s["ego_to_world"][:3, 3], [110.0, 250.0, 0.0])
    np.testing.assert_allclose(s["ego_to_world"][:3, :3], [[0, -1, 0], [1, 0, 0], [0, 0, 1]],
                               atol=1e-6)  # fmt: skip
    # LiDAR yaw -90 deg at (0.94, 0, 1.84): (1,0,0) -> (0.94,-1,1.84); (0,2,-1) -> (2.94,0,0.84)
    np.testing.assert_allclose(s["lidar_points"][:2], [[0.94, -1.0, 1.84], [2.94, 0.0, 0.84]],
                               atol=1e-5)  # fmt: skip
    np.testing.assert_allclose(s["lidar_origin"], [0.94, 0.0, 1.84])
    np.testing.assert_allclose(s["intrinsics"][0], [[50, 0, 31.5], [0, 50, 17.5], [0, 0, 1]])
    # (10,0,0) in the lidar frame = (0.94,-10,1.84) in ego: right side, seen by no front cam
    uv, valid = project_points(s)
    assert valid.shape == (6, 5)


def test_label_mapping(root):
    s = NuScenesReader(root).sample("s0_k0")
    # lidarseg indices 17 car, 24 driveable, 0 noise, 19 ambulance, 30 vegetation
    expect = [CLASS_ID["car"], CLASS_ID["driveable_surface"], IGNORE, IGNORE,
              CLASS_ID["vegetation"]]  # fmt: skip
    np.testing.assert_array_equal(s["lidar_labels"], expect)
    assert len(LIDARSEG_TO_CLASS) == 32
    targets = {v for v in LIDARSEG_TO_CLASS.values() if v}
    assert targets == set(CLASS_ID)  # every one of the 16 classes is reachable


def test_resize_and_dataset(root):
    ds = NuScenesDataset(root, split="mini_val", image_size=(32, 18))
    assert len(ds) == 0  # fixture scenes are not in the mini split
    ds = NuScenesDataset(root, scenes=["scene-0001"], image_size=(32, 18))
    batch = collate_samples([ds[0], ds[1]])
    assert tuple(batch["images"].shape) == (2, 6, 18, 32, 3)
    # K scales with the image: fx 50 -> 25, cx (31.5 + 0.5) / 2 - 0.5 = 15.5
    np.testing.assert_allclose(batch["intrinsics"][0, 0].numpy()[0], [25, 0, 15.5])
    assert batch["token"] == ["s0_k0", "s0_k1"]


def test_errors(root, tmp_path):
    with pytest.raises(NuScenesError, match="no such table directory"):
        NuScenesReader(tmp_path)
    reader = NuScenesReader(root)
    with pytest.raises(NuScenesError, match="no sample"):
        reader.sample("nope")
    with pytest.raises(NuScenesError, match="unknown split"):
        reader.sample_tokens(split="train_of_nothing")
