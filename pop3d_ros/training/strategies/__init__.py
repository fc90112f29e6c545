"""Supervision strategies, one module per recipe: `pop3d` (LiDAR + 2D teacher), `render`
(RenderOcc's 2D rendering; `pop3d_render` = both), `vfm` (foundation-model pseudo labels),
`supervised_3d` (synthetic ground truth, for comparison). `base.Strategy` is the interface
the loop calls."""

from __future__ import annotations

import importlib

# name -> (module, class); modules are imported on demand.
_REGISTRY = {
    "pop3d": ("pop3d", "Pop3DStrategy"),
    "supervised_3d": ("supervised", "Supervised3DStrategy"),
    "vfm": ("vfm", "VFMStrategy"),
    "render": ("render", "RenderStrategy"),
    # pop3d_render = RenderStrategy(with_occupancy=True)
    "pop3d_render": ("render", "RenderStrategy"),
}
STRATEGY_NAMES = tuple(_REGISTRY)
RENDER_STRATEGIES = ("render", "pop3d_render")


def strategy_class(name: str):
    """The Strategy class of a strategy name."""
    if name not in _REGISTRY:
        raise ValueError(f"unknown strategy {name!r}; choose one of {list(STRATEGY_NAMES)}")
    module, cls = _REGISTRY[name]
    return getattr(importlib.import_module(f"{__name__}.{module}"), cls)
