"""Static check that an ONNX graph only uses ops the TensorRT 10.x ONNX parser supports.

The table (`tensorrt_ops.yaml`, next to this file) is transcribed from onnx-tensorrt's
`docs/operators.md`; this lets CPU-only CI catch a graph that a vehicle could not build.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass
from pathlib import Path

from pop3d_ros.export.errors import OnnxFileError

TABLE_PATH = Path(__file__).with_name("tensorrt_ops.yaml")
_DEFAULT_DOMAINS = ("", "ai.onnx")


@dataclass(frozen=True)
class OpTable:
    """The supported-op table for one TensorRT version."""

    tensorrt_version: str  # the TensorRT release the table describes
    source: str  # where the table was transcribed from
    opset_min: int  # lowest default-domain opset the parser accepts
    opset_max: int  # highest default-domain opset the parser accepts
    supported: frozenset[str]  # op types marked "Y"
    unsupported: frozenset[str]  # op types marked "N"
    restrictions: dict  # op type -> {"input_rank": int, "note": str}


@functools.lru_cache(maxsize=4)
def load_op_table(path: str | os.PathLike = TABLE_PATH) -> OpTable:
    import yaml

    with open(path) as f:
        raw = yaml.safe_load(f)
    try:
        table = OpTable(
            tensorrt_version=str(raw["tensorrt_version"]),
            source=str(raw["source"]),
            opset_min=int(raw["opset_min"]),
            opset_max=int(raw["opset_max"]),
            supported=frozenset(raw["supported"]),
            unsupported=frozenset(raw["unsupported"]),
            restrictions=dict(raw.get("restrictions") or {}),
        )
    except (KeyError, TypeError) as e:
        raise ValueError(f"{path}: malformed op table ({e!r})") from None
    overlap = table.supported & table.unsupported
    if overlap:
        raise ValueError(f"{path}: ops listed both supported and unsupported: {sorted(overlap)}")
    return table


def _iter_nodes(graph):
    """All nodes, including those inside If/Loop/Scan bodies (the parser sees them too)."""
    import onnx

    for node in graph.node:
        yield node
        for attr in node.attribute:
            if attr.type == onnx.AttributeProto.GRAPH:
                yield from _iter_nodes(attr.g)
            elif attr.type == onnx.AttributeProto.GRAPHS:
                for g in attr.graphs:
                    yield from _iter_nodes(g)


def _load(model_or_path):
    import onnx

    if isinstance(model_or_path, onnx.ModelProto):
        return model_or_path, "<model>"
    path = os.fspath(model_or_path)
    if not os.path.isfile(path):
        raise OnnxFileError(path, "file not found")
    try:
        return onnx.load(path), path
    except Exception as e:  # protobuf raises DecodeError and friends
        raise OnnxFileError(path, f"not a readable ONNX model ({type(e).__name__}: {e})") from None


def _ranks(model) -> dict[str, int]:
    """Rank of every tensor whose shape ONNX shape inference can determine."""
    import onnx

    try:
        inferred = onnx.shape_inference.infer_shapes(model)
    except Exception:
        inferred = model
    ranks = {}
    g = inferred.graph
    for vi in list(g.input) + list(g.value_info) + list(g.output):
        if vi.type.HasField("tensor_type") and vi.type.tensor_type.HasField("shape"):
            ranks[vi.name] = len(vi.type.tensor_type.shape.dim)
    return ranks


def check_onnx_ops(model_or_path, table: OpTable | None = None) -> list[str]:
    """Problems that would stop the TensorRT ONNX parser; an empty list means all clear.

    Each entry is a short human-readable line, e.g. "Unique (not supported
    by TensorRT 10.15)". Accepts a path or an `onnx.ModelProto`.
    """
    table = table or load_op_table()
    model, _ = _load(model_or_path)
    problems: list[str] = []
    for imp in model.opset_import:
        if imp.domain in _DEFAULT_DOMAINS and not (
            table.opset_min <= imp.version <= table.opset_max
        ):
            problems.append(
                f"opset {imp.version} (TensorRT {table.tensorrt_version} parses opset "
                f"{table.opset_min}-{table.opset_max})"
            )
    ranks = None
    seen: set[str] = set()
    for node in _iter_nodes(model.graph):
        if node.domain not in _DEFAULT_DOMAINS:
            key = f"{node.domain}::{node.op_type}"
            if key not in seen:
                problems.append(f"{key} (custom domain: needs a TensorRT plugin)")
                seen.add(key)
            continue
        op = node.op_type
        if op not in table.supported:
            if op not in seen:
                problems.append(f"{op} (not supported by TensorRT {table.tensorrt_version})")
                seen.add(op)
            continue
        rule = table.restrictions.get(op)
        if rule and "input_rank" in rule and node.input:
            ranks = _ranks(model) if ranks is None else ranks
            rank = ranks.get(node.input[0])
            if rank is not None and rank != int(rule["input_rank"]):
                key = f"{op}/rank{rank}"
                if key not in seen:
                    problems.append(f"{op} with rank-{rank} input ({rule.get('note', '')})")
                    seen.add(key)
    return problems


def onnx_op_types(model_or_path) -> list[str]:
    """Sorted distinct op types in a graph (subgraphs included), for manifests and logs."""
    model, _ = _load(model_or_path)
    return sorted({n.op_type for n in _iter_nodes(model.graph)})
