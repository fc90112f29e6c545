"""Shared pytest set-up. ROS fixtures live in test/ros_harness.py (imported where needed)."""

import os

# Two cores on CI: keep each test process from oversubscribing them.
os.environ.setdefault("OMP_NUM_THREADS", "1")

import torch  # noqa: E402

torch.set_num_threads(1)
