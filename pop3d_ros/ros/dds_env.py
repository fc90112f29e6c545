"""Fast DDS transport settings for processes that move six camera streams (no rclpy import).

Measured on one machine (Fast DDS from the Jazzy wheels, six 256x144 rgb8 images + CameraInfo
published back to back, reliable): with the default builtin transports or plain LARGE_DATA,
most camera sets had one image delivered 2-3 s late (a sample lost in the burst and repaired
at the next heartbeat); with `LARGE_DATA?sockets_size=8MB` every set arrived at once. The
setting that matters is the PUBLISHER's, so camera drivers and players need it as well as
the node. It must be in the environment before the first DDS participant is created.
"""

from __future__ import annotations

import os
from collections.abc import MutableMapping

VARIABLE = "FASTDDS_BUILTIN_TRANSPORTS"
LARGE_DATA = "LARGE_DATA?sockets_size=8MB"


def use_large_data_transport(environ: MutableMapping[str, str] = os.environ) -> str:
    """Set the large-data transport unless the user chose a transport; returns the value."""
    return environ.setdefault(VARIABLE, LARGE_DATA)
