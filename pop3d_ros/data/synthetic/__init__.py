"""The synthetic surround-view driving world (procedural streets, ray-cast sensors)."""

from pop3d_ros.data.synthetic.config import WorldConfig
from pop3d_ros.data.synthetic.world import SyntheticWorld, render_benchmark

__all__ = ["SyntheticWorld", "WorldConfig", "render_benchmark"]
