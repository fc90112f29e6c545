"""MaskCLIP teacher on random open_clip weights: value path vs open_clip's own modules,
shapes, determinism, positional-embedding interpolation, and the resumable fp16 cache."""

import numpy as np
import pytest
import torch

from pop3d_ros.training.teacher_cache import CachedTeacher, build_cache
from pop3d_ros.training.teacher_maskclip import build_maskclip, interpolate_pos_embed


@pytest.fixture(scope="module")
def teacher():
    torch.manual_seed(0)
    return build_maskclip("ViT-B-32")


def test_value_path_equals_open_clip_attention_with_identity_attention(teacher):
    # With attention restricted to each token itself, open_clip's attention output is exactly
    # out_proj(value): the path MaskCLIP keeps.
    blk = teacher.visual.transformer.resblocks[-1]
    x = torch.randn(2, 10, blk.ln_1.normalized_shape[0])
    mask = torch.full((10, 10), float("-inf")).fill_diagonal_(0.0)
    with torch.no_grad():
        ref = blk.attention(q_x=blk.ln_1(x), attn_mask=mask)
        ours = teacher.value_path(blk, x)
    assert torch.allclose(ours, ref, atol=1e-5)


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
    meta = {"model_name": "ViT-B-32", "checkpoint": None, "stride": 32}
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
    with pytest.raises(FileNotFoundError, match="not in the teacher cache"):
        CachedTeacher(tmp_path)({"token": "zzz"})
