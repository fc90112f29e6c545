"""open_clip text tower as a `TextEncoder`, with prompt ensembling and an LRU embedding cache.

open_clip is imported lazily. Without a local checkpoint the tower is randomly initialised
from a fixed seed (no network, ever), so its space is reproducible and recorded in `space_id`.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from pathlib import Path

import numpy as np

from pop3d_ros.text.base import TextEncodingError
from pop3d_ros.text.prompts import DEFAULT_TEMPLATES, fill_templates


def _normalise(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


class OpenClipTextEncoder:
    """Prompt-ensembled CLIP text embeddings. Implements `text.base.TextEncoder`.

    model_name: open_clip model name, e.g. "ViT-B-32".
    checkpoint: optional local file with CLIP weights; None = random tower from `seed`.
    templates: prompt templates (`{}` = the text); None or () = encode texts as given.
    cache_size: how many query embeddings to keep (least recently used are dropped).
    """

    def __init__(
        self,
        model_name: str = "ViT-B-32",
        checkpoint: str | None = None,
        templates=DEFAULT_TEMPLATES,
        cache_size: int = 1024,
        seed: int = 0,
        device: str = "cpu",
    ):
        import open_clip
        import torch

        self.model_name = model_name
        self.checkpoint = str(checkpoint) if checkpoint else None
        self.templates = tuple(templates or ())
        self.seed = int(seed)
        self.device = device
        if self.checkpoint and not Path(self.checkpoint).is_file():
            raise FileNotFoundError(f"{self.checkpoint}: CLIP checkpoint file not found")
        if model_name not in open_clip.list_models():
            raise ValueError(f"unknown open_clip model {model_name!r}")
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed)
            model = open_clip.create_model(model_name, pretrained=self.checkpoint, device=device)
        model.visual = None  # text only: free the image tower's memory
        self._model = model.eval()
        self._tokenizer = open_clip.get_tokenizer(model_name)
        self.context_length = int(getattr(self._tokenizer, "context_length", 77))
        self.embed_dim = int(model.text_projection.shape[1])
        weights = Path(self.checkpoint).name if self.checkpoint else f"random-seed{self.seed}"
        self.space_id = f"open_clip:{model_name}:{weights}"
        self._cache: OrderedDict[str, np.ndarray] = OrderedDict()
        self._cache_size = int(cache_size)
        self._lock = threading.Lock()
        self.cache_hits = 0
        self.cache_misses = 0

    # -------------------------------------------------------------- description
    def describe(self) -> dict:
        """The `text_space` dict stored in checkpoints (rebuild with `from_description`)."""
        return {
            "kind": "open_clip",
            "model_name": self.model_name,
            "checkpoint": self.checkpoint,
            "seed": self.seed,
            "space_id": self.space_id,
        }

    @classmethod
    def from_description(cls, d: dict, **overrides) -> OpenClipTextEncoder:
        kwargs = {k: d[k] for k in ("model_name", "checkpoint", "seed") if k in d}
        kwargs.update(overrides)
        return cls(**kwargs)

    # -------------------------------------------------------------- tokens
    def _check(self, text) -> str:
        if not isinstance(text, str):
            raise TextEncodingError(f"query must be a string, got {type(text).__name__}")
        if not text.strip():
            raise TextEncodingError("empty query: give a non-empty text, e.g. 'car'")
        return text.strip()

    def count_tokens(self, text: str) -> int:
        """Tokens of `text` including start/end tokens (what the context length limits)."""
        encode = getattr(self._tokenizer, "encode", None)
        if encode is None:  # HF tokenizers: no cheap raw count; assume it fits
            return 2
        return len(encode(text)) + 2

    def _embed(self, texts: list[str]) -> np.ndarray:
        import torch

        tokens = self._tokenizer(texts)  # truncates to the context length
        with torch.no_grad():
            emb = self._model.encode_text(tokens.to(self.device))
        return _normalise(emb.float().cpu().numpy())

    # -------------------------------------------------------------- encoding
    def encode_with_info(self, text: str) -> tuple[np.ndarray, list[str]]:
        """(embedding (D,) float32 unit, notes) for one query; notes say e.g. that the text
        was truncated to the context length. Raises TextEncodingError for empty text."""
        text = self._check(text)
        notes = []
        longest = max(
            (self.count_tokens(t) for t in fill_templates(text, self.templates)),
            default=self.count_tokens(text),
        )
        if self.count_tokens(text) <= 2:
            raise TextEncodingError(f"query {text!r} has no tokens the text encoder knows")
        if longest > self.context_length:
            notes.append(f"truncated to {self.context_length} tokens")
        with self._lock:
            cached = self._cache.get(text)
            if cached is not None:
                self._cache.move_to_end(text)
                self.cache_hits += 1
                return cached.copy(), notes
        prompts = fill_templates(text, self.templates) if self.templates else [text]
        # Prompt ensembling: normalise each template's embedding, average, normalise.
        emb = _normalise(self._embed(prompts).mean(axis=0)).astype(np.float32)
        with self._lock:
            self.cache_misses += 1
            self._cache[text] = emb
            self._cache.move_to_end(text)
            while len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)
        return emb.copy(), notes

    def encode(self, texts: list[str]) -> np.ndarray:
        """(len(texts), D) float32 unit embeddings, prompt-ensembled, cached by text."""
        if isinstance(texts, str):
            texts = [texts]
        if len(texts) == 0:
            return np.zeros((0, self.embed_dim), dtype=np.float32)
        return np.stack([self.encode_with_info(t)[0] for t in texts]).astype(np.float32)

    def encode_plain(self, texts: list[str]) -> np.ndarray:
        """Embeddings of the texts exactly as given (no templates, no cache)."""
        texts = [self._check(t) for t in texts]
        return self._embed(texts).astype(np.float32)

    def cache_info(self) -> dict:
        return {"size": len(self._cache), "hits": self.cache_hits, "misses": self.cache_misses}
