"""Recipes: a training run by name, as a YAML file of `TrainSettings` values in stages.

```yaml
description: ...          # what it is (free text)
paper: ...                # what it reproduces (free text)
model: {preset: cpu-small}             # settings shared by every stage
train: {feature_weight: 256}
stages:                                # optional; without it the file is one stage, "main"
  - name: A
    train: {steps: 2500, lr: 5.0e-4}
  - name: B
    init_from: A                       # an earlier stage's result, or a checkpoint path
    train: {steps: 2000, feature_balance: 1.0}
```

A stage's settings are the defaults of `TrainSettings`, then the file's shared settings, then
the stage's own, then the command line's overrides (which apply to every stage). Files are
read with YAML's safe loader (a Python tag is refused before anything runs), and every key
is checked against the config dataclasses (an unknown key names the nearest valid one).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from pop3d_ros.cli_config import (
    ConfigError,
    flatten,
    from_dict,
    leaf_types,
    merge,
    suggest,
    to_dict,
)
from pop3d_ros.training.settings import TrainSettings

META_KEYS = ("description", "paper")
STAGE_NAME_CHARS = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-")


def recipes_dir() -> Path:
    """The shipped recipes: `config/recipes/` of the installed package's share directory, or
    of the source checkout."""
    from pop3d_ros.resources import package_file

    return package_file("config", "recipes")


def available() -> list[str]:
    return sorted(p.stem for p in recipes_dir().glob("*.yaml"))


def find_recipe(name_or_path: str) -> Path:
    """A recipe file by path, or by name among the shipped recipes."""
    path = Path(name_or_path)
    if path.suffix in (".yaml", ".yml") or path.exists():
        if not path.is_file():
            raise ConfigError(f"recipe file {path} does not exist")
        return path
    path = recipes_dir() / f"{name_or_path}.yaml"
    if not path.is_file():
        shipped = available()
        raise ConfigError(
            f"no recipe {name_or_path!r}{suggest(name_or_path, shipped)}; shipped: {shipped}"
        )
    return path


def read_yaml(path: Path) -> dict:
    """A YAML mapping read with the safe loader; a Python (or any unknown) tag is refused."""
    text = Path(path).read_text()
    try:
        data = yaml.safe_load(text)
    except yaml.constructor.ConstructorError as exc:
        raise ConfigError(f"{path}: refused: {exc.problem} (recipes hold plain values)") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: a recipe is a mapping of settings, got {type(data).__name__}")
    return data


@dataclass
class Stage:
    name: str
    settings: TrainSettings


@dataclass
class Recipe:
    """A resolved recipe: every stage's complete settings."""

    name: str
    stages: list[Stage]
    description: str = ""
    paper: str = ""
    source: str = ""  # the file it came from ("" = the command line alone)
    sha256: str = ""  # of that file
    overrides: dict = field(default_factory=dict)  # dotted path -> value, from the command line

    def stage(self, name: str) -> Stage:
        for st in self.stages:
            if st.name == name:
                return st
        raise ConfigError(f"recipe {self.name!r} has no stage {name!r}")

    def to_dict(self) -> dict:
        """The record stored in every checkpoint and printed at start (all values)."""
        return {
            "name": self.name,
            "description": self.description,
            "paper": self.paper,
            "source": self.source,
            "sha256": self.sha256,
            "overrides": dict(self.overrides),
            "stages": [{"name": st.name, **to_dict(st.settings)} for st in self.stages],
        }


def _section_overrides(section: dict, where: str, paths) -> dict:
    """A mapping of settings -> {dotted path: value}, every key checked."""
    flat = flatten(section)
    for key in flat:
        if key not in paths:
            raise ConfigError(f"{where}: unknown key {key!r}{suggest(key, paths)}")
    return flat


def resolve(
    data: dict, name: str, overrides: dict | None = None, source: str = "", sha256: str = ""
) -> Recipe:
    """The recipe described by `data` (a parsed recipe file), with command-line `overrides`
    ({dotted path: value}) applied to every stage."""
    paths = leaf_types(TrainSettings)
    overrides = dict(overrides or {})
    data = dict(data)
    meta = {k: data.pop(k) for k in META_KEYS if k in data}
    stages_data = data.pop("stages", None)
    shared = _section_overrides(data, name, paths)
    if stages_data is None:
        stages_data = [{"name": "main"}]
    if not isinstance(stages_data, list) or not stages_data:
        raise ConfigError(f"{name}: stages must be a non-empty list")
    base = to_dict(TrainSettings())
    stages: list[Stage] = []
    for i, raw in enumerate(stages_data):
        if not isinstance(raw, dict):
            raise ConfigError(f"{name}: stage {i} must be a mapping")
        raw = dict(raw)
        stage_name = str(raw.pop("name", f"stage{i}"))
        if not stage_name or set(stage_name) - STAGE_NAME_CHARS:
            raise ConfigError(f"{name}: stage name {stage_name!r}: use letters, digits, - and _")
        if stage_name in {st.name for st in stages}:
            raise ConfigError(f"{name}: two stages named {stage_name!r}")
        own = _section_overrides(raw, f"{name}.stages[{stage_name}]", paths)
        values = merge(merge(merge(base, shared), own), overrides)
        stages.append(Stage(stage_name, from_dict(TrainSettings, values, "")))
    names = [st.name for st in stages]
    for i, st in enumerate(stages):
        if st.settings.init_from in names[i:]:
            raise ConfigError(
                f"{name}: stage {st.name!r} starts from {st.settings.init_from!r}, which is not "
                "an earlier stage"
            )
    for key in ("description", "paper"):
        if not isinstance(meta.get(key, ""), str):
            raise ConfigError(f"{name}: {key} must be text")
    return Recipe(name, stages, overrides=overrides, source=source, sha256=sha256, **meta)


def load_recipe(name_or_path: str, overrides: dict | None = None) -> Recipe:
    path = find_recipe(name_or_path)
    data = read_yaml(path)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    return resolve(data, path.stem, overrides, source=str(path), sha256=digest)
