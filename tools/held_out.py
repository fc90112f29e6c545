"""The frames the analysis tools read by default: the synthetic world's held-out drives."""

from __future__ import annotations

from pop3d_ros.data.sources import DataConfig, parse_seeds


def held_out_data() -> DataConfig:
    """Seeds 100-103, 10 frames each: the held-out frames of every evaluation in the docs."""
    return DataConfig(seeds="100-103", frames_per_seed=10)


def synthetic_seeds(data: DataConfig) -> list[int]:
    """The seeds of `data`; the tools read the synthetic world only."""
    if data.data != "synthetic":
        raise ValueError("this tool reads the synthetic world only (--data synthetic)")
    return parse_seeds(data.seeds)
