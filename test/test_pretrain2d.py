"""2D pretraining of the backbone (pop3d pretrain2d) and pop3d train --init-backbone."""

import sys
from pathlib import Path

import numpy as np
import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))

from train_fixtures import tiny_model_config, tiny_sample  # noqa: E402

from pop3d_ros.data.synthetic_teacher import SyntheticTeacher, TeacherConfig  # noqa: E402
from pop3d_ros.model.checkpoint import CheckpointError, save_checkpoint  # noqa: E402
from pop3d_ros.model.config import get_preset  # noqa: E402
from pop3d_ros.model.pop3d import build_model  # noqa: E402
from pop3d_ros.training.frames import PreparedFrames, prepare_frames  # noqa: E402
from pop3d_ros.training.init_backbone import init_backbone  # noqa: E402
from pop3d_ros.training.pretrain2d import (  # noqa: E402
    ImagePool,
    Pretrain2DConfig,
    Student2D,
    prepare_item,
    pretrain,
    resample_teacher,
)


def test_teacher_map_is_sampled_at_feature_cell_centres():
    # a 48 x 80 image, 16-px patches -> a 3 x 5 map whose value is the patch column (or row)
    cols = torch.arange(5.0).view(1, 1, 1, 5).expand(1, 1, 3, 5)
    rows = torch.arange(3.0).view(1, 1, 3, 1).expand(1, 1, 3, 5)
    out = resample_teacher(torch.cat([cols, rows], 1), torch.tensor([48, 80]), 16, (4, 8))
    assert out.shape == (1, 2, 4, 8)
    # feature cell j of 8 is centred at pixel (j + 0.5) * 80 / 8 of the source image;
    # patch k is centred at pixel 16 k + 8; linear in between, clamped outside
    px = (np.arange(8) + 0.5) * 10.0
    expect_x = np.clip((px - 8) / 16, 0, 4)
    py = (np.arange(4) + 0.5) * 12.0
    expect_y = np.clip((py - 8) / 16, 0, 2)
    assert np.allclose(out[0, 0, 0].numpy(), expect_x, atol=1e-5)
    assert np.allclose(out[0, 1, :, 0].numpy(), expect_y, atol=1e-5)


@pytest.fixture(scope="module")
def pool(tmp_path_factory):
    cfg = tiny_model_config()
    # area-weighted patches: the tiny frames' sparse labelled pixels give non-zero targets
    teacher = SyntheticTeacher(config=TeacherConfig(mode="average"))
    root = tmp_path_factory.mktemp("pt_frames")
    prepare_frames(
        ["f0", "f1"],
        lambda k: tiny_sample(int(k[1:])),
        lambda s: prepare_item(s, teacher, cfg.image_size),
        root,
    )
    return ImagePool(PreparedFrames(root), cfg)


def test_prepared_item_and_pool_shapes(pool):
    cfg = tiny_model_config()
    item = pool.frames[0]
    assert item["images"].shape == (6, 3, *cfg.image_size) and item["images"].dtype == torch.uint8
    assert item["teacher"].shape == (6, 512, 3, 5) and item["teacher"].dtype == torch.float16
    assert item["src_hw"].tolist() == [48, 80] and int(item["stride"]) == 16
    assert len(pool) == 12
    images, targets = pool.batch(3, np.random.default_rng(0), hflip=True)
    assert images.shape == (3, 3, *cfg.image_size)
    assert targets.shape == (3, 512, *cfg.feature_hw)


@pytest.mark.parametrize("loss", ["mse", "cosine"])
def test_pretraining_loss_falls(pool, loss):
    torch.manual_seed(0)
    student = Student2D(tiny_model_config())
    cfg = Pretrain2DConfig(
        steps=40, batch_images=4, lr=3e-3, warmup_steps=2, log_every=5, loss=loss, hflip=False
    )
    summary = pretrain(student, pool, cfg)
    first, last = summary["history"][0][1], summary["history"][-1][1]
    assert last < 0.7 * first, summary["history"]


def test_pretrain_config_is_checked():
    with pytest.raises(ValueError, match="loss must be mse or cosine"):
        Pretrain2DConfig(loss="l1").validate()
    with pytest.raises(ValueError, match="positive"):
        Pretrain2DConfig(batch_images=0).validate()


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory):
    """A real `pop3d pretrain2d` run: one synthetic frame, two steps, cpu-small."""
    from pop3d_ros.cli import main

    out = tmp_path_factory.mktemp("pt_run")
    rc = main(
        ["pretrain2d", "--seeds", "200", "--frames-per-seed", "1", "--steps", "2"]
        + ["--batch-images", "2", "--warmup-steps", "0", "--out", str(out)]
    )
    assert rc == 0
    return out / "backbone.pt"


def test_pretrain_cli_writes_a_backbone_checkpoint(pretrained):
    ckpt = torch.load(pretrained, weights_only=True)
    assert ckpt["model"] and all(k.startswith("backbone.") for k in ckpt["model"])
    assert ckpt["head"]["weight"].shape == (512, 48, 1, 1)
    assert ckpt["config"]["name"] == "cpu-small"
    meta = ckpt["meta"]
    assert meta["stage"] == "pretrain2d" and meta["step"] == 2 and meta["images"] == 6
    assert meta["teacher"]["profile"] == "maskclip-like"
    assert ckpt["text_space"]["kind"] == "synthetic"
    # the prepared frame is cached on disk for later runs
    frames = pretrained.parent / "frames"
    assert sorted(p.name for p in frames.glob("*.pt")) == ["syn00200_0000.pt"]


def test_init_backbone_copies_only_the_backbone(pretrained):
    cfg = get_preset("cpu-small")
    torch.manual_seed(0)
    fresh = build_model(cfg)
    torch.manual_seed(0)
    model = build_model(cfg)
    stages = init_backbone(model, cfg, pretrained)
    saved = torch.load(pretrained, weights_only=True)["model"]
    state, init = model.state_dict(), fresh.state_dict()
    changed = 0
    for k, v in state.items():
        if k.startswith("backbone."):
            assert torch.equal(v, saved[k].float()), k
            changed += not torch.equal(v, init[k])
        else:
            assert torch.equal(v, init[k]), k
    assert changed > 0  # the pretrained weights are not the fresh init
    assert len(stages) == 1 and stages[0]["checkpoint"] == str(pretrained)
    assert stages[0]["part"] == "backbone" and stages[0]["step"] == 2
    assert stages[0]["command"].startswith("pop3d pretrain2d") or stages[0]["command"] == ""


def test_init_backbone_from_a_full_3d_checkpoint(tmp_path):
    cfg = tiny_model_config()
    torch.manual_seed(1)
    source = build_model(cfg)
    meta = {"step": 7, "command": "pop3d train x", "earlier_stages": [{"checkpoint": "a"}]}
    save_checkpoint(tmp_path / "full.pt", source, cfg, {"kind": "synthetic"}, meta)
    torch.manual_seed(2)
    model = build_model(cfg)
    stages = init_backbone(model, cfg, tmp_path / "full.pt")
    for k, v in model.backbone.state_dict().items():
        assert torch.equal(v, source.backbone.state_dict()[k]), k
    decoder = zip(model.decoder.parameters(), source.decoder.parameters(), strict=True)
    assert not any(torch.equal(a, b) for a, b in decoder if a.ndim > 1)  # left at its own init
    assert [s["checkpoint"] for s in stages] == ["a", str(tmp_path / "full.pt")]


def test_init_backbone_refuses_mismatched_or_bad_files(pretrained, tmp_path):
    tiny = tiny_model_config()  # ResNet-18 with 8 neck channels, cpu-small has 48
    with pytest.raises(ValueError, match=r"backbone config differs .* \(in: out_channels\)"):
        init_backbone(build_model(tiny), tiny, pretrained)
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="not a readable checkpoint"):
        init_backbone(build_model(tiny), tiny, bad)
    with pytest.raises(CheckpointError, match="not found"):
        init_backbone(build_model(tiny), tiny, tmp_path / "missing.pt")
    ckpt = torch.load(pretrained, weights_only=True)
    ckpt["config"]["backbone"]["out_channels"] = 8  # right config, no backbone tensors
    ckpt["model"] = {}
    torch.save(ckpt, tmp_path / "empty.pt")
    with pytest.raises(CheckpointError, match="no backbone weights"):
        init_backbone(build_model(tiny), tiny, tmp_path / "empty.pt")


def test_train_cli_refuses_init_from_with_init_backbone(tmp_path, capsys):
    from pop3d_ros.cli import main

    rc = main(
        ["train", "--seeds", "0", "--init_from", "a.pt", "--init-backbone", "b.pt"]
        + ["--out", str(tmp_path / "run")]
    )
    assert rc == 2
    assert "exclude each other" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


def test_pretrain_cli_reads_cached_maskclip_features(tmp_path):
    """Real data's teacher: features from a `pop3d teacher-cache` directory (here filled with
    a stand-in map of the cache's layout, (N_cam, D, ceil(H/16), ceil(W/16)) fp16)."""
    from pop3d_ros.cli import main
    from pop3d_ros.data.sources import synthetic_source
    from pop3d_ros.teachers.cache import build_cache

    keys, make = synthetic_source([200], 1)
    rng = np.random.default_rng(0)

    def features(sample):
        n, h, w = sample["images"].shape[:3]
        return rng.standard_normal((n, 512, -(-h // 16), -(-w // 16)))

    meta = {"model_name": "ViT-B-16", "checkpoint": None, "variant": "maskclip", "stride": 16,
            "dim": 512, "text_space": {"kind": "open_clip", "model_name": "ViT-B-16"}}  # fmt: skip
    build_cache(keys, make, features, tmp_path / "cache", meta)
    rc = main(
        ["pretrain2d", "--teacher.kind", "maskclip", "--teacher.cache", str(tmp_path / "cache")]
        + ["--seeds", "200", "--frames-per-seed", "1", "--steps", "1", "--batch-images", "2"]
        + ["--out", str(tmp_path / "run")]
    )
    assert rc == 0
    ckpt = torch.load(tmp_path / "run" / "backbone.pt", weights_only=True)
    assert ckpt["meta"]["teacher"]["kind"] == "maskclip"
    assert ckpt["text_space"]["kind"] == "open_clip"
    item = torch.load(tmp_path / "run" / "frames" / "syn00200_0000.pt", weights_only=True)
    assert item["teacher"].shape == (6, 512, 9, 16)
