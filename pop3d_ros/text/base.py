"""The text-encoder interface shared by the open_clip encoder and the synthetic text space.

Query and zero-shot code take any `TextEncoder`, so tests with the synthetic space run the
same code paths as a real CLIP model.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import numpy as np


class TextEncodingError(ValueError):
    """Text that this text space cannot encode (empty, or no known word in a closed space)."""


@runtime_checkable
class TextEncoder(Protocol):
    #: Identifies the embedding space, e.g. "open_clip:ViT-B-32" or "synthetic:v1:seed=0".
    #: Checkpoints record it; a model trained in one space must not be queried in another.
    space_id: str
    #: Embedding width (512 for ViT-B CLIP).
    embed_dim: int
    #: Maximum number of tokens per text (77 for CLIP); longer text is truncated.
    context_length: int

    def encode(self, texts: list[str]) -> np.ndarray:
        """One L2-normalised float32 embedding per text, shape (len(texts), embed_dim).

        Raises TextEncodingError for text the space cannot encode.
        """
        ...
