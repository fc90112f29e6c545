"""Label-free density threshold choice from a frame's own rays."""

import numpy as np
import pytest
import torch

from pop3d_ros.geometry.grid import VoxelGrid
from pop3d_ros.model.config import GridConfig, HeadsConfig, ModelConfig
from pop3d_ros.training.density_calibration import calibrate, density_report
from pop3d_ros.training.rays import ray_observations

GRID = VoxelGrid((0.0, 20.0), (-2.0, 2.0), (-2.0, 2.0), (20, 4, 4))


def _item(depth=9.5):
    return {
        "ray_time": torch.tensor([0, 1], dtype=torch.int8),
        "ray_origin": torch.tensor([[0.5, 0.1, 0.1], [0.5, -1.5, 0.1]]),
        "ray_dir": torch.tensor([[1.0, 0.0, 0.0], [1.0, 0.0, 0.0]]),
        "ray_depth": torch.tensor([depth, 5.0]),
        "images": torch.zeros(6, 3, 32, 32, dtype=torch.uint8),
        "intrinsics": torch.eye(3).repeat(6, 1, 1),
        "cam_to_ego": torch.eye(4).repeat(6, 1, 1),
    }


def test_ray_observations_free_before_the_end_occupied_at_it():
    obs = ray_observations(_item(), GRID).reshape(GRID.shape)
    row = obs[:, 2, 2]  # y, z = 0.1 -> voxel (., 2, 2)
    assert (row[:10] == 0).all() and row[10] == 1 and (row[11:] == -1).all()
    assert (obs[:, 0] == -1).all()  # the adjacent-frame ray (y = -1.5) is not used
    assert (obs != -1).sum() == 11


class _FakeDensityModel:
    """sigma = 3 in voxels x in [10, 12), 0.5 before x = 10, 0 elsewhere."""

    def __init__(self, free=0.5, surface=3.0):
        self.free, self.surface = free, surface
        self.cfg = ModelConfig(
            image_size=(32, 32),
            grid=GridConfig((0.0, 20.0), (-2.0, 2.0), (-2.0, 2.0), (20, 4, 4)),
            heads=HeadsConfig(occupancy_output="density", density_threshold=1.0),
        )

    def eval(self):
        return self

    def __call__(self, images, grid, mask):
        sigma = torch.zeros(GRID.shape)
        sigma[:10] = self.free
        sigma[10:12] = self.surface
        return {"occupancy_logits": torch.stack([torch.zeros_like(sigma), sigma - 1.0], -1)[None]}


def test_calibration_picks_a_threshold_between_free_and_surface_density(monkeypatch):
    import pop3d_ros.model.inputs as inputs

    monkeypatch.setattr(
        inputs.SamplingCache, "__call__", lambda self, k, e: (torch.zeros(1), torch.zeros(1))
    )
    best, table = calibrate(_FakeDensityModel(), [_item()], thresholds=(0.1, 1.0, 2.0, 5.0))
    # 0.1: all 11 observed voxels occupied -> IoU 1/11; 1.0, 2.0: just the end voxel -> 1;
    # 5.0: nothing -> 0
    assert table[0.1] == pytest.approx(1 / 11)
    assert table[1.0] == pytest.approx(1.0) and table[5.0] == 0.0
    assert best == 1.0
    assert np.isfinite(list(table.values())).all()


def test_density_report_per_layer_and_by_ray_observation(monkeypatch):
    import pop3d_ros.model.inputs as inputs

    monkeypatch.setattr(
        inputs.SamplingCache, "__call__", lambda self, k, e: (torch.zeros(1), torch.zeros(1))
    )
    r = density_report(_FakeDensityModel(), [_item()])
    # above the threshold 1.0: only x in [10, 12), i.e. 2 of 20 x-slices in every z layer
    assert r["threshold"] == 1.0
    assert r["layer_fraction_above"] == [0.1, 0.1, 0.1, 0.1]
    # the ray ends in a sigma-3 voxel and crosses ten 0.5 voxels; of the 309 voxels no ray
    # reaches, 128 are 0 (x >= 12), 150 are 0.5 (x < 10) and 31 are 3: the median is 0.5
    assert r["median_sigma"] == {"ray_end": 3.0, "crossed": 0.5, "unseen": 0.5}


def test_the_default_search_can_pick_renderoccs_published_cut(monkeypatch):
    import pop3d_ros.model.inputs as inputs
    from pop3d_ros.training.density_calibration import THRESHOLDS

    monkeypatch.setattr(
        inputs.SamplingCache, "__call__", lambda self, k, e: (torch.zeros(1), torch.zeros(1))
    )
    # RenderOcc: raw > 8.5, sigma = softplus(raw + log(1e-6 / (1 - 1e-6)))
    cut = float(np.log1p(np.exp(8.5 + np.log(1e-6 / (1 - 1e-6)))))
    # free space just below the cut, the surface just above: only the cut separates them
    best, table = calibrate(_FakeDensityModel(free=0.00485, surface=0.00495), [_item()])
    assert best == pytest.approx(cut, rel=1e-9) and table[best] == pytest.approx(1.0)
    assert min(THRESHOLDS) < 0.001 * 1.01 and max(THRESHOLDS) == pytest.approx(20.0)
