"""Checkpoint -> `encoder.onnx` + `language_head.onnx` + `manifest.json` (opset 17).

Graph names and shapes follow docs/architecture.md ("Model I/O"); the graphs themselves are
written by `pop3d_ros.model.onnx_io` (the model owns its export details). The export is checked
before the manifest is written: `onnx.checker`, the TensorRT op table, and (by default) an
ONNX Runtime vs PyTorch parity run on random inputs, whose max errors go into the manifest.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from pop3d_ros.export.errors import OnnxFileError
from pop3d_ros.export.hashing import sha256_file
from pop3d_ros.export.manifest import FORMAT, tensor_specs, write_manifest

ENCODER_FILE = "encoder.onnx"
LANGUAGE_HEAD_FILE = "language_head.onnx"
ENCODER_INPUTS = ("images", "sampling_grid", "sampling_mask")  # + sampling_depth: see cfg
ENCODER_OUTPUTS = ("occupancy_logits", "voxel_features")
LANGUAGE_INPUTS = ("voxel_features",)
LANGUAGE_OUTPUTS = ("language_features",)
# Parity tolerances (float32 CPU, ORT vs torch eager). Stated here, asserted in the tests.
PARITY_ATOL = 1e-3
PARITY_RTOL = 1e-3

Log = Callable[[str], None]


def example_inputs(cfg, batch: int = 1, seed: int = 0) -> dict[str, np.ndarray]:
    """Random encoder inputs of the graph's shapes (a quarter of the voxels unseen), named as
    `cfg.encoder_input_names`."""
    rng = np.random.default_rng(seed)
    h, w = cfg.image_size
    n_cam, n_vox = cfg.num_cameras, int(np.prod(cfg.grid.shape))
    feed = {
        "images": rng.random((batch, n_cam, 3, h, w), dtype=np.float32),
        "sampling_grid": rng.uniform(-1, 1, (batch, n_cam, n_vox, 2)).astype(np.float32),
        "sampling_mask": (rng.random((batch, n_cam, n_vox)) > 0.25).astype(np.float32),
    }
    bins = cfg.lifting.depth_bins
    if bins:  # bin coordinates along each camera's axis (a depth-bin lifting)
        feed["sampling_depth"] = rng.uniform(0, bins - 1, (batch, n_cam, n_vox)).astype(np.float32)
    return feed


def validate_onnx(path: str | os.PathLike, inputs, outputs):
    """Load + `onnx.checker` + expected I/O names; OnnxFileError (one line) otherwise."""
    import onnx

    path = Path(path)
    if not path.is_file():
        raise OnnxFileError(path, "file not found")
    try:
        model = onnx.load(os.fspath(path))
    except Exception as e:
        raise OnnxFileError(path, f"not a readable ONNX model ({type(e).__name__}: {e})") from None
    try:
        onnx.checker.check_model(model)
    except Exception as e:
        raise OnnxFileError(path, f"onnx.checker failed ({e})") from None
    ins, outs = tensor_specs(model)
    got_in, got_out = [s["name"] for s in ins], [s["name"] for s in outs]
    if got_in != list(inputs) or got_out != list(outputs):
        raise OnnxFileError(
            path, f"graph I/O {got_in} -> {got_out}, expected {list(inputs)} -> {list(outputs)}"
        )
    return model


def _versions() -> dict:
    import onnx
    import torch

    import pop3d_ros

    out = {"pop3d_ros": pop3d_ros.__version__, "torch": torch.__version__, "onnx": onnx.__version__}
    try:
        import onnxruntime

        out["onnxruntime"] = onnxruntime.__version__
    except ImportError:
        pass
    return out


def parity_check(model, out_dir: Path, cfg, n_language: int = 257) -> dict:
    """Max abs errors of ONNX Runtime (CPU EP) vs torch eager on random inputs."""
    import torch

    from pop3d_ros.export.backends.ort_backend import OrtBackend

    feed = example_inputs(cfg, seed=1)
    with torch.inference_mode():
        ref = model(*(torch.from_numpy(feed[n]) for n in cfg.encoder_input_names))
    with OrtBackend(out_dir / ENCODER_FILE, providers=["cpu"], log=lambda _m: None) as enc:
        got = enc.infer(feed)
    errors = {n: float(np.max(np.abs(got[n] - ref[n].numpy()))) for n in ENCODER_OUTPUTS}
    feats = ref["voxel_features"].reshape(-1, cfg.decoder.voxel_channels)[:n_language]
    with torch.inference_mode():
        ref_lang = model.language_head(feats).numpy()
    with OrtBackend(out_dir / LANGUAGE_HEAD_FILE, providers=["cpu"], log=lambda _m: None) as lh:
        got_lang = lh.infer({"voxel_features": feats.numpy()})["language_features"]
    errors["language_features"] = float(np.max(np.abs(got_lang - ref_lang)))
    return errors


def export_model(
    model,
    cfg,
    text_space: dict,
    checkpoint_sha256: str,
    out_dir: str | os.PathLike,
    verify: bool = True,
    check_ops: bool = True,
    log: Log = print,
) -> dict:
    """Write both graphs and the manifest into `out_dir`; returns the manifest.

    The manifest is written last, so a directory without one is an unfinished export.
    """
    from pop3d_ros.export.op_check import check_onnx_ops, load_op_table, onnx_op_types
    from pop3d_ros.model.onnx_io import (
        GRAPH_REVISION,
        export_encoder_onnx,
        export_language_head_onnx,
    )

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "manifest.json").unlink(missing_ok=True)
    model = model.eval()
    t0 = time.monotonic()
    graphs = {}
    table = load_op_table()
    unsupported = {}
    for name, file, fn, ins, outs in (
        ("encoder", ENCODER_FILE, export_encoder_onnx, cfg.encoder_input_names, ENCODER_OUTPUTS),
        ("language_head", LANGUAGE_HEAD_FILE, export_language_head_onnx, LANGUAGE_INPUTS,
         LANGUAGE_OUTPUTS),
    ):  # fmt: skip
        path = out_dir / file
        log(f"export: writing {path}")
        fn(model, path, cfg)
        onnx_model = validate_onnx(path, ins, outs)
        inputs, outputs = tensor_specs(onnx_model)
        problems = check_onnx_ops(onnx_model, table) if check_ops else []
        if problems:
            log(f"export: WARNING {file} uses ops TensorRT cannot parse: {'; '.join(problems)}")
        unsupported[name] = problems
        opset = max(i.version for i in onnx_model.opset_import if i.domain in ("", "ai.onnx"))
        graphs[name] = {
            "file": file,
            "sha256": sha256_file(path),
            "inputs": inputs,
            "outputs": outputs,
            "ops": onnx_op_types(onnx_model),
        }
    manifest = {
        "format": FORMAT,
        "graph_revision": GRAPH_REVISION,
        "model_config": cfg.to_dict(),
        "text_space": dict(text_space),
        "checkpoint": {"sha256": checkpoint_sha256},
        "opset": opset,
        "graphs": graphs,
        "tensorrt_op_check": {
            "table": f"TensorRT {table.tensorrt_version}",
            "source": table.source,
            "unsupported": unsupported,
        },
        "exporter": _versions(),
        "export_seconds": round(time.monotonic() - t0, 2),
    }
    if verify:
        errors = parity_check(model, out_dir, cfg)
        manifest["parity_max_abs_error"] = errors
        manifest["parity_tolerance"] = {"atol": PARITY_ATOL, "rtol": PARITY_RTOL}
        log(
            "export: ORT vs torch max abs error "
            + ", ".join(f"{k} {v:.2e}" for k, v in errors.items())
        )
    write_manifest(out_dir, manifest)
    log(f"export: done in {time.monotonic() - t0:.1f} s -> {out_dir}")
    return manifest


def export_checkpoint(
    checkpoint: str | os.PathLike, out_dir: str | os.PathLike, log: Log = print, **kwargs
) -> dict:
    """`export_model` for a checkpoint file (model.checkpoint format)."""
    from pop3d_ros.model.checkpoint import checkpoint_sha256, load_model

    model, ckpt = load_model(checkpoint)
    return export_model(
        model,
        model.cfg,
        ckpt["text_space"],
        checkpoint_sha256(checkpoint),
        out_dir,
        log=log,
        **kwargs,
    )
