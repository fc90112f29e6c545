"""The TensorRT build sequence, driven against recording stand-ins of the TensorRT 10.x and
11.x Python API surfaces.

TensorRT cannot be installed in this workplace, so `build_serialized_engine` and
`TrtBackend` would otherwise never execute here. Each stand-in has only the names its
version has: the 11.x one lacks `BuilderFlag.FP16/INT8`, `int8_calibrator`,
`set_calibration_profile`, `platform_has_fast_*` and `IInt8*Calibrator` (removed in 11.0), and
neither has `OnnxParser.parse`, so any call into weak typing, implicit calibration or
byte parsing fails here as it would on 11.x. They check OUR logic (strongly typed network,
precision carried by the graph, profiles, parser errors, progress), not TensorRT's
behaviour, which test_engine_trt.py covers where TensorRT exists.
"""

import json
import re
import sys
import types
from pathlib import Path

import numpy as np
import pytest

from pop3d_ros.export.errors import EngineError, TensorRTUnavailableError
from pop3d_ros.export.trt_builder import (
    SUPPORTED_TENSORRT,
    BuildOptions,
    build_serialized_engine,
    network_flags,
)

V10, V11 = "10.16.0", "11.1.0"


class _Tensor:
    def __init__(self, name, shape):
        self.name, self.shape = name, shape


def fake_trt(inputs, version=V10, parse_ok=True, calls=None, strongly_typed_flag=True):
    """A `tensorrt` module with the names of `version` only; calls are recorded."""
    calls = [] if calls is None else calls
    trt = types.ModuleType("tensorrt")
    trt.__version__ = version
    major = int(version.split(".")[0])

    class Logger:
        WARNING = 2

        def __init__(self, level):
            calls.append(("Logger", level))

    class Network:
        num_inputs = len(inputs)

        def get_input(self, i):
            return _Tensor(*inputs[i])

    class Profile:
        def set_shape(self, name, lo, opt, hi):
            calls.append(("set_shape", name, lo, opt, hi))

    class Config:
        def set_memory_pool_limit(self, pool, size):
            calls.append(("workspace", pool, size))

        def add_optimization_profile(self, profile):
            calls.append(("add_profile",))

    class Config10(Config):  # weak-typing API that 10.x still has (and we must not use)
        def set_flag(self, flag):
            calls.append(("flag", flag))

        def set_calibration_profile(self, profile):
            calls.append(("calibration_profile",))

        int8_calibrator = None

    class Builder:
        def __init__(self, logger):
            pass

        def create_network(self, flags):
            calls.append(("create_network", flags))
            return Network()

        def create_builder_config(self):
            return Config10() if major == 10 else Config()

        def create_optimization_profile(self):
            return Profile()

        def build_serialized_network(self, network, config):
            calls.append(("build",))
            return b"serialized"

    if major == 10:
        Builder.platform_has_fast_fp16 = True
        Builder.platform_has_fast_int8 = True

    class OnnxParser:
        num_errors = 0 if parse_ok else 1

        def __init__(self, network, logger):
            pass

        def parse_from_file(self, path):
            calls.append(("parse_from_file", path))
            return parse_ok

        def get_error(self, i):
            return "In node 3 (importGridSample): UNSUPPORTED_NODE"

    trt.Logger, trt.Builder, trt.OnnxParser = Logger, Builder, OnnxParser
    trt.MemoryPoolType = types.SimpleNamespace(WORKSPACE="WORKSPACE")
    if strongly_typed_flag:  # bit 0 in 10.x (EXPLICIT_BATCH is deprecated) and in 11.x
        trt.NetworkDefinitionCreationFlag = types.SimpleNamespace(STRONGLY_TYPED=0)
    else:
        trt.NetworkDefinitionCreationFlag = types.SimpleNamespace()
    if major == 10:
        trt.BuilderFlag = types.SimpleNamespace(FP16="FP16", INT8="INT8")
        trt.IInt8EntropyCalibrator2 = type("IInt8EntropyCalibrator2", (), {})
    else:
        trt.BuilderFlag = types.SimpleNamespace(DEBUG="DEBUG")
    return trt, calls


def _graph(tmp_path, precision="fp32", name="language_head"):
    """An (opaque) ONNX file with the sidecar export.precision writes for variants."""
    if precision == "fp32":
        p = tmp_path / f"{name}.onnx"
    else:
        p = tmp_path / f"{name}.{precision}.onnx"
        p.with_suffix(".json").write_text(json.dumps({"precision": precision}))
    p.write_bytes(b"onnx-bytes")
    return p


def _install(monkeypatch, trt):
    monkeypatch.setitem(sys.modules, "tensorrt", trt)


@pytest.mark.parametrize("version", [V10, V11])
@pytest.mark.parametrize("precision", ["fp16", "int8"])
def test_strongly_typed_build_with_profile(monkeypatch, tmp_path, version, precision):
    trt, calls = fake_trt([("voxel_features", (-1, 16))], version)
    _install(monkeypatch, trt)
    onnx_file = _graph(tmp_path, precision)
    opts = BuildOptions(
        precision=precision,
        workspace_mib=512,
        profiles={"voxel_features": ((1, 16), (64, 16), (1024, 16))},
        progress_interval_s=10,
    )
    logs = []
    assert build_serialized_engine(onnx_file, opts, logs.append) == b"serialized"
    assert ("create_network", 1 << 0) in calls  # 1 << STRONGLY_TYPED
    assert ("parse_from_file", str(onnx_file)) in calls  # external weights resolve by path
    assert ("workspace", "WORKSPACE", 512 << 20) in calls
    assert not [c for c in calls if c[0] in ("flag", "calibration_profile")]  # no weak typing
    assert ("set_shape", "voxel_features", (1, 16), (64, 16), (1024, 16)) in calls
    assert calls.index(("add_profile",)) < calls.index(("build",))
    assert any("finished" in line for line in logs)


def test_fp32_static_shapes_need_no_profile(monkeypatch, tmp_path):
    trt, calls = fake_trt([("images", (1, 6, 3, 64, 96))], V11)
    _install(monkeypatch, trt)
    build_serialized_engine(_graph(tmp_path, name="encoder"), BuildOptions("fp32"), print)
    assert ("add_profile",) not in calls and ("build",) in calls


def test_precision_must_be_the_graphs(monkeypatch, tmp_path):
    trt, calls = fake_trt([("x", (1, 2))], V10)
    _install(monkeypatch, trt)
    with pytest.raises(EngineError, match="this graph is fp32, the build asks for fp16"):
        build_serialized_engine(_graph(tmp_path), BuildOptions("fp16"), lambda _m: None)
    with pytest.raises(EngineError, match="this graph is int8, the build asks for fp32"):
        build_serialized_engine(_graph(tmp_path, "int8"), BuildOptions("fp32"), lambda _m: None)
    assert ("build",) not in calls


def test_network_flags_across_versions():
    assert network_flags(fake_trt([], V10)[0]) == 1
    assert network_flags(fake_trt([], V11)[0]) == 1  # kept, deprecated and ignored in 11.x
    # A later 11.x without the flag: strong typing is the only mode, 0 is the same network.
    assert network_flags(fake_trt([], "11.9.0", strongly_typed_flag=False)[0]) == 0
    with pytest.raises(TensorRTUnavailableError, match="lacks NetworkDefinitionCreationFlag"):
        network_flags(fake_trt([], "10.0.1", strongly_typed_flag=False)[0])
    with pytest.raises(TensorRTUnavailableError, match="too old"):
        network_flags(fake_trt([], "8.6.1")[0])


def test_missing_api_is_one_line_error(monkeypatch, tmp_path):
    trt, calls = fake_trt([("x", (1, 2))], V11)
    del trt.OnnxParser.parse_from_file
    _install(monkeypatch, trt)
    with pytest.raises(TensorRTUnavailableError) as e:
        build_serialized_engine(_graph(tmp_path), BuildOptions("fp32"), lambda _m: None)
    assert "OnnxParser.parse_from_file" in str(e.value) and "\n" not in str(e.value)


def test_dynamic_input_without_profile_is_one_line_error(monkeypatch, tmp_path):
    trt, _ = fake_trt([("voxel_features", (-1, 16))], V11)
    _install(monkeypatch, trt)
    onnx_file = _graph(tmp_path)
    with pytest.raises(EngineError) as e:
        build_serialized_engine(onnx_file, BuildOptions(precision="fp32"), lambda _m: None)
    assert str(onnx_file) in str(e.value) and "no optimisation profile" in str(e.value)


def test_profile_that_does_not_fit_the_input(monkeypatch, tmp_path):
    trt, calls = fake_trt([("voxel_features", (-1, 16))], V10)
    _install(monkeypatch, trt)
    opts = BuildOptions("fp32", profiles={"voxel_features": ((1, 32), (8, 32), (64, 32))})
    with pytest.raises(EngineError, match="does not fit"):
        build_serialized_engine(_graph(tmp_path), opts, lambda _m: None)
    assert ("build",) not in calls


def test_parser_failure_is_one_line_error(monkeypatch, tmp_path):
    trt, calls = fake_trt([("x", (1, 2))], V11, parse_ok=False)
    _install(monkeypatch, trt)
    onnx_file = _graph(tmp_path)
    with pytest.raises(EngineError) as e:
        build_serialized_engine(onnx_file, BuildOptions("fp32"), lambda _m: None)
    text = str(e.value)
    assert "\n" not in text and "UNSUPPORTED_NODE" in text and str(onnx_file) in text
    assert ("build",) not in calls


def test_execution_context_none_is_an_error(monkeypatch, tmp_path):
    """`create_execution_context()` returns None (e.g. device memory exhausted)."""
    from pop3d_ros.export.backends import trt_backend

    trt, _ = fake_trt([], V11)

    class Engine:
        def create_execution_context(self):
            return None

    class Runtime:
        def __init__(self, logger):
            pass

        def deserialize_cuda_engine(self, data):
            return Engine()

    trt.Runtime = Runtime
    _install(monkeypatch, trt)
    monkeypatch.setattr(trt_backend, "gpu_identity", lambda: ("fake", "9.0"))
    engine = tmp_path / "x.engine"
    engine.write_bytes(b"plan")
    with pytest.raises(EngineError, match="could not create an execution context"):
        trt_backend.TrtBackend(engine, log=lambda _m: None)


def test_calibration_frames_checked_against_graph_inputs():
    from pop3d_ros.export.precision import check_feeds

    specs = [{"name": "images", "shape": [1, 6, 3, 8, 12]}, {"name": "v", "shape": ["N", 4]}]
    good = {"images": np.zeros((1, 6, 3, 8, 12), np.float32), "v": np.zeros((7, 4), np.float32)}
    check_feeds([good], specs)
    small = dict(good, images=np.zeros((1, 6, 3, 8, 11), np.float32))  # one column short
    with pytest.raises(ValueError, match=r"frame 1: input 'images' has shape \(1, 6, 3, 8, 11\)"):
        check_feeds([good, small], specs)
    with pytest.raises(ValueError, match="lacks input 'v'"):
        check_feeds([{"images": good["images"]}], specs)
    with pytest.raises(ValueError, match="not finite"):
        check_feeds([dict(good, v=np.full((2, 4), np.nan, np.float32))], specs)


def test_setup_declares_the_supported_tensorrt_range():
    text = (Path(__file__).resolve().parents[1] / "setup.py").read_text()
    extra = re.search(r'"tensorrt": \["([^"]+)"\]', text)
    assert extra and extra.group(1) == SUPPORTED_TENSORRT == "tensorrt>=10.0,<12"
