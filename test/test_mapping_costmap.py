"""The costmap projection of a hand-placed obstacle (nav_msgs/OccupancyGrid semantics)."""

import numpy as np
import pytest
from mapping_fixtures import camera

from pop3d_ros.geometry.grid import VoxelGrid
from pop3d_ros.geometry.transforms import make_transform
from pop3d_ros.mapping import CostmapConfig, FramePrediction, MapConfig, OnlineMap


def test_costmap_cells_of_a_hand_placed_obstacle():
    m = OnlineMap(MapConfig(voxel_size=1.0, origin=0.0, block_size=2, visibility="all"))
    cam = (camera((0.5, 0.5, 0.5)),)
    # 3 x 3 columns, layers with centres at z = 0.5 (ground), 1.5 and 2.5
    grid = VoxelGrid((0, 3), (0, 3), (0, 3), (3, 3, 3))
    prob = np.full(grid.shape, 0.2, np.float32)
    prob[:, :, 0] = 0.9  # the ground: below the band
    prob[1, 2, 1] = 0.9  # the obstacle, in the band
    prob[0, 0, 2] = 0.9  # an overhang above the band
    m.integrate(FramePrediction(grid, prob, cam), np.eye(4), 1.0)
    # columns observed only at ground level (x = 5) and nowhere (x = 3, 4)
    ground_only = VoxelGrid((0, 1), (0, 1), (0, 1), (1, 1, 1))
    m.integrate(FramePrediction(ground_only, np.full((1, 1, 1), 0.9, np.float32), cam),
                make_transform(None, [5.0, 0.0, 0.0]), 2.0)  # fmt: skip
    cm = m.costmap(CostmapConfig(ground_z=0.0, min_height=1.0, max_height=2.0))
    # the band holds centres with 1 <= z <= 2: layer 1 only; its columns span x 0..2
    assert cm.resolution == 1.0 and cm.origin == (0.0, 0.0, 0.0)
    expected = np.array([[0, 0, 0], [0, 0, 0], [0, 100, 0]], np.int8)  # rows = y, cols = x
    np.testing.assert_array_equal(cm.data, expected)
    assert cm.cell_of(1.5, 2.5) == (2, 1)
    # a band reaching the overhang's layer too, and the ground-only column: still unknown
    # where the band was never observed (x = 5 holds layer 0 only)
    cm = m.costmap(CostmapConfig(ground_z=0.0, min_height=0.0, max_height=3.0))
    assert (cm.width, cm.height) == (6, 3)
    np.testing.assert_array_equal(cm.data[:, :3], np.full((3, 3), 100, np.int8))
    np.testing.assert_array_equal(cm.data[:, 3:5], np.full((3, 2), -1, np.int8))
    assert cm.data[0, 5] == 100 and (cm.data[1:, 5] == -1).all()
    with pytest.raises(ValueError, match="above"):
        CostmapConfig(min_height=2.0, max_height=1.0)
