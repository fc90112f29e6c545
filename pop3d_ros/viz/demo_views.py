"""Pictures of predicted occupancy, query heatmaps and top voxels (used by `make demo`).

Inputs are plain arrays (voxel centres, labels, scores), so the pictures can be made from a
node's PointCloud2 as well as from in-process results.
"""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw

from pop3d_ros.data.classes import CLASS_NAMES, EMPTY, IGNORE, NUM_CLASSES
from pop3d_ros.geometry.camera import PinholeCamera
from pop3d_ros.geometry.grid import VoxelGrid
from pop3d_ros.viz.bev import bev_image, heatmap_bev
from pop3d_ros.viz.mosaic import camera_mosaic
from pop3d_ros.viz.palette import class_colors


def labels_grid(grid: VoxelGrid, centres: np.ndarray, labels=None) -> np.ndarray:
    """(X, Y, Z) uint8 class grid from occupied voxel centres (EMPTY elsewhere).

    Without labels every occupied voxel gets `manmade`'s colour index (class-agnostic view).
    """
    out = np.full(grid.shape, EMPTY, dtype=np.uint8)
    idx, inside = grid.points_to_index(centres)
    values = np.full(len(centres), NUM_CLASSES - 2) if labels is None else np.asarray(labels)
    values = np.where(values < NUM_CLASSES, values, NUM_CLASSES - 2)
    i = idx[inside]
    out[i[:, 0], i[:, 1], i[:, 2]] = values[inside]
    return out


def scores_grid(grid: VoxelGrid, centres: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """(X, Y, Z) float32 scores at occupied voxels, NaN elsewhere."""
    out = np.full(grid.shape, np.nan, dtype=np.float32)
    idx, inside = grid.points_to_index(centres)
    i = idx[inside]
    out[i[:, 0], i[:, 1], i[:, 2]] = np.asarray(scores)[inside]
    return out


def _titled(image: np.ndarray, title: str, pad: int = 16) -> np.ndarray:
    pil = Image.new("RGB", (image.shape[1], image.shape[0] + pad), (255, 255, 255))
    pil.paste(Image.fromarray(image), (0, pad))
    ImageDraw.Draw(pil).text((3, 2), title, fill=(0, 0, 0))
    return np.asarray(pil)


def _hstack(images: list[np.ndarray], gap: int = 6) -> np.ndarray:
    h = max(im.shape[0] for im in images)
    parts = []
    for im in images:
        padded = np.full((h, im.shape[1], 3), 255, np.uint8)
        padded[: im.shape[0]] = im
        parts += [padded, np.full((h, gap, 3), 255, np.uint8)]
    return np.concatenate(parts[:-1], axis=1)


def legend(classes=CLASS_NAMES, swatch: int = 12, width: int = 150) -> np.ndarray:
    pil = Image.new("RGB", (width, swatch * len(classes) + 4), (255, 255, 255))
    draw = ImageDraw.Draw(pil)
    colors = class_colors(np.arange(len(classes)))
    for i, name in enumerate(classes):
        y = 2 + i * swatch
        draw.rectangle(
            [2, y, 2 + swatch - 3, y + swatch - 3], fill=tuple(int(c) for c in colors[i])
        )
        draw.text((swatch + 4, y), name, fill=(0, 0, 0))
    return np.asarray(pil)


def occupancy_comparison(
    gt_occupancy: np.ndarray, predicted_labels: np.ndarray, grid: VoxelGrid, scale: int = 4
) -> np.ndarray:
    """Bird's-eye view: ground truth | prediction (zero-shot classes) | legend."""
    gt = np.where(gt_occupancy == IGNORE, EMPTY, gt_occupancy).astype(np.uint8)
    return _hstack(
        [
            _titled(bev_image(gt, grid=grid, scale=scale), "ground truth (synthetic)"),
            _titled(bev_image(predicted_labels, grid=grid, scale=scale), "prediction (node)"),
            legend(),
        ]
    )


def occupancy_slices(predicted_labels: np.ndarray, grid: VoxelGrid, scale: int = 3) -> np.ndarray:
    """One bird's-eye tile per height layer (bottom to top), coloured by zero-shot class."""
    tiles = []
    z0, dz = grid.lower[2], grid.voxel_size[2]
    for k in range(grid.shape[2]):
        layer = np.full(predicted_labels.shape, EMPTY, np.uint8)
        layer[:, :, k] = predicted_labels[:, :, k]
        title = f"z {z0 + k * dz:+.1f}..{z0 + (k + 1) * dz:+.1f} m"
        tiles.append(_titled(bev_image(layer, grid=grid, scale=scale), title))
    cols = 4
    rows = [_hstack(tiles[i : i + cols]) for i in range(0, len(tiles), cols)]
    width = max(r.shape[1] for r in rows)
    rows = [np.pad(r, ((0, 6), (0, width - r.shape[1]), (0, 0)), constant_values=255) for r in rows]
    return np.concatenate(rows, axis=0)


def query_heatmap(grid: VoxelGrid, centres, scores, title: str, scale: int = 4) -> np.ndarray:
    """Bird's-eye heatmap of a query's scores (max over height), titled."""
    return _titled(heatmap_bev(scores_grid(grid, centres, scores), scale=scale), title)


def mosaic_with_points(
    images: np.ndarray, cameras: list[PinholeCamera], points: np.ndarray, radius: int = 4
) -> np.ndarray:
    """Camera mosaic with ego-frame points drawn as circles where they project (best first
    in red, the rest in yellow)."""
    images = np.asarray(images).copy()
    for c, cam in enumerate(cameras):
        uv, _, valid = cam.project(points)
        pil = Image.fromarray(images[c])
        draw = ImageDraw.Draw(pil)
        for rank in np.flatnonzero(valid)[::-1]:
            u, v = uv[rank]
            color = (255, 0, 0) if rank == 0 else (255, 220, 0)
            draw.ellipse([u - radius, v - radius, u + radius, v + radius], outline=color, width=2)
        images[c] = np.asarray(pil)
    return camera_mosaic(images, names=[cam.name for cam in cameras])


def save_png(image: np.ndarray, path) -> None:
    Image.fromarray(np.asarray(image, dtype=np.uint8)).save(path)


def _mark(image: np.ndarray, grid: VoxelGrid, points, color, scale: int, r: int = 1) -> None:
    """Draw (N, 3) grid-frame points as squares on a BEV image of `grid` (in place), with
    the mapping of `bev_image`'s LiDAR dots: x up, y to the left."""
    pts = np.asarray(points, np.float64).reshape(-1, 3)
    X, Y = grid.shape[:2]
    for p in pts:
        u, v = (p[:2] - grid.lower[:2]) / grid.voxel_size[:2] * scale
        row, col = int(X * scale - 1 - u), int(Y * scale - 1 - v)
        if 0 <= row < image.shape[0] and 0 <= col < image.shape[1]:
            image[max(row - r, 0) : row + r + 1, max(col - r, 0) : col + r + 1] = color


def map_bev(grid: VoxelGrid, centres, labels, trajectory, title: str, scale: int = 3):
    """Bird's-eye view of a map's occupied voxels on a world-frame `grid`, coloured by
    zero-shot class (labels >= NUM_CLASSES: grey), with the ego trajectory in black."""
    image = bev_image(labels_grid(grid, np.asarray(centres), labels), grid=grid, scale=scale)
    _mark(image, grid, trajectory, (0, 0, 0), scale)
    return _titled(image, title)


def map_query_view(grid: VoxelGrid, centres, scores, truth, title: str, scale: int = 3):
    """A map query's heatmap (max over height) on a world-frame `grid`, the ground-truth
    instance centres of what it asks for in red and the ego's last position in white."""
    image = heatmap_bev(scores_grid(grid, centres, scores), scale=scale)
    _mark(image, grid, truth["instances"], (230, 0, 0), scale, r=2)
    _mark(image, grid, truth["ego"], (255, 255, 255), scale, r=2)
    return _titled(image, title)
