"""RenderOcc's ray sampling as published (`--ray-sampling renderocc`) and ray weights that
cannot overflow: the weighted draw on logarithms, every LiDAR-pixel ray of the frame and its
neighbours re-drawn per step, the class balance over the training set, the published cut."""

import math
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))

from train_fixtures import tiny_model_config, tiny_sample  # noqa: E402

from pop3d_ros.data.classes import CLASS_ID, NUM_CLASSES  # noqa: E402
from pop3d_ros.data.synthetic_teacher import SyntheticTeacher  # noqa: E402
from pop3d_ros.training.frames import PreparedFrames, prepare_frames  # noqa: E402
from pop3d_ros.training.rays import frame_rays, select_rays, weighted_draw  # noqa: E402
from pop3d_ros.training.strategies.render import RenderStrategy  # noqa: E402

CAR, ROAD = CLASS_ID["car"], CLASS_ID["driveable_surface"]


def _singleton_pool(n=18_000):
    cls = torch.full((n,), ROAD, dtype=torch.uint8)
    cls[1234] = CAR
    return {"ray_time": torch.zeros(n, dtype=torch.int8), "ray_class": cls}


def test_class_balance_of_an_18000_ray_pool_with_one_singleton_overflows_float32():
    # RenderOcc's formula as it is computed there (float32 exp, torch.multinomial): the
    # singleton's weight exp(0.005 * (17999 / 1 - 1)) = exp(89.99) is past float32's range.
    w = torch.ones(18_000)
    w[1234] = torch.exp(torch.tensor(0.005 * (17_999 / 1 - 1), dtype=torch.float32))
    assert math.isinf(float(w[1234]))
    with pytest.raises(RuntimeError):
        torch.multinomial(w, 2048, replacement=False)


def test_weighted_sampling_of_that_pool_draws_the_singleton_and_never_fails():
    g = torch.Generator().manual_seed(0)
    for _ in range(5):
        idx = select_rays(_singleton_pool(), aux=False, weighted=True, num_rays=2048, generator=g)
        assert idx.numel() == 2048 and idx.unique().numel() == 2048
        assert 1234 in idx.tolist()  # weight e^90 against 1: always among the drawn
    # the same with the counts over a whole training set, where the ratio is larger still
    counts = torch.zeros(NUM_CLASSES + 1, dtype=torch.int64)
    counts[ROAD], counts[CAR] = 10**9, 1
    idx = select_rays(_singleton_pool(), aux=False, weighted=True, num_rays=10, class_counts=counts)
    assert 1234 in idx.tolist() and idx.numel() == 10


def test_weighted_draw_matches_multinomial_without_replacement():
    w = torch.tensor([1.0, 2.0, 3.0, 4.0, 0.0])
    g = torch.Generator().manual_seed(1)
    n = 4000
    ours = np.zeros(5)
    ref = np.zeros(5)
    for _ in range(n):
        ours[weighted_draw(torch.log(w), 2, g).numpy()] += 1
        ref[torch.multinomial(w, 2, replacement=False, generator=g).numpy()] += 1
    assert ours[4] == 0 and ref[4] == 0
    # inclusion probabilities of two draws without replacement, exact for these weights
    p = w.double() / w.sum()
    exact = [
        float(p[i] + sum(p[j] * p[i] / (1 - p[j]) for j in range(4) if j != i)) for i in range(4)
    ]
    assert np.allclose(ours[:4] / n, exact, atol=0.03)
    assert np.allclose(ref[:4] / n, exact, atol=0.03)
    assert weighted_draw(torch.log(w), 10).tolist() == [0, 1, 2, 3]  # fewer than k usable


def _classify(feats):
    return torch.tensor([CAR if i % 3 == 0 else ROAD for i in range(len(feats))])


def _density_cfg():
    cfg = tiny_model_config()
    cfg.heads.occupancy_output = "density"
    return cfg


def _drive():
    """Four frames of one drive, the ego 1 m further along x each."""
    out = {}
    for i in range(4):
        s = tiny_sample(i)
        s["ego_to_world"] = s["ego_to_world"].copy()
        s["ego_to_world"][0, 3] = float(i)
        s.update(
            token=f"f{i}", prev=f"f{i - 1}" if i else None, next=f"f{i + 1}" if i < 3 else None
        )
        out[f"f{i}"] = s
    return out


@pytest.fixture(scope="module")
def renderocc_frames(tmp_path_factory):
    cfg = _density_cfg()
    samples = _drive()
    strategy = RenderStrategy(
        SyntheticTeacher(),
        _classify,
        num_rays=100,
        ray_sampling="renderocc",
        aux_offsets=(-3, -2, -1, 1, 2, 3),
        aux=True,
        weighted=True,
        grid=cfg.voxel_grid,
    )
    root = tmp_path_factory.mktemp("renderocc_frames")
    keys = list(samples)
    prepare_frames(keys, samples.__getitem__, lambda s: strategy.prepare(s, cfg), root)
    strategy.attach_frames(root, keys)
    return PreparedFrames(root, keys), strategy, samples


def test_prepared_frame_holds_every_ray_of_its_own_and_no_features(renderocc_frames):
    ds, strategy, samples = renderocc_frames
    cfg = _density_cfg()
    item = ds[1]
    every = frame_rays(samples["f1"], strategy.teacher(samples["f1"])["features"], _classify,
                       cfg.voxel_grid, max_rays=0)  # fmt: skip
    assert item["ray_depth"].numel() == every["ray_depth"].numel() > 100
    assert "ray_features" not in item and item["teacher_features"].dtype == torch.float16
    assert (item["frame_prev"], item["frame_key"], item["frame_next"]) == ("f0", "f1", "f2")


def test_class_counts_are_over_the_whole_training_set(renderocc_frames):
    ds, strategy, samples = renderocc_frames
    expected = np.zeros(NUM_CLASSES + 1, np.int64)
    for s in samples.values():
        cls = _classify(torch.zeros(int(ds[int(s["token"][1])]["ray_depth"].numel()), 1))
        expected += np.bincount(cls.numpy(), minlength=NUM_CLASSES + 1)
    assert strategy.class_counts.tolist() == expected.tolist()


def test_candidates_are_the_frame_and_its_neighbours_moved_into_its_ego_frame(renderocc_frames):
    ds, strategy, samples = renderocc_frames
    grid = _density_cfg().voxel_grid
    cand, sources = strategy.ray_frames.candidates(ds[0], strategy.aux_offsets, grid)
    # frame 0 of a four-frame drive: itself and the three frames after it, none before
    assert sorted(set(cand["ray_time"].tolist())) == [0, 1, 2, 3] and len(sources) == 4
    for off in (1, 3):
        sel = cand["ray_time"] == off
        ends = cand["ray_origin"][sel] + cand["ray_dir"][sel] * cand["ray_depth"][sel, None]
        # frame `off` lies `off` metres along x: its points move by +off in frame 0
        pts = torch.from_numpy(samples[f"f{off}"]["lidar_points"]) + torch.tensor([off, 0, 0.0])
        d = torch.cdist(ends, pts, compute_mode="donot_use_mm_for_euclid_dist").min(1).values
        assert d.max() < 1e-3
        _, inside = grid.points_to_index(ends.numpy())
        assert inside.all()


def test_every_step_redraws_by_weight_with_features_from_the_rays_own_frame(renderocc_frames):
    ds, strategy, samples = renderocc_frames
    cfg = _density_cfg()
    n_vox = cfg.voxel_grid.num_voxels
    a = strategy.collate([ds[1]], n_vox)
    b = strategy.collate([ds[1]], n_vox)
    assert a["ray_depth"].numel() == 100 == b["ray_depth"].numel()
    assert not torch.equal(a["ray_depth"], b["ray_depth"])  # re-drawn, not a fixed pool
    times = torch.cat([strategy.collate([ds[1]], n_vox)["ray_time"] for _ in range(10)])
    assert set(times.tolist()) == {-1, 0, 1, 2}
    # adjacent rays on a movable class are never drawn
    assert not bool(((a["ray_time"] != 0) & (a["ray_class"] == CAR)).any())
    # each drawn ray's feature is the teacher's at its pixel in its own frame
    for off in (0, 2):
        s = samples[f"f{1 + off}"]
        ref = frame_rays(s, strategy.teacher(s)["features"], _classify, cfg.voxel_grid, max_rays=0)
        sel = a["ray_time"] == off
        if not bool(sel.any()):
            continue
        # moved rays keep their depth, and a shift along x leaves their directions as they are
        key = torch.cat([ref["ray_depth"][:, None], ref["ray_dir"]], 1)
        got = torch.cat([a["ray_depth"][sel, None], a["ray_dir"][sel]], 1)
        dist, match = torch.cdist(got, key, compute_mode="donot_use_mm_for_euclid_dist").min(1)
        assert dist.max() < 1e-4, (off, dist.max())
        assert torch.allclose(
            a["ray_features"][sel].float(), ref["ray_features"][match].float(), atol=1e-3
        )


def test_renderocc_sampling_needs_attached_frames(renderocc_frames):
    ds, strategy, _ = renderocc_frames
    cfg = _density_cfg()
    bare = RenderStrategy(
        strategy.teacher, _classify, ray_sampling="renderocc", grid=cfg.voxel_grid
    )
    with pytest.raises(RuntimeError, match="attach_frames"):
        bare.collate([ds[1]], cfg.voxel_grid.num_voxels)
    with pytest.raises(ValueError, match="pool or renderocc"):
        RenderStrategy(strategy.teacher, _classify, ray_sampling="all", grid=cfg.voxel_grid)


def test_the_published_density_cut_is_renderocc_raw_8_5():
    from pop3d_ros.training.render import density_threshold_value
    from pop3d_ros.training.settings import ModelChoice

    # RenderOcc renders sigma = softplus(raw + log(1e-6 / (1 - 1e-6))) and cuts raw > 8.5
    raw = 8.5
    shift = np.log(1e-6) - np.log1p(-1e-6)
    expected = np.log1p(np.exp(raw + shift))
    assert density_threshold_value("renderocc") == pytest.approx(expected, rel=1e-12)
    assert 0.0048 < expected < 0.0050
    assert density_threshold_value("0.25") == 0.25
    # the training option of the same name
    cfg = ModelChoice(density_threshold="renderocc").build("render")
    assert cfg.heads.density_threshold == pytest.approx(expected, rel=1e-12)
