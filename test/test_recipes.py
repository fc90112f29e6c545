"""Recipes by name (config/recipes/), the options generated from the config dataclasses, and
the stage runner of `pop3d train`."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from pop3d_ros.cli_config import ConfigError
from pop3d_ros.training.cli_train import build_recipe, settings_diff
from pop3d_ros.training.recipe import available, load_recipe, resolve

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = sorted(p.stem for p in (ROOT / "config" / "recipes").glob("*.yaml"))
# Tiny data for smoke runs: one seed, two frames, and a VFM calibration of a few candidates.
TINY = ["--set", "steps=2", "--seeds", "0", "--frames_per_seed", "2",
        "--set", "vfm.calibration.num_scales=4", "--set", "vfm.calibration.iterations=1",
        "--set", "checkpoint_every=1"]  # fmt: skip


def test_the_recipes_the_issue_names_are_shipped_and_found_by_name():
    assert {"pop3d", "renderocc", "renderocc-termination", "vfm", "default"} <= set(SHIPPED)
    assert "maskclip-like" in SHIPPED
    assert available() == SHIPPED


@pytest.mark.slow
@pytest.mark.parametrize("name", SHIPPED)
def test_every_recipe_runs_every_stage(name, tmp_path, capsys):
    from pop3d_ros.cli import main
    from pop3d_ros.model.checkpoint import read_checkpoint

    out = tmp_path / "run"
    assert main(["train", "--recipe", name, *TINY, "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    recipe = load_recipe(name)
    for stage in recipe.stages:
        assert f" {stage.name}: new (2 steps)" in printed
        ckpt = read_checkpoint(out / stage.name / "model.pt")
        meta = ckpt["meta"]
        assert meta["step"] == 2 and meta["stage"] == stage.name
        assert meta["recipe"]["name"] == name
        stored = {st["name"]: st for st in meta["recipe"]["stages"]}
        assert set(stored) == {st.name for st in recipe.stages}
        assert stored[stage.name]["train"]["steps"] == 2  # the override reached every stage
        # The stage's own values, the rest from the file (e.g. the shared strategy).
        assert meta["settings"]["train"]["strategy"] == stage.settings.train.strategy
    release = read_checkpoint(out / "model.pt")
    assert "train_state" not in release and release["meta"]["weights_dtype"] == "float16"
    assert "name: " + name in printed  # the resolved recipe is printed at start


def test_a_rerun_skips_finished_stages_and_refuses_other_settings(tmp_path, capsys):
    from pop3d_ros.cli import main

    out = str(tmp_path / "run")
    flags = ["--recipe", "pop3d", *TINY, "--out", out]
    assert main(["train", *flags]) == 0
    capsys.readouterr()
    assert main(["train", *flags]) == 0
    assert "stage 1/1 main: done" in capsys.readouterr().out
    assert main(["train", *flags, "--lr", "0.1"]) == 2
    err = capsys.readouterr().err
    assert "trained with other settings (train.lr)" in err


def test_stop_after_then_rerun_resumes_the_stage(tmp_path, capsys):
    from pop3d_ros.cli import main

    out = tmp_path / "run"
    flags = ["--recipe", "pop3d", *TINY, "--set", "steps=3", "--out", str(out)]
    assert main(["train", *flags, "--stop_after", "1"]) == 0
    assert "stopped at step 1 of stage main" in capsys.readouterr().out
    assert not (out / "main" / "model.pt").exists() and (out / "main" / "last.pt").exists()
    assert main(["train", *flags]) == 0
    assert "stage 1/1 main: resume" in capsys.readouterr().out
    assert torch.load(out / "main" / "model.pt", weights_only=False)["meta"]["step"] == 3


def test_stage_values_layer_over_the_file_and_the_command_line_over_both():
    # default.yaml: lr 5e-4 in A and B, 2.5e-4 in C; feature_balance only in B and C.
    recipe, _ = build_recipe(["--recipe", "default"])
    lrs = [st.settings.train.lr for st in recipe.stages]
    assert lrs == [5e-4, 5e-4, 2.5e-4]
    assert [st.settings.loss.feature_balance for st in recipe.stages] == [0.0, 1.0, 1.0]
    assert [st.settings.init_from for st in recipe.stages] == ["", "A", "B"]
    assert {st.settings.loss.feature_weight for st in recipe.stages} == {256.0}
    over, _ = build_recipe(["--recipe", "default", "--lr", "1e-3", "--set", "feature_balance=0"])
    assert [st.settings.train.lr for st in over.stages] == [1e-3] * 3
    assert [st.settings.loss.feature_balance for st in over.stages] == [0.0] * 3
    assert over.overrides == {"train.lr": 1e-3, "loss.feature_balance": 0}
    # Every generated spelling of one option names the same setting.
    for argv in (["--train.lr", "2e-3"], ["--train.lr=2e-3"], ["--lr=2e-3"], ["--set", "lr=2e-3"]):
        assert build_recipe(argv)[0].stages[0].settings.train.lr == 2e-3, argv
    flag, _ = build_recipe(["--render.aux_rays", "--strategy", "render"])
    assert flag.stages[0].settings.render.aux_rays is True
    assert build_recipe(["--recipe", "renderocc", "--no_aux_rays"])[0].overrides == {
        "render.aux_rays": False
    }


def test_unknown_keys_name_the_nearest_valid_one(tmp_path):
    with pytest.raises(
        ConfigError, match="'render.terminaton_weight'.*'render.termination_weight'"
    ):
        build_recipe(["--set", "render.terminaton_weight=1"])
    with pytest.raises(ConfigError, match="ambiguous"):
        build_recipe(["--set", "max_depth=3"])  # vfm.calibration.max_depth, vfm.labels.max_depth
    bad = tmp_path / "bad.yaml"
    bad.write_text("train: {stepz: 3}\n")
    with pytest.raises(
        ConfigError, match=r"unknown key 'train.stepz' \(did you mean 'train.steps'"
    ):
        build_recipe(["--recipe", str(bad)])
    bad.write_text("stages:\n  - {name: A, renderr: {aux_rays: true}}\n")
    with pytest.raises(ConfigError, match="renderr.aux_rays"):
        build_recipe(["--recipe", str(bad)])
    bad.write_text("train: {steps: many}\n")
    with pytest.raises(ConfigError, match="train.steps: expected an integer"):
        build_recipe(["--recipe", str(bad)])
    with pytest.raises(ConfigError, match="did you mean 'default'"):
        build_recipe(["--recipe", "defualt"])


def test_stage_references_must_name_an_earlier_stage():
    data = {"stages": [{"name": "A", "init_from": "B"}, {"name": "B"}]}
    with pytest.raises(ConfigError, match="starts from 'B', which is not an earlier stage"):
        resolve(data, "r")
    with pytest.raises(ConfigError, match="two stages named 'A'"):
        resolve({"stages": [{"name": "A"}, {"name": "A"}]}, "r")


def test_a_recipe_with_a_python_tag_is_refused_before_anything_runs(tmp_path):
    marker = tmp_path / "ran"
    evil = tmp_path / "evil.yaml"
    evil.write_text(f'train: !!python/object/apply:os.system ["touch {marker}"]\n')
    run = subprocess.run(
        [sys.executable, "-m", "pop3d_ros.cli", "train", "--recipe", str(evil), "--out",
         str(tmp_path / "o")],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert run.returncode == 2
    assert "refused" in run.stderr and "python/object/apply" in run.stderr
    assert not marker.exists() and not (tmp_path / "o").exists()


def test_settings_diff_ignores_fields_added_later_at_their_default():
    # A checkpoint written before render.termination_weight existed.
    old = {"train": {"lr": 1.0, "steps": 2}, "render": {"aux_rays": False}}
    want = {
        "train": {"lr": 1.0, "steps": 2},
        "render": {"aux_rays": False, "termination_weight": 0.0},
    }
    assert settings_diff(old, want) == []
    want["render"]["termination_weight"] = 1.0
    assert settings_diff(old, want) == ["render.termination_weight"]
    assert settings_diff({**old, "train": {"lr": 2.0, "steps": 2}}, want) == [
        "render.termination_weight",
        "train.lr",
    ]


def test_help_is_grouped_by_component_and_each_group_fits_a_screen():
    run = subprocess.run(
        [sys.executable, "-m", "pop3d_ros.cli", "train", "--help"],
        capture_output=True, text=True, timeout=120, env={**os.environ, "COLUMNS": "100"},
    )  # fmt: skip
    assert run.returncode == 0
    groups, current = {}, None
    for line in run.stdout.splitlines():
        if " options " in line and line.lstrip().startswith("╭"):
            current = line.strip("╭─╮ ").removesuffix(" options").strip()
            groups[current] = 0
        elif current is not None:
            groups[current] += 1
    expected = {"model", "data", "teacher", "train", "loss", "occupancy", "render", "vfm", "eval"}
    assert expected <= set(groups)
    assert max(groups.values()) <= 50, groups
