"""VFM stage 1 as the paper states it: the reconstruction error alone, and one fixed pixel
set per image, so a scale that pushes every pixel out of the source view cannot win."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from pop3d_ros.vfm.calibrate import CalibrationConfig, calibrate_views

F_PX, BASELINE, TRUE_DEPTH, H, W = 100.0, 2.0, 20.0, 24, 64


def _stereo_pair():
    """A textured fronto-parallel plane 20 m away seen by the target camera and by a source
    camera 2 m to its right: target pixel u lands at u - f b / D = u - 10 in the source."""
    g = torch.Generator().manual_seed(0)
    coarse = torch.rand(1, 3, H // 4 + 1, (W + 40) // 4 + 1, generator=g)
    wide = F.interpolate(coarse, size=(H, W + 40), mode="bilinear", align_corners=False)
    shift = int(F_PX * BASELINE / TRUE_DEPTH)  # 10 px
    target = wide[..., 20 : 20 + W]
    source = wide[..., 20 + shift : 20 + shift + W]
    K = torch.tensor([[F_PX, 0, (W - 1) / 2], [0, F_PX, (H - 1) / 2], [0, 0, 1.0]])[None]
    T = torch.eye(4)[None]
    T[0, 0, 3] = -BASELINE
    return target, source, K, T


def _stage1_scale(**kw):
    target, source, K, T = _stereo_pair()
    cfg = CalibrationConfig(num_scales=65, stage2=False, iterations=0, **kw)
    r = torch.ones(1, H, W)  # relative inverse depth of a plane: depth = the scale S
    out = calibrate_views(r, target, [source], K, [K], [T], torch.ones(1, H, W, dtype=bool), cfg)
    return float(out["scene_scale"][0]), float(out["stage1_error"][0])


@pytest.mark.parametrize("loss", ["l1", "ssim_l1"])
def test_averaging_over_in_view_pixels_lets_a_scale_that_leaves_the_image_win(loss):
    # below S = f b / W = 3.1 m every pixel lands outside the source: no pixel is averaged,
    # and the empty average (0) beats every real reconstruction
    scale, err = _stage1_scale(stage1_loss=loss, stage1_pixels="in_view")
    assert scale < F_PX * BASELINE / W and err == 0.0


@pytest.mark.parametrize("pixels", ["fixed", "border", "guarded"])
@pytest.mark.parametrize("loss", ["l1", "ssim_l1"])
def test_pixel_sets_that_cannot_be_left_find_the_plane(loss, pixels):
    scale, err = _stage1_scale(stage1_loss=loss, stage1_pixels=pixels)
    step = 100.0 ** (1 / 64)
    assert abs(np.log(scale / TRUE_DEPTH)) <= np.log(step)  # the candidate next to 20 m


def test_stage1_loss_l1_is_the_reconstruction_error_alone():
    target, source, K, T = _stereo_pair()
    cfg = CalibrationConfig(num_scales=3, min_scale=10.0, max_scale=40.0, stage2=False,
                            stage1_loss="l1", stage1_pixels="fixed")  # fmt: skip
    out = calibrate_views(torch.ones(1, H, W), target, [source], K, [K], [T],
                          torch.ones(1, H, W, dtype=bool), cfg)  # fmt: skip
    # at 20 m the 10 leftmost columns land left of the source image: chance level there,
    # exact reconstruction (error 0) elsewhere; chance = L1 against the half-rolled source
    chance = float((target - source.roll((H // 2, W // 2), (2, 3))).abs().mean())
    expected = chance * 10 / W
    assert float(out["stage1_error"][0]) == pytest.approx(expected, rel=1e-4)
    with pytest.raises(ValueError, match="stage1_loss"):
        CalibrationConfig(stage1_loss="ssim").validate()
    with pytest.raises(ValueError, match="stage1_pixels"):
        CalibrationConfig(stage1_pixels="all").validate()
