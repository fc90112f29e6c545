"""Checkpoints: round trip from the file alone, clear one-line errors, sha256."""

import hashlib

import pytest
import torch

from pop3d_ros.model import build_model, get_preset
from pop3d_ros.model.checkpoint import (
    CheckpointError,
    checkpoint_sha256,
    load_model,
    read_checkpoint,
    save_checkpoint,
)
from pop3d_ros.model.onnx_io import encoder_example_inputs

TEXT_SPACE = {"kind": "open_clip", "model_name": "ViT-B-32", "checkpoint": None}


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    torch.manual_seed(1)
    cfg = get_preset("cpu-small")
    model = build_model(cfg).eval()
    path = tmp_path_factory.mktemp("ckpt") / "sub" / "model.pt"
    save_checkpoint(path, model, cfg, TEXT_SPACE, {"epoch": 3}, optimizer={"lr": 1e-4})
    return path, cfg, model


def test_load_model_rebuilds_the_same_network(saved):
    path, cfg, model = saved
    loaded, ckpt = load_model(path)
    assert not loaded.training
    assert loaded.cfg == cfg
    assert ckpt["text_space"] == TEXT_SPACE and ckpt["meta"] == {"epoch": 3}
    assert ckpt["optimizer"] == {"lr": 1e-4}
    inputs = encoder_example_inputs(cfg)
    with torch.no_grad():
        a, b = model(*inputs), loaded(*inputs)
        feats = a["voxel_features"][0, 0, 0]
        lang_a, lang_b = model.language_head(feats), loaded.language_head(feats)
    for key in a:
        assert torch.equal(a[key], b[key])
    assert torch.equal(lang_a, lang_b)


def test_sha256_matches_the_file_bytes(saved):
    path = saved[0]
    assert checkpoint_sha256(path) == hashlib.sha256(path.read_bytes()).hexdigest()


def test_missing_file_error_names_the_file(tmp_path):
    missing = tmp_path / "none.pt"
    for fn in (load_model, checkpoint_sha256):
        with pytest.raises(CheckpointError) as err:
            fn(missing)
        assert str(err.value) == f"{missing}: checkpoint file not found"


def test_corrupt_and_foreign_files_are_rejected_in_one_line(tmp_path, saved):
    corrupt = tmp_path / "corrupt.pt"
    corrupt.write_bytes(saved[0].read_bytes()[:1000])
    with pytest.raises(CheckpointError, match="corrupt.pt: not a readable checkpoint") as err:
        load_model(corrupt)
    assert "\n" not in str(err.value)
    foreign = tmp_path / "foreign.pt"
    torch.save({"state_dict": {}}, foreign)
    with pytest.raises(CheckpointError, match=r"foreign.pt: not a pop3d checkpoint \(missing"):
        read_checkpoint(foreign)


def test_weights_not_matching_the_config_are_reported(tmp_path, saved):
    path, cfg, model = saved
    ckpt = read_checkpoint(path)
    ckpt["config"]["decoder"]["voxel_channels"] = 16
    bad = tmp_path / "mismatch.pt"
    torch.save(ckpt, bad)
    with pytest.raises(CheckpointError, match="mismatch.pt: weights do not match"):
        load_model(bad)


def test_text_space_must_be_described(tmp_path, saved):
    _, cfg, model = saved
    with pytest.raises(ValueError, match="'kind'"):
        save_checkpoint(tmp_path / "x.pt", model, cfg, {}, {})
    assert not (tmp_path / "x.pt").exists()
