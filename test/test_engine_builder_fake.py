"""The TensorRT build sequence, driven against a small recording stand-in of the API.

TensorRT cannot be installed in this workplace, so `build_serialized_engine` would otherwise
never execute here. The stand-in records calls, using only names from the TensorRT 10
Python API; it checks OUR logic (profiles for dynamic inputs, precision flags, workspace,
parser errors, progress) — not TensorRT's behaviour, which test_engine_trt.py covers where
TensorRT exists.
"""

import sys
import types

import pytest

from pop3d_ros.export.errors import EngineError
from pop3d_ros.export.trt_builder import BuildOptions, build_serialized_engine


class _Tensor:
    def __init__(self, name, shape):
        self.name, self.shape = name, shape


def fake_trt(inputs, parse_ok=True, calls=None):
    calls = [] if calls is None else calls
    trt = types.ModuleType("tensorrt")
    trt.__version__ = "10.99.0-fake"

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

        def set_flag(self, flag):
            calls.append(("flag", flag))

        def add_optimization_profile(self, profile):
            calls.append(("add_profile",))

    class Builder:
        def __init__(self, logger):
            pass

        def create_network(self, flags):
            calls.append(("create_network", flags))
            return Network()

        def create_builder_config(self):
            return Config()

        def create_optimization_profile(self):
            return Profile()

        def build_serialized_network(self, network, config):
            calls.append(("build",))
            return b"serialized"

    class OnnxParser:
        num_errors = 0 if parse_ok else 1

        def __init__(self, network, logger):
            pass

        def parse(self, data):
            calls.append(("parse", len(data)))
            return parse_ok

        def get_error(self, i):
            return "In node 3 (importGridSample): UNSUPPORTED_NODE"

    trt.Logger, trt.Builder, trt.OnnxParser = Logger, Builder, OnnxParser
    trt.MemoryPoolType = types.SimpleNamespace(WORKSPACE="WORKSPACE")
    trt.BuilderFlag = types.SimpleNamespace(FP16="FP16", INT8="INT8")
    return trt, calls


@pytest.fixture
def onnx_file(tmp_path):
    p = tmp_path / "language_head.onnx"
    p.write_bytes(b"onnx-bytes")
    return p


def _install(monkeypatch, trt):
    monkeypatch.setitem(sys.modules, "tensorrt", trt)


def test_build_sequence_fp16_with_profile(monkeypatch, onnx_file):
    trt, calls = fake_trt([("voxel_features", (-1, 16))])
    _install(monkeypatch, trt)
    opts = BuildOptions(
        precision="fp16",
        workspace_mib=512,
        profiles={"voxel_features": ((1, 16), (64, 16), (1024, 16))},
        progress_interval_s=10,
    )
    logs = []
    assert build_serialized_engine(onnx_file, opts, logs.append) == b"serialized"
    assert ("create_network", 0) in calls  # explicit batch: the only mode in TensorRT 10
    assert ("workspace", "WORKSPACE", 512 << 20) in calls
    assert ("flag", "FP16") in calls
    assert ("set_shape", "voxel_features", (1, 16), (64, 16), (1024, 16)) in calls
    assert calls.index(("add_profile",)) < calls.index(("build",))
    assert any("finished" in line for line in logs)


def test_fp32_sets_no_precision_flag(monkeypatch, onnx_file):
    trt, calls = fake_trt([("images", (1, 6, 3, 64, 96))])
    _install(monkeypatch, trt)
    build_serialized_engine(onnx_file, BuildOptions(precision="fp32"), lambda _m: None)
    assert not [c for c in calls if c[0] == "flag"]
    assert ("add_profile",) not in calls  # static shapes need no profile


def test_dynamic_input_without_profile_is_one_line_error(monkeypatch, onnx_file):
    trt, _ = fake_trt([("voxel_features", (-1, 16))])
    _install(monkeypatch, trt)
    with pytest.raises(EngineError) as e:
        build_serialized_engine(onnx_file, BuildOptions(precision="fp32"), lambda _m: None)
    assert str(onnx_file) in str(e.value) and "no optimisation profile" in str(e.value)


def test_parser_failure_is_one_line_error(monkeypatch, onnx_file):
    trt, calls = fake_trt([("x", (1, 2))], parse_ok=False)
    _install(monkeypatch, trt)
    with pytest.raises(EngineError) as e:
        build_serialized_engine(onnx_file, BuildOptions(), lambda _m: None)
    text = str(e.value)
    assert "\n" not in text and "UNSUPPORTED_NODE" in text and str(onnx_file) in text
    assert ("build",) not in calls


def test_int8_without_calibration_is_refused(monkeypatch, onnx_file):
    trt, calls = fake_trt([("x", (1, 2))])
    _install(monkeypatch, trt)
    with pytest.raises(EngineError, match="calibration"):
        build_serialized_engine(onnx_file, BuildOptions(precision="int8"), lambda _m: None)
    assert ("build",) not in calls
