"""The POP-3D model (ROS-free): config + presets, backbone, lifting, decoder, heads, checkpoints.

Importing this package is cheap; torch modules load on first use of what needs them.
"""

from pop3d_ros.model.config import (
    BackboneConfig,
    DecoderConfig,
    GridConfig,
    HeadsConfig,
    LiftingConfig,
    ModelConfig,
    get_preset,
)

__all__ = [
    "BackboneConfig",
    "DecoderConfig",
    "GridConfig",
    "HeadsConfig",
    "LiftingConfig",
    "ModelConfig",
    "build_model",
    "compute_sampling",
    "get_preset",
]


def __getattr__(name):
    if name == "build_model":
        from pop3d_ros.model.pop3d import build_model

        return build_model
    if name == "compute_sampling":
        from pop3d_ros.model.lifting import compute_sampling

        return compute_sampling
    raise AttributeError(name)
