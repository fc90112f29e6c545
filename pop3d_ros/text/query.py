"""Open-vocabulary queries on voxel language features (paper sec. 3.3).

`query`: cosine similarity of every voxel feature to one text embedding (grounding /
heatmaps). `classify`: zero-shot segmentation, each voxel takes the class whose best phrase
is most similar (max over a class's phrases, as POP-3D). numpy in, numpy out.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from pop3d_ros.text.base import TextEncodingError


def _as_numpy(x) -> np.ndarray:
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    return np.asarray(x, dtype=np.float32)


def normalise(x, eps: float = 1e-12) -> np.ndarray:
    """Rows scaled to unit L2 norm (zero rows stay zero)."""
    x = _as_numpy(x)
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), eps)


def query(features, text_embedding, mask=None) -> np.ndarray:
    """Cosine similarity (N,) of features (N, D) to a text embedding (D,).

    `mask` (N,) bool keeps only those voxels (e.g. occupied ones); the others score -inf so
    they never reach a top-k.
    """
    f = normalise(features)
    t = normalise(_as_numpy(text_embedding).reshape(-1))
    if f.ndim != 2 or f.shape[1] != t.shape[0]:
        raise ValueError(f"features {f.shape} and text embedding ({t.shape[0]},) widths differ")
    scores = f @ t
    if mask is not None:
        scores = np.where(np.asarray(mask, dtype=bool), scores, -np.inf).astype(np.float32)
    return scores


def top_k(scores, k: int) -> tuple[np.ndarray, np.ndarray]:
    """(indices, scores) of the k best finite scores, best first (fewer if fewer exist)."""
    s = _as_numpy(scores).reshape(-1)
    finite = np.flatnonzero(np.isfinite(s))
    k = max(0, min(int(k), finite.size))
    if k == 0:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float32)
    part = finite[np.argpartition(-s[finite], k - 1)[:k]]
    order = part[np.argsort(-s[part], kind="stable")]
    return order.astype(np.int64), s[order]


def class_scores(features, class_embeddings: Mapping[str, np.ndarray]) -> np.ndarray:
    """(N, n_classes) similarity: per class, the max over its phrases' embeddings."""
    if not class_embeddings:
        raise ValueError("class_embeddings is empty")
    f = normalise(features)
    cols = []
    for name, emb in class_embeddings.items():
        e = normalise(np.atleast_2d(_as_numpy(emb)))
        if e.shape[1] != f.shape[1]:
            raise ValueError(f"class {name!r}: embedding width {e.shape[1]} != {f.shape[1]}")
        cols.append((f @ e.T).max(axis=1))
    return np.stack(cols, axis=1)


def classify(features, class_embeddings: Mapping[str, np.ndarray]) -> np.ndarray:
    """Zero-shot labels (N,) int64: index of the best class in `class_embeddings`' order."""
    return class_scores(features, class_embeddings).argmax(axis=1).astype(np.int64)


def encode_classes(encoder, class_phrases: Mapping[str, list[str]]) -> dict[str, np.ndarray]:
    """class name -> (n_phrases, D) embeddings of its phrases with any TextEncoder."""
    return {name: encoder.encode(list(phrases)) for name, phrases in class_phrases.items()}


def encode_query(encoder, text: str) -> tuple[np.ndarray, list[str]]:
    """(embedding (D,), notes) with any TextEncoder; rejects empty text with a clear message.

    Encoders with `encode_with_info` (open_clip) add notes such as truncation.
    """
    if not isinstance(text, str) or not text.strip():
        raise TextEncodingError("empty query: give a non-empty text, e.g. 'car'")
    if hasattr(encoder, "encode_with_info"):
        return encoder.encode_with_info(text)
    return encoder.encode([text])[0], []
