"""TensorRT engine cache, builder options, calibration frames and the build-engine CLI.

Everything here runs without TensorRT; the tests that need it are in test_engine_trt.py.
"""

import json
import threading
import time

import numpy as np
import pytest

from pop3d_ros.cli import main as cli_main
from pop3d_ros.export.backends.trt_backend import TrtBackend
from pop3d_ros.export.engine_cache import (
    EngineKey,
    check_engine,
    ensure_engine,
    sidecar_path,
    write_engine,
)
from pop3d_ros.export.errors import EngineError, TensorRTUnavailableError
from pop3d_ros.export.trt_builder import (
    BuildOptions,
    ProgressLogger,
    import_tensorrt,
    load_calibration_feeds,
)

ENGINE = b"\x01engine-bytes" * 200


def key(**overrides):
    base = dict(
        onnx_sha256="ab" * 32,
        precision="fp16",
        tensorrt_version="10.3.0",
        gpu_name="NVIDIA Jetson AGX Orin",
        compute_capability="8.7",
        profile=(("voxel_features", (1, 16), (64, 16), (1024, 16)),),
    )
    base.update(overrides)
    return EngineKey(**base)


def trt_missing() -> bool:
    try:
        import_tensorrt()
    except TensorRTUnavailableError:
        return True
    return False


def test_key_names_and_roundtrip():
    k = key()
    name = k.filename("encoder")
    assert name.startswith("encoder-abababababab-fp16-trt10.3.0-nvidia-jetson-agx-orin-sm87-")
    assert name.endswith(".engine")
    assert EngineKey.from_dict(json.loads(json.dumps(k.to_dict()))) == k
    # Every field changes the name: no two different engines share a file.
    others = [
        key(onnx_sha256="cd" * 32),
        key(precision="fp32"),
        key(tensorrt_version="10.4.0"),
        key(gpu_name="NVIDIA A100"),
        key(compute_capability="8.0"),
        key(profile=(("voxel_features", (1, 16), (128, 16), (1024, 16)),)),
    ]
    assert len({o.filename("encoder") for o in others} | {name}) == len(others) + 1
    with pytest.raises(ValueError, match="precision"):
        key(precision="int4")


def test_valid_engine_passes(tmp_path):
    path = write_engine(tmp_path / "e.engine", ENGINE, key())
    assert check_engine(path, key()) is None
    assert json.loads(sidecar_path(path).read_text())["engine_bytes"] == len(ENGINE)


@pytest.mark.parametrize(
    "damage, expected",
    [
        ("truncate", "truncated"),
        ("flip", "sha256"),
        ("no_sidecar", "sidecar"),
        ("bad_sidecar", "corrupt"),
        ("missing", "not found"),
    ],
)
def test_damaged_engine_detected(tmp_path, damage, expected):
    path = write_engine(tmp_path / "e.engine", ENGINE, key())
    if damage == "truncate":
        path.write_bytes(ENGINE[: len(ENGINE) // 2])
    elif damage == "flip":
        path.write_bytes(ENGINE[:-1] + b"\x00")
    elif damage == "no_sidecar":
        sidecar_path(path).unlink()
    elif damage == "bad_sidecar":
        sidecar_path(path).write_text("{oops")
    elif damage == "missing":
        path.unlink()
    problem = check_engine(path, key())
    assert problem is not None and expected in problem


@pytest.mark.parametrize(
    "field, value, words",
    [
        ("tensorrt_version", "10.0.1", "TensorRT 10.0.1"),
        ("gpu_name", "NVIDIA A100", "GPU NVIDIA A100"),
        ("compute_capability", "8.0", "compute capability 8.0"),
        ("onnx_sha256", "ef" * 32, "another ONNX"),
        ("precision", "fp32", "precision fp32"),
    ],
)
def test_mismatched_engine_detected(tmp_path, field, value, words):
    path = write_engine(tmp_path / "e.engine", ENGINE, key(**{field: value}))
    problem = check_engine(path, key())
    assert problem is not None and words in problem


def test_ensure_engine_builds_once_and_rebuilds_corrupt(tmp_path):
    calls = []

    def build():
        calls.append(1)
        return ENGINE

    logs = []
    p1 = ensure_engine(tmp_path, "encoder", key(), build, logs.append)
    p2 = ensure_engine(tmp_path, "encoder", key(), build, logs.append)
    assert p1 == p2 and len(calls) == 1
    assert "miss" in logs[0] and "hit" in logs[1]
    p1.write_bytes(ENGINE[:10])  # corrupt it
    ensure_engine(tmp_path, "encoder", key(), build, logs.append)
    assert len(calls) == 2 and "truncated" in logs[-1]
    assert check_engine(p1, key()) is None
    # Other TensorRT version: another file, built separately; the old one stays valid.
    p3 = ensure_engine(tmp_path, "encoder", key(tensorrt_version="10.9.0"), build, logs.append)
    assert p3 != p1 and len(calls) == 3


def test_ensure_engine_without_builder_is_one_line_error(tmp_path):
    with pytest.raises(EngineError) as e:
        ensure_engine(tmp_path, "encoder", key(), None, lambda _m: None)
    text = str(e.value)
    assert "\n" not in text and str(tmp_path) in text and "building is disabled" in text


def test_bad_engine_rejected_before_tensorrt(tmp_path):
    """A truncated or foreign engine never reaches TensorRT (works with or without it)."""
    path = write_engine(tmp_path / "e.engine", ENGINE, key())
    path.write_bytes(ENGINE[:100])
    with pytest.raises(EngineError) as e:
        TrtBackend(path, key())
    assert str(path) in str(e.value) and "truncated" in str(e.value)
    path = write_engine(tmp_path / "f.engine", ENGINE, key(gpu_name="Other GPU"))
    with pytest.raises(EngineError, match="GPU Other GPU"):
        TrtBackend(path, key())


@pytest.mark.skipif(not trt_missing(), reason="TensorRT is installed here")
def test_no_tensorrt_is_one_clear_line(tmp_path):
    with pytest.raises(TensorRTUnavailableError) as e:
        import_tensorrt()
    assert str(e.value).startswith("TensorRT is not installed: ")
    path = write_engine(tmp_path / "e.engine", ENGINE, key())
    with pytest.raises(TensorRTUnavailableError, match="TensorRT is not installed"):
        TrtBackend(path, key())


def test_build_options_validation():
    o = BuildOptions(precision="fp32", profiles={"x": ([1, 4], [8, 4], [16, 4])})
    assert o.profile_key() == (("x", (1, 4), (8, 4), (16, 4)),)
    with pytest.raises(ValueError, match="min <= opt <= max"):
        BuildOptions(profiles={"x": ((8, 4), (1, 4), (16, 4))})
    with pytest.raises(ValueError, match="ranks differ"):
        BuildOptions(profiles={"x": ((1,), (8, 4), (16, 4))})
    with pytest.raises(ValueError, match="precision"):
        BuildOptions(precision="bf8")
    with pytest.raises(ValueError, match="workspace"):
        BuildOptions(workspace_mib=0)


def test_progress_logger_reports_while_running():
    lines = []
    lock = threading.Lock()

    def log(msg):
        with lock:
            lines.append(msg)

    with ProgressLogger("encoder.onnx (fp16)", interval_s=0.02, log=log) as p:
        time.sleep(0.15)
    assert p.lines >= 2
    assert any("still building" in ln for ln in lines)
    assert "finished" in lines[-1]


def test_calibration_feeds(tmp_path):
    names = ["images", "sampling_grid"]
    frames = tmp_path / "frames"
    frames.mkdir()
    for i in range(3):
        np.savez(frames / f"f{i}.npz", images=np.full((1, 2), i), sampling_grid=np.zeros((1, 3)))
    feeds = load_calibration_feeds(frames, names)
    assert len(feeds) == 3 and feeds[2]["images"][0, 0] == 2.0
    assert feeds[0]["images"].dtype == np.float32
    listing = tmp_path / "list.txt"
    listing.write_text("# frames\nframes/f1.npz\nframes/f0.npz\n")
    feeds = load_calibration_feeds(listing, names, limit=1)
    assert len(feeds) == 1 and feeds[0]["images"][0, 0] == 1.0
    with pytest.raises(ValueError, match="lacks inputs"):
        load_calibration_feeds(frames, ["images", "sampling_mask"])
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no calibration frames"):
        load_calibration_feeds(tmp_path / "empty", names)
    (frames / "f9.npz").write_bytes(b"broken")
    with pytest.raises(ValueError, match="f9.npz"):
        load_calibration_feeds(frames, names)


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--lang-min", "10", "--lang-opt", "5"], "--lang_min"),
        (["--lang_opt", "50", "--lang_max", "20"], "--lang_max"),
        (["--workspace-mib", "0"], "workspace_mib must be positive"),
        (["--build.progress_interval_s", "0"], "progress_interval_s must be positive"),
        (["--calib", "/nonexistent/frames"], "calibration frames not found"),
    ],
)
def test_build_engine_argument_errors(tmp_path, capsys, argv, message):
    try:
        rc = cli_main(["build-engine", "--onnx-dir", str(tmp_path), *argv])
    except SystemExit as e:  # BuildOptions refuses the value while tyro builds it
        rc = e.code
    err = capsys.readouterr().err.strip()
    assert rc == 2 and message in err


def test_build_engine_options_are_typed(tmp_path, capsys):
    """--graphs and --precision take only what exists (tyro's choices): the error names them."""
    for argv in (["--graphs", "encoder", "decoder"], ["--precision", "bf16"]):
        with pytest.raises(SystemExit) as e:
            cli_main(["build-engine", "--onnx-dir", str(tmp_path), *argv])
        assert e.value.code == 2
        err = capsys.readouterr().err
        assert "language_head" in err or "int8" in err


def test_build_engine_requires_one_source(tmp_path, capsys):
    assert cli_main(["build-engine", "--precision", "fp16"]) == 2
    assert "--checkpoint and --onnx_dir" in capsys.readouterr().err
    both = ["--checkpoint", str(tmp_path / "m.pt"), "--onnx_dir", str(tmp_path)]
    assert cli_main(["build-engine", *both]) == 2
    assert "exactly one" in capsys.readouterr().err
    rc = cli_main(["build-engine", "--checkpoint", "/nonexistent/model.pt"])
    assert rc == 2 and "checkpoint file not found" in capsys.readouterr().err


@pytest.mark.skipif(not trt_missing(), reason="TensorRT is installed here")
def test_build_engine_without_tensorrt(tmp_path, capsys):
    rc = cli_main(["build-engine", "--onnx-dir", str(tmp_path)])
    err = capsys.readouterr().err.strip()
    assert rc == 1 and "TensorRT is not installed" in err and "\n" not in err
