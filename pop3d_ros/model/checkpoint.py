"""Checkpoints that rebuild the model from the file alone (format: docs/architecture.md).

A checkpoint is a `torch.save` dict with `config` (ModelConfig.to_dict()), `model` (state
dict), `text_space` (dict describing the text encoder), `meta` (training info) and any extra
keys the caller adds (optimizer state, epoch, ...).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import torch

from pop3d_ros.atomic import atomic_path
from pop3d_ros.model.config import ModelConfig

REQUIRED_KEYS = ("config", "model", "text_space", "meta")


class CheckpointError(ValueError):
    """A checkpoint file that is missing, unreadable or incomplete (message names the file)."""


def save_checkpoint(path, model, cfg: ModelConfig, text_space: dict, meta: dict, **extra) -> Path:
    """Write the checkpoint atomically (temp file + rename) so a crash never leaves half a file."""
    path = Path(path)
    if not isinstance(text_space, dict) or "kind" not in text_space:
        raise ValueError("text_space must be a dict with at least a 'kind' key")
    model = getattr(model, "module", model)  # unwrap DistributedDataParallel
    ckpt = {
        "config": cfg.to_dict(),
        "model": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "text_space": dict(text_space),
        "meta": dict(meta or {}),
        **extra,
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        torch.save(ckpt, tmp)
    return path


def read_checkpoint(path, map_location="cpu") -> dict:
    """The checkpoint dict, or CheckpointError with a one-line reason naming the file."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint file not found")
    try:
        # weights_only: a checkpoint is data (tensors and plain containers); a pickle that
        # names any other callable is refused instead of run, so a model file cannot execute
        # code in the node or in training.
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # noqa: BLE001 - every unpickling failure means a bad file
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise CheckpointError(f"{path}: not a readable checkpoint ({reason})") from exc
    if not isinstance(ckpt, dict):
        raise CheckpointError(f"{path}: not a pop3d checkpoint (got {type(ckpt).__name__})")
    missing = [k for k in REQUIRED_KEYS if k not in ckpt]
    if missing:
        raise CheckpointError(f"{path}: not a pop3d checkpoint (missing keys {missing})")
    return ckpt


def load_model(path, map_location="cpu"):
    """(model in eval mode, checkpoint dict) rebuilt from the file alone."""
    from pop3d_ros.model.pop3d import build_model

    ckpt = read_checkpoint(path, map_location)
    try:
        cfg = ModelConfig.from_dict(ckpt["config"])
    except (ValueError, TypeError) as exc:
        raise CheckpointError(f"{path}: bad model config ({exc})") from exc
    cfg.backbone.weights = None  # the state dict holds the weights; the file may be gone
    model = build_model(cfg)
    try:
        model.load_state_dict(ckpt["model"])
    except RuntimeError as exc:
        first = str(exc).splitlines()[0]
        raise CheckpointError(f"{path}: weights do not match the stored config ({first})") from exc
    model.eval()
    return model, ckpt


def checkpoint_sha256(path) -> str:
    """Hex SHA-256 of the file's bytes (identifies a checkpoint in manifests and caches)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint file not found")
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
