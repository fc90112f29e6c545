"""`pop3d train --init_from` / `--init_backbone`: start from another checkpoint's weights, all
of them or only the image backbone (+ neck) ones (a `pop3d pretrain2d` stage or a 3D run)."""

from __future__ import annotations

PREFIX = "backbone."


def init_backbone(model, model_cfg, path) -> list[dict]:
    """Load the `backbone.*` tensors of checkpoint `path` into `model.backbone`; its backbone
    config must equal ours (the trunk's `weights` file aside). Returns the training stages that
    made those weights, oldest first (theirs, then that run itself)."""
    from pop3d_ros.model.checkpoint import CheckpointError, read_checkpoint

    ckpt = read_checkpoint(path)
    theirs = dict(ckpt["config"].get("backbone", {})) if isinstance(ckpt["config"], dict) else {}
    ours = dict(model_cfg.to_dict()["backbone"])
    for cfg in (theirs, ours):
        cfg.pop("weights", None)
    if theirs != ours:
        diff = sorted(k for k in set(theirs) | set(ours) if theirs.get(k) != ours.get(k))
        raise ValueError(
            f"init_backbone {path}: its backbone config differs from the {model_cfg.name} "
            f"preset's (in: {', '.join(diff)})"
        )
    state = {k[len(PREFIX) :]: v.float() for k, v in ckpt["model"].items() if k.startswith(PREFIX)}
    if not state:
        raise CheckpointError(f"{path}: holds no backbone weights (backbone.*)")
    try:
        model.backbone.load_state_dict(state)
    except RuntimeError as exc:
        raise CheckpointError(f"{path}: {str(exc).splitlines()[0]}") from exc
    meta = ckpt.get("meta", {})
    keys = ("command", "step", "train_seconds", "strategy")
    stage = {"checkpoint": str(path), "part": "backbone", **{k: meta.get(k) for k in keys}}
    return [*meta.get("earlier_stages", []), stage]


def init_weights(model, model_cfg, path) -> list[dict]:
    """Load another run's weights into `model`; the network config must match exactly.

    Returns the training stages that made those weights (theirs, then that run itself)."""
    from pop3d_ros.model.checkpoint import CheckpointError, read_checkpoint
    from pop3d_ros.model.config import ModelConfig

    ckpt = read_checkpoint(path)
    # Through ModelConfig so that fields added since (their defaults) compare equal.
    theirs, ours = ModelConfig.from_dict(ckpt.get("config", {})).to_dict(), model_cfg.to_dict()
    for cfg in (theirs, ours):
        cfg.get("backbone", {}).pop("weights", None)
    if theirs != ours:
        raise ValueError(f"--init-from {path}: its model config differs from --preset")
    try:
        model.load_state_dict({k: v.float() for k, v in ckpt["model"].items()})
    except RuntimeError as exc:
        raise CheckpointError(f"{path}: {str(exc).splitlines()[0]}") from exc
    meta = ckpt.get("meta", {})
    stage = {k: meta.get(k) for k in ("command", "step", "train_seconds", "strategy")}
    return [*meta.get("earlier_stages", []), {"checkpoint": str(path), **stage}]
