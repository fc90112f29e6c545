"""Learning-rate schedule of POP-3D: linear warm-up from `warmup_start_lr` over
`warmup_steps` iterations, then cosine decay to `final_lr` at `total_steps`.

Expressed as a multiplier on each parameter group's base lr, so the backbone group (base lr
x0.1) follows the same shape.
"""

from __future__ import annotations

import math


def lr_factor(
    step: int,
    base_lr: float,
    total_steps: int,
    warmup_steps: int,
    warmup_start_lr: float,
    final_lr: float,
) -> float:
    """Multiplier for the base lr at optimisation step `step` (0-based)."""
    if warmup_steps > 0 and step < warmup_steps:
        start = warmup_start_lr / base_lr
        return start + (1.0 - start) * step / warmup_steps
    span = max(1, total_steps - warmup_steps)
    progress = min(1.0, (step - warmup_steps) / span)
    end = final_lr / base_lr
    return end + (1.0 - end) * 0.5 * (1.0 + math.cos(math.pi * progress))
