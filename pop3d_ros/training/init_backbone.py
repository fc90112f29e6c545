"""`pop3d train --init-backbone`: copy only the image backbone (+ neck) weights of another
checkpoint (a `pop3d pretrain2d` stage or a full 3D run) into a fresh model."""

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
            f"--init-backbone {path}: its backbone config differs from the {model_cfg.name} "
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
