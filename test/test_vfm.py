"""The VFM recipe's parts: relative depth sources, photometric warping, the two calibration
stages, pixel semantics, back-projection, and the strategy's independence from LiDAR."""

import numpy as np
import pytest
import torch

from pop3d_ros.data.classes import CLASS_ID, EMPTY, IGNORE
from pop3d_ros.data.synthetic import SyntheticWorld, WorldConfig
from pop3d_ros.geometry.grid import VoxelGrid
from pop3d_ros.vfm.calibrate import CalibrationConfig, DepthCalibrator, normalise_relative
from pop3d_ros.vfm.depth_source import (
    DepthAnythingConfig,
    DepthAnythingSource,
    SyntheticVFM,
    SyntheticVFMConfig,
)
from pop3d_ros.vfm.photometric import photometric_error, warp_coordinates
from pop3d_ros.vfm.pseudo_labels import back_project, pseudo_labels
from pop3d_ros.vfm.semantics import PixelSemantics

CLEAN = SyntheticVFMConfig(distortion=0.0, noise_std=0.0, edge_blur_px=0.0)


@pytest.fixture(scope="module")
def drive():
    """Three consecutive frames of one synthetic drive (a seed no training uses)."""
    world = SyntheticWorld(WorldConfig(seed=901, num_frames=3))
    frames = {world.token(i): world.sample(i, occupancy=False) for i in range(3)}
    return world, frames


def test_synthetic_vfm_is_an_unknown_affine_map_of_inverse_depth(drive):
    world, frames = drive
    s = frames[world.token(1)]
    rel = SyntheticVFM(CLEAN)(s)
    assert rel.shape == s["depth"].shape and rel.dtype == np.float32
    inv = np.where(np.isfinite(s["depth"]), 1.0 / s["depth"], 0.0)
    fits = []
    for k in range(6):  # without distortion and noise: exactly affine per image
        A = np.stack([inv[k].ravel(), np.ones(inv[k].size)], 1)
        coef, res, *_ = np.linalg.lstsq(A, rel[k].ravel().astype(np.float64), rcond=None)
        assert np.abs(A @ coef - rel[k].ravel()).max() < 1e-3 * np.abs(rel[k]).max()
        fits.append(coef)
    assert np.std([c[0] for c in fits]) > 0  # the scale differs per image
    # the default model is not affine: distortion and noise leave residuals
    noisy = SyntheticVFM()(s)[0].ravel().astype(np.float64)
    A = np.stack([inv[0].ravel(), np.ones(inv[0].size)], 1)
    coef = np.linalg.lstsq(A, noisy, rcond=None)[0]
    assert np.abs(A @ coef - noisy).max() > 1e-2 * np.abs(noisy).max()
    np.testing.assert_array_equal(SyntheticVFM()(s), SyntheticVFM()(s))  # per-frame seeded


def _tiny_depth_anything(path):
    from transformers import DepthAnythingConfig as HFConfig
    from transformers import DepthAnythingForDepthEstimation, Dinov2Config

    torch.manual_seed(0)
    backbone = Dinov2Config(
        hidden_size=32,
        num_hidden_layers=4,
        num_attention_heads=2,
        intermediate_size=64,
        image_size=56,
        patch_size=14,
        out_features=["stage1", "stage2", "stage3", "stage4"],
        reshape_hidden_states=False,
    )
    cfg = HFConfig(
        backbone_config=backbone,
        reassemble_hidden_size=32,
        neck_hidden_sizes=[8, 16, 32, 32],
        fusion_hidden_size=16,
        head_hidden_size=8,
    )
    model = DepthAnythingForDepthEstimation(cfg).eval()
    model.save_pretrained(path)
    return model


def test_depth_anything_loads_from_a_local_directory(tmp_path):
    model = _tiny_depth_anything(tmp_path / "da")
    src = DepthAnythingSource(DepthAnythingConfig(weights=str(tmp_path / "da"), input_height=42))
    images = np.random.default_rng(0).integers(0, 255, (2, 30, 50, 3), dtype=np.uint8)
    out = src({"images": images})
    assert out.shape == (2, 30, 50) and np.isfinite(out).all()
    assert src.input_size(30, 50) == (42, 70)  # multiples of 14, aspect kept
    # the loader's weights are the saved ones: same output as the model that was saved
    x = torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255
    x = torch.nn.functional.interpolate(x, size=(42, 70), mode="bicubic", align_corners=False)
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    with torch.no_grad():
        ref = model(pixel_values=(x.clamp(0, 1) - mean) / std).predicted_depth
    ref = torch.nn.functional.interpolate(ref[:, None], size=(30, 50), mode="bilinear")[:, 0]
    np.testing.assert_allclose(out, ref.numpy(), rtol=1e-4, atol=1e-5)
    with pytest.raises(FileNotFoundError, match="config.json"):
        DepthAnythingSource(DepthAnythingConfig(weights=str(tmp_path / "missing")))


def test_warp_of_a_plane_shifts_by_focal_times_baseline_over_depth():
    f, D, b = 100.0, 20.0, 2.0
    K = torch.tensor([[f, 0, 31.5], [0, f, 15.5], [0, 0, 1.0]])[None]
    T = torch.eye(4)[None]
    T[0, 0, 3] = -b  # the source camera sits b metres to the right (+x) of the target
    uv, front = warp_coordinates(torch.full((1, 32, 64), D), K, K, T)
    v, u = torch.meshgrid(torch.arange(32.0), torch.arange(64.0), indexing="ij")
    assert front.all()
    torch.testing.assert_close(uv[0, ..., 0], u - f * b / D)
    torch.testing.assert_close(uv[0, ..., 1], v)
    img = torch.rand(1, 3, 16, 16)
    assert photometric_error(img, img).abs().max() < 1e-6
    assert photometric_error(img, torch.rand(1, 3, 16, 16)).mean() > 0.1


def _fetch(frames):
    def fetch(token):
        return frames[token]

    return fetch


def test_stage1_finds_the_scene_scale_and_stage2_lowers_the_error(drive):
    world, frames = drive
    s = frames[world.token(1)]
    cfg = CalibrationConfig(iterations=15, lr=5e-3, num_scales=48, downsample=2)
    cal = DepthCalibrator(SyntheticVFM(CLEAN), lambda x: x["semantic"], cfg)
    out = cal(s, _fetch(frames))
    assert out["depth"].shape == (6, 72, 128)
    # the oracle scale of the front camera: least squares of true inverse depth on r
    r = normalise_relative(SyntheticVFM(CLEAN)(s))[0, ::2, ::2]
    d = s["depth"][0, ::2, ::2]
    m = np.isfinite(d) & (d < 40) & (s["semantic"][0, ::2, ::2] != IGNORE)
    A = np.stack([r[m], np.ones(m.sum())], 1)
    slope = np.linalg.lstsq(A, 1.0 / d[m], rcond=None)[0][0]
    step = (cfg.max_scale / cfg.min_scale) ** (1 / (cfg.num_scales - 1))
    assert abs(np.log(out["scene_scale"][0] * slope)) < 2.5 * np.log(step)
    assert (out["final_error"] <= out["stage1_error"] + 1e-6).all()
    assert np.isfinite(out["depth"]).all() and out["depth"].min() >= cfg.min_depth - 1e-4
    # searching offsets too: a superset of candidates, so never a worse stage-1 error
    joint = DepthCalibrator(
        SyntheticVFM(CLEAN),
        lambda x: x["semantic"],
        CalibrationConfig(iterations=0, num_scales=48, offsets=(0.0, 0.2)),
    )
    both = joint(s, _fetch(frames))
    assert (both["stage1_error"] <= out["stage1_error"] + 1e-6).all()
    assert np.isclose(both["offset"][:, None], [0.0, 0.2]).any(1).all()  # no stage 2


def test_calibration_is_cached_per_frame(drive, tmp_path):
    world, frames = drive
    calls = []

    def source(sample):
        calls.append(sample["token"])
        return SyntheticVFM(CLEAN)(sample)

    source.describe = lambda: {"kind": "counting"}
    cfg = CalibrationConfig(iterations=1, num_scales=4)
    cal = DepthCalibrator(source, lambda x: x["semantic"], cfg, tmp_path)
    first = cal(frames[world.token(0)], _fetch(frames))  # first frame: sources are f1, f2
    again = DepthCalibrator(source, lambda x: x["semantic"], cfg, tmp_path)(
        frames[world.token(0)], _fetch(frames)
    )
    assert calls == [world.token(0)]
    np.testing.assert_array_equal(first["depth"], again["depth"])
    with pytest.raises(ValueError, match="other settings"):
        DepthCalibrator(source, None, CalibrationConfig(iterations=2, num_scales=4), tmp_path)


def test_pixel_semantics_pick_the_class_and_ignore_sky_and_empty():
    rng = np.random.default_rng(0)
    emb = rng.standard_normal((16, 32)).astype(np.float32)
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    sky = rng.standard_normal(32).astype(np.float32)
    sem = PixelSemantics([e[None] for e in emb], sky[None])
    feats = np.stack([emb[3], emb[10] * 2 + 0.01, np.zeros(32), sky]).astype(np.float32)
    np.testing.assert_array_equal(sem.classify(feats), [3, 10, IGNORE, IGNORE])
    grid = feats.T.reshape(1, 32, 2, 2)  # 2 x 2 patches -> 4 x 6 pixels
    out = sem(grid, (4, 6))
    assert out.shape == (1, 4, 6)
    assert out[0, 0, 0] == 3 and out[0, 0, 5] == 10 and out[0, 3, 0] == IGNORE


def test_back_projection_of_a_wall_marks_it_occupied_and_the_ray_free():
    grid = VoxelGrid((-10.0, 10.0), (-10.0, 10.0), (-2.0, 2.0), (20, 20, 4))
    # one forward-looking camera at the ego origin, optical z = ego x
    c2e = np.array([[0, 0, 1, 0], [-1, 0, 0, 0], [0, -1, 0, 0.5], [0, 0, 0, 1.0]], np.float32)
    K = np.array([[4.0, 0, 1.5], [0, 4.0, 1.5], [0, 0, 1]], np.float32)
    depth = np.full((1, 4, 4), 6.5, np.float32)
    pts, cams, uv = back_project(depth, K[None], c2e[None], np.ones((1, 4, 4), bool))
    assert pts.shape == (16, 3)
    np.testing.assert_allclose(pts[:, 0], 6.5, atol=1e-5)  # 6.5 m ahead along ego x
    # pixel (u, v) = (2, 1): x_cam = 0.5 / 4 * 6.5 right, y_cam = 0.5 / 4 * 6.5 up
    np.testing.assert_allclose(pts[6], [6.5, -0.8125, 0.5 + 0.8125], atol=1e-5)
    sample = {"images": np.zeros((1, 4, 4, 3), np.uint8), "cam_to_ego": c2e[None]}
    classes = np.full((1, 4, 4), CLASS_ID["manmade"], np.uint8)
    classes[0, 0, 0] = IGNORE  # a sky pixel: not back-projected
    tf = np.zeros((1, 8, 1, 1), np.float32)
    tf[0, 2] = 1.0
    lab = pseudo_labels(sample, {"depth": depth, "intrinsics": K[None]}, classes, tf, grid)
    occ, sem = lab["occ_target"], lab["semantic"]
    wall = grid.points_to_index(np.array([[6.5, -0.8125, 1.3125]]))[0][0]
    near = grid.points_to_index(np.array([[3.25, -0.4, 0.9]]))[0][0]  # halfway along its ray
    behind = grid.points_to_index(np.array([[8.5, -1.0, 1.4]]))[0][0]
    assert occ[tuple(wall)] == 1 and sem[tuple(wall)] == CLASS_ID["manmade"]
    assert occ[tuple(near)] == 0 and sem[tuple(near)] == EMPTY
    assert occ[tuple(behind)] == IGNORE
    torch.testing.assert_close(lab["features"][:, 2], torch.ones(len(lab["features"])))
    assert lab["weight"].sum() == 12  # 15 kept pixels, the top row (z = 2.94 m) above the grid


class NoLidar(dict):
    """A sample whose LiDAR cannot be read."""

    def __getitem__(self, key):
        if key.startswith("lidar"):
            raise AssertionError(f"the vfm recipe read {key!r}")
        return super().__getitem__(key)

    def get(self, key, default=None):
        if key.startswith("lidar"):
            raise AssertionError(f"the vfm recipe read {key!r}")
        return super().get(key, default)

    def __iter__(self):
        raise AssertionError("the vfm recipe iterated over the sample's keys")

    def items(self):
        raise AssertionError("the vfm recipe iterated over the sample's items")

    def values(self):
        raise AssertionError("the vfm recipe iterated over the sample's values")


def test_vfm_strategy_never_reads_lidar(drive, tmp_path):
    from pop3d_ros.data.synthetic_teacher import SyntheticTeacher
    from pop3d_ros.model.config import get_preset
    from pop3d_ros.text.synthetic_text import SyntheticTextSpace
    from pop3d_ros.training.strategies.vfm import VFMStrategy
    from pop3d_ros.vfm.labeler import VFMLabeler
    from pop3d_ros.vfm.semantics import pixel_semantics_from_encoder

    world, frames = drive
    guarded = {t: NoLidar(s) for t, s in frames.items()}
    cfg = get_preset("cpu-small")
    space = SyntheticTextSpace()
    labeler = VFMLabeler(
        SyntheticTeacher(space),
        pixel_semantics_from_encoder(space),
        SyntheticVFM(),
        _fetch(guarded),
        cfg.voxel_grid,
        tmp_path,
        CalibrationConfig(iterations=3, num_scales=8),
    )
    item = VFMStrategy(labeler, max_feature_voxels=500).prepare(guarded[world.token(1)], cfg)
    occ = item["occ_target"].numpy()
    assert occ.shape == tuple(cfg.voxel_grid.shape)
    assert (occ == 1).sum() > 100 and (occ == 0).sum() > (occ == 1).sum()
    assert item["voxel_index"].numel() == 500 and item["features"].shape == (500, 512)
    assert (occ.reshape(-1)[item["voxel_index"].numpy()] == 1).all()
    assert (tmp_path / "labels").is_dir() and any((tmp_path / "depth").glob("*.npz"))
    # the guard works: the LiDAR recipe on the same sample trips it
    from pop3d_ros.training.strategies.pop3d import Pop3DStrategy

    with pytest.raises(AssertionError, match="lidar_points"):
        Pop3DStrategy(SyntheticTeacher(space)).prepare(guarded[world.token(1)], cfg)
