"""Precision as a property of the ONNX graph (what strongly typed TensorRT builds need).

TensorRT 11 removed the weak-typing builder flags (`BuilderFlag.FP16/INT8`) and implicit
int8 calibration: the network's tensor types decide the precision. So each precision is its
own graph file next to the fp32 export:

- `encoder.onnx` / `language_head.onnx`: fp32 (what `pop3d export` writes);
- `*.fp16.onnx`: every float tensor in fp16, fp32 at the graph's inputs and outputs (Cast
  nodes at the edges), derived on demand (`ensure_fp16`);
- `*.int8.onnx`: a Q/DQ graph from ONNX Runtime's static quantization (per-channel symmetric
  int8 weights, symmetric int8 activations: the form TensorRT builds as an explicitly
  quantized engine and ONNX Runtime runs on the CPU), written by `quantize_export` from
  calibration frames.

Each variant has a sidecar `<file>.json` naming the fp32 graph's sha256 it was made from, so a
variant of an older export is detected (and refused or rebuilt) instead of silently used.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from pop3d_ros.atomic import write_text_atomic
from pop3d_ros.export.errors import OnnxFileError
from pop3d_ros.export.hashing import sha256_file

PRECISIONS = ("fp32", "fp16", "int8")
Log = Callable[[str], None]
# Inputs that ONNX requires to stay float32 whatever the data precision: (op, input indices).
_FLOAT32_INPUTS = {"Resize": (1, 2)}  # roi, scales
_QUANTIZED_OPS = ["Conv", "MatMul", "Gemm"]  # the weight-bearing ops; the rest stays float
# The occupancy logits' last layer stays float: quantizing it flipped twice as many
# occupied/free decisions on held-out frames (0.30 % vs 0.17 % of voxels; docs/experiments/int8.md).
ENCODER_FLOAT_NODES = ("/model/occupancy_head/out/",)


def variant_path(fp32_path: str | os.PathLike, precision: str) -> Path:
    """`encoder.onnx` -> `encoder.fp16.onnx` / `encoder.int8.onnx` (fp32: itself)."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    p = Path(fp32_path)
    return p if precision == "fp32" else p.with_name(f"{p.stem}.{precision}.onnx")


def _sidecar(path: Path) -> Path:
    return path.with_suffix(".json")


def read_variant_info(path: str | os.PathLike) -> dict | None:
    """The sidecar of a variant file, or None when missing/unreadable."""
    try:
        return json.loads(_sidecar(Path(path)).read_text())
    except (OSError, ValueError):
        return None


def variant_problem(fp32_path: str | os.PathLike, precision: str) -> str | None:
    """Why the `precision` variant of `fp32_path` cannot be used (None: it can)."""
    path = variant_path(fp32_path, precision)
    if precision == "fp32":
        return None if path.is_file() else "file not found"
    info = read_variant_info(path)
    if not path.is_file() or info is None:
        return f"no {precision} graph ({path.name} and its .json sidecar)"
    if info.get("source_sha256") != sha256_file(fp32_path):
        return f"{path.name} was made from another fp32 graph (stale)"
    if info.get("sha256") != sha256_file(path):
        return f"{path.name} does not match its sidecar's sha256 (modified or truncated)"
    return None


def _write_variant(model, dst: Path, src: Path, info: dict) -> Path:
    import onnx

    tmp = dst.with_name(dst.name + ".tmp")
    if model is not None:  # else the caller already wrote `tmp`
        onnx.save(model, os.fspath(tmp))
    os.replace(tmp, dst)
    info = {
        **info,
        "source": src.name,
        "source_sha256": sha256_file(src),
        "sha256": sha256_file(dst),
    }
    write_text_atomic(_sidecar(dst), json.dumps(info, indent=1, sort_keys=True))
    return dst


# ----------------------------------------------------------------------------- fp16
def to_fp16(model):
    """A copy of an fp32 ONNX model with fp16 tensors inside and fp32 inputs/outputs."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    model = onnx.ModelProto.FromString(model.SerializeToString())
    g = model.graph
    F, H = TensorProto.FLOAT, TensorProto.FLOAT16
    keep32 = set()
    for n in g.node:
        for i in _FLOAT32_INPUTS.get(n.op_type, ()):
            if i < len(n.input) and n.input[i]:
                keep32.add(n.input[i])

    def half(t):
        arr = numpy_helper.to_array(t)
        if np.abs(arr).max(initial=0.0) > np.finfo(np.float16).max:
            raise OnnxFileError(None, f"tensor '{t.name}' exceeds the fp16 range")
        return numpy_helper.from_array(arr.astype(np.float16), t.name)

    for init in g.initializer:
        if init.data_type == F and init.name not in keep32:
            init.CopyFrom(half(init))
    for n in g.node:
        if n.op_type == "Constant" and n.output[0] not in keep32:
            for a in n.attribute:
                if a.name == "value" and a.t.data_type == F:
                    a.t.CopyFrom(half(a.t))
                elif a.name == "value_float":
                    raise OnnxFileError(None, f"Constant '{n.name}' uses value_float")
        elif n.op_type in ("Cast", "ConstantOfShape") and n.output[0] not in keep32:
            for a in n.attribute:
                if a.name == "to" and a.i == F:
                    a.i = H
                elif a.name == "value" and a.t.data_type == F:
                    a.t.CopyFrom(half(a.t))
    # fp32 at the edges: Cast after each float input, before each float output.
    edge_in, edge_out = [], []
    for vi in g.input:
        if vi.type.tensor_type.elem_type == F:
            inner = f"{vi.name}__fp16"
            for n in g.node:
                n.input[:] = [inner if x == vi.name else x for x in n.input]
            edge_in.append(helper.make_node("Cast", [vi.name], [inner], to=H, name=inner))
    for vi in g.output:
        if vi.type.tensor_type.elem_type == F:
            inner = f"{vi.name}__fp16"
            for n in g.node:
                n.output[:] = [inner if x == vi.name else x for x in n.output]
                n.input[:] = [inner if x == vi.name else x for x in n.input]
            edge_out.append(helper.make_node("Cast", [inner], [vi.name], to=F, name=vi.name))
    nodes = edge_in + list(g.node) + edge_out
    del g.node[:]
    g.node.extend(nodes)
    del g.value_info[:]
    model = onnx.shape_inference.infer_shapes(model, strict_mode=True)
    onnx.checker.check_model(model, full_check=True)
    return model


def ensure_fp16(fp32_path: str | os.PathLike, log: Log = print) -> Path:
    """The fp16 variant of an fp32 graph, converted now if missing or stale."""
    import onnx

    src = Path(fp32_path)
    dst = variant_path(src, "fp16")
    if variant_problem(src, "fp16") is None:
        return dst
    log(f"precision: converting {src.name} to fp16 -> {dst.name}")
    try:
        model = to_fp16(onnx.load(os.fspath(src)))
    except OnnxFileError as e:
        raise OnnxFileError(src, f"fp16 conversion failed: {e.problem}") from None
    except Exception as e:  # onnx checker / shape inference
        raise OnnxFileError(src, f"fp16 conversion failed ({type(e).__name__}: {e})") from None
    return _write_variant(model, dst, src, {"precision": "fp16", "io": "float32"})


# ----------------------------------------------------------------------------- int8
def check_feeds(feeds: Sequence[dict], inputs: Sequence[dict], where: str = "") -> None:
    """Every feed has every input with exactly the graph's static dims (ValueError otherwise).

    `inputs` are manifest specs ({name, shape, dtype}); symbolic dims (str) match any size.
    A smaller array would otherwise be read out of bounds by a device copy.
    """
    for k, feed in enumerate(feeds):
        for spec in inputs:
            name, shape = spec["name"], list(spec["shape"])
            if name not in feed:
                raise ValueError(f"{where}calibration frame {k} lacks input '{name}'")
            got = np.shape(feed[name])
            ok = len(got) == len(shape) and all(
                isinstance(d, str) or d is None or int(d) == g
                for d, g in zip(shape, got, strict=True)
            )
            if not ok:
                raise ValueError(
                    f"{where}calibration frame {k}: input '{name}' has shape {tuple(got)}, "
                    f"the graph expects {tuple(shape)}"
                )
            if not np.all(np.isfinite(feed[name])):
                raise ValueError(f"{where}calibration frame {k}: input '{name}' is not finite")


class _Reader:
    """onnxruntime.quantization CalibrationDataReader over in-memory feeds."""

    def __init__(self, feeds):
        self._it = iter(feeds)

    def get_next(self):
        return next(self._it, None)

    def rewind(self):  # older ORT versions call it; feeds are consumed once
        pass


def quantize_graph(
    src: Path,
    dst: Path,
    feeds: list[dict],
    log: Log = print,
    exclude: Sequence[str] = (),
    op_types: Sequence[str] = tuple(_QUANTIZED_OPS),
) -> Path:
    """Static QDQ quantization of one graph (symmetric per-channel int8 weights, symmetric
    int8 activations from MinMax calibration over `feeds`); nodes named by a prefix in
    `exclude` stay float."""
    import tempfile

    import onnx
    from onnxruntime.quantization import (
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    log(f"precision: quantizing {src.name} to int8 (Q/DQ) on {len(feeds)} calibration frames")
    with tempfile.TemporaryDirectory(dir=dst.parent) as tmp:
        pre = Path(tmp) / "pre.onnx"
        quant_pre_process(os.fspath(src), os.fspath(pre), skip_symbolic_shape=True)
        names = [n.name for n in onnx.load(os.fspath(pre)).graph.node]
        excluded = [n for n in names if any(n.startswith(p) for p in exclude)]
        out = Path(tmp) / "q.onnx"
        quantize_static(
            os.fspath(pre),
            os.fspath(out),
            _Reader(feeds),
            quant_format=QuantFormat.QDQ,
            op_types_to_quantize=list(op_types),
            nodes_to_exclude=excluded,
            per_channel=True,
            activation_type=QuantType.QInt8,
            weight_type=QuantType.QInt8,
            calibrate_method=CalibrationMethod.MinMax,
            extra_options={"ActivationSymmetric": True, "WeightSymmetric": True},
        )
        os.replace(out, dst.with_name(dst.name + ".tmp"))
    return _write_variant(
        None,
        dst,
        src,
        {
            "precision": "int8",
            "format": "QDQ",
            "weights": "int8 symmetric per-channel",
            "activations": "int8 symmetric, MinMax calibration",
            "quantized_ops": list(op_types),
            "float_nodes": excluded,
            "calibration_frames": len(feeds),
        },
    )


def language_feeds(encoder_path: Path, feeds: list[dict], rows: int, log: Log = print):
    """Language-head calibration inputs: the voxel features of the occupied voxels the fp32
    encoder gives on the calibration frames (padded with unoccupied ones to `rows`)."""
    from pop3d_ros.export.backends.ort_backend import OrtBackend

    out_feeds = []
    with OrtBackend(encoder_path, providers=["cpu"], log=log) as enc:
        for feed in feeds:
            out = enc.infer(feed)
            vf = out["voxel_features"].reshape(-1, out["voxel_features"].shape[-1])
            logits = out["occupancy_logits"].reshape(-1, 2)
            occupied = logits[:, 1] > logits[:, 0]
            rows_ = np.concatenate([vf[occupied], vf[~occupied]])[: max(rows, int(occupied.sum()))]
            out_feeds.append({"voxel_features": np.ascontiguousarray(rows_, dtype=np.float32)})
    return out_feeds


def quantize_export(export_dir: str | os.PathLike, feeds: list[dict], log: Log = print) -> dict:
    """Write `encoder.int8.onnx` and `language_head.int8.onnx` into a verified export
    directory; the feeds are checked against the manifest's input shapes first."""
    from pop3d_ros.export.manifest import verify_export

    export_dir = Path(export_dir)
    manifest = verify_export(export_dir)
    enc = manifest["graphs"]["encoder"]
    check_feeds(feeds, enc["inputs"], "encoder: ")
    enc_src = export_dir / enc["file"]
    lh_src = export_dir / manifest["graphs"]["language_head"]["file"]
    lang = language_feeds(enc_src, feeds, rows=4096, log=log)
    check_feeds(lang, manifest["graphs"]["language_head"]["inputs"], "language head: ")
    return {
        "encoder": quantize_graph(
            enc_src, variant_path(enc_src, "int8"), feeds, log, exclude=ENCODER_FLOAT_NODES
        ),
        "language_head": quantize_graph(lh_src, variant_path(lh_src, "int8"), lang, log),
    }


def resolve_variant(fp32_path: str | os.PathLike, precision: str, log: Log = print) -> Path:
    """The graph file to load for `precision`: fp16 is derived on demand; int8 must have been
    written by `pop3d export --precision int8` (OnnxFileError with the command otherwise)."""
    if precision == "fp16":
        return ensure_fp16(fp32_path, log)
    problem = variant_problem(fp32_path, precision)
    if problem is None:
        return variant_path(fp32_path, precision)
    if precision == "int8":
        d = Path(fp32_path).parent
        problem += (
            f"; write it with `pop3d calib-frames --out FRAMES` and "
            f"`pop3d export --checkpoint CKPT --out {d} --precision int8 --calib FRAMES`"
        )
    raise OnnxFileError(fp32_path, problem)
