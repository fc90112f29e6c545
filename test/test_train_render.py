"""The rendering strategy (RenderOcc, label-free): rays, aux frames, weighted sampling,
training with progress and resume on tiny frames."""

import sys
from pathlib import Path

import numpy as np
import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))

from train_fixtures import tiny_model_config, tiny_sample  # noqa: E402

from pop3d_ros.data.classes import CLASS_ID  # noqa: E402
from pop3d_ros.data.synthetic_teacher import SyntheticTeacher  # noqa: E402
from pop3d_ros.model.pop3d import build_model  # noqa: E402
from pop3d_ros.training.config import TrainConfig  # noqa: E402
from pop3d_ros.training.frames import PreparedFrames, prepare_frames  # noqa: E402
from pop3d_ros.training.loop import train  # noqa: E402
from pop3d_ros.training.rays import (  # noqa: E402
    class_balance,
    frame_rays,
    relative_pose,
    select_rays,
    unseen_voxels,
)
from pop3d_ros.training.strategies.render import RenderStrategy  # noqa: E402

CAR, ROAD = CLASS_ID["car"], CLASS_ID["driveable_surface"]


def _shifted(seed, dx):
    """tiny_sample(seed) with the ego dx metres further along world x."""
    s = tiny_sample(seed)
    s["ego_to_world"] = s["ego_to_world"].copy()
    s["ego_to_world"][0, 3] = dx
    return s


def _classify(feats):
    # stand-in for the teacher's zero-shot class: alternate car / road by row
    return torch.tensor([CAR if i % 2 else ROAD for i in range(len(feats))])


def _density_cfg():
    cfg = tiny_model_config()
    cfg.heads.occupancy_output = "density"
    return cfg


def test_rays_aim_at_the_lidar_points_in_the_current_frame():
    cfg = _density_cfg()
    cur, adj = _shifted(1, 0.0), _shifted(2, 1.5)
    teacher = SyntheticTeacher()
    tf = teacher(adj)["features"]
    to_cur = relative_pose(cur, adj)
    assert np.allclose(to_cur[:3, 3], [1.5, 0, 0])
    r = frame_rays(adj, tf, _classify, cfg.voxel_grid, to_current=to_cur, max_rays=0, time=1)
    assert r["ray_dir"].norm(dim=-1).sub(1).abs().max() < 1e-5
    ends = r["ray_origin"] + r["ray_dir"] * r["ray_depth"][:, None]
    pts = torch.from_numpy(adj["lidar_points"]) + torch.tensor([1.5, 0.0, 0.0])
    # every ray ends on one of the (moved) LiDAR points, inside the current grid
    d = torch.cdist(ends, pts, compute_mode="donot_use_mm_for_euclid_dist").min(1).values
    assert d.max() < 1e-3
    _, inside = cfg.voxel_grid.points_to_index(ends.numpy())
    assert inside.all()
    # origins = camera centres moved by the ego shift
    cams = torch.from_numpy(adj["cam_to_ego"][:, :3, 3]) + torch.tensor([1.5, 0.0, 0.0])
    assert (
        torch.cdist(r["ray_origin"], cams, compute_mode="donot_use_mm_for_euclid_dist")
        .min(1)
        .values.max()
        < 1e-5
    )
    assert set(r["ray_time"].tolist()) == {1}
    # the 2D class maps give the pixel's class (the fixture splats each point's class)
    assert set(r["ray_semantic"].tolist()) <= {CAR, ROAD, 255}
    assert (r["ray_semantic"] != 255).float().mean() > 0.5
    capped = frame_rays(adj, tf, _classify, cfg.voxel_grid, to_current=to_cur, max_rays=50)
    assert len(capped["ray_depth"]) == 50


def _pool():
    n = 12
    time = torch.tensor([0] * 4 + [-1] * 4 + [1] * 4, dtype=torch.int8)
    cls = torch.tensor([ROAD, CAR, ROAD, ROAD] * 3, dtype=torch.uint8)
    return {"ray_time": time, "ray_class": cls, "ray_depth": torch.arange(n).float()}


def test_select_rays_current_frame_aux_and_dynamic_rule():
    pool = _pool()
    assert select_rays(pool, aux=False, weighted=False, num_rays=100).tolist() == [0, 1, 2, 3]
    with_aux = select_rays(pool, aux=True, weighted=False, num_rays=100).tolist()
    # adjacent rays on a movable class (car) are dropped, the current frame's car is kept
    assert with_aux == [0, 1, 2, 3, 4, 6, 7, 8, 10, 11]


def test_weighted_sampling_draws_without_replacement_by_weight():
    pool = _pool()
    g = torch.Generator().manual_seed(0)
    picks = [
        select_rays(pool, aux=True, weighted=True, num_rays=3, generator=g).tolist()
        for _ in range(3000)
    ]
    assert all(len(set(p)) == 3 for p in picks)
    counts = np.bincount(np.concatenate(picks), minlength=12)
    assert counts[5] == 0 and counts[9] == 0  # dynamic rays in adjacent frames
    # current-frame rays (weight 1) are drawn more often than adjacent ones (0.3)
    assert counts[[0, 2, 3]].mean() > 1.5 * counts[[4, 6, 7, 8, 10, 11]].mean()


def test_class_balance_is_renderocc_formula():
    cls = torch.tensor([ROAD] * 8 + [CAR] * 2)
    w = class_balance(cls)
    assert float(w[0]) == pytest.approx(1.0)
    assert float(w[-1]) == pytest.approx(np.exp(0.005 * (8 / 2 - 1)))


@pytest.fixture(scope="module")
def render_frames(tmp_path_factory):
    cfg = _density_cfg()
    samples = {
        "f0": _shifted(0, 0.0) | {"token": "f0", "next": "f1"},
        "f1": _shifted(1, 1.0) | {"token": "f1", "prev": "f0", "next": "f2"},
        "f2": _shifted(2, 2.0) | {"token": "f2", "prev": "f1"},
    }

    def neighbour(sample, off):
        tok = sample["prev" if off < 0 else "next"]
        return samples[tok] if tok else None

    strategy = RenderStrategy(
        SyntheticTeacher(),
        _classify,
        neighbour=neighbour,
        num_rays=64,
        ray_pool=256,
        feature_weight=16.0,
    )
    root = tmp_path_factory.mktemp("render_frames")
    prepare_frames(list(samples), samples.__getitem__, lambda s: strategy.prepare(s, cfg), root)
    return PreparedFrames(root), strategy


def test_prepared_frames_hold_current_and_adjacent_rays(render_frames):
    ds, _ = render_frames
    assert sorted(set(ds[0]["ray_time"].tolist())) == [0, 1]
    assert sorted(set(ds[1]["ray_time"].tolist())) == [-1, 0, 1]
    assert ds[1]["ray_features"].shape[1] == 512
    assert ds[1]["voxel_index"].numel() == 0  # render alone: no voxel feature targets


def test_collate_switches_aux_and_weighting(render_frames):
    ds, strategy = render_frames
    n_vox = _density_cfg().voxel_grid.num_voxels
    items = [ds[1], ds[2]]
    plain = strategy.collate(items, n_vox)
    assert set(plain["ray_time"].tolist()) == {0}
    assert plain["ray_batch"].tolist().count(0) == int((ds[1]["ray_time"] == 0).sum())
    strategy.aux = True
    aux = strategy.collate(items, n_vox)
    strategy.weighted = True
    wrs = strategy.collate(items, n_vox)
    strategy.aux = strategy.weighted = False
    assert len(aux["ray_depth"]) > len(plain["ray_depth"])
    assert len(wrs["ray_depth"]) == 2 * 64


def _train(render_frames, out, steps, stop_after=None, resume=False):
    ds, strategy = render_frames
    cfg = _density_cfg()
    torch.manual_seed(0)
    model = build_model(cfg)
    tcfg = TrainConfig(
        steps=steps,
        lr=1e-2,
        warmup_steps=2,
        checkpoint_every=3,
        log_every=1,
        backbone_lr_mult=1.0,
        strategy="render",
    )
    summary = train(
        model,
        cfg,
        ds,
        strategy,
        tcfg,
        out,
        resume=resume,
        text_space={"kind": "synthetic"},
        stop_after=stop_after,
        log=lambda m: None,
    )
    return model, summary


def test_render_training_lowers_depth_loss_and_resumes(render_frames, tmp_path):
    _, s = _train(render_frames, tmp_path / "full", steps=30)
    depth = [v["depth"] for _, v in s["history"]]
    assert np.mean(depth[-5:]) < 0.8 * np.mean(depth[:5]), depth
    full, s_full = _train(render_frames, tmp_path / "a", steps=6)
    _train(render_frames, tmp_path / "b", steps=6, stop_after=3)
    resumed, s_res = _train(render_frames, tmp_path / "b", steps=6, resume=True)
    assert s_res["step"] == 6
    assert s_res["history"][-1][1]["lr"] == pytest.approx(s_full["history"][-1][1]["lr"])


@pytest.mark.parametrize("depth_bins", [0, 8], ids=["bilinear", "depth8"])
def test_pop3d_render_adds_the_lidar_occupancy_loss(render_frames, depth_bins):
    ds, strategy = render_frames
    cfg = _density_cfg()
    cfg.lifting.depth_bins = depth_bins  # a depth-bin lifting adds its LiDAR depth term
    both = RenderStrategy(
        strategy.teacher, _classify, with_occupancy=True, num_rays=64, ray_pool=64
    )
    item = both.prepare(_shifted(1, 0.0), cfg)
    assert item["voxel_index"].numel() > 0 and both.name == "pop3d_render"
    from pop3d_ros.model.inputs import SamplingCache
    from pop3d_ros.training.loop import TrainWrapper

    model = build_model(cfg)
    batch = both.collate([item], cfg.voxel_grid.num_voxels)
    calib = SamplingCache(cfg).batch(batch["intrinsics"], batch["cam_to_ego"])
    out = TrainWrapper(model, both)(batch["images"].float() / 255, *calib, batch)
    terms = both.losses(out, batch)
    assert {"occ", "ft_vox", "depth", "ft", "dist", "entropy"} <= set(terms)
    assert ("lift_depth" in terms) == bool(depth_bins)
    if depth_bins:
        assert batch["depth_target"].shape == (1, cfg.num_cameras, *cfg.feature_hw)
        assert bool((batch["depth_target"] != 255).any())
        assert terms["lift_depth"].item() > 0
    terms["loss"].backward()
    assert model.occupancy_head.out.weight.grad.abs().sum() > 0
    assert model.lang_head.out.weight.grad.abs().sum() > 0


def _terms(strategy, item, cfg, seed=0):
    from pop3d_ros.model.inputs import SamplingCache
    from pop3d_ros.training.loop import TrainWrapper

    torch.manual_seed(seed)
    model = build_model(cfg)
    batch = strategy.collate([item], cfg.voxel_grid.num_voxels)
    calib = SamplingCache(cfg).batch(batch["intrinsics"], batch["cam_to_ego"])
    out = TrainWrapper(model, strategy)(batch["images"].float() / 255, *calib, batch)
    return model, out, strategy.losses(out, batch)


def test_sparsity_prior_adds_mean_voxel_opacity_to_the_loss(render_frames):
    from pop3d_ros.model.pop3d import density_from_logits

    ds, strategy = render_frames
    cfg = _density_cfg()
    plain = RenderStrategy(strategy.teacher, _classify, num_rays=64, feature_weight=16.0)
    sparse = RenderStrategy(
        strategy.teacher, _classify, num_rays=64, feature_weight=16.0, sparsity_weight=2.0
    )
    _, _, t_plain = _terms(plain, ds[1], cfg)
    model, out, t_sparse = _terms(sparse, ds[1], cfg)
    assert "sparse" not in t_plain
    # the term from the model's own logits, computed here from the definition
    sigma = density_from_logits(out["occupancy_logits"].detach().float(), cfg.heads)
    expected = (1 - torch.exp(-sigma.clamp_min(0))).mean()
    assert t_sparse["sparse"].item() == pytest.approx(float(expected), rel=1e-5)
    assert (t_sparse["loss"] - t_plain["loss"]).item() == pytest.approx(
        2.0 * float(expected), rel=1e-4
    )
    t_sparse["loss"].backward()
    assert model.occupancy_head.out.weight.grad.abs().sum() > 0


def _density_after_training(render_frames, out, **weights):
    """sigma (X, Y, Z) of frame 1 and its collated batch after 12 training steps with the
    fixture's strategy's `weights` (attribute -> value) set for the run, reset to 0 after."""
    from pop3d_ros.model.inputs import SamplingCache
    from pop3d_ros.model.pop3d import density_from_logits

    ds, strategy = render_frames
    cfg = _density_cfg()
    for name, value in weights.items():
        setattr(strategy, name, value)
    try:
        model, _ = _train(render_frames, out, steps=12)
    finally:
        for name in weights:
            setattr(strategy, name, 0.0)
    model.eval()
    batch = strategy.collate([ds[1]], cfg.voxel_grid.num_voxels)
    calib = SamplingCache(cfg).batch(batch["intrinsics"], batch["cam_to_ego"])
    with torch.no_grad():
        logits = model(batch["images"].float() / 255, *calib)["occupancy_logits"]
    return density_from_logits(logits.float(), cfg.heads)[0], batch


def test_sparsity_prior_empties_voxels_no_ray_reaches(render_frames, tmp_path):
    from pop3d_ros.training.rays import ray_observations

    ds, strategy = render_frames
    cfg = _density_cfg()
    unseen = torch.from_numpy(ray_observations(ds[1], cfg.voxel_grid) == -1)
    assert unseen.float().mean() > 0.3  # most of the grid is below/behind/above the returns

    def unseen_density(weight):
        sigma, _ = _density_after_training(
            render_frames, tmp_path / f"w{weight}", sparsity_weight=weight
        )
        sigma = sigma.reshape(-1)
        return float((1 - torch.exp(-sigma[unseen].clamp_min(0))).mean())

    assert unseen_density(5.0) < 0.5 * unseen_density(0.0)


def test_unseen_voxels_are_those_no_candidate_ray_crosses_or_ends_in():
    from pop3d_ros.geometry.grid import VoxelGrid

    grid = VoxelGrid((0.0, 20.0), (-2.0, 2.0), (-2.0, 2.0), (20, 4, 4))  # 1 m voxels
    rays = {  # a current ray along +x ending at x = 10.5, an adjacent one ending at x = 4.5
        "ray_origin": torch.tensor([[0.5, 0.5, 0.5], [0.5, -1.5, -1.5]]),
        "ray_dir": torch.tensor([[1.0, 0.0, 0.0], [1.0, 0.0, 0.0]]),
        "ray_depth": torch.tensor([10.0, 4.0]),
        "ray_time": torch.tensor([0, 1], dtype=torch.int8),
    }
    unseen = unseen_voxels(rays, grid).reshape(grid.shape)
    seen = ~unseen
    assert seen[:11, 2, 2].all() and not seen[11:, 2, 2].any()  # crossed x 0..9, end x 10
    assert seen[:5, 0, 0].all() and not seen[5:, 0, 0].any()
    assert int(seen.sum()) == 11 + 5  # nothing else
    current = ~unseen_voxels(rays, grid, current_only=True).reshape(grid.shape)
    assert int(current.sum()) == 11 and not current[:, 0, 0].any()


def test_unseen_scope_takes_the_prior_over_voxels_no_ray_reaches(render_frames):
    from pop3d_ros.model.pop3d import density_from_logits
    from pop3d_ros.training.rays import ray_observations

    ds, strategy = render_frames
    cfg = _density_cfg()
    # "no ray reaches it", from the calibration's own ray walk (current frame: no aux rays)
    unseen = torch.from_numpy(ray_observations(ds[1], cfg.voxel_grid) == -1)
    assert 0.3 < float(unseen.float().mean()) < 1.0
    kw = dict(num_rays=64, feature_weight=16.0, sparsity_weight=2.0)
    scoped = RenderStrategy(
        strategy.teacher, _classify, sparsity_scope="unseen", grid=cfg.voxel_grid, **kw
    )
    whole = RenderStrategy(strategy.teacher, _classify, **kw)
    _, _, t_whole = _terms(whole, ds[1], cfg)
    model, out, t_scoped = _terms(scoped, ds[1], cfg)
    sigma = density_from_logits(out["occupancy_logits"].detach().float(), cfg.heads)
    alpha = (1 - torch.exp(-sigma.clamp_min(0))).reshape(-1)
    on_unseen, on_all = float(alpha[unseen].mean()), float(alpha.mean())
    assert abs(on_unseen - on_all) > 1e-4 * on_all  # the two scopes are told apart below
    assert t_scoped["sparse"].item() == pytest.approx(on_unseen, rel=1e-6)
    assert t_whole["sparse"].item() == pytest.approx(on_all, rel=1e-6)
    t_scoped["loss"].backward()
    assert model.occupancy_head.out.weight.grad.abs().sum() > 0


def test_unseen_scope_needs_the_grid():
    with pytest.raises(ValueError, match="grid"):
        RenderStrategy(None, _classify, sparsity_weight=1.0, sparsity_scope="unseen")
    with pytest.raises(ValueError, match="grid or unseen"):
        RenderStrategy(None, _classify, sparsity_scope="voxels")


def test_termination_term_gathers_ray_weight_in_the_return_voxel(render_frames, tmp_path):
    from pop3d_ros.training.render import render_rays

    ds, strategy = render_frames
    cfg = _density_cfg()
    grid = cfg.voxel_grid
    kw = dict(num_rays=64, feature_weight=16.0)
    _, _, t_plain = _terms(RenderStrategy(strategy.teacher, _classify, **kw), ds[1], cfg)
    weighted = RenderStrategy(strategy.teacher, _classify, termination_weight=3.0, **kw)
    _, _, t_term = _terms(weighted, ds[1], cfg)
    assert "term" not in t_plain and t_term["term"].item() > 0
    assert (t_term["loss"] - t_plain["loss"]).item() == pytest.approx(
        3.0 * t_term["term"].item(), rel=1e-4
    )

    def return_voxel_weight(weight):
        """Mean share of each current ray's rendering weight inside its LiDAR return's voxel
        after 12 steps, counted with the grid's own point -> voxel lookup."""
        sigma, batch = _density_after_training(
            render_frames, tmp_path / f"t{weight}", termination_weight=weight
        )
        o, d, depth = batch["ray_origin"], batch["ray_dir"], batch["ray_depth"].float()
        r = render_rays(sigma, o, d, grid)
        pts = (o[:, None] + d[:, None] * r["t"][None, :, None]).reshape(-1, 3).numpy()
        sample_voxel, _ = grid.points_to_index(pts)
        end_voxel, _ = grid.points_to_index((o + d * depth[:, None]).numpy())
        same = (sample_voxel.reshape(len(o), -1, 3) == end_voxel[:, None]).all(-1)
        return float((r["weights"] * torch.from_numpy(same)).sum(-1).mean())

    # 0.17 vs 0.09 at the time of writing: twelve steps of a tiny model
    assert return_voxel_weight(20.0) > 1.5 * return_voxel_weight(0.0)
