"""MaskCLIP teacher on random open_clip weights: the official variant vs open_clip's own
last block with identity attention, the no-residual variant, shapes, determinism,
positional-embedding interpolation, and the resumable fp16 cache (keyed by the variant)."""

import numpy as np
import pytest
import torch

from pop3d_ros.teachers.cache import CachedTeacher, build_cache
from pop3d_ros.teachers.maskclip import MaskCLIP, build_maskclip, interpolate_pos_embed


@pytest.fixture(scope="module")
def teacher():
    torch.manual_seed(0)
    return build_maskclip("ViT-B-32")


def _identity_attention_reference(visual, images: torch.Tensor) -> torch.Tensor:
    """MaskCLIP's dense features computed with open_clip's own modules, in open_clip's own
    order: its normalisation constants, its `_embeds`, its blocks, and the last block run
    *whole* (residuals, layer scales, FFN) with an attention mask under which each token
    attends only to itself."""
    from open_clip.constants import OPENAI_DATASET_MEAN, OPENAI_DATASET_STD

    mean = torch.tensor(OPENAI_DATASET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(OPENAI_DATASET_STD).view(1, 3, 1, 1)
    x = visual._embeds((images - mean) / std)
    blocks = visual.transformer.resblocks
    batch_first = getattr(visual.transformer, "batch_first", True)
    if not batch_first:
        x = x.transpose(0, 1)
    for blk in blocks[:-1]:
        x = blk(x)
    n = x.shape[1] if batch_first else x.shape[0]
    only_self = torch.full((n, n), float("-inf")).fill_diagonal_(0.0)
    x = blocks[-1](x, attn_mask=only_self)
    if not batch_first:
        x = x.transpose(0, 1)
    x = visual.ln_post(x[:, 1:]) @ visual.proj
    g = int(round((x.shape[1]) ** 0.5))
    return x.transpose(1, 2).reshape(x.shape[0], -1, g, g)


def test_official_variant_equals_last_block_with_identity_attention(teacher):
    # The official MaskCLIP path (vit.py, forward(return_qkv=True)) is the last block with
    # its attention matrix replaced by the identity: residual and FFN included.
    assert teacher.variant == "maskclip"
    images = torch.rand(2, 3, 224, 224)
    with torch.no_grad():
        ref = _identity_attention_reference(teacher.visual, images)
        ours = teacher(images)
    assert ours.shape == ref.shape == (2, teacher.embed_dim, 7, 7)
    assert torch.allclose(ours, ref, atol=1e-5), (ours - ref).abs().max()


def test_official_variant_applies_layer_scale_where_open_clip_does():
    from open_clip.transformer import VisionTransformer

    torch.manual_seed(1)
    visual = VisionTransformer(64, 16, 64, 2, 4, 4.0, ls_init_value=0.3, output_dim=32).eval()
    with torch.no_grad():  # distinct per-channel scales, so misplacing one is visible
        for blk in visual.transformer.resblocks:
            blk.ls_1.gamma.uniform_(0.1, 2.0)
            blk.ls_2.gamma.uniform_(0.1, 2.0)
    images = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        ref = _identity_attention_reference(visual, images)
        ours = MaskCLIP(visual)(images)
    assert torch.allclose(ours, ref, atol=1e-5)


def test_no_residual_variant_is_the_value_path_only(teacher):
    # Replaces the former spec test of the default teacher ("value path only"), which was not
    # MaskCLIP's computation: that path is now the named `maskclip-no-residual` variant.
    # With attention restricted to each token itself, open_clip's attention output is exactly
    # out_proj(value), what this variant keeps of the last block.
    blk = teacher.visual.transformer.resblocks[-1]
    x = torch.randn(2, 10, blk.ln_1.normalized_shape[0])
    mask = torch.full((10, 10), float("-inf")).fill_diagonal_(0.0)
    with torch.no_grad():
        ref = blk.attention(q_x=blk.ln_1(x), attn_mask=mask)
        assert torch.allclose(teacher.value_path(blk, x), ref, atol=1e-5)
    plain = MaskCLIP(teacher.visual, "maskclip-no-residual")
    with torch.no_grad():
        assert torch.equal(plain.last_block(blk, x), teacher.value_path(blk, x))
        images = torch.rand(1, 3, 224, 224)
        a, b = plain(images), teacher(images)
    cos = torch.nn.functional.cosine_similarity(a, b, dim=1).mean()
    assert cos < 0.99  # the two variants are different features
    with pytest.raises(ValueError, match="unknown MaskCLIP variant"):
        MaskCLIP(teacher.visual, "maskclip-v2")


def test_embeds_match_open_clip_at_native_size(teacher):
    x = torch.rand(1, 3, 224, 224)
    with torch.no_grad():
        assert torch.allclose(teacher.embeds(x), teacher.visual._embeds(x), atol=1e-6)


def test_pos_embed_interpolation():
    pos = torch.randn(1 + 7 * 7, 16)
    assert interpolate_pos_embed(pos, (7, 7), (7, 7)) is pos
    out = interpolate_pos_embed(pos, (7, 7), (5, 8))
    assert out.shape == (1 + 40, 16) and torch.equal(out[0], pos[0])


def test_dense_features_shape_and_determinism(teacher):
    images = torch.rand(6, 3, 144, 256)
    with torch.no_grad():
        a, b = teacher(images), teacher(images)
    assert a.shape == (6, teacher.embed_dim, 5, 8) and teacher.stride == 32
    assert torch.equal(a, b) and torch.isfinite(a).all()
    # Changing one image changes its own features only.
    images2 = images.clone()
    images2[0, :, :32, :32] = 0.0
    with torch.no_grad():
        c = teacher(images2)
    assert not torch.allclose(c[0, :, 0, 0], a[0, :, 0, 0])
    assert torch.allclose(c[1:], a[1:], atol=1e-5)


def test_cache_is_fp16_and_resumable(tmp_path):
    calls = []

    def feats(sample):
        calls.append(sample["token"])
        return np.full((6, 4, 2, 3), float(len(sample["token"])), np.float32)

    samples = {k: {"token": f"tok/{k}"} for k in ("a", "bb")}
    meta = {"model_name": "ViT-B-32", "checkpoint": None, "variant": "maskclip", "stride": 32}
    assert build_cache(samples, samples.__getitem__, feats, tmp_path, meta) == {
        "computed": 2,
        "skipped": 0,
    }
    assert build_cache(samples, samples.__getitem__, feats, tmp_path, meta) == {
        "computed": 0,
        "skipped": 2,
    }
    assert len(calls) == 2
    out = CachedTeacher(tmp_path)({"token": "tok/bb"})["features"]
    assert out.dtype == np.float16 and out.shape == (6, 4, 2, 3) and out[0, 0, 0, 0] == 6
    with pytest.raises(ValueError, match="another teacher"):
        build_cache(samples, samples.__getitem__, feats, tmp_path, {**meta, "model_name": "x"})
    with pytest.raises(ValueError, match="another teacher.*variant=maskclip"):
        build_cache(
            samples,
            samples.__getitem__,
            feats,
            tmp_path,
            {**meta, "variant": "maskclip-no-residual"},
        )
    with pytest.raises(FileNotFoundError, match="not in the teacher cache"):
        CachedTeacher(tmp_path)({"token": "zzz"})


def test_cache_from_before_the_variant_is_refused(tmp_path):
    # A cache written by the old code: same meta but no variant (its features dropped the
    # last block's residual and FFN). Neither resuming nor reading it is allowed.
    import json

    old = {"model_name": "ViT-B-32", "checkpoint": None, "stride": 32, "dim": 512}
    (tmp_path / "features").mkdir()
    (tmp_path / "meta.json").write_text(json.dumps(old))
    samples = {"a": {"token": "a"}}
    new = {**old, "variant": "maskclip"}
    with pytest.raises(ValueError, match="another teacher.*variant=None"):
        build_cache(samples, samples.__getitem__, lambda s: np.zeros((6, 4, 2, 3)), tmp_path, new)
    with pytest.raises(ValueError, match="without a known MaskCLIP variant"):
        CachedTeacher(tmp_path)


def test_teacher_cache_cli_records_the_official_variant(tmp_path):
    import json

    from pop3d_ros.cli import main

    out = tmp_path / "cache"
    args = ["teacher-cache", "--data", "synthetic", "--seeds", "0", "--frames-per-seed", "1"]
    assert main([*args, "--model", "ViT-B-32", "--out", str(out)]) == 0
    meta = json.loads((out / "meta.json").read_text())
    assert meta["variant"] == "maskclip" and CachedTeacher(out).meta["variant"] == "maskclip"
    assert (
        main([*args, "--model", "ViT-B-32", "--variant", "maskclip-no-residual", "--out", str(out)])
        == 2
    )
