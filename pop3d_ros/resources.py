"""Files the package ships beside its code (config/, models/): from the installed share
directory of a ROS 2 install (AMENT_PREFIX_PATH), else from the source checkout."""

from __future__ import annotations

import os
from pathlib import Path


def package_file_candidates(*parts: str) -> list[Path]:
    out = []
    for prefix in os.environ.get("AMENT_PREFIX_PATH", "").split(os.pathsep):
        if prefix:
            out.append(Path(prefix, "share", "pop3d_ros", *parts))
    # Source checkout (tests, pip -e): the repository next to this package.
    out.append(Path(__file__).resolve().parents[1].joinpath(*parts))
    return out


def package_file(*parts: str) -> Path:
    """The first candidate that exists (else the source checkout's path)."""
    candidates = package_file_candidates(*parts)
    return next((p for p in candidates if p.exists()), candidates[-1])
