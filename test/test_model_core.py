"""Model core: configs/presets, lifting known answers, shapes/dtypes, gradients, latency."""

import json
import time

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from pop3d_ros.geometry.grid import VoxelGrid
from pop3d_ros.geometry.rig import load_rig
from pop3d_ros.model import ModelConfig, build_model, compute_sampling, get_preset
from pop3d_ros.model.flops import estimate_gflops
from pop3d_ros.model.heads import MLPHead
from pop3d_ros.model.lifting import BilinearLifting


def _sampling(cfg):
    h, w = cfg.image_size
    cams = load_rig(width=w, height=h)
    grid, mask = compute_sampling(cams, cfg.voxel_grid, cfg.feature_hw, cfg.image_size)
    return torch.from_numpy(grid)[None], torch.from_numpy(mask)[None]


@pytest.fixture(scope="module")
def small():
    torch.manual_seed(0)
    cfg = get_preset("cpu-small")
    return cfg, build_model(cfg), _sampling(cfg)


# ---------------------------------------------------------------- config
@pytest.mark.parametrize("name", ["pop3d-base", "cpu-small"])
def test_preset_round_trips_through_json(name):
    cfg = get_preset(name)
    again = ModelConfig.from_dict(json.loads(json.dumps(cfg.to_dict())))
    assert again == cfg
    assert again.heads.clip_dim == 512  # the text space width never shrinks


def test_pop3d_base_keeps_paper_widths_and_grid():
    cfg = get_preset("pop3d-base")
    assert (cfg.heads.occ_hidden, cfg.heads.lang_hidden, cfg.heads.n_blocks) == (512, 1024, 2)
    assert cfg.backbone.depth == 50
    assert cfg.voxel_grid == VoxelGrid()  # POP-3D's 100 x 100 x 8 over +-51.2 m, [-5, 3] m


def test_bad_configs_are_rejected_with_clear_errors():
    with pytest.raises(ValueError, match="unknown model preset 'nope'"):
        get_preset("nope")
    with pytest.raises(ValueError, match="multiples of 32"):
        get_preset("cpu-small", image_size=(100, 224))
    d = get_preset("cpu-small").to_dict()
    d["backbone"]["depth"] = 19
    with pytest.raises(ValueError, match="depth must be 18, 34, 50 or 101"):
        ModelConfig.from_dict(d)
    d = get_preset("cpu-small").to_dict()
    d["heads"]["bogus"] = 1
    with pytest.raises(ValueError, match="unknown keys.*heads.*bogus"):
        ModelConfig.from_dict(d)


# ---------------------------------------------------------------- lifting
def _front_camera(width=224, height=128):
    return load_rig(names=["cam_front"], width=width, height=height)[0]


def test_voxel_on_optical_axis_samples_the_image_centre():
    cam = _front_camera()
    t = cam.center_ego  # (1.70, 0.02, 1.51); a 1 m voxel centred 10 m ahead on the axis
    grid = VoxelGrid(
        (t[0] + 9.5, t[0] + 10.5), (t[1] - 0.5, t[1] + 0.5), (t[2] - 0.5, t[2] + 0.5), (1, 1, 1)
    )
    back = load_rig(names=["cam_back"], width=224, height=128)[0]
    g, m = compute_sampling([cam, back], grid, (16, 28), (128, 224))
    assert g.shape == (2, 1, 2) and g.dtype == np.float32 and m.dtype == np.float32
    np.testing.assert_allclose(g[0, 0], [0.0, 0.0], atol=1e-6)  # principal point = centre
    assert m.tolist() == [[1.0], [0.0]]  # the back camera has it behind


def test_sampling_hits_the_right_feature_column():
    # A feature map whose value is its column index: sampling at a projected pixel u must give
    # the feature column of that pixel, (u + 0.5) / stride - 0.5, through grid_sample.
    cam = _front_camera(width=224, height=128)
    grid = VoxelGrid((20.0, 21.0), (-6.0, 6.0), (1.0, 2.0), (1, 12, 1))
    g, m = compute_sampling([cam], grid, (16, 28), (128, 224))
    uv, _, valid = cam.project(grid.centers().reshape(-1, 3))
    assert valid.all() and m.all()
    cols = torch.arange(28, dtype=torch.float32).view(1, 1, 1, 28).expand(1, 1, 16, 28)
    sampled = F.grid_sample(cols, torch.from_numpy(g).view(1, 1, -1, 2), align_corners=False)
    np.testing.assert_allclose(sampled.view(-1).numpy(), (uv[:, 0] + 0.5) / 8 - 0.5, atol=1e-4)


def test_compute_sampling_rejects_cameras_for_another_image_size():
    cam = _front_camera(width=448, height=256)
    with pytest.raises(ValueError, match="use PinholeCamera.resized"):
        compute_sampling([cam], VoxelGrid(), (16, 28), (128, 224))


def test_masked_mean_over_cameras():
    # Camera c's features are the constant c + 1. A voxel seen by cameras 0 and 2 gets
    # (1 + 3) / 2 = 2; one seen by none gets 0; the visibility channel is the seen fraction.
    n_cam, n_vox = 3, 2
    feats = (
        torch.arange(1, n_cam + 1, dtype=torch.float32).view(n_cam, 1, 1, 1).expand(n_cam, 4, 5, 7)
    )
    grid = torch.zeros(1, n_cam, n_vox, 2)
    mask = torch.tensor([[[1.0, 0.0], [0.0, 0.0], [1.0, 0.0]]])
    out = BilinearLifting((1, 2, 1), n_cam, visibility_channel=True)(feats, grid, mask)
    assert out.shape == (1, 5, 1, 2, 1)
    np.testing.assert_allclose(out[0, :4, 0, :, 0].numpy(), [[2.0, 0.0]] * 4, atol=1e-6)
    np.testing.assert_allclose(out[0, 4, 0, :, 0].numpy(), [2 / 3, 0.0], atol=1e-6)


# ---------------------------------------------------------------- heads
def test_heads_are_paper_blocks():
    head = MLPHead(32, 64, 512, n_blocks=2)
    kinds = [type(m).__name__ for m in head.blocks] + [type(head.out).__name__]
    assert kinds == ["Linear", "Softplus", "Linear"] * 2 + ["Linear"]
    assert head(torch.zeros(7, 32)).shape == (7, 512)
    assert head(torch.zeros(2, 3, 4, 32)).shape == (2, 3, 4, 512)


# ---------------------------------------------------------------- whole model
def test_cpu_small_shapes_dtypes_and_latency(small):
    cfg, model, (grid, mask) = small
    model.eval()
    images = torch.rand(1, 6, 3, *cfg.image_size)
    with torch.no_grad():
        model(images, grid, mask)  # warm-up
        t0 = time.perf_counter()
        out = model(images, grid, mask)
        dt = time.perf_counter() - t0
    x, y, z = cfg.grid.shape
    assert set(out) == {"occupancy_logits", "voxel_features"}
    assert out["occupancy_logits"].shape == (1, x, y, z, 2)
    assert out["voxel_features"].shape == (1, x, y, z, cfg.decoder.voxel_channels)
    assert all(v.dtype == torch.float32 and torch.isfinite(v).all() for v in out.values())
    lang = model.language_head(out["voxel_features"][0, :2, :3])
    assert lang.shape == (2, 3, z, 512)
    print(
        f"\ncpu-small forward, 6 cameras, {torch.get_num_threads()} thread(s): {dt * 1000:.0f} ms"
    )


def test_pop3d_base_shapes_dtypes():
    # 600 GFLOPs is too slow for the CPU suite: propagate shapes on the meta device instead.
    cfg = get_preset("pop3d-base")
    with torch.device("meta"):
        model = build_model(cfg)
        images = torch.zeros(1, 6, 3, *cfg.image_size)
        grid = torch.zeros(1, 6, cfg.voxel_grid.num_voxels, 2)
        mask = torch.zeros(1, 6, cfg.voxel_grid.num_voxels)
        out = model(images, grid, mask)
        lang = model.language_head(torch.zeros(5, 128))
    assert out["occupancy_logits"].shape == (1, 100, 100, 8, 2)
    assert out["voxel_features"].shape == (1, 100, 100, 8, 128)
    assert out["occupancy_logits"].dtype == out["voxel_features"].dtype == torch.float32
    assert lang.shape == (5, 512)


def test_gradients_reach_the_backbone(small):
    cfg, model, (grid, mask) = small
    model.train()
    model.zero_grad()
    images = torch.rand(1, 6, 3, *cfg.image_size)
    t0 = time.perf_counter()
    out = model(images, grid, mask)
    occ = out["occupancy_logits"].reshape(-1, 2)
    target = (torch.rand(occ.shape[0]) > 0.9).long()
    idx = torch.randperm(occ.shape[0])[:4000]  # language head only where targets exist
    pred = model.language_head(out["voxel_features"].reshape(-1, cfg.decoder.voxel_channels)[idx])
    loss = F.cross_entropy(occ, target) + F.mse_loss(pred, torch.randn_like(pred))
    loss.backward()
    dt = time.perf_counter() - t0
    first_conv = model.backbone.stem[0].weight.grad
    assert first_conv is not None and first_conv.abs().sum() > 0
    for name, p in model.named_parameters():
        assert p.grad is not None, f"{name} got no gradient"
    assert model.lang_head.blocks[0].weight.grad.abs().sum() > 0
    print(f"\ncpu-small training step (fwd+bwd, 4k language voxels): {dt * 1000:.0f} ms")
    model.eval()


def test_estimate_gflops_counts_the_language_head_per_voxel(small):
    cfg, model, _ = small
    g = estimate_gflops(cfg, model, language_voxels=1000)
    assert 5.0 < g["encoder_occupancy"] < 40.0  # cpu-small: 17 GFLOPs stated in its docstring
    macs = 32 * 256 + 256 * 256 * 3 + 256 * 512  # language head widths: C_V=32, hidden 256
    assert g["language_per_voxel"] == pytest.approx(2 * macs / 1e9, rel=1e-6)
    assert g["total"] == pytest.approx(g["encoder_occupancy"] + 1000 * g["language_per_voxel"])


def test_backbone_loads_local_weights_and_reports_bad_files(tmp_path):
    import torchvision

    ref = torchvision.models.resnet18(weights=None)
    path = tmp_path / "r18.pth"
    torch.save(ref.state_dict(), path)
    cfg = get_preset("cpu-small")
    cfg.backbone.weights = str(path)
    model = build_model(cfg)
    assert torch.equal(model.backbone.stem[0].weight, ref.conv1.weight)
    assert torch.equal(model.backbone.stages[2][0].conv1.weight, ref.layer3[0].conv1.weight)
    cfg.backbone.weights = str(tmp_path / "missing.pth")
    with pytest.raises(FileNotFoundError, match="missing.pth: backbone weights file not found"):
        build_model(cfg)
    bad = tmp_path / "bad.pth"
    torch.save({"foo": torch.zeros(1)}, bad)
    cfg.backbone.weights = str(bad)
    with pytest.raises(ValueError, match="bad.pth: no ResNet trunk weights"):
        build_model(cfg)
