"""LiDAR-free supervision from vision foundation models (paper: zero-shot occupancy, 3.2-3.3).

- `depth_source`: relative (inverse) depth per image: Depth Anything from a local weights
  path, or the synthetic VFM that degrades the synthetic world's true depth.
- `photometric`: target view reconstructed from a source view (bilinear warp), L1 + SSIM.
- `calibrate`: stage 1 scene scale search, stage 2 per-pixel scale + scene offset (AdamW),
  per image, cached on disk.
- `semantics`: pixel classes from a dense 2D teacher and the vocabulary (sky ignored).
- `pseudo_labels`: back-projection into voxels (occupancy, free space, feature targets).

Nothing here reads `lidar_points`: the recipe needs only images, poses and calibration.
"""
