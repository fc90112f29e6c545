"""The node's callback executor: the `executor` parameter picks rclpy's EventsExecutor or a
MultiThreadedExecutor (what each costs: `make bench`, node_hz_model_res beside
node_hz_model_res_multi_threaded; the idle node's CPU: test_node_managed.py)."""

from __future__ import annotations

import pytest
import rclpy
from rclpy.executors import MultiThreadedExecutor

from pop3d_ros.ros.node import make_executor
from pop3d_ros.ros.params import NodeParams


@pytest.fixture
def rclpy_context():
    rclpy.init()
    yield
    rclpy.try_shutdown()


def test_executor_parameter_picks_the_executor(rclpy_context):
    events = make_executor(2, "events")
    threaded = make_executor(3, "multi_threaded")
    try:
        assert type(events).__name__ == "EventsExecutor"  # rclpy's C++ one (pybind11 class)
        assert isinstance(threaded, MultiThreadedExecutor) and threaded._executor._max_workers == 3
    finally:
        events.shutdown()
        threaded.shutdown()
    with pytest.raises(ValueError, match="executor"):
        make_executor(2, "single")


def test_an_unknown_executor_fails_validation():
    with pytest.raises(ValueError, match="parameter executor='single'"):
        NodeParams(executor="single").validate()
    NodeParams(executor="multi_threaded").validate()
