"""`pop3d vfm-labels` (cached, resumable) and `pop3d train` with strategy vfm end to end."""

import json

import pytest
import torch

from pop3d_ros.cli import main


@pytest.mark.slow
def test_vfm_labels_then_train(tmp_path, capsys, monkeypatch):
    cache = tmp_path / "vfm"
    common = ["--seeds", "951", "--frames-per-seed", "2", "--vfm.calibration.iterations", "2"]
    assert main(["vfm-labels", *common, "--out", str(cache)]) == 0
    labels = sorted((cache / "labels").glob("*.pt"))
    assert len(labels) == 2 and len(list((cache / "depth").glob("*.npz"))) == 2
    stamp = [p.stat().st_mtime_ns for p in labels]
    assert main(["vfm-labels", *common, "--out", str(cache)]) == 0  # resumes: nothing redone
    assert "2 were cached already" in capsys.readouterr().out
    assert [p.stat().st_mtime_ns for p in labels] == stamp
    assert len(json.loads((cache / "index.json").read_text())) == 2

    run = tmp_path / "run"
    argv = [
        "train",
        "--strategy",
        "vfm",
        *common,
        "--vfm.cache",
        str(cache),
        "--out",
        str(run),
        "--steps",
        "2",
        "--warmup-steps",
        "1",
        "--log-every",
        "1",
        "--feature-balance",
        "1",
    ]
    import pop3d_ros.text.factory as factory

    builds = []
    build = factory.text_encoder_from_spec
    monkeypatch.setattr(
        factory, "text_encoder_from_spec", lambda spec: builds.append(spec) or build(spec)
    )
    assert main(argv) == 0
    # the pseudo labels' pixel semantics and the feature balance share one text encoder
    assert len(builds) == 1
    ckpt = torch.load(run / "model.pt", weights_only=False)
    assert ckpt["meta"]["strategy"] == "vfm"
    assert ckpt["meta"]["vfm"]["calibration"]["iterations"] == 2
    # other calibration settings are refused rather than mixed into the same cache
    bad = ["vfm-labels", "--seeds", "951", "--frames-per-seed", "2", "--out", str(cache)]
    assert main(bad) == 2
    assert "other settings" in capsys.readouterr().err


def test_depth_anything_needs_weights(tmp_path, capsys):
    argv = [
        "vfm-labels",
        "--seeds",
        "0",
        "--frames-per-seed",
        "2",
        "--out",
        str(tmp_path),
        "--depth-source",
        "depth_anything",
    ]
    assert main(argv) == 2
    assert "needs vfm.depth_weights DIR" in capsys.readouterr().err
