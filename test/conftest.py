"""Shared pytest set-up. ROS fixtures live in test/ros_harness.py (imported where needed)."""

import os
import sys
from pathlib import Path

# The analysis tools (tools/) live beside the package, outside its import path. Appended, not
# prepended: the package itself must still come from the colcon install (it holds the
# generated pop3d_ros.srv).
sys.path.append(str(Path(__file__).resolve().parents[1]))

# Two cores on CI: keep each test process from oversubscribing them.
os.environ.setdefault("OMP_NUM_THREADS", "1")

import torch  # noqa: E402

torch.set_num_threads(1)

# ROS tests: one ROS_DOMAIN_ID per pytest session (set before any rclpy context exists, and
# inherited by started nodes), and the harness fixtures (ros_context, ros_node, node_process).
import pytest  # noqa: E402

pytest.register_assert_rewrite("ros_harness")
import ros_harness  # noqa: E402

ros_harness.configure_ros_environment()
pytest_plugins = ["ros_harness"]
