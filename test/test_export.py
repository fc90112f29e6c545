"""`pop3d export`: ONNX graphs + manifest, checker, op check, torch/ORT parity, bad files."""

import json
import shutil

import numpy as np
import onnx
import pytest
import torch
from test_export_fixtures import write_tiny_checkpoint

from pop3d_ros.cli import main as cli_main
from pop3d_ros.export.backends.ort_backend import OrtBackend
from pop3d_ros.export.errors import ManifestError, OnnxFileError
from pop3d_ros.export.manifest import read_manifest, verify_export
from pop3d_ros.export.onnx_export import (
    PARITY_ATOL,
    PARITY_RTOL,
    example_inputs,
    export_checkpoint,
    validate_onnx,
)
from pop3d_ros.export.op_check import check_onnx_ops
from pop3d_ros.model.checkpoint import checkpoint_sha256, load_model


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    root = tmp_path_factory.mktemp("export")
    ckpt = write_tiny_checkpoint(root / "tiny.pt")
    out = root / "onnx"
    manifest = export_checkpoint(ckpt, out, log=lambda _m: None)
    return ckpt, out, manifest


def _one_line_naming(err, path):
    text = str(err)
    assert "\n" not in text, text
    assert str(path) in text, text


def test_graphs_pass_checker_and_tensorrt_op_check(exported):
    _, out, manifest = exported
    for name in ("encoder", "language_head"):
        path = out / f"{name}.onnx"
        onnx.checker.check_model(onnx.load(path))
        assert check_onnx_ops(path) == [], name
        assert manifest["tensorrt_op_check"]["unsupported"][name] == []
    assert "GridSample" in manifest["graphs"]["encoder"]["ops"]


def test_manifest_contents(exported):
    ckpt, out, manifest = exported
    assert read_manifest(out) == manifest
    assert manifest["checkpoint"]["sha256"] == checkpoint_sha256(ckpt)
    assert manifest["opset"] == 17
    assert manifest["model_config"]["name"] == "test-tiny"
    assert manifest["text_space"]["kind"] == "synthetic"
    assert {"torch", "onnx", "pop3d_ros"} <= set(manifest["exporter"])
    enc = manifest["graphs"]["encoder"]
    assert [s["name"] for s in enc["inputs"]] == ["images", "sampling_grid", "sampling_mask"]
    assert enc["inputs"][0]["shape"] == [1, 6, 3, 64, 96]
    assert enc["outputs"][0]["shape"] == [1, 16, 16, 4, 2]
    assert enc["outputs"][1]["shape"] == [1, 16, 16, 4, 16]
    head = manifest["graphs"]["language_head"]
    assert head["inputs"][0]["shape"] == ["N", 16]
    assert head["outputs"][0]["shape"] == ["N", 24]
    assert max(manifest["parity_max_abs_error"].values()) < PARITY_ATOL
    verify_export(out, checkpoint_sha256(ckpt))  # files still match


def test_torch_ort_parity_within_tolerance(exported):
    """Independent of the export's own check: other inputs, several language-head sizes."""
    ckpt, out, _ = exported
    model, _ = load_model(ckpt)
    feed = example_inputs(model.cfg, seed=7)
    with torch.inference_mode():
        ref = model(*(torch.from_numpy(feed[k]) for k in feed))
    with OrtBackend(out / "encoder.onnx", providers=["cpu"]) as enc:
        got = enc.infer(feed)
    for name in ("occupancy_logits", "voxel_features"):
        np.testing.assert_allclose(got[name], ref[name].numpy(), atol=PARITY_ATOL, rtol=PARITY_RTOL)
    feats = ref["voxel_features"].reshape(-1, 16)
    with OrtBackend(out / "language_head.onnx", providers=["cpu"]) as head:
        for n in (1, 37, feats.shape[0]):  # dynamic N, up to every voxel
            lang = head.infer({"voxel_features": feats[:n].numpy()})["language_features"]
            with torch.inference_mode():
                want = model.language_head(feats[:n]).numpy()
            assert lang.shape == (n, 24)
            np.testing.assert_allclose(lang, want, atol=PARITY_ATOL, rtol=PARITY_RTOL)


def test_corrupt_onnx_detected(exported, tmp_path):
    ckpt, out, _ = exported
    bad = tmp_path / "onnx"
    shutil.copytree(out, bad)
    enc = bad / "encoder.onnx"
    enc.write_bytes(enc.read_bytes()[:5000])  # truncated copy
    with pytest.raises(OnnxFileError) as e:
        verify_export(bad, checkpoint_sha256(ckpt))
    _one_line_naming(e.value, enc)
    assert "sha256" in str(e.value)
    with pytest.raises(OnnxFileError) as e:
        validate_onnx(enc, ["images"], ["x"])
    _one_line_naming(e.value, enc)
    with pytest.raises(OnnxFileError) as e:
        OrtBackend(enc, providers=["cpu"])
    _one_line_naming(e.value, enc)
    (bad / "language_head.onnx").unlink()
    enc.write_bytes((out / "encoder.onnx").read_bytes())
    with pytest.raises(OnnxFileError, match="file not found"):
        verify_export(bad)


def test_wrong_graph_io_detected(exported):
    _, out, _ = exported
    with pytest.raises(OnnxFileError) as e:
        validate_onnx(out / "language_head.onnx", ["images"], ["occupancy_logits"])
    _one_line_naming(e.value, out / "language_head.onnx")
    assert "expected" in str(e.value)


@pytest.mark.parametrize(
    "content, problem",
    [
        ("{not json", "not valid JSON"),
        ("[1, 2]", "expected a JSON object"),
        ('{"format": "pop3d_ros.export/1"}', "missing key"),
    ],
)
def test_corrupt_manifest(exported, tmp_path, content, problem):
    _, out, _ = exported
    bad = tmp_path / "onnx"
    shutil.copytree(out, bad)
    (bad / "manifest.json").write_text(content)
    with pytest.raises(ManifestError) as e:
        verify_export(bad)
    _one_line_naming(e.value, bad / "manifest.json")
    assert problem in str(e.value)


def test_manifest_from_another_model(exported, tmp_path):
    ckpt, out, manifest = exported
    other = write_tiny_checkpoint(tmp_path / "other.pt", seed=1)
    with pytest.raises(ManifestError) as e:
        verify_export(out, checkpoint_sha256(other))
    _one_line_naming(e.value, out / "manifest.json")
    assert "another model" in str(e.value)
    cfg = json.loads(json.dumps(manifest["model_config"]))
    cfg["heads"]["clip_dim"] = 512
    with pytest.raises(ManifestError, match="heads.clip_dim"):
        verify_export(out, checkpoint_sha256(ckpt), cfg)


def test_cli_export_and_errors(exported, tmp_path, capsys):
    ckpt, _, _ = exported
    assert cli_main(["export", "--checkpoint", str(ckpt), "--out", str(tmp_path / "o")]) == 0
    assert (tmp_path / "o" / "manifest.json").is_file()
    assert "all ops supported" in capsys.readouterr().out
    missing = tmp_path / "missing.pt"
    assert cli_main(["export", "--checkpoint", str(missing), "--out", str(tmp_path / "x")]) == 1
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and str(missing) in err
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a checkpoint")
    assert cli_main(["export", "--checkpoint", str(garbage), "--out", str(tmp_path / "x")]) == 1
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and str(garbage) in err
    with pytest.raises(SystemExit) as e:
        cli_main(["export", "--out", str(tmp_path / "x")])  # --checkpoint is required
    assert e.value.code == 2


def test_density_model_exports_with_parity(tmp_path):
    """A render-trained (density) model goes through the same ONNX outputs, within parity."""
    from test_export_fixtures import tiny_config

    from pop3d_ros.model.checkpoint import save_checkpoint
    from pop3d_ros.model.pop3d import build_model

    cfg = tiny_config()
    cfg.heads.occupancy_output = "density"
    cfg.heads.density_threshold = 0.5
    torch.manual_seed(0)
    model = build_model(cfg)
    space = {"kind": "synthetic", "space_id": "synthetic:test", "embed_dim": cfg.heads.clip_dim}
    ckpt = save_checkpoint(tmp_path / "density.pt", model, cfg, space, {})
    manifest = export_checkpoint(ckpt, tmp_path / "onnx", log=lambda _m: None)
    assert manifest["model_config"]["heads"]["occupancy_output"] == "density"
    assert manifest["parity_max_abs_error"]["occupancy_logits"] < PARITY_ATOL + 1e-3
    import onnxruntime

    sess = onnxruntime.InferenceSession(str(tmp_path / "onnx" / "encoder.onnx"))
    logits = sess.run(["occupancy_logits"], example_inputs(cfg, seed=1))[0]
    # [0, sigma - threshold] with sigma = softplus(...) >= 0
    assert np.all(logits[..., 0] == 0) and np.all(logits[..., 1] >= -0.5 - 1e-6)
