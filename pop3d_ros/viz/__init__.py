"""Pictures (PNG) of samples, occupancy and heatmaps; PIL + numpy only."""

from pop3d_ros.viz.bev import bev_image, heatmap_bev
from pop3d_ros.viz.mosaic import camera_mosaic
from pop3d_ros.viz.palette import CLASS_COLORS, class_colors, heat_colors

__all__ = ["CLASS_COLORS", "bev_image", "camera_mosaic", "class_colors", "heat_colors",
           "heatmap_bev"]  # fmt: skip
