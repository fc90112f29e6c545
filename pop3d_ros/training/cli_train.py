"""`pop3d train`: run a recipe (`--recipe NAME|PATH`) or one stage from options, stage by
stage, each resumable (re-run the same command to continue).

Options are generated from the config dataclasses (`training/settings.py`); every one of
them, and `--set key=value`, overrides the recipe's value in every stage.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import yaml

from pop3d_ros.cli_config import (
    ConfigError,
    flatten,
    given_keys,
    leaf_types,
    parse_command,
    parse_set,
    to_dict,
)
from pop3d_ros.training.recipe import Recipe, find_recipe, load_recipe, read_yaml, resolve
from pop3d_ros.training.settings import TrainSettings

PROG = "pop3d train"


def _append(tp):
    import tyro

    return Annotated[tp, tyro.conf.UseAppendAction]


@dataclass
class TrainCommand(TrainSettings):
    """Train a model. A recipe (config/recipes/<name>.yaml, or a path) gives every stage's
    settings; the options below override them in every stage. A field unique across the
    groups may be given without its group (--steps = --train.steps). Re-running the same
    command continues: finished stages are skipped, an unfinished one resumes from its
    last.pt. Stage S writes OUT/S/ (model.pt, last.pt, tb/); the last stage's release
    (fp16 weights, no optimizer state) is OUT/model.pt."""

    recipe: str = ""  # recipe name or YAML path ("" = one stage from these options alone)
    out: str = ""  # run directory (required)
    # key=value, repeatable: a setting by its dotted key (or a unique bare one), the value in
    # YAML (e.g. --set render.termination_weight=1.0 --set occupancy.sweeps=[-1,1])
    set: _append(tuple[str, ...]) = ()
    prepared: str = ""  # prepared-frame cache ("" = OUT/frames/<strategy>)
    stop_after: int = 0  # end this invocation at this step of the current stage (0 = no)
    prepare_only: bool = False  # only render/prepare every stage's frames (before torchrun)
    print_recipe: bool = False  # print the resolved recipe (all values) and exit


def _split_argv(argv: list[str]) -> tuple[str, list[str]]:
    """The recipe named on the command line (before parsing, so that its values become the
    defaults tyro shows and fills in) and the argv."""
    recipe = ""
    for i, token in enumerate(argv):
        if token == "--recipe" and i + 1 < len(argv):
            recipe = argv[i + 1]
        elif token.startswith("--recipe="):
            recipe = token.split("=", 1)[1]
    return recipe, argv


def build_recipe(argv: list[str]) -> tuple[Recipe, TrainCommand]:
    """The resolved recipe of a `pop3d train` command line, and the parsed command."""
    recipe_name, argv = _split_argv(argv)
    data = read_yaml(find_recipe(recipe_name)) if recipe_name else {}
    # tyro's defaults: the recipe's shared settings (its first stage's, for display).
    first = resolve(data, recipe_name or "options").stages[0].settings
    default = TrainCommand(**{f: getattr(first, f) for f in TrainSettings.__dataclass_fields__})
    cmd, expanded = parse_command(TrainCommand, argv, PROG, default=default)
    paths = leaf_types(TrainSettings)
    given = given_keys(expanded, paths)
    parsed = flatten(to_dict(cmd))
    overrides = {k: parsed[k] for k in sorted(given)}
    overrides.update(parse_set(cmd.set, paths))
    if recipe_name:
        recipe = load_recipe(recipe_name, overrides)
    else:
        recipe = resolve({}, "options", overrides)
    return recipe, cmd


def stage_output(out: Path, stage) -> Path:
    """The checkpoint a finished stage hands on (calibrated where the stage calibrates)."""
    name = "model_cal.pt" if stage.settings.render.calibration_frames else "model.pt"
    return out / stage.name / name


def settings_diff(have: dict, want: dict) -> list[str]:
    """Dotted keys where a stage's stored settings differ from the wanted ones. A key the
    stored settings lack (a field added since) counts only where the wanted value is not
    the field's default; a key only the stored settings have (removed since) does not."""
    have, want = flatten(have), flatten(want)
    default = flatten(to_dict(TrainSettings()))
    return sorted(
        k for k in want
        if (have[k] != want[k] if k in have else want[k] != default.get(k))
    )  # fmt: skip


def _stage_state(out: Path, stage) -> str:
    """done / resume / calibrate / new, refusing a stage directory trained with other
    settings."""
    from pop3d_ros.model.checkpoint import read_checkpoint

    d = out / stage.name
    for name, state in (("model.pt", "done"), ("last.pt", "resume")):
        if not (d / name).exists():
            continue
        meta = read_checkpoint(d / name).get("meta", {})
        diff = settings_diff(meta.get("settings", {}), to_dict(stage.settings))
        if diff:
            raise ConfigError(
                f"{d}/{name} was trained with other settings ({', '.join(diff[:8])}); use "
                "another --out, or remove that stage directory"
            )
        if state == "done" and int(meta.get("step", -1)) < stage.settings.train.steps:
            return "resume"
        if state == "done" and stage.settings.render.calibration_frames:
            return "done" if stage_output(out, stage).exists() else "calibrate"
        return state
    return "new"


def _calibrate(out: Path, stage, prepared: Path) -> None:
    from pop3d_ros.training.density_calibration import calibrate_checkpoint

    result = calibrate_checkpoint(
        out / stage.name / "model.pt",
        prepared,
        stage_output(out, stage),
        stage.settings.render.calibration_frames,
    )
    print(f"stage {stage.name}: density threshold {result['threshold']:.4g} (training rays)")


def run_recipe(recipe: Recipe, cmd: TrainCommand, argv: list[str]) -> int:
    from pop3d_ros.training.release import make_release
    from pop3d_ros.training.stage import check_settings, train_stage

    for stage in recipe.stages:  # refuse a bad stage before any work or output
        check_settings(stage.settings)
    out = Path(cmd.out)
    record = recipe.to_dict()
    print(f"{PROG}: recipe {recipe.name} ({recipe.source or 'command-line options'})")
    print(yaml.safe_dump(record, sort_keys=False, width=100), end="", flush=True)
    out.mkdir(parents=True, exist_ok=True)
    (out / "recipe.json").write_text(json.dumps(record, indent=1))
    finished: dict[str, Path] = {}
    for i, stage in enumerate(recipe.stages, 1):
        s = stage.settings
        if s.init_from in finished:
            s.init_from = str(finished[s.init_from])
        prepared = Path(cmd.prepared) if cmd.prepared else out / "frames" / s.train.strategy
        state = _stage_state(out, stage)
        print(f"== stage {i}/{len(recipe.stages)} {stage.name}: {state} ({s.train.steps} steps)")
        if state in ("new", "resume") or cmd.prepare_only:
            meta = {
                "recipe": record,
                "stage": stage.name,
                "command": " ".join(["pop3d", "train", *argv]),
            }
            summary = train_stage(
                s,
                out / stage.name,
                prepared=prepared,
                resume=state == "resume" and not cmd.prepare_only,
                stop_after=cmd.stop_after or None,
                prepare_only=cmd.prepare_only,
                meta=meta,
            )
            if cmd.prepare_only:
                continue
            if summary["step"] < s.train.steps:
                print(f"stopped at step {summary['step']} of stage {stage.name}; re-run to go on")
                return 0
        if s.render.calibration_frames and not stage_output(out, stage).exists():
            _calibrate(out, stage, prepared)
        finished[stage.name] = stage_output(out, stage)
    if cmd.prepare_only:
        return 0
    last = finished[recipe.stages[-1].name]
    make_release(last, out / "model.pt", note=f"recipe {recipe.name}, stage {last.parent.name}")
    print(f"{PROG}: recipe {recipe.name} done; release {out / 'model.pt'}")
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[2:] if argv is None else argv)
    try:
        recipe, cmd = build_recipe(argv)
        if cmd.print_recipe:
            print(yaml.safe_dump(recipe.to_dict(), sort_keys=False, width=100), end="")
            return 0
        if not cmd.out:
            raise ConfigError("--out DIR is required (the run directory)")
        return run_recipe(recipe, cmd, argv)
    except (ValueError, FileNotFoundError) as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
