"""`pop3d train` options of the depth-bin lifting (model/depth.py)."""

from __future__ import annotations

LIDAR_STRATEGIES = ("pop3d", "supervised_3d", "render", "pop3d_render")


def add_depth_arguments(p, default_weight: float) -> None:
    g = p.add_argument_group("depth-bin lifting (BEVDepth-style, LiDAR-supervised)")
    g.add_argument(
        "--depth-bins",
        type=int,
        default=0,
        help="depth bins D of the lifting (model config lifting.depth_bins; 0 = off, the "
        "plain bilinear lifting). Bin range and spacing: the preset's lifting.depth_min/"
        "depth_max/depth_spacing",
    )
    g.add_argument(
        "--depth-weight",
        type=float,
        default=default_weight,
        help="weight of the depth-bin cross-entropy against projected LiDAR depth "
        "(default: %(default)s)",
    )


def apply_depth_arguments(args, model_cfg, strategy: str) -> dict:
    """Sets the model's depth bins from the arguments; returns the prepared-frame settings
    that depend on them (empty without depth bins, so earlier caches stay valid)."""
    bins = int(getattr(args, "depth_bins", 0) or 0)
    if not bins:
        return {}
    if strategy not in LIDAR_STRATEGIES:
        raise ValueError(
            f"--depth-bins needs LiDAR depth targets; strategy {strategy!r} has none "
            f"(use one of {list(LIDAR_STRATEGIES)})"
        )
    model_cfg.lifting.depth_bins = bins
    model_cfg.validate()
    lift = model_cfg.lifting
    return {
        "depth_target": {
            "bins": bins,
            "min": lift.depth_min,
            "max": lift.depth_max,
            "spacing": lift.depth_spacing,
            "feature_hw": list(model_cfg.feature_hw),
        }
    }
