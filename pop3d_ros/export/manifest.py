"""manifest.json: what an export directory holds and where it came from.

The runtime trusts an export directory only if its manifest parses, names the checkpoint
(by sha256) it is asked to run, and every ONNX file still has the recorded sha256. That is
how a stale, corrupt or foreign export is caught before any graph is loaded.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from pop3d_ros.atomic import write_text_atomic
from pop3d_ros.export.errors import ManifestError, OnnxFileError
from pop3d_ros.export.hashing import sha256_file

MANIFEST_NAME = "manifest.json"
FORMAT = "pop3d_ros.export/1"
GRAPH_NAMES = ("encoder", "language_head")
_REQUIRED = ("format", "model_config", "text_space", "checkpoint", "opset", "graphs", "exporter")


def tensor_specs(onnx_model) -> tuple[list[dict], list[dict]]:
    """Inputs and outputs of an ONNX graph as [{name, shape, dtype}], symbolic dims as str."""
    import onnx

    def spec(vi):
        t = vi.type.tensor_type
        shape = [d.dim_param if d.dim_param else int(d.dim_value) for d in t.shape.dim]
        return {
            "name": vi.name,
            "shape": shape,
            "dtype": onnx.helper.tensor_dtype_to_np_dtype(t.elem_type).name,
        }

    initializers = {i.name for i in onnx_model.graph.initializer}
    inputs = [spec(vi) for vi in onnx_model.graph.input if vi.name not in initializers]
    return inputs, [spec(vi) for vi in onnx_model.graph.output]


def write_manifest(out_dir: str | os.PathLike, manifest: dict) -> Path:
    path = Path(out_dir) / MANIFEST_NAME
    write_text_atomic(path, json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    return path


def read_manifest(path: str | os.PathLike) -> dict:
    """Parse and structurally validate a manifest; ManifestError (one line) otherwise."""
    path = Path(path)
    if path.is_dir():
        path = path / MANIFEST_NAME
    if not path.is_file():
        raise ManifestError(path, "file not found")
    try:
        data = json.loads(path.read_text())
    except UnicodeDecodeError:
        raise ManifestError(path, "not valid JSON (binary data)") from None
    except json.JSONDecodeError as e:
        raise ManifestError(path, f"not valid JSON ({e.msg} at line {e.lineno})") from None
    if not isinstance(data, dict):
        raise ManifestError(path, f"expected a JSON object, got {type(data).__name__}")
    for key in _REQUIRED:
        if key not in data:
            raise ManifestError(path, f"missing key '{key}'")
    if data["format"] != FORMAT:
        raise ManifestError(path, f"unsupported format {data['format']!r} (expected {FORMAT!r})")
    graphs = data["graphs"]
    if not isinstance(graphs, dict):
        raise ManifestError(path, "'graphs' must be an object")
    for name in GRAPH_NAMES:
        g = graphs.get(name)
        if not isinstance(g, dict):
            raise ManifestError(path, f"missing graph '{name}'")
        for key in ("file", "sha256", "inputs", "outputs"):
            if key not in g:
                raise ManifestError(path, f"graph '{name}' lacks '{key}'")
    if not isinstance(data["checkpoint"], dict) or "sha256" not in data["checkpoint"]:
        raise ManifestError(path, "missing checkpoint sha256")
    return data


def verify_export(
    export_dir: str | os.PathLike,
    checkpoint_sha256: str | None = None,
    model_config: dict | None = None,
) -> dict:
    """Read the manifest and check it against the files and the expected model.

    Raises ManifestError when the manifest belongs to another checkpoint/config and
    OnnxFileError when a graph is missing or its bytes changed. Returns the manifest.
    """
    export_dir = Path(export_dir)
    manifest_path = export_dir / MANIFEST_NAME
    manifest = read_manifest(manifest_path)
    recorded = manifest["checkpoint"]["sha256"]
    if checkpoint_sha256 is not None and recorded != checkpoint_sha256:
        raise ManifestError(
            manifest_path,
            f"export of another model (checkpoint sha256 {recorded[:12]}.., "
            f"expected {checkpoint_sha256[:12]}..)",
        )
    if model_config is not None:
        diff = sorted(_diff_keys(manifest["model_config"], model_config))
        if diff:
            raise ManifestError(
                manifest_path, f"model config differs from the checkpoint's at {', '.join(diff)}"
            )
    for name in GRAPH_NAMES:
        g = manifest["graphs"][name]
        onnx_path = export_dir / g["file"]
        if not onnx_path.is_file():
            raise OnnxFileError(onnx_path, "file not found (listed in manifest.json)")
        actual = sha256_file(onnx_path)
        if actual != g["sha256"]:
            raise OnnxFileError(
                onnx_path,
                f"sha256 {actual[:12]}.. does not match manifest.json ({g['sha256'][:12]}..): "
                "file changed or corrupt",
            )
    return manifest


def _diff_keys(a, b, prefix: str = "") -> list[str]:
    """Dotted keys where two JSON-like values differ (lists/tuples compare as lists)."""
    if isinstance(a, dict) and isinstance(b, dict):
        out = []
        for k in sorted(set(a) | set(b), key=str):
            if k not in a or k not in b:
                out.append(f"{prefix}{k}")
            else:
                out += _diff_keys(a[k], b[k], f"{prefix}{k}.")
        return out
    norm = json.loads(json.dumps(a)), json.loads(json.dumps(b))
    return [] if norm[0] == norm[1] else [prefix.rstrip(".") or "<root>"]
