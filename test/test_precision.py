"""Precision as a property of the graph: the fp16 variant, the Q/DQ int8 variant from
calibration frames, their sidecars, and the runtime's precision choice (ONNX Runtime, CPU)."""

import numpy as np
import onnx
import pytest
from onnx import TensorProto, numpy_helper
from test_export_fixtures import write_tiny_checkpoint

from pop3d_ros.export.backends.ort_backend import OrtBackend
from pop3d_ros.export.errors import OnnxFileError
from pop3d_ros.export.onnx_export import example_inputs
from pop3d_ros.export.precision import (
    ensure_fp16,
    quantize_export,
    resolve_variant,
    variant_path,
    variant_problem,
)
from pop3d_ros.export.runtime import RuntimeLoadError, load_runtime

QUIET = lambda _m: None  # noqa: E731


@pytest.fixture(scope="module")
def export(tmp_path_factory):
    root = tmp_path_factory.mktemp("prec")
    ckpt = write_tiny_checkpoint(root / "tiny.pt")
    cache = root / "cache"
    with load_runtime(ckpt, "onnxruntime", cache_dir=cache, log=QUIET) as rt:
        cfg, export_dir = rt.config, rt.export_dir
    return ckpt, cache, export_dir, cfg


def _feeds(cfg, n):
    return [example_inputs(cfg, seed=10 + i) for i in range(n)]


def test_fp16_variant_is_fp16_inside_fp32_outside(export):
    _, _, d, cfg = export
    path = ensure_fp16(d / "encoder.onnx", QUIET)
    assert path == d / "encoder.fp16.onnx" and variant_problem(d / "encoder.onnx", "fp16") is None
    model = onnx.load(str(path))
    kinds = (TensorProto.FLOAT, TensorProto.FLOAT16)
    floats = [t for t in model.graph.initializer if t.data_type in kinds]
    # Only Resize scales/roi may stay fp32 (the op requires it); every weight is fp16.
    conv_w = {n.input[1] for n in model.graph.node if n.op_type == "Conv"}
    assert conv_w and all(t.data_type == TensorProto.FLOAT16 for t in floats if t.name in conv_w)
    assert all(vi.type.tensor_type.elem_type == TensorProto.FLOAT for vi in model.graph.input)
    assert all(vi.type.tensor_type.elem_type == TensorProto.FLOAT for vi in model.graph.output)
    feed = example_inputs(cfg, seed=5)
    with (
        OrtBackend(d / "encoder.onnx", ["cpu"], log=QUIET) as a,
        OrtBackend(path, ["cpu"], log=QUIET) as b,
    ):  # noqa: E501
        want, got = a.infer(feed), b.infer(feed)
    for k in want:
        scale = float(np.abs(want[k]).max())
        assert got[k].dtype == np.float32
        assert np.abs(got[k] - want[k]).max() <= 2e-2 * scale + 1e-3, k


def test_variant_sidecar_detects_a_stale_or_modified_variant(export, tmp_path):
    _, _, d, _ = export
    src = tmp_path / "language_head.onnx"
    src.write_bytes((d / "language_head.onnx").read_bytes())
    dst = ensure_fp16(src, QUIET)
    dst.write_bytes(dst.read_bytes()[:-10])
    assert "does not match its sidecar" in variant_problem(src, "fp16")
    ensure_fp16(src, QUIET)  # rebuilt
    assert variant_problem(src, "fp16") is None
    m = onnx.load(str(src))
    w = m.graph.initializer[0]
    w.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(w) * 2, w.name))
    onnx.save(m, str(src))
    assert "stale" in variant_problem(src, "fp16")


def test_int8_qdq_variant(export):
    _, _, d, cfg = export
    written = quantize_export(d, _feeds(cfg, 3), QUIET)
    assert written["encoder"] == variant_path(d / "encoder.onnx", "int8")
    model = onnx.load(str(written["encoder"]))
    ops = [n.op_type for n in model.graph.node]
    assert "QuantizeLinear" in ops and "DequantizeLinear" in ops
    inits = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    # Weights of every Conv: per-channel int8 (a scale per output channel), symmetric (zp 0).
    producers = {o: n for n in model.graph.node for o in n.output}
    for conv in (n for n in model.graph.node if n.op_type == "Conv"):
        dq = producers[conv.input[1]]
        assert dq.op_type == "DequantizeLinear"
        w, scale, zp = (inits[x] for x in dq.input[:3])
        assert w.dtype == np.int8 and scale.size == w.shape[0] > 1 and not zp.any()
    # Activations: int8 with zero point 0 (what TensorRT's explicit quantization takes).
    for q in (n for n in model.graph.node if n.op_type == "QuantizeLinear"):
        zp = inits[q.input[2]]
        assert zp.dtype == np.int8 and not zp.any()
    feed = example_inputs(cfg, seed=20)
    with OrtBackend(d / "encoder.onnx", ["cpu"], log=QUIET) as a:
        want = a.infer(feed)
    with OrtBackend(written["encoder"], ["cpu"], log=QUIET) as b:
        got = b.infer(feed)
    for k in want:  # close, not equal: quantized
        assert np.corrcoef(got[k].ravel(), want[k].ravel())[0, 1] > 0.9, k
        assert not np.array_equal(got[k], want[k])


def test_bad_calibration_frames_fail_before_anything_is_written(export, tmp_path):
    _, _, d, cfg = export
    feeds = _feeds(cfg, 2)
    feeds[1]["images"] = feeds[1]["images"][..., :-1]
    before = sorted(p.name for p in d.iterdir())
    with pytest.raises(ValueError, match="calibration frame 1: input 'images' has shape"):
        quantize_export(d, feeds, QUIET)
    assert sorted(p.name for p in d.iterdir()) == before


def test_runtime_precision(export, tmp_path):
    ckpt, cache, d, cfg = export
    logs = []
    with load_runtime(ckpt, "onnxruntime", cache, precision="fp16", log=logs.append) as rt:
        assert rt.precision == "fp32" and "CPU execution provider" in rt.precision_note
    other = tmp_path / "cache2"
    with pytest.raises(RuntimeLoadError, match="pop3d calib-frames"):
        load_runtime(ckpt, "onnxruntime", other, precision="int8", log=QUIET)
    with pytest.raises(OnnxFileError, match="no int8 graph"):
        resolve_variant(other / d.name / "encoder.onnx", "int8")
    quantize_export(d, _feeds(cfg, 2), QUIET)
    with load_runtime(ckpt, "onnxruntime", cache, precision="int8", log=QUIET) as rt:
        assert rt.precision == "int8" and "encoder.int8.onnx sha" in rt.description
        assert rt.encoder.source.endswith("encoder.int8.onnx")
        assert rt.language_head.source.endswith("language_head.int8.onnx")
        out = rt.encoder.infer(example_inputs(cfg, seed=1))
        assert out["voxel_features"].shape[-1] == cfg.decoder.voxel_channels


def test_cli_calib_frames_then_int8_export(export, tmp_path, capsys):
    from pop3d_ros.cli import main

    ckpt, _, _, cfg = export
    out = tmp_path / "exp"
    assert (
        main(["export", "--checkpoint", str(ckpt), "--out", str(out), "--precision", "int8"]) == 2
    )
    assert "needs --calib" in capsys.readouterr().err
    frames = tmp_path / "frames"
    argv = ["calib-frames", "--checkpoint", str(ckpt), "--out", str(frames)]
    assert main([*argv, "--seeds", "7", "--frames-per-seed", "2"]) == 0
    files = sorted(frames.glob("*.npz"))
    assert [f.name for f in files] == ["syn00007_0000.npz", "syn00007_0001.npz"]
    with np.load(files[0]) as f:
        h, w = cfg.image_size
        assert f["images"].shape == (1, cfg.num_cameras, 3, h, w)
        assert 0.0 <= f["images"].min() and f["images"].max() <= 1.0
        assert f["sampling_grid"].shape == (1, cfg.num_cameras, cfg.voxel_grid.num_voxels, 2)
        assert set(np.unique(f["sampling_mask"])) <= {0.0, 1.0}
    argv = ["export", "--checkpoint", str(ckpt), "--out", str(out), "--no-verify"]
    assert main([*argv, "--precision", "int8", "--calib", str(frames)]) == 0
    assert variant_problem(out / "encoder.onnx", "int8") is None
    assert variant_problem(out / "language_head.onnx", "int8") is None
