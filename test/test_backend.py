"""Backends behind one interface, the runtime (`load_runtime`), `auto`, and its cache."""

import numpy as np
import pytest
from test_export_fixtures import write_tiny_checkpoint

from pop3d_ros.export.backends.base import TensorSpec
from pop3d_ros.export.backends.ort_backend import CPU_EP, CUDA_EP, TRT_EP, resolve_providers
from pop3d_ros.export.backends.torch_backend import TorchBackend
from pop3d_ros.export.errors import BackendError
from pop3d_ros.export.onnx_export import example_inputs
from pop3d_ros.export.runtime import (
    RuntimeLoadError,
    choose_backend,
    load_runtime,
    tensorrt_usable,
)
from pop3d_ros.text.query import query, top_k

QUIET = lambda _m: None  # noqa: E731


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    return write_tiny_checkpoint(tmp_path_factory.mktemp("rt") / "tiny.pt")


@pytest.fixture(scope="module")
def runtimes(ckpt, tmp_path_factory):
    cache = tmp_path_factory.mktemp("cache")
    logs = []
    auto = load_runtime(ckpt, "auto", cache_dir=cache, log=logs.append)
    ref = load_runtime(ckpt, "torch", cache_dir=cache, log=QUIET)
    yield auto, ref, cache, logs
    auto.close()
    ref.close()


def test_auto_picks_onnxruntime_here_and_says_so(runtimes):
    auto, ref, _, logs = runtimes
    expected = "tensorrt" if tensorrt_usable()[0] else "onnxruntime"
    assert auto.backend_name == expected
    assert any(f"backend auto -> {expected}" in line for line in logs)
    assert ref.backend_name == "torch"
    assert "onnxruntime" in auto.description and "encoder.onnx sha" in auto.description
    assert auto.config.name == "test-tiny" and auto.text_space["kind"] == "synthetic"
    for rt in (auto, ref):
        assert rt.encoder.input_names == ["images", "sampling_grid", "sampling_mask"]
        assert rt.encoder.output_names == ["occupancy_logits", "voxel_features"]
        assert rt.language_head.input_names == ["voxel_features"]
        assert rt.language_head.output_names == ["language_features"]


def test_auto_outputs_drive_same_downstream_results(runtimes):
    """Occupancy threshold and a text query give torch's results (within tolerance)."""
    auto, ref, _, _ = runtimes
    feed = example_inputs(auto.config, seed=3)
    a, r = auto.encoder.infer(feed), ref.encoder.infer(feed)
    margin_a = (a["occupancy_logits"][..., 1] - a["occupancy_logits"][..., 0]).ravel()
    margin_r = (r["occupancy_logits"][..., 1] - r["occupancy_logits"][..., 0]).ravel()
    # A random-init model's logits sit near 0; threshold at the median margin so that both
    # classes are populated and the comparison means something.
    thr = float(np.median(margin_r))
    occ_a, occ_r = margin_a > thr, margin_r > thr
    near = np.abs(margin_r - thr) < 1e-4
    assert 0.3 < occ_r.mean() < 0.7
    assert np.array_equal(occ_a[~near], occ_r[~near])
    idx = np.flatnonzero(occ_r)
    feats = r["voxel_features"].reshape(-1, r["voxel_features"].shape[-1])[idx]
    lang_a = auto.language_head.infer({"voxel_features": feats})["language_features"]
    lang_r = ref.language_head.infer({"voxel_features": feats})["language_features"]
    text = np.random.default_rng(5).standard_normal(lang_r.shape[1]).astype(np.float32)
    ia, sa = top_k(query(lang_a, text), 10)
    ir, sr = top_k(query(lang_r, text), 10)
    np.testing.assert_allclose(sa, sr, atol=1e-4)
    # Same voxels, except where two scores are closer than the numeric noise.
    gaps = np.abs(np.diff(sr))
    if np.all(gaps > 1e-4):
        assert np.array_equal(ia, ir)
    else:
        assert len(set(ia) & set(ir)) >= 8


def test_feed_validation_is_shared(runtimes):
    auto, ref, _, _ = runtimes
    feed = example_inputs(auto.config)
    for rt in (auto, ref):
        enc = rt.encoder
        with pytest.raises(BackendError, match="missing"):
            enc.infer({"images": feed["images"]})
        with pytest.raises(BackendError, match="unexpected"):
            enc.infer({**feed, "extra": feed["images"]})
        with pytest.raises(BackendError, match="shape"):
            enc.infer({**feed, "images": feed["images"][:, :5]})
        with pytest.raises(BackendError, match="rank"):
            enc.infer({**feed, "sampling_mask": feed["sampling_mask"][0]})
        with pytest.raises(BackendError, match="dtype"):
            enc.infer({**feed, "images": feed["images"].astype(np.complex64)})
    # float64 input is accepted (same kind) and converted
    out = auto.language_head.infer({"voxel_features": np.zeros((3, 16))})
    assert out["language_features"].dtype == np.float32


def test_context_manager_closes():
    spec_in, spec_out = [TensorSpec("x", (None, 2))], [TensorSpec("y", (None, 2))]
    with TorchBackend(lambda x: x * 2, spec_in, spec_out, "double") as b:
        assert np.array_equal(b.infer({"x": np.ones((1, 2), np.float32)})["y"], [[2, 2]])
    with pytest.raises(BackendError, match="after close"):
        b.infer({"x": np.ones((1, 2), np.float32)})


def test_provider_resolution():
    logs = []
    chosen = resolve_providers(["tensorrt", "cuda", "cpu"], [CPU_EP], "/tmp/x", True, logs.append)
    assert chosen == [(CPU_EP, {})]
    assert len(logs) == 1 and TRT_EP in logs[0] and CUDA_EP in logs[0]
    logs.clear()
    assert resolve_providers(None, [CPU_EP], log=logs.append) == [(CPU_EP, {})]
    assert logs == []  # the default list is not a user request: no noise
    profiles = {"voxel_features": ((1, 32), (4096, 32), (32768, 32))}
    chosen = dict(
        resolve_providers(
            None, [TRT_EP, CUDA_EP, CPU_EP], "/tmp/pop3d_trt_ep", True, QUIET, profiles
        )
    )
    assert list(chosen) == [TRT_EP, CUDA_EP, CPU_EP]
    assert chosen[TRT_EP]["trt_engine_cache_enable"] is True
    assert chosen[TRT_EP]["trt_engine_cache_path"] == "/tmp/pop3d_trt_ep"
    # Strongly typed: the graph file carries the precision, the weak-typing flags stay off.
    assert chosen[TRT_EP]["trt_fp16_enable"] is False
    assert chosen[TRT_EP]["trt_int8_enable"] is False
    assert chosen[TRT_EP]["trt_profile_min_shapes"] == "voxel_features:1x32"
    assert chosen[TRT_EP]["trt_profile_opt_shapes"] == "voxel_features:4096x32"
    assert chosen[TRT_EP]["trt_profile_max_shapes"] == "voxel_features:32768x32"
    assert "trt_profile_min_shapes" not in chosen[CUDA_EP]
    chosen = resolve_providers([("cuda", {"device_id": 1})], [CUDA_EP, CPU_EP], log=QUIET)
    assert chosen == [(CUDA_EP, {"device_id": 1}), (CPU_EP, {})]


def test_runtime_cache_hit_and_repair(ckpt, runtimes):
    auto, _, cache, _ = runtimes
    export_dir = auto.export_dir
    assert export_dir.parent == cache and (export_dir / "manifest.json").is_file()
    logs = []
    with load_runtime(ckpt, "onnxruntime", cache_dir=cache, log=logs.append) as rt:
        assert rt.export_dir == export_dir
    assert any("export cache hit" in line for line in logs)
    enc = export_dir / "encoder.onnx"
    enc.write_bytes(enc.read_bytes()[:1000])  # corrupt the cached graph
    logs.clear()
    with load_runtime(ckpt, "onnxruntime", cache_dir=cache, log=logs.append) as rt:
        out = rt.encoder.infer(example_inputs(rt.config))
        assert out["occupancy_logits"].shape == (1, 16, 16, 4, 2)
    assert any("re-exporting" in line and "encoder.onnx" in line for line in logs)
    (export_dir / "manifest.json").write_text("{broken")
    logs.clear()
    load_runtime(ckpt, "onnxruntime", cache_dir=cache, log=logs.append).close()
    assert any("re-exporting" in line and "manifest.json" in line for line in logs)


def test_runtime_load_errors(tmp_path, ckpt):
    missing = tmp_path / "none.pt"
    with pytest.raises(RuntimeLoadError) as e:
        load_runtime(missing, "onnxruntime", cache_dir=tmp_path, log=QUIET)
    assert str(missing) in str(e.value) and "\n" not in str(e.value)
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"\x00" * 64)
    with pytest.raises(RuntimeLoadError) as e:
        load_runtime(garbage, "torch", log=QUIET)
    assert str(garbage) in str(e.value) and "\n" not in str(e.value)
    with pytest.raises(RuntimeLoadError, match="unknown backend"):
        load_runtime(ckpt, "tflite", log=QUIET)
    with pytest.raises(RuntimeLoadError, match="precision"):
        load_runtime(ckpt, "onnxruntime", precision="fp8", log=QUIET)
    assert isinstance(RuntimeLoadError(None, "x"), ValueError)


@pytest.mark.skipif(tensorrt_usable()[0], reason="TensorRT and a GPU are present")
def test_tensorrt_backend_unavailable_is_one_line(ckpt, tmp_path):
    with pytest.raises(RuntimeLoadError) as e:
        load_runtime(ckpt, "tensorrt", cache_dir=tmp_path, log=QUIET)
    text = str(e.value)
    assert (
        "TensorRT is not installed" in text or "no usable CUDA GPU" in text
    ) and "\n" not in text
    assert choose_backend("auto", QUIET) != "tensorrt"


def test_runtime_re_exports_an_older_graph_revision(ckpt, tmp_path):
    """A cached export made before the heads' Softplus was rewritten (no graph_revision) is
    exported again, and the new one holds no Softplus node."""
    import json

    import onnx

    cache = tmp_path / "cache"
    with load_runtime(ckpt, "onnxruntime", cache_dir=cache, log=QUIET) as rt:
        manifest_path = rt.export_dir / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    assert manifest["graph_revision"] >= 2
    del manifest["graph_revision"]
    manifest_path.write_text(json.dumps(manifest))
    logs = []
    with load_runtime(ckpt, "onnxruntime", cache_dir=cache, log=logs.append) as rt:
        assert json.loads(manifest_path.read_text())["graph_revision"] >= 2
        ops = {n.op_type for n in onnx.load(str(rt.export_dir / "encoder.onnx")).graph.node}
    assert any("older graph revision" in line for line in logs), logs
    assert "Softplus" not in ops and "Log" in ops
