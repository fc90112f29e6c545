"""Analytic checks of the volume renderer (training/render.py) and the density head mode."""

import math

import numpy as np
import pytest
import torch

from pop3d_ros.geometry.grid import VoxelGrid
from pop3d_ros.training.render import (
    composite,
    density_sparsity,
    distortion_loss,
    render_rays,
    sample_volume,
    silog_loss,
    termination_loss,
)

# 20 x 4 x 4 voxels of 1 m over x in [0, 20], y, z in [-2, 2]
GRID = VoxelGrid((0.0, 20.0), (-2.0, 2.0), (-2.0, 2.0), (20, 4, 4))


def _ray(n=1):
    o = torch.tensor([[0.5, 0.0, 0.0]]).repeat(n, 1)
    d = torch.tensor([[1.0, 0.0, 0.0]]).repeat(n, 1)
    return o, d


def test_single_slab_renders_its_distance():
    sigma = torch.zeros(GRID.shape)
    sigma[10:12] = 200.0  # voxels x in [10, 12) m: the slab's face at x = 10
    o, d = _ray()
    r = render_rays(sigma, o, d, GRID)
    # trilinear density rises from the last empty centre (9.5 m) to the first full one
    # (10.5 m); with a very dense slab the ray stops within that voxel: at 10 +- 0.5 m from
    # x = 0, i.e. 9.5 +- 0.5 m from the origin at x = 0.5
    assert abs(float(r["depth"][0]) - 9.5) < 0.5
    assert float(r["opacity"][0]) == pytest.approx(1.0, abs=1e-4)


def test_slab_depth_follows_the_slab():
    o, d = _ray()
    depths = []
    for start in (4, 8, 14):
        sigma = torch.zeros(GRID.shape)
        sigma[start:] = 200.0
        depths.append(float(render_rays(sigma, o, d, GRID)["depth"][0]))
    assert np.allclose(np.diff(depths), [4.0, 6.0], atol=0.05)


def test_empty_grid_renders_far_and_transparent():
    sigma = torch.zeros(GRID.shape)
    o, d = _ray(3)
    r = render_rays(sigma, o, d, GRID, features=torch.ones(*GRID.shape, 5))
    assert torch.all(r["opacity"] == 0)
    assert torch.allclose(r["depth"], torch.full((3,), r["far"]))
    # far reaches the farthest grid corner from the origin
    assert r["far"] >= math.dist((0.5, 0, 0), (20, 2, 2))
    assert torch.all(r["features"] == 0)


def test_semi_transparent_medium_matches_beer_lambert():
    # constant sigma = 0.1 per voxel length: opacity after L metres = 1 - exp(-0.1 L)
    sigma = torch.full(GRID.shape, 0.1)
    o = torch.tensor([[0.5, 0.0, 0.0]])
    d = torch.tensor([[1.0, 0.0, 0.0]])
    r = render_rays(sigma, o, d, GRID)
    inside = (r["t"] < 19.0).float()  # centres cover x in [0.5, 19.5]: constant there
    expect = 1 - math.exp(-0.1 * float((inside * 0.5).sum()))
    assert float((r["weights"][0] * inside).sum()) == pytest.approx(expect, rel=1e-3)


# the same scene on 0.4 m voxels: sigma is per voxel length, so distances in metres divide
# by 0.4 in the transmittance
GRID4 = VoxelGrid((0.0, 8.0), (-0.8, 0.8), (-0.8, 0.8), (20, 4, 4))


@pytest.mark.parametrize("sampling", ["trilinear", "nearest"])
def test_beer_lambert_on_a_grid_of_0_4_m_voxels(sampling):
    # constant sigma = 0.1 per voxel length: opacity after L metres = 1 - exp(-0.1 L / 0.4)
    sigma = torch.full(GRID4.shape, 0.1)
    o = torch.tensor([[0.2, 0.0, 0.0]])
    d = torch.tensor([[1.0, 0.0, 0.0]])
    r = render_rays(sigma, o, d, GRID4, density_sampling=sampling)
    inside = (r["t"] < 7.6).float()  # samples up to x = 7.8 m, the last voxel centre
    length = float((inside * 0.2).sum())  # metres: half-voxel steps of 0.2 m
    expect = 1 - math.exp(-0.1 * length / 0.4)
    assert float((r["weights"][0] * inside).sum()) == pytest.approx(expect, rel=1e-3)
    # a slab of 4 voxels (1.6 m) of sigma 0.5: transmittance exp(-0.5 * 4) behind it
    sigma = torch.zeros(GRID4.shape)
    sigma[5:9] = 0.5  # x in [2.0, 3.6) m
    r = render_rays(sigma, o, d, GRID4, density_sampling="nearest")
    assert float(r["opacity"][0]) == pytest.approx(1 - math.exp(-2.0), rel=1e-4)


def test_gradients_reach_the_density_and_feature_grids():
    sigma = torch.full(GRID.shape, 0.5, requires_grad=True)
    feats = torch.randn(*GRID.shape, 3, requires_grad=True)
    o, d = _ray(2)
    r = render_rays(sigma, o, d, GRID, features=feats)
    (silog_loss(r["depth"], torch.tensor([5.0, 5.0])) + r["features"].sum()).backward()
    assert sigma.grad is not None and float(sigma.grad.abs().sum()) > 0
    assert float(sigma.grad[:2, 1:3, 1:3].abs().sum()) > 0  # voxels the rays cross
    assert float(sigma.grad[:, 0].abs().sum()) == 0  # rays at y = 0 never reach y < -1
    assert feats.grad is not None and float(feats.grad.abs().sum()) > 0


def test_depth_gradient_pulls_the_surface_toward_the_target():
    # density a little everywhere; target depth 5: sigma before 5 m should rise
    sigma = torch.full(GRID.shape, 0.05, requires_grad=True)
    o, d = _ray()
    silog_loss(render_rays(sigma, o, d, GRID)["depth"], torch.tensor([5.0])).backward()
    g = sigma.grad[:, 1:3, 1:3].sum((1, 2))
    assert float(g[3:5].sum()) < 0  # increasing density near 4-5 m lowers the loss


def test_sample_volume_trilinear_and_axes():
    # a value that varies along x only, then along z only: the sampler keeps the axes apart
    vx = torch.arange(20.0)[:, None, None, None].expand(20, 4, 4, 1).contiguous()
    p = torch.tensor([[[3.5 + 0.25, 0.0, 0.0]]])  # x centre of voxel 3 is 3.5 -> 3.25
    assert float(sample_volume(vx, p, GRID)) == pytest.approx(3.25, abs=1e-5)
    vz = torch.arange(4.0)[None, None, :, None].expand(20, 4, 4, 1).contiguous()
    p = torch.tensor([[[5.0, 0.0, -1.5]]])  # z centre of voxel 0 is -1.5
    assert float(sample_volume(vz, p, GRID)) == pytest.approx(0.0, abs=1e-5)


def test_composite_weights_sum_to_opacity():
    sigma = torch.rand(4, 30) * 3
    c = composite(sigma, 0.5)
    assert torch.allclose(c["weights"].sum(-1) + c["transmittance_last"], torch.ones(4), atol=1e-5)


def test_distortion_prefers_concentrated_weights():
    t = torch.arange(40.0) + 0.5
    spread = torch.full((1, 40), 1 / 40)
    peak = torch.zeros(1, 40)
    peak[0, 10] = 1.0
    assert float(distortion_loss(peak, t, 40.0)) < float(distortion_loss(spread, t, 40.0))
    # two unit-free spikes at distance 0.5 (of far): w w |s_i - s_j| twice = 2 * .25 * .5
    two = torch.zeros(1, 40)
    two[0, 0] = two[0, 20] = 0.5
    expect = 2 * 0.25 * 0.5 + 2 * 0.25 * (1 / 40) / 3
    assert float(distortion_loss(two, t, 40.0)) == pytest.approx(expect, rel=1e-5)


def test_silog_is_scale_invariant_up_to_its_variance_focus():
    target = torch.tensor([2.0, 4.0, 8.0])
    assert float(silog_loss(target, target)) == pytest.approx(0.0, abs=1e-4)
    # a global scale error costs sqrt(1 - 0.85) |log s|
    assert float(silog_loss(2 * target, target)) == pytest.approx(
        math.sqrt(0.15) * math.log(2), rel=1e-4
    )


def test_density_model_exports_threshold_through_logits():
    from pop3d_ros.model.config import get_preset
    from pop3d_ros.model.pop3d import build_model, density_from_logits

    cfg = get_preset("cpu-small")
    cfg.heads.occupancy_output = "density"
    cfg.heads.density_threshold = 3.0
    model = build_model(cfg)
    vf = torch.randn(2, 5, 32)
    raw = model.occupancy_head(vf)
    sigma = torch.nn.functional.softplus(raw[..., 1] - raw[..., 0] + cfg.heads.density_shift)
    logits = torch.stack([torch.zeros_like(sigma), sigma - 3.0], -1)
    assert torch.allclose(density_from_logits(logits, cfg.heads), sigma, atol=1e-6)
    p = logits.softmax(-1)[..., 1]
    assert torch.equal(p > 0.5, sigma > 3.0)
    with pytest.raises(ValueError):
        cfg.heads.occupancy_output = "nope"
        cfg.validate()


def test_sparsity_prior_is_mean_voxel_opacity_and_pulls_density_down():
    assert float(density_sparsity(torch.zeros(GRID.shape))) == 0.0
    sigma = torch.full(GRID.shape, -1.0)  # negative density renders as empty
    sigma[:10] = math.log(2.0)  # half the grid at opacity 1/2 per voxel length
    assert float(density_sparsity(sigma)) == pytest.approx(0.25)
    sigma[10:15] = 0.1  # a faint haze
    sigma.requires_grad_(True)
    density_sparsity(sigma).backward()
    # descent lowers every positive density, the faint ones most (opaque voxels barely
    # feel it); what is already empty is left alone
    assert torch.all(sigma.grad[:15] > 0) and torch.all(sigma.grad[15:] == 0)
    assert float(sigma.grad[0, 0, 0]) < float(sigma.grad[12, 0, 0])


def test_sparsity_prior_restricted_to_marked_voxels_leaves_the_rest_alone():
    sigma = torch.zeros(GRID.shape)
    sigma[:4] = math.log(2.0)  # opacity 1/2
    sigma[4:6] = math.log(4.0)  # opacity 3/4
    where = torch.zeros(GRID.shape, dtype=torch.bool)
    where[2:6] = True  # two voxel slabs of each kind
    assert float(density_sparsity(sigma, where)) == pytest.approx((0.5 + 0.75) / 2)
    sigma.requires_grad_(True)
    density_sparsity(sigma, where).backward()
    assert torch.all(sigma.grad[2:6] > 0)
    assert torch.all(sigma.grad[:2] == 0)  # dense but unmarked: untouched
    nothing = torch.zeros(GRID.shape, dtype=torch.bool)
    assert float(density_sparsity(sigma.detach(), nothing)) == 0.0


def test_box_density_stops_a_grazing_ray_at_the_face_trilinear_above_it():
    # ground: layers z in [-2, 0) dense, so its top face is z = 0; a ray from 1.5 m up that
    # meets z = 0 at x = 10.5 m, 10.1 m away
    sigma = torch.zeros(GRID.shape)
    sigma[:, :, :2] = 200.0
    o = torch.tensor([[0.5, 0.0, 1.5]])
    d = torch.tensor([[10.0, 0.0, -1.5]])
    hit = math.hypot(10.0, 1.5)
    box = float(render_rays(sigma, o, d, GRID, density_sampling="nearest")["depth"][0])
    tri = float(render_rays(sigma, o, d, GRID)["depth"][0])
    assert abs(box - hit) < 0.5  # within one sample step
    # trilinear density starts to rise at the centre of the empty layer above (z = 0.5), a
    # third of the way down to the face: the ray stops metres early
    assert tri < hit - 2.0


def test_box_density_keeps_gradients_and_trilinear_features():
    sigma = torch.full(GRID.shape, 0.3, requires_grad=True)
    feats = torch.zeros(*GRID.shape, 2)
    feats[..., 0] = torch.arange(GRID.shape[0]).float()[:, None, None]  # varies along x
    feats.requires_grad_(True)
    o, d = _ray(2)
    r = render_rays(sigma, o, d, GRID, features=feats, density_sampling="nearest")
    (r["depth"].sum() + r["features"].sum()).backward()
    assert sigma.grad.abs().sum() > 0 and feats.grad.abs().sum() > 0
    # features at points between centres are interpolated, not the nearest voxel's value
    pts = torch.tensor([[[10.0, 0.0, 0.0]]])  # on the face between voxel 9 and 10
    assert float(sample_volume(feats.detach(), pts, GRID)[0, 0, 0]) == pytest.approx(9.5)
    with pytest.raises(ValueError, match="trilinear or nearest"):
        render_rays(sigma, o, d, GRID, density_sampling="cubic")


def _terminate(sigma, end_x, mode="nearest"):
    """The termination loss of one ray along +x from x = 0.5 whose return lies at `end_x`."""
    o, d = _ray()
    r = render_rays(sigma, o, d, GRID, density_sampling=mode)
    depth = torch.tensor([end_x - 0.5])
    return r, termination_loss(r["weights"], r["t"], o, d, depth, GRID)


def test_termination_is_zero_when_the_ray_stops_in_its_return_voxel():
    sigma = torch.zeros(GRID.shape)
    sigma[10] = 200.0  # voxel x in [10, 11), where the return lies
    assert float(_terminate(sigma, 10.6)[1]) == pytest.approx(0.0, abs=1e-3)
    # the same opaque voxel one voxel early, or nothing at all: no weight reaches the end
    early = torch.zeros(GRID.shape)
    early[9] = 200.0
    assert float(_terminate(early, 10.6)[1]) == pytest.approx(-math.log(1e-4), rel=1e-3)
    assert float(_terminate(torch.zeros(GRID.shape), 10.6)[1]) == pytest.approx(
        -math.log(1e-4), rel=1e-3
    )


def test_termination_penalises_a_haze_that_renders_the_right_depth():
    # a haze over x in [6, 16) renders some depth; with that depth as the target SILog has
    # nothing to say, while the ray's weight inside its return's voxel is far from 1
    sigma = torch.zeros(GRID.shape)
    sigma[6:16] = 0.4
    o, d = _ray()
    r = render_rays(sigma, o, d, GRID, density_sampling="nearest")
    target = r["depth"].detach()
    assert float(silog_loss(r["depth"], target)) == pytest.approx(0.0, abs=1e-5)
    term = termination_loss(r["weights"], r["t"], o, d, target, GRID)
    end_voxel = int(0.5 + float(target[0]))
    t_end = (r["t"] + 0.5 >= end_voxel) & (r["t"] + 0.5 < end_voxel + 1)
    expected = -math.log(float(r["weights"][0, t_end].sum()) + 1e-4)
    assert float(term) == pytest.approx(expected, rel=1e-4) and float(term) > 1.0


def test_termination_gradient_empties_the_way_and_fills_the_end_voxel():
    sigma = torch.full(GRID.shape, 0.3, requires_grad=True)
    _, term = _terminate(sigma, 10.6)
    term.backward()
    g = sigma.grad.sum((1, 2))  # per x slab
    assert torch.all(g[1:10] > 0)  # descent lowers the density in front of the return
    assert float(g[10]) < 0  # and raises it in the return's voxel
    assert torch.all(g[11:] == 0)  # what lies behind the return is not the ray's business


def test_termination_counts_the_sample_nearest_a_clipped_end_voxel():
    # a ray that crosses the corner of its end voxel between two samples: that voxel holds
    # no sample, so the sample nearest the return stands in for it
    o = torch.tensor([[0.5, 0.0, 0.0]])
    d = torch.tensor([[1.0, 0.0, 0.0]])
    t = torch.tensor([0.25, 0.75, 1.25])  # points at x = 0.75, 1.25, 1.75
    w = torch.tensor([[0.1, 0.6, 0.3]])
    narrow = VoxelGrid((0.0, 3.0), (-2.0, 2.0), (-2.0, 2.0), (30, 4, 4))  # 0.1 m along x
    # the return at x = 1.31 lies in voxel [1.3, 1.4), which no sample falls in
    loss = termination_loss(w, t, o, d, torch.tensor([0.81]), narrow)
    assert float(loss) == pytest.approx(-math.log(0.6 + 1e-4))
