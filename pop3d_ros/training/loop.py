"""The training loop: AdamW + warm-up/cosine schedule, grad clipping, AMP on GPU, DDP,
checkpoints every N steps with exact resume, tqdm progress, TensorBoard scalars, and
periodic evaluation through a caller-supplied `evaluate(model) -> {metric: value}`.

What is supervised and how lives in a `strategies.Strategy`; this file knows nothing about
LiDAR, teachers or text.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import DataLoader, DistributedSampler
from tqdm import tqdm

from pop3d_ros.atomic import atomic_path
from pop3d_ros.distributed import DistInfo, all_reduce_mean, barrier, sync_buffers
from pop3d_ros.model.checkpoint import read_checkpoint
from pop3d_ros.model.inputs import SamplingCache
from pop3d_ros.training.config import TrainConfig
from pop3d_ros.training.schedule import lr_factor


class TrainWrapper(nn.Module):
    """Runs the encoder + occupancy head densely and the language head only at the
    supervised voxels, inside one forward (so DDP sees every parameter's use).

    A strategy with `forward_heads(model, outputs, batch) -> dict` (e.g. rendering) decides
    itself where the language head runs; its outputs are added to the model's."""

    def __init__(self, model: nn.Module, strategy=None):
        super().__init__()
        self.model = model
        self.heads_hook = getattr(strategy, "forward_heads", None)

    def forward(self, images, *inputs):
        """`inputs` = (*sampling, batch): the calibration inputs after the images
        (`inputs.SamplingCache`: grid, mask[, depth bin coordinates]), then the batch."""
        *sampling, batch = inputs
        out = self.model(images, *sampling)
        if self.heads_hook is not None:
            out.update(self.heads_hook(self.model, out, batch))
            return out
        vf = out["voxel_features"]
        flat = vf.reshape(-1, vf.shape[-1])
        out["language_features"] = self.model.language_head(flat[batch["voxel_index"]])
        return out


def param_groups(model: nn.Module, cfg: TrainConfig) -> list[dict]:
    """Backbone at lr x backbone_lr_mult; no weight decay on biases and norm parameters."""
    groups = {(b, d): [] for b in (True, False) for d in (True, False)}
    for name, p in model.named_parameters():
        if p.requires_grad:
            groups[(name.startswith("backbone."), p.ndim > 1)].append(p)
    out = []
    for (is_backbone, decay), params in groups.items():
        if params:
            out.append(
                {
                    "params": params,
                    "lr": cfg.lr * (cfg.backbone_lr_mult if is_backbone else 1.0),
                    "weight_decay": cfg.weight_decay if decay else 0.0,
                }
            )
    return out


def _batches(n: int, cfg: TrainConfig, info: DistInfo, epoch: int) -> list[list[int]]:
    sampler = DistributedSampler(
        range(n), num_replicas=info.world_size, rank=info.rank, shuffle=True, seed=cfg.seed
    )
    sampler.set_epoch(epoch)
    idx = list(sampler)
    per_epoch = len(idx) // cfg.batch_size
    return [idx[i * cfg.batch_size : (i + 1) * cfg.batch_size] for i in range(per_epoch)]


def _save(path: Path, payload: dict) -> None:
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)


def train(
    model: nn.Module,
    model_cfg,
    dataset,
    strategy,
    cfg: TrainConfig,
    out_dir,
    info: DistInfo | None = None,
    resume: bool = False,
    text_space: dict | None = None,
    meta: dict | None = None,
    extra: dict | None = None,
    stop_after: int | None = None,
    log=print,
    evaluate: Callable[[nn.Module], dict[str, float]] | None = None,
) -> dict:
    """Train `model` on `dataset` (prepared frames) and write `last.pt` / `model.pt` in out_dir.

    `stop_after` ends this invocation early at that step (checkpointed, schedule unchanged),
    e.g. to split a run over sessions; `resume=True` continues from `last.pt`.

    `evaluate(model)` runs every `cfg.eval_every` steps and at the last step, on every rank
    (it reduces its metrics across ranks itself), with the model in eval mode and no grad.

    Returns {"step", "history": [(step, {term: value})], "eval_history": [(step, {metric:
    value})], "seconds", "checkpoint"}.
    """
    cfg.validate()
    info = info or DistInfo()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    dev = info.device
    torch.manual_seed(cfg.seed)
    n = len(dataset)
    if n < info.world_size * cfg.batch_size:
        raise ValueError(
            f"{n} frames cannot fill one batch of {cfg.batch_size} on {info.world_size} processes"
        )
    model.to(dev)
    wrapper: nn.Module = TrainWrapper(model, strategy)
    if info.enabled:
        wrapper = nn.parallel.DistributedDataParallel(
            wrapper, device_ids=[dev.index] if dev.type == "cuda" else None
        )
    opt = torch.optim.AdamW(param_groups(model, cfg), lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt,
        lambda s: lr_factor(
            s, cfg.lr, cfg.steps, cfg.warmup_steps, cfg.warmup_start_lr, cfg.final_lr
        ),
    )
    use_amp = cfg.amp == "on" or (cfg.amp == "auto" and dev.type == "cuda")
    scaler = torch.amp.GradScaler(dev.type, enabled=use_amp and dev.type == "cuda")
    step = 0
    last = out / "last.pt"
    if resume:
        if not last.exists():
            raise FileNotFoundError(f"{last}: nothing to resume from")
        state = read_checkpoint(last)
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["train_state"]["optimizer"])
        sched.load_state_dict(state["train_state"]["scheduler"])
        scaler.load_state_dict(state["train_state"]["scaler"])
        step = int(state["train_state"]["step"])
        if info.is_main:
            log(f"resumed from {last} at step {step}")
    sampling = SamplingCache(model_cfg)
    num_voxels = model_cfg.voxel_grid.num_voxels
    writer = None
    if info.is_main:
        from torch.utils.tensorboard import SummaryWriter

        writer = SummaryWriter(str(out / "tb"))
    meta = dict(meta or {})
    history: list[tuple[int, dict]] = []
    eval_history: list[tuple[int, dict]] = []
    t0 = time.time()
    prior_seconds = float(meta.get("train_seconds", 0.0))
    if resume:
        prior_seconds = float(state["meta"].get("train_seconds", 0.0))

    def checkpoint(path: Path, with_state: bool) -> None:
        payload = {
            "config": model_cfg.to_dict(),
            "model": {k: v.detach().cpu() for k, v in model.state_dict().items()},
            "text_space": text_space or {"kind": "none"},
            "meta": {
                **meta,
                "step": step,
                "train_config": cfg.to_dict(),
                "world_size": info.world_size,
                "train_seconds": prior_seconds + time.time() - t0,
            },
            **(extra or {}),
        }
        if with_state:
            payload["train_state"] = {
                "optimizer": opt.state_dict(),
                "scheduler": sched.state_dict(),
                "scaler": scaler.state_dict(),
                "step": step,
            }
        _save(path, payload)

    def collate(items):
        return strategy.collate(items, num_voxels)

    def run_eval() -> None:
        # BatchNorm running stats differ between DDP replicas; evaluate rank 0's.
        sync_buffers(model, info)
        model.eval()
        with torch.no_grad():
            metrics = {k: float(v) for k, v in evaluate(model).items()}
        model.train()
        eval_history.append((step, metrics))
        meta["eval"] = {"step": step, **metrics}
        if writer is not None:
            for k, v in metrics.items():
                writer.add_scalar(f"eval/{k}", v, step)
        if info.is_main:
            bar.write(
                f"eval at step {step}: " + ", ".join(f"{k} {v:.4f}" for k, v in metrics.items())
            )

    per_epoch = len(_batches(n, cfg, info, 0))
    bar = tqdm(
        total=cfg.steps,
        initial=step,
        desc="train",
        disable=not info.is_main,
        unit="step",
        dynamic_ncols=True,
    )
    wrapper.train()
    limit = min(cfg.steps, stop_after) if stop_after else cfg.steps
    while step < limit:
        epoch, offset = divmod(step, per_epoch)
        batches = _batches(n, cfg, info, epoch)[offset:]
        loader = DataLoader(
            dataset, batch_sampler=batches, collate_fn=collate, num_workers=cfg.num_workers
        )
        for batch in loader:
            calib = sampling.batch(batch["intrinsics"], batch["cam_to_ego"])
            batch = {k: v.to(dev, non_blocking=True) for k, v in batch.items()}
            images = batch["images"].float() / 255.0
            with torch.autocast(dev.type, enabled=use_amp):
                outputs = wrapper(images, *(t.to(dev) for t in calib), batch)
            terms = strategy.losses(outputs, batch)
            loss = terms["loss"]
            if not torch.isfinite(loss):
                raise FloatingPointError(f"non-finite loss at step {step}: {loss.item()}")
            opt.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            if cfg.grad_clip > 0:
                scaler.unscale_(opt)
                torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
            scaler.step(opt)
            scaler.update()
            sched.step()
            step += 1
            bar.update(1)
            if step % cfg.log_every == 0 or step == cfg.steps:
                values = all_reduce_mean({k: v.item() for k, v in terms.items()}, info)
                values["lr"] = opt.param_groups[-1]["lr"]
                history.append((step, values))
                if writer is not None:
                    for k, v in values.items():
                        writer.add_scalar(f"train/{k}", v, step)
                shown = [k for k in ("loss", "occ", "depth", "ft") if k in values]
                bar.set_postfix({k: f"{values[k]:.4f}" for k in shown})
            if (
                evaluate is not None
                and cfg.eval_every
                and (step % cfg.eval_every == 0 or step == cfg.steps)
            ):
                run_eval()
            if step % cfg.checkpoint_every == 0 or step == limit:
                if info.is_main:
                    checkpoint(last, with_state=True)
                barrier(info)
            if step >= limit:
                break
    bar.close()
    sync_buffers(model, info)
    final = out / "model.pt"
    if info.is_main:
        if step >= cfg.steps:
            checkpoint(final, with_state=False)
        writer.close()
    barrier(info)
    return {
        "step": step,
        "history": history,
        "eval_history": eval_history,
        "seconds": time.time() - t0,
        "checkpoint": str(final),
        "per_epoch": per_epoch,
        "epochs": math.ceil(step / per_epoch),
    }
