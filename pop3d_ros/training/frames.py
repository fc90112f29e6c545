"""Prepared training frames on disk: one `.pt` per frame (inputs + targets), resumable.

Preparing (rendering, running the teacher, building targets) is the expensive part on a CPU,
so it runs once; training epochs then only read these files.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from pathlib import Path

import torch
from torch.utils.data import Dataset
from tqdm import tqdm


def prepare_frames(
    keys: Iterable[str],
    make_sample: Callable[[str], dict],
    prepare: Callable,
    out_dir,
    desc: str = "prepare",
    settings: dict | None = None,
) -> Path:
    """Write `<out_dir>/<key>.pt` = prepare(make_sample(key)) for every key not yet on disk,
    and `index.json` listing the keys in order. Safe to interrupt and re-run.

    `settings` (JSON-able: teacher, text space, grid, ...) is stored in `settings.json`; a
    directory prepared with other settings is refused, since its cached targets would
    silently train the model on another recipe."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if settings is not None:
        _check_settings(out, json.loads(json.dumps(settings)))
    keys = list(keys)
    for key in tqdm(keys, desc=desc, unit="frame"):
        path = out / f"{key}.pt"
        if path.exists():
            continue
        item = prepare(make_sample(key))
        tmp = path.with_suffix(".tmp")
        torch.save(item, tmp)
        tmp.replace(path)  # atomic: a killed run never leaves a half-written frame
    (out / "index.json").write_text(json.dumps({"frames": keys}, indent=1))
    return out


def _check_settings(out: Path, settings: dict) -> None:
    path = out / "settings.json"
    if path.exists():
        stored = json.loads(path.read_text())
        if stored != settings:
            diff = sorted(
                k for k in set(stored) | set(settings) if stored.get(k) != settings.get(k)
            )
            raise ValueError(
                f"{out} was prepared with other settings (differ in: {', '.join(diff)}); "
                "pass another --prepared directory or delete this one"
            )
        return
    if any(out.glob("*.pt")):
        raise ValueError(
            f"{out} holds frames prepared without recorded settings; "
            "pass another --prepared directory or delete this one"
        )
    path.write_text(json.dumps(settings, indent=1, sort_keys=True))


class PreparedFrames(Dataset):
    """The prepared frames of a directory written by `prepare_frames`."""

    def __init__(self, root):
        self.root = Path(root)
        index = self.root / "index.json"
        if not index.exists():
            raise FileNotFoundError(f"{index}: no prepared frames here (run prepare first)")
        self.keys = json.loads(index.read_text())["frames"]
        if not self.keys:
            raise ValueError(f"{index}: lists no frames")

    def __len__(self) -> int:
        return len(self.keys)

    def __getitem__(self, i: int) -> dict:
        return torch.load(self.root / f"{self.keys[i]}.pt", weights_only=True)
