"""Depth-bin lifting (model/depth.py): config compatibility, bin geometry, LiDAR depth targets,
the loss and its gradient, ONNX export (op check + parity) and the inference pipeline."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from test_export_fixtures import tiny_config

from pop3d_ros.geometry.camera import PinholeCamera
from pop3d_ros.geometry.grid import VoxelGrid
from pop3d_ros.model.checkpoint import load_model, save_checkpoint
from pop3d_ros.model.config import LiftingConfig, ModelConfig
from pop3d_ros.model.depth import (
    IGNORE_DEPTH,
    compute_sampling_depth,
    depth_loss,
    depth_target,
    tent_probability,
)
from pop3d_ros.model.pop3d import build_model

SPACE = {"kind": "synthetic", "seed": 0, "dim": 64, "version": 1}


def _depth_config(bins: int = 8) -> ModelConfig:
    cfg = tiny_config(clip_dim=64)
    cfg.lifting.depth_bins = bins
    cfg.validate()
    return cfg


def _forward_camera(width: int = 96, height: int = 64) -> PinholeCamera:
    """At the ego origin looking along +x: optical z = ego x, optical x = -ego y, y = -z."""
    cam_to_ego = np.eye(4)
    cam_to_ego[:3, :3] = np.array([[0, 0, 1], [-1, 0, 0], [0, -1, 0]], dtype=np.float64)
    K = np.array([[50.0, 0, 47.5], [0, 50.0, 31.5], [0, 0, 1]])
    return PinholeCamera(K, cam_to_ego, width, height, "front")


# -- config ------------------------------------------------------------------------------------
def test_config_round_trip_and_old_checkpoints_load(tmp_path):
    cfg = _depth_config(16)
    cfg.lifting.depth_spacing = "linear"
    back = ModelConfig.from_dict(json.loads(json.dumps(cfg.to_dict())))
    assert back == cfg and back.lifting.depth_bins == 16
    assert back.encoder_input_names[-1] == "sampling_depth"
    # A checkpoint written before the depth fields existed: its lifting dict lacks them.
    old_cfg = tiny_config()
    torch.manual_seed(0)
    old_model = build_model(old_cfg)
    assert not any(k.startswith("depth_head") for k in old_model.state_dict())
    path = save_checkpoint(tmp_path / "old.pt", old_model, old_cfg, SPACE, {})
    ckpt = torch.load(path, weights_only=True)
    for key in ("depth_bins", "depth_min", "depth_max", "depth_spacing"):
        del ckpt["config"]["lifting"][key]
    torch.save(ckpt, path)
    model, _ = load_model(path)
    assert model.cfg.lifting.depth_bins == 0 and model.depth_head is None
    assert model.cfg.encoder_input_names == ("images", "sampling_grid", "sampling_mask")
    # A depth model rebuilds from its checkpoint alone.
    torch.manual_seed(0)
    dm = build_model(_depth_config(8))
    dpath = save_checkpoint(tmp_path / "depth.pt", dm, dm.cfg, SPACE, {})
    loaded, _ = load_model(dpath)
    assert loaded.cfg.lifting.depth_bins == 8
    assert loaded.depth_head.body[-1].out_channels == 8


@pytest.mark.parametrize(
    "change",
    [
        {"depth_bins": 1},
        {"depth_bins": -2},
        {"depth_min": 0.0},
        {"depth_max": 0.5},
        {"depth_spacing": "log"},
    ],
)
def test_bad_depth_config_is_refused(change):
    cfg = tiny_config()
    for k, v in change.items():
        setattr(cfg.lifting, k, v)
    with pytest.raises(ValueError, match="depth"):
        cfg.validate()


# -- bin geometry --------------------------------------------------------------------------------
def test_bin_coordinates_of_known_geometry():
    cam = _forward_camera()
    # Voxel centres at x = 10 m: on the axis, 3 m to the left, and one at x = 5.5 m.
    grid = VoxelGrid((9.5, 10.5), (-0.5, 3.5), (-0.5, 0.5), (1, 4, 1))
    lin = LiftingConfig(depth_bins=10, depth_min=1.0, depth_max=21.0, depth_spacing="linear")
    b = compute_sampling_depth([cam], grid, lin)[0]
    # Linear bins of 2 m from 1 m: bin 4 = [9, 11] m, centre 10 m -> coordinate exactly 4.0.
    # Depth is along the optical axis, so the voxel 3 m to the side is also at 10 m.
    np.testing.assert_allclose(b, [4.0, 4.0, 4.0, 4.0], atol=1e-6)
    # LID, D = 4 over [1, 11] m: edges at 1 + e (e + 1) / 2 = 1, 2, 4, 7, 11 m.
    lid = LiftingConfig(depth_bins=4, depth_min=1.0, depth_max=11.0, depth_spacing="lid")
    pts = VoxelGrid((5.0, 6.0), (-0.5, 0.5), (-0.5, 0.5), (1, 1, 1))  # centre at 5.5 m
    e = (-1 + np.sqrt(1 + 8 * 4.5)) / 2  # 1 + e (e + 1) / 2 = 5.5
    assert compute_sampling_depth([cam], pts, lid)[0, 0] == pytest.approx(e - 0.5, abs=1e-5)
    at7 = VoxelGrid((6.5, 7.5), (-0.5, 0.5), (-0.5, 0.5), (1, 1, 1))  # 7 m = edge 3
    assert compute_sampling_depth([cam], at7, lid)[0, 0] == pytest.approx(2.5, abs=1e-5)
    far = VoxelGrid((99.5, 100.5), (-0.5, 0.5), (-0.5, 0.5), (1, 1, 1))
    assert compute_sampling_depth([cam], far, lid)[0, 0] == pytest.approx(3.0)  # last bin


def test_tent_weights_pick_the_voxels_bin():
    probs = torch.zeros(1, 1, 4, 3)
    probs[0, 0, 2] = 1.0  # all mass in bin 2
    b = torch.tensor([[[2.0, 2.5, 0.0]]])
    p = tent_probability(probs, b)[0, 0, 0]
    torch.testing.assert_close(p, torch.tensor([1.0, 0.5, 0.0]))


# -- LiDAR depth target -------------------------------------------------------------------------
def test_depth_target_from_hand_placed_points():
    cam = _forward_camera()
    lin = LiftingConfig(depth_bins=10, depth_min=1.0, depth_max=21.0, depth_spacing="linear")
    points = np.array(
        [
            [10.0, 0.0, 0.0],  # principal point: u = 47.5, v = 31.5 -> cell (4, 6) at stride 8
            [16.0, 0.0, 0.0],  # behind it in the same cell: the nearer point wins
            [4.0, 0.0, 0.0],  # nearer still (used in the second call)
            [-5.0, 0.0, 0.0],  # behind the camera: ignored
        ]
    )
    t = depth_target(points[[0, 1, 3]], [cam], (8, 12), lin)
    assert t.shape == (1, 8, 12) and t.dtype == np.uint8
    assert t[0, 4, 6] == 4  # 10 m: (10 - 1) / 2 = 4.5 -> bin 4
    assert (t != IGNORE_DEPTH).sum() == 1
    assert depth_target(points[[1, 2]], [cam], (8, 12), lin)[0, 4, 6] == 1  # 4 m -> bin 1
    # 3 m to the right (ego y = -3) at 10 m: optical x = +3, u = 47.5 + 50 * 3 / 10 = 62.5,
    # column floor(63 / 8) = 7, same row and bin.
    side = depth_target(np.array([[10.0, -3.0, 0.0]]), [cam], (8, 12), lin)
    assert side[0, 4, 7] == 4 and (side != IGNORE_DEPTH).sum() == 1


# -- loss, gradient, strategy -------------------------------------------------------------------
def _inputs(cfg, seed=0):
    from pop3d_ros.model.onnx_io import encoder_example_inputs

    return encoder_example_inputs(cfg)


def _strategy_batch(cfg, gen):
    hf, wf = cfg.feature_hw
    target = torch.randint(0, cfg.lifting.depth_bins, (1, cfg.num_cameras, hf, wf), generator=gen)
    target = target.to(torch.uint8)
    target[..., :2, :] = IGNORE_DEPTH  # cells without a LiDAR point
    vox = torch.arange(0, cfg.voxel_grid.num_voxels, 7)
    return {
        "occ_target": torch.randint(0, 2, (1, *cfg.grid.shape), generator=gen).to(torch.uint8),
        "voxel_index": vox,
        "features": torch.randn(len(vox), cfg.heads.clip_dim, generator=gen),
        "weight": torch.ones(len(vox)),
        "depth_target": target,
    }


def _outputs(model, inputs, batch):
    out = model(*inputs)
    vf = out["voxel_features"].reshape(-1, out["voxel_features"].shape[-1])
    out["language_features"] = model.language_head(vf[batch["voxel_index"]])
    return out


def test_depth_loss_reaches_and_trains_the_depth_head():
    from pop3d_ros.training.strategies.base import Strategy

    torch.manual_seed(0)
    cfg = _depth_config(8)
    model = build_model(cfg).train()
    inputs = _inputs(cfg)
    batch = _strategy_batch(cfg, torch.Generator().manual_seed(1))
    strategy = Strategy(lift_depth_weight=0.5)
    out = _outputs(model, inputs, batch)
    assert out["depth_logits"].shape == (cfg.num_cameras, 8, *cfg.feature_hw)
    terms = strategy.losses(out, batch)
    torch.testing.assert_close(terms["loss"], terms["occ"] + terms["ft"] + 0.5 * terms["depth"])
    # The occupancy loss alone reaches the depth head too (through the weighted lifting).
    terms["occ"].backward(retain_graph=True)
    assert float(model.depth_head.body[-1].weight.grad.abs().sum()) > 0
    model.zero_grad()
    terms["depth"].backward()
    assert float(model.depth_head.body[-1].weight.grad.abs().sum()) > 0
    # A few steps on the whole loss lower the depth term.
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    history = []
    for _ in range(6):
        terms = strategy.losses(_outputs(model, inputs, batch), batch)
        opt.zero_grad()
        terms["loss"].backward()
        opt.step()
        history.append(terms["depth"].item())
    assert history[-1] < history[0] - 0.1, history
    # Frames prepared without depth targets are refused with a clear message.
    no_target = {k: v for k, v in batch.items() if k != "depth_target"}
    with pytest.raises(ValueError, match="no depth_target"):
        strategy.losses(_outputs(model, inputs, batch), no_target)


def test_depth_loss_ignores_cells_without_points():
    logits = torch.zeros(2, 4, 3, 3, requires_grad=True)
    none = torch.full((2, 3, 3), IGNORE_DEPTH, dtype=torch.uint8)
    assert depth_loss(logits, none).item() == 0.0
    one = none.clone()
    one[1, 2, 0] = 3
    assert depth_loss(logits, one).item() == pytest.approx(np.log(4.0))  # uniform over 4 bins


def test_depth_bins_option_sets_the_model_and_the_cache_settings():
    from types import SimpleNamespace

    from pop3d_ros.training.settings import ModelChoice, TrainSettings
    from pop3d_ros.training.stage import frame_settings

    def settings(model_cfg, strategy="pop3d"):
        s = TrainSettings()
        s.train.strategy = strategy
        return frame_settings(s, model_cfg, SimpleNamespace(), {}, {}, None)

    plain = ModelChoice(preset="cpu-small").build("pop3d")
    assert plain.lifting.depth_bins == 0 and "depth_target" not in settings(plain)
    binned = ModelChoice(preset="cpu-small", depth_bins=12).build("pop3d_render")
    assert binned.lifting.depth_bins == 12
    assert settings(binned)["depth_target"]["bins"] == 12
    with pytest.raises(ValueError, match="LiDAR"):
        ModelChoice(preset="cpu-small", depth_bins=12).build("vfm")


# -- export and pipeline ------------------------------------------------------------------------
@pytest.fixture(scope="module")
def depth_export(tmp_path_factory):
    from pop3d_ros.export.onnx_export import export_checkpoint

    root = tmp_path_factory.mktemp("depth")
    torch.manual_seed(0)
    cfg = _depth_config(8)
    model = build_model(cfg)
    ckpt = save_checkpoint(root / "depth.pt", model, cfg, SPACE, {})
    manifest = export_checkpoint(ckpt, root / "onnx", log=lambda _m: None)
    return ckpt, root, manifest


def test_depth_model_export_passes_op_check_and_parity(depth_export):
    import onnx

    from pop3d_ros.export.onnx_export import PARITY_ATOL, PARITY_RTOL, example_inputs
    from pop3d_ros.export.op_check import check_onnx_ops

    ckpt, root, manifest = depth_export
    enc = onnx.load(str(root / "onnx" / "encoder.onnx"))
    names = [i.name for i in enc.graph.input]
    assert names == ["images", "sampling_grid", "sampling_mask", "sampling_depth"]
    assert [o.name for o in enc.graph.output] == ["occupancy_logits", "voxel_features"]
    assert check_onnx_ops(enc) == []
    assert manifest["tensorrt_op_check"]["unsupported"] == {"encoder": [], "language_head": []}
    errors = manifest["parity_max_abs_error"]
    assert max(errors.values()) < PARITY_ATOL, errors
    # Parity on a feed where depth matters: ORT vs torch with two different bin inputs.
    import onnxruntime

    model, _ = load_model(ckpt)
    sess = onnxruntime.InferenceSession(str(root / "onnx" / "encoder.onnx"))
    feed = example_inputs(model.cfg, seed=3)
    outs = []
    for shift in (0.0, 3.0):
        f = dict(feed, sampling_depth=np.clip(feed["sampling_depth"] + shift, 0, 7))
        got = sess.run(["voxel_features"], f)[0]
        with torch.no_grad():
            ref = model(*(torch.from_numpy(f[n]) for n in model.cfg.encoder_input_names))
        np.testing.assert_allclose(
            got, ref["voxel_features"].numpy(), atol=PARITY_ATOL, rtol=PARITY_RTOL
        )
        outs.append(got)
    assert np.abs(outs[0] - outs[1]).max() > 1e-4  # the depth input changes the result


def test_pipeline_runs_a_depth_model_end_to_end(depth_export, tmp_path):
    from pipeline_fixtures import random_images, rig_cameras

    from pop3d_ros.export.runtime import load_runtime
    from pop3d_ros.pipeline.occupancy import OccupancyPipeline, PipelineConfig
    from pop3d_ros.pipeline.preprocess import images_to_input
    from pop3d_ros.text.synthetic_text import SyntheticTextSpace

    ckpt, root, _ = depth_export
    rt = load_runtime(ckpt, backend="onnxruntime", cache_dir=root / "cache", log=lambda _m: None)
    cams = rig_cameras(96, 64)
    images = random_images(6, 64, 96)
    # The torch model's occupancy probabilities on the same inputs, independently of the
    # pipeline (its own sampling code, the checkpoint's weights).
    model, _ = load_model(ckpt)
    from pop3d_ros.model.inputs import SamplingCache

    calib = SamplingCache(model.cfg)(
        torch.from_numpy(np.stack([c.K for c in cams]).astype(np.float32)),
        torch.from_numpy(np.stack([c.cam_to_ego for c in cams]).astype(np.float32)),
    )
    with torch.no_grad():
        x = torch.from_numpy(images_to_input(images))
        logits = model(x, *(t[None] for t in calib))["occupancy_logits"][0].reshape(-1, 2)
    prob = torch.softmax(logits, -1)[:, 1].numpy()
    # A threshold inside the widest gap of the middle half of the probabilities, so that
    # about half the voxels are occupied and ORT's rounding cannot move one across it.
    p = np.sort(prob)
    mid = slice(p.size // 4, 3 * p.size // 4)
    gaps = np.diff(p)[mid]
    k = int(np.argmax(gaps)) + p.size // 4
    threshold = float((p[k] + p[k + 1]) / 2)
    assert gaps.max() > 1e-4 and 0.0 < threshold < 1.0
    occupied = np.flatnonzero(prob >= threshold)
    n = rt.config.voxel_grid.num_voxels
    assert 0 < occupied.size < n  # the comparison below can tell voxels apart

    pipe = OccupancyPipeline(rt, SyntheticTextSpace(dim=64), PipelineConfig(threshold))
    res = pipe.infer(images, cams, stamp=1.0)
    feed = pipe.sampling.feed(cams)
    assert feed["sampling_depth"].shape == (1, 6, n)
    assert 0.0 <= feed["sampling_depth"].min() and feed["sampling_depth"].max() <= 7.0
    np.testing.assert_allclose(feed["sampling_depth"][0], calib[2].numpy(), atol=1e-5)
    pipe.infer(images, cams, stamp=2.0)
    assert pipe.sampling.computations == 1  # calibration inputs computed once per rig
    # The pipeline's occupied voxels are the torch model's, voxel for voxel.
    shape = rt.config.voxel_grid.shape
    got = np.ravel_multi_index(tuple(np.asarray(res.indices).T), tuple(shape))
    np.testing.assert_array_equal(np.sort(got), occupied)
    assert pipe.query("car").success


def test_int8_calibration_feed_and_flops_include_the_depth_input():
    from pipeline_fixtures import rig_cameras

    from pop3d_ros.export.calib_frames import sample_feed
    from pop3d_ros.model.flops import estimate_gflops
    from pop3d_ros.model.inputs import SamplingCache

    cfg = _depth_config(8)
    cams = rig_cameras(192, 128)  # the sample's native size: half-resolution for the model
    sample = {
        "images": np.zeros((6, 128, 192, 3), np.uint8),
        "intrinsics": np.stack([c.K for c in cams]).astype(np.float32),
        "cam_to_ego": np.stack([c.cam_to_ego for c in cams]).astype(np.float32),
    }
    feed = sample_feed(sample, cfg, SamplingCache(cfg))
    assert list(feed) == list(cfg.encoder_input_names)
    n_vox = cfg.voxel_grid.num_voxels
    assert feed["sampling_depth"].shape == (1, 6, n_vox) and feed["sampling_depth"].max() <= 7
    # The voxel centre nearest the front camera's optical axis: its depth along the axis, by
    # hand, then the LID bin coordinate by hand (edges at d_min + u e (e + 1) / 2,
    # u = 2 (d_max - d_min) / (D (D + 1)); bin k's centre at e = k + 1/2).
    front = cams[0]
    centres = cfg.voxel_grid.centers().reshape(-1, 3)
    axis, origin = front.cam_to_ego[:3, 2], front.cam_to_ego[:3, 3]
    rel = centres - origin
    along = rel @ axis
    off_axis = np.linalg.norm(rel - along[:, None] * axis, axis=1)
    ahead = along > cfg.lifting.depth_min
    i = int(np.flatnonzero(ahead)[np.argmin(off_axis[ahead] / along[ahead])])
    lift = cfg.lifting
    assert lift.depth_spacing == "lid" and along[i] < lift.depth_max
    unit = 2 * (lift.depth_max - lift.depth_min) / (lift.depth_bins * (lift.depth_bins + 1))
    e = (-1 + np.sqrt(1 + 8 * (along[i] - lift.depth_min) / unit)) / 2
    expected = min(max(e - 0.5, 0.0), lift.depth_bins - 1.0)
    assert feed["sampling_depth"][0, 0, i] == pytest.approx(expected, abs=1e-4)
    assert 0.0 < expected < lift.depth_bins - 1.0  # inside the range: the formula matters
    assert (
        estimate_gflops(cfg)["encoder_occupancy"]
        > estimate_gflops(tiny_config())["encoder_occupancy"]
    )
