"""Training smoke tests on a tiny config: the loss goes down, resume continues the same run."""

import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))

from train_fixtures import tiny_model_config, tiny_sample  # noqa: E402

from pop3d_ros.data.synthetic_teacher import SyntheticTeacher  # noqa: E402
from pop3d_ros.model.pop3d import build_model  # noqa: E402
from pop3d_ros.training.config import TrainConfig  # noqa: E402
from pop3d_ros.training.frames import PreparedFrames, prepare_frames  # noqa: E402
from pop3d_ros.training.loop import train  # noqa: E402
from pop3d_ros.training.strategies.pop3d import Pop3DStrategy  # noqa: E402


@pytest.fixture(scope="module")
def frames(tmp_path_factory):
    cfg = tiny_model_config()
    strategy = Pop3DStrategy(SyntheticTeacher())
    root = tmp_path_factory.mktemp("frames")
    prepare_frames(
        ["f0", "f1"], lambda k: tiny_sample(int(k[1:])), lambda s: strategy.prepare(s, cfg), root
    )
    return PreparedFrames(root), strategy


def _run(frames, out, steps, stop_after=None, resume=False, lr=3e-3, evaluate=None, eval_every=0):
    dataset, strategy = frames
    cfg = tiny_model_config()
    torch.manual_seed(0)
    model = build_model(cfg)
    tcfg = TrainConfig(
        steps=steps,
        lr=lr,
        warmup_steps=2,
        checkpoint_every=3,
        log_every=1,
        backbone_lr_mult=1.0,
        eval_every=eval_every,
    )
    summary = train(
        model,
        cfg,
        dataset,
        strategy,
        tcfg,
        out,
        resume=resume,
        text_space={"kind": "synthetic"},
        stop_after=stop_after,
        log=lambda m: None,
        evaluate=evaluate,
    )
    return model, summary


def test_prepared_frame_contents(frames):
    item = frames[0][0]
    cfg = tiny_model_config()
    assert item["images"].shape == (6, 3, *cfg.image_size) and item["images"].dtype == torch.uint8
    assert item["occ_target"].shape == tuple(cfg.grid.shape) and item["occ_target"].sum() > 0
    m = item["voxel_index"].numel()
    assert m > 0 and item["features"].shape == (m, 512) and item["weight"].min() >= 1
    # Feature targets only at voxels that hold LiDAR points.
    assert bool(item["occ_target"].reshape(-1)[item["voxel_index"]].all())


def test_loss_decreases(frames, tmp_path):
    _, summary = _run(frames, tmp_path, steps=40, lr=1e-2)
    losses = [v["loss"] for _, v in summary["history"]]
    first, last = sum(losses[:4]) / 4, sum(losses[-4:]) / 4
    assert last < 0.9 * first, f"loss did not go down: {losses}"
    assert (tmp_path / "model.pt").exists() and (tmp_path / "tb").is_dir()
    from pop3d_ros.model.checkpoint import load_model

    model, ckpt = load_model(tmp_path / "model.pt")
    assert ckpt["meta"]["step"] == 40 and ckpt["text_space"]["kind"] == "synthetic"


def test_resume_continues_the_same_run(frames, tmp_path):
    full, s_full = _run(frames, tmp_path / "full", steps=6)
    _run(frames, tmp_path / "split", steps=6, stop_after=3)
    assert not (tmp_path / "split" / "model.pt").exists()
    state = torch.load(tmp_path / "split" / "last.pt", weights_only=True)
    assert state["train_state"]["step"] == 3
    resumed, s_res = _run(frames, tmp_path / "split", steps=6, resume=True)
    assert s_res["step"] == 6
    # Same lr at the same step (schedule position restored) and same weights at the end.
    assert s_res["history"][-1][1]["lr"] == pytest.approx(s_full["history"][-1][1]["lr"])
    for (k, a), b in zip(full.state_dict().items(), resumed.state_dict().values(), strict=True):
        assert torch.allclose(a.float(), b.float(), atol=1e-5), k


def test_release_checkpoint_is_half_size_and_loads(frames, tmp_path):
    from pop3d_ros.model.checkpoint import load_model
    from pop3d_ros.training.release import make_release

    model, _ = _run(frames, tmp_path, steps=2)
    rel = make_release(tmp_path / "last.pt", tmp_path / "rel" / "model.pt")
    assert rel.stat().st_size < 0.6 * (tmp_path / "model.pt").stat().st_size
    loaded, ckpt = load_model(rel)
    assert "train_state" not in ckpt and ckpt["meta"]["weights_dtype"] == "float16"
    for k, v in model.state_dict().items():
        w = loaded.state_dict()[k]
        assert w.dtype == v.dtype and torch.allclose(w.float(), v.float(), rtol=1e-3, atol=1e-3), k


def test_voxel_weighting_counts_every_voxel_once(frames):
    _, point = frames
    voxel = Pop3DStrategy(point.teacher, feature_weighting="voxel")
    item = frames[0][0]
    batch = point.collate([item], tiny_model_config().voxel_grid.num_voxels)
    m = batch["voxel_index"].numel()
    # Predictions with a different error per voxel, so the two averages must differ.
    pred = batch["features"].float() + torch.linspace(0, 1, m)[:, None]
    outputs = {"occupancy_logits": torch.zeros(*batch["occ_target"].shape, 2)}
    outputs["language_features"] = pred
    err = ((pred - batch["features"].float()) ** 2).mean(-1)
    w = batch["weight"]
    assert point.losses(outputs, batch)["ft"].item() == pytest.approx(
        ((err * w).sum() / w.sum()).item(), rel=1e-5
    )
    assert voxel.losses(outputs, batch)["ft"].item() == pytest.approx(err.mean().item(), rel=1e-5)
    assert w.max() > w.min()  # otherwise the two weightings would coincide
    with pytest.raises(ValueError, match="feature_weighting"):
        Pop3DStrategy(point.teacher, feature_weighting="pixel")


def test_init_from_loads_weights_and_rejects_another_network(frames, tmp_path):
    from pop3d_ros.model.config import GridConfig
    from pop3d_ros.training.init_backbone import init_weights as _init_weights

    trained, _ = _run(frames, tmp_path, steps=2)
    cfg = tiny_model_config()
    fresh = build_model(cfg)
    stages = _init_weights(fresh, cfg, tmp_path / "model.pt")
    for k, v in trained.state_dict().items():
        assert torch.equal(fresh.state_dict()[k], v), k
    assert [(s["checkpoint"], s["step"]) for s in stages] == [(str(tmp_path / "model.pt"), 2)]
    ckpt = torch.load(tmp_path / "model.pt", weights_only=True)
    ckpt["meta"] = {"command": "pop3d train b", "step": 9, "earlier_stages": [{"checkpoint": "a"}]}
    torch.save(ckpt, tmp_path / "stage2.pt")
    stages = _init_weights(build_model(cfg), cfg, tmp_path / "stage2.pt")
    assert [s["checkpoint"] for s in stages] == ["a", str(tmp_path / "stage2.pt")]
    assert stages[-1]["command"] == "pop3d train b" and stages[-1]["step"] == 9
    # A checkpoint written before a config field existed (its default) still matches.
    lifting = ckpt["config"]["lifting"]
    assert lifting.pop("depth_bins") == 0
    torch.save(ckpt, tmp_path / "older.pt")
    _init_weights(build_model(cfg), cfg, tmp_path / "older.pt")
    other = tiny_model_config()
    other.grid = GridConfig(
        x_range=(-8.0, 8.0), y_range=(-8.0, 8.0), z_range=(-2.0, 2.0), shape=(8, 8, 4)
    )
    with pytest.raises(ValueError, match="model config differs"):
        _init_weights(build_model(other), other, tmp_path / "model.pt")


def test_prepared_frames_refuse_other_settings(tmp_path):
    cfg = tiny_model_config()
    strategy = Pop3DStrategy(SyntheticTeacher())

    def prep(settings):
        return prepare_frames(
            ["f0"],
            lambda k: tiny_sample(0),
            lambda s: strategy.prepare(s, cfg),
            tmp_path / "p",
            settings=settings,
        )

    prep({"teacher": {"confusion_prob": 0.1}})
    prep({"teacher": {"confusion_prob": 0.1}})  # same settings: reused
    with pytest.raises(ValueError, match="differ in: teacher"):
        prep({"teacher": {"confusion_prob": 0.78}})
    (tmp_path / "p" / "settings.json").unlink()
    with pytest.raises(ValueError, match="without recorded settings"):
        prep({"teacher": {"confusion_prob": 0.1}})


def test_two_runs_starting_a_new_cache_cannot_both_record_their_settings(tmp_path, monkeypatch):
    import json

    from pop3d_ros.training import frames as frames_module

    real = frames_module._write_exclusive
    cache = tmp_path / "p"

    def rival_first(path, text):
        # the other run passes the same "no settings yet" check and writes first
        assert real(path, json.dumps({"teacher": "rival"}))
        return real(path, text)

    monkeypatch.setattr(frames_module, "_write_exclusive", rival_first)
    with pytest.raises(ValueError, match="differ in: teacher"):
        prepare_frames(["f0"], tiny_sample, lambda s: {}, cache, settings={"teacher": "mine"})
    assert json.loads((cache / "settings.json").read_text()) == {"teacher": "rival"}
    assert not list(cache.glob("*.pt")) and not list(cache.glob("*.tmp"))


def test_periodic_evaluation_scores_the_model_of_that_step(frames, tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from pop3d_ros.evaluation.protocol import Evaluator, HeldOutEvaluation
    from pop3d_ros.evaluation.zeroshot import ZeroShotClassifier, class_phrase_embeddings
    from pop3d_ros.model.checkpoint import load_model
    from pop3d_ros.text.synthetic_text import SyntheticTextSpace

    strategy = frames[1]
    cfg = tiny_model_config()
    classifier = ZeroShotClassifier(class_phrase_embeddings(SyntheticTextSpace()))
    held_out = [tiny_sample(7)]
    evaluation = HeldOutEvaluation(cfg, held_out, classifier, teacher=strategy.teacher)
    modes = []

    def evaluate(model):
        modes.append(model.training)
        return evaluation(model)

    model, summary = _run(frames, tmp_path, steps=5, evaluate=evaluate, eval_every=2)
    assert [s for s, _ in summary["eval_history"]] == [2, 4, 5]  # every 2 steps + the end
    assert modes == [False, False, False] and model.training  # eval mode only inside
    final = summary["eval_history"][-1][1]
    assert {"iou", "miou", "lidar_miou", "teacher_lidar_miou", "chance_miou"} <= set(final)
    # The last evaluation is of the saved model: a separate Evaluator on model.pt agrees.
    loaded, ckpt = load_model(tmp_path / "model.pt")
    direct = Evaluator(loaded, cfg, classifier, teacher=strategy.teacher)
    direct = direct.run(held_out, show=False).result()
    for key, value in final.items():
        assert value == pytest.approx(direct[key], abs=1e-4), key
    assert ckpt["meta"]["eval"] == {"step": 5, **final}
    events = EventAccumulator(str(tmp_path / "tb"))
    events.Reload()
    assert [e.step for e in events.Scalars("eval/lidar_miou")] == [2, 4, 5]
    assert events.Scalars("eval/miou")[-1].value == pytest.approx(final["miou"])


def test_train_cli_refuses_eval_seeds_that_were_trained_on(tmp_path, capsys):
    from pop3d_ros.cli import main

    rc = main(
        ["train", "--seeds", "0-3", "--eval_every", "10", "--eval.held_out_seeds", "3-4"]
        + ["--out", str(tmp_path / "run")]
    )
    assert rc == 2
    assert "overlap the training seeds [3]" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()  # refused before rendering anything


def test_runs_sharing_a_cache_read_their_own_frames(tmp_path):
    cfg = tiny_model_config()
    strategy = Pop3DStrategy(SyntheticTeacher())

    def prep(keys):
        return prepare_frames(
            keys,
            lambda k: tiny_sample(int(k[1:])),
            lambda s: strategy.prepare(s, cfg),
            tmp_path / "p",
            settings={"teacher": "same"},
        )

    prep(["f0", "f1"])  # one run's frames
    prep(["f2"])  # another run on the same cache rewrites index.json with its own
    assert PreparedFrames(tmp_path / "p").keys == ["f2"]
    own = PreparedFrames(tmp_path / "p", ["f0", "f1"])
    assert own.keys == ["f0", "f1"] and len(own) == 2
    assert own[1]["occ_target"].shape == own[0]["occ_target"].shape
    with pytest.raises(FileNotFoundError, match="1 of 2 frames not prepared"):
        PreparedFrames(tmp_path / "p", ["f0", "f9"])
    assert not list((tmp_path / "p").glob("*.tmp"))  # the atomic writes left nothing behind


@pytest.mark.parametrize("command", ["train", "vfm-labels", "pretrain2d"])
def test_training_commands_default_to_the_realistic_teacher(command):
    import dataclasses
    import importlib

    from pop3d_ros.cli import COMMANDS
    from pop3d_ros.data.synthetic_teacher import TEACHER_PROFILES
    from pop3d_ros.teachers.select import TeacherConfig, teacher_and_space

    module = importlib.import_module(COMMANDS[command][0])
    (cmd,) = [
        v for v in vars(module).values()
        if dataclasses.is_dataclass(v) and v.__name__.endswith("Command")
    ]  # fmt: skip
    teacher = cmd.__dataclass_fields__["teacher"].default_factory()
    assert teacher.profile == "maskclip-like"
    _, _, meta = teacher_and_space(teacher, "synthetic", 512)
    assert meta["profile"] == "maskclip-like"
    assert meta["confusion_prob"] == TEACHER_PROFILES["maskclip-like"].confusion_prob
    near_meta = teacher_and_space(TeacherConfig(profile="near-gt"), "synthetic", 512)[2]
    assert near_meta["profile"] == "near-gt" and near_meta["confusion"] != meta["confusion"]


@pytest.mark.parametrize(
    ("flags", "key"),
    [
        (["--render.aux_rays"], "aux_rays"),
        (["--set", "render.sparsity_weight=0.1"], "sparsity_weight"),
        (["--render.sparsity_scope", "unseen"], "sparsity_scope"),
        (["--render.distortion_weight", "0.1"], "distortion_weight"),
        (["--density_sampling", "nearest"], "density_sampling"),
    ],
)
def test_train_cli_refuses_render_options_for_other_strategies(tmp_path, capsys, flags, key):
    from pop3d_ros.cli import main

    rc = main(
        ["train", "--seeds", "0", "--strategy", "pop3d", *flags, "--out", str(tmp_path / "r")]
    )
    assert rc == 2
    err = capsys.readouterr().err
    assert f"render.{key}: rendering options; strategy pop3d does not render" in err
    assert not (tmp_path / "r").exists()  # refused before rendering anything


def test_train_cli_refuses_a_sparsity_scope_without_the_prior(tmp_path, capsys):
    from pop3d_ros.cli import main

    rc = main(
        ["train", "--seeds", "0", "--strategy", "render", "--render.sparsity_scope", "unseen",
         "--out", str(tmp_path / "r")]
    )  # fmt: skip
    assert rc == 2
    assert "sparsity_scope unseen needs render.sparsity_weight > 0" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()


def test_render_options_reach_the_strategy():
    from pop3d_ros.text.synthetic_text import SyntheticTextSpace
    from pop3d_ros.training.cli_train import build_recipe
    from pop3d_ros.training.strategies.render_config import RenderConfig, build_render_strategy

    flags = ["--strategy", "render", "--render.distortion_weight", "0.3",
             "--render.sparsity_weight", "0.2", "--render.sparsity_scope", "unseen",
             "--render.density_sampling", "nearest", "--render.num_rays", "99",
             "--render.termination_weight", "0.7"]  # fmt: skip
    cfg = build_recipe(flags)[0].stages[0].settings.render
    model_cfg = tiny_model_config()
    strategy = build_render_strategy(
        cfg, "render", model_cfg, SyntheticTeacher(), SyntheticTextSpace, None, {}
    )
    assert model_cfg.heads.occupancy_output == "density"
    assert (strategy.distortion_weight, strategy.sparsity_weight) == (0.3, 0.2)
    assert (strategy.sparsity_scope, strategy.density_sampling) == ("unseen", "nearest")
    assert strategy.num_rays == 99 and strategy.grid == model_cfg.voxel_grid
    assert strategy.termination_weight == 0.7
    defaults = build_render_strategy(
        RenderConfig(), "render", tiny_model_config(), SyntheticTeacher(), SyntheticTextSpace,
        None, {},
    )  # fmt: skip
    assert defaults.distortion_weight == 0.01  # RenderOcc's weight_distortion
    assert defaults.termination_weight == 0.0  # not in RenderOcc
    assert (defaults.sparsity_weight, defaults.sparsity_scope) == (0.0, "grid")
