"""TensorRT engines for real: build fp32/fp16, parity with ONNX Runtime, cache hit/miss.

Needs the `tensorrt` module and a CUDA GPU; elsewhere the whole module is skipped with one
reason. (In this project's workplace TensorRT cannot be installed, so these have not run.)
"""

import numpy as np
import pytest
from test_export_fixtures import write_tiny_checkpoint

from pop3d_ros.export.errors import TensorRTUnavailableError
from pop3d_ros.export.trt_builder import gpu_identity, import_tensorrt

try:
    import_tensorrt()
    gpu_identity()
except TensorRTUnavailableError as _e:
    reason = str(_e).replace("TensorRT is not installed", "TensorRT not installed")
    pytest.skip(reason, allow_module_level=True)

from pop3d_ros.export.onnx_export import example_inputs  # noqa: E402
from pop3d_ros.export.runtime import load_runtime  # noqa: E402

QUIET = lambda _m: None  # noqa: E731


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("trt")
    ckpt = write_tiny_checkpoint(root / "tiny.pt")
    ort = load_runtime(ckpt, "onnxruntime", cache_dir=root / "cache", log=QUIET)
    yield ckpt, root / "cache", ort
    ort.close()


@pytest.mark.parametrize("precision, atol", [("fp32", 1e-3), ("fp16", 5e-2)])
def test_engine_parity_with_onnxruntime(setup, precision, atol):
    ckpt, cache, ort = setup
    logs = []
    with load_runtime(ckpt, "tensorrt", cache, precision=precision, log=logs.append) as rt:
        assert rt.backend_name == "tensorrt"
        feed = example_inputs(rt.config, seed=2)
        got, want = rt.encoder.infer(feed), ort.encoder.infer(feed)
        for name in want:
            np.testing.assert_allclose(got[name], want[name], atol=atol, rtol=atol)
        feats = want["voxel_features"].reshape(-1, 16)[:300]
        a = rt.language_head.infer({"voxel_features": feats})["language_features"]
        b = ort.language_head.infer({"voxel_features": feats})["language_features"]
        np.testing.assert_allclose(a, b, atol=atol, rtol=atol)
    assert any("engine cache miss" in line for line in logs)


def test_engine_cache_hit_and_rebuild(setup):
    ckpt, cache, _ = setup
    load_runtime(ckpt, "tensorrt", cache, precision="fp32", log=QUIET).close()
    logs = []
    with load_runtime(ckpt, "tensorrt", cache, precision="fp32", log=logs.append) as rt:
        engines = sorted((rt.export_dir / "engines").glob("*.engine"))
    assert sum("engine cache hit" in line for line in logs) == 2
    target = next(e for e in engines if e.name.startswith("encoder-") and "-fp32-" in e.name)
    target.write_bytes(target.read_bytes()[:4096])  # truncated
    logs.clear()
    load_runtime(ckpt, "tensorrt", cache, precision="fp32", log=logs.append).close()
    assert any("truncated" in line for line in logs)
