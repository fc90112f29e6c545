"""Pictures: pop3d show writes non-blank PNGs; BEV / mosaic helpers put things where expected."""

import numpy as np
from PIL import Image

from pop3d_ros.cli import main
from pop3d_ros.data.classes import CLASS_ID, EMPTY
from pop3d_ros.viz import bev_image, camera_mosaic, class_colors, heat_colors, heatmap_bev


def test_show_writes_non_blank_pngs(tmp_path):
    out = tmp_path / "pics"
    args = ["--out", str(out), "--seed", "1", "--image_width", "64", "--image_height", "36"]
    assert main(["show", *args]) == 0
    for name in ("mosaic.png", "semantic.png", "bev.png"):
        img = np.asarray(Image.open(out / name))
        assert img.ndim == 3 and img.std() > 10, name
        assert len(np.unique(img.reshape(-1, 3), axis=0)) > 20, name
    assert np.asarray(Image.open(out / "mosaic.png")).shape == (72, 192, 3)


def test_bev_orientation_and_heatmap():
    occ = np.full((10, 8, 4), EMPTY, np.uint8)
    occ[9, 0, 1] = CLASS_ID["car"]  # far forward (x max), far right (y min)
    img = bev_image(occ, scale=2)
    assert img.shape == (20, 16, 3)
    car = class_colors(CLASS_ID["car"])
    # forward = top row, right (negative y) = right column; darker for low voxels
    assert (img[0, 15] != 255).any() and np.argmax(img[0, 15]) == np.argmax(car)
    assert (img[19, 0] == 255).all()
    scores = np.full((10, 8, 4), np.nan)
    scores[0, 0, 2] = 1.0
    scores[5, 5, 0] = 0.0
    h = heatmap_bev(scores, scale=1)
    assert h.shape == (10, 8, 3) and (h[9, 7] == heat_colors(1.0, 0, 1)).all()
    assert (h[0, 0] == 0).all()  # NaN -> black


def test_mosaic_layout_and_overlay():
    imgs = np.zeros((6, 4, 5, 3), np.uint8)
    for c in range(6):
        imgs[c] = 10 * (c + 1)
    m = camera_mosaic(imgs, labels=False)
    assert m.shape == (8, 15, 3)
    assert m[0, 5, 0] == 10 and m[0, 0, 0] == 60 and m[4, 5, 0] == 40  # F, FL, B
    sem = np.full((6, 4, 5), 255, np.uint8)
    sem[0, 0, 0] = CLASS_ID["car"]
    over = camera_mosaic(imgs, sem, alpha=1.0, labels=False)
    assert (over[0, 5] == class_colors(CLASS_ID["car"])).all() and over[0, 6, 0] == 10
