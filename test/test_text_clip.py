"""open_clip text encoder: ensembling, cache, text edge cases, the "car" query, the factory."""

import numpy as np
import pytest

from pop3d_ros.text.base import TextEncoder, TextEncodingError
from pop3d_ros.text.clip_text import OpenClipTextEncoder
from pop3d_ros.text.factory import text_encoder_from_spec
from pop3d_ros.text.prompts import DEFAULT_TEMPLATES, fill_templates
from pop3d_ros.text.query import classify, encode_classes, encode_query, query, top_k


@pytest.fixture(scope="module")
def enc():
    # Random ViT-B-32 text tower (no weights exist offline); builds in about a second.
    return OpenClipTextEncoder("ViT-B-32", seed=0)


def _unit(x):
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def test_implements_the_text_encoder_interface(enc):
    assert isinstance(enc, TextEncoder)
    assert (enc.embed_dim, enc.context_length) == (512, 77)
    assert enc.space_id == "open_clip:ViT-B-32:random-seed0"
    e = enc.encode(["car", "a tall tree"])
    assert e.shape == (2, 512) and e.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(e, axis=1), 1.0, atol=1e-5)
    assert not np.allclose(e[0], e[1])


def test_prompt_ensembling_is_normalised_mean_of_normalised_templates(enc):
    per_template = enc.encode_plain(fill_templates("bicycle", DEFAULT_TEMPLATES))
    expected = _unit(_unit(per_template).mean(axis=0))
    np.testing.assert_allclose(enc.encode(["bicycle"])[0], expected, atol=1e-5)
    # ...and it is not just the first template's embedding.
    assert not np.allclose(enc.encode(["bicycle"])[0], per_template[0], atol=1e-5)


def test_cache_hits_return_the_same_embedding(enc):
    first = enc.encode(["traffic cone"])[0]
    hits = enc.cache_info()["hits"]
    again = enc.encode(["traffic cone"])[0]
    assert enc.cache_info()["hits"] == hits + 1
    np.testing.assert_array_equal(first, again)
    again[:] = 0  # callers get copies: the cache cannot be corrupted from outside
    assert np.linalg.norm(enc.encode(["traffic cone"])[0]) == pytest.approx(1.0, abs=1e-5)


def test_cache_is_bounded_lru_and_towers_are_seeded():
    small = OpenClipTextEncoder("ViT-B-32", seed=0, templates=(), cache_size=2)
    small.encode(["a", "b"])
    small.encode(["a"])  # 'a' becomes most recent; adding 'c' evicts 'b'
    small.encode(["c"])
    assert list(small._cache) == ["a", "c"]
    other = OpenClipTextEncoder("ViT-B-32", seed=0, templates=())
    np.testing.assert_allclose(small.encode(["car"]), other.encode(["car"]), atol=1e-6)


@pytest.mark.parametrize("bad", ["", "   ", "\t\n"])
def test_empty_or_whitespace_text_is_rejected(enc, bad):
    with pytest.raises(TextEncodingError, match="empty query"):
        enc.encode([bad])
    with pytest.raises(TextEncodingError, match="empty query"):
        encode_query(enc, bad)


def test_over_long_text_is_truncated_and_reported(enc):
    long_text = " ".join(["red car parked near the old stone bridge"] * 20)
    assert enc.count_tokens(long_text) > 77
    emb, notes = enc.encode_with_info(long_text)
    assert notes == ["truncated to 77 tokens"]
    assert np.isfinite(emb).all() and np.linalg.norm(emb) == pytest.approx(1.0, abs=1e-5)
    assert encode_query(enc, "car")[1] == []


def test_non_ascii_text_encodes(enc):
    texts = ["Straße", "café", "自転車", "voiture électrique 🚗"]
    e = enc.encode(texts)
    assert np.isfinite(e).all()
    np.testing.assert_allclose(np.linalg.norm(e, axis=1), 1.0, atol=1e-5)
    assert len({tuple(np.round(row, 5)) for row in e}) == len(texts)


def test_query_car_puts_car_voxels_on_top(enc):
    rng = np.random.default_rng(0)
    n = 2000
    # Random towers give nearly collinear embeddings, so the distractors are the encoder's
    # own embeddings of other words plus random features; "car" voxels hold "car" itself.
    others = enc.encode(["tree", "road", "building", "truck", "person", "bus"])
    feats = rng.normal(size=(n, 512)).astype(np.float32)
    feats[: len(others) * 50] = np.repeat(others, 50, axis=0)
    car_idx = np.array([17, 401, 999, 1500, 1999])
    feats[car_idx] = enc.encode(["car"])[0] * 3.0  # scale must not matter (cosine)
    scores = query(feats, encode_query(enc, "car")[0])
    idx, best = top_k(scores, 5)
    assert sorted(idx.tolist()) == car_idx.tolist()
    np.testing.assert_allclose(best, 1.0, atol=1e-5)
    assert scores[np.setdiff1d(np.arange(n), car_idx)].max() < 1.0 - 1e-4


def test_classify_with_clip_phrases(enc):
    phrases = {"car": ["car", "automobile"], "vegetation": ["tree", "bush"], "road": ["road"]}
    class_emb = encode_classes(enc, phrases)
    feats = np.concatenate([class_emb["vegetation"][1:], class_emb["car"], class_emb["road"]])
    assert classify(feats, class_emb).tolist() == [1, 0, 0, 2]


def test_factory_rebuilds_the_same_space(enc):
    spec = enc.describe()
    assert spec["kind"] == "open_clip" and spec["checkpoint"] is None
    again = text_encoder_from_spec(spec)
    assert again.space_id == enc.space_id
    np.testing.assert_allclose(again.encode(["car"]), enc.encode(["car"]), atol=1e-6)
    with pytest.raises(ValueError, match="text space mismatch"):
        text_encoder_from_spec({**spec, "space_id": "open_clip:ViT-B-32:other"})


def test_factory_and_encoder_errors(tmp_path):
    with pytest.raises(ValueError, match="unknown text space kind 'bert'"):
        text_encoder_from_spec({"kind": "bert"})
    with pytest.raises(ValueError, match="must be a dict with a 'kind'"):
        text_encoder_from_spec({"model_name": "ViT-B-32"})
    with pytest.raises(FileNotFoundError, match="nope.pt: CLIP checkpoint file not found"):
        OpenClipTextEncoder("ViT-B-32", checkpoint=str(tmp_path / "nope.pt"))
    with pytest.raises(ValueError, match="unknown open_clip model 'ViT-Z-99'"):
        OpenClipTextEncoder("ViT-Z-99")


def test_factory_builds_the_synthetic_space():
    from pop3d_ros.text.synthetic_text import SyntheticTextSpace

    ref = SyntheticTextSpace(seed=3)
    built = text_encoder_from_spec(ref.describe())
    assert built.space_id == ref.space_id
    np.testing.assert_allclose(built.encode(["car"]), ref.encode(["car"]))
    with pytest.raises(TextEncodingError, match="empty query"):
        encode_query(built, " ")
