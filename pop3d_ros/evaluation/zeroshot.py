"""Zero-shot classification as in POP-3D: every class has several phrases, each phrase is
prompt-ensembled over templates (normalise each, average, normalise), and a feature takes
the class whose best phrase has the highest cosine similarity."""

from __future__ import annotations

import numpy as np
import torch

from pop3d_ros.data.classes import CLASS_NAMES

# Used when the text package does not provide its own templates. No template word may be a
# class word of the synthetic space (e.g. "street" would pull every prompt towards "road").
FALLBACK_TEMPLATES = (
    "a photo of a {}.",
    "a blurry photo of a {}.",
    "a photo of the {}.",
    "a cropped photo of a {}.",
    "there is a {} in the scene.",
)


def prompt_templates(encoder=None) -> tuple[str, ...]:
    """The text package's templates, minus any whose own words the encoder already knows
    (in the closed synthetic space "a photo of a {} in the street." would mix every class
    with "road")."""
    try:
        from pop3d_ros.text.prompts import DEFAULT_TEMPLATES as templates
    except ImportError:
        templates = FALLBACK_TEMPLATES
    match = getattr(encoder, "match", None)
    if match is not None:
        templates = tuple(t for t in templates if not match(t.replace("{}", " ")))
    return tuple(templates) or FALLBACK_TEMPLATES


def class_vocabulary(encoder) -> dict[str, tuple[str, ...]]:
    """class name -> phrases: the encoder's own vocabulary if it has one, else the default."""
    vocab = getattr(encoder, "vocabulary", None)
    if vocab is None:
        from pop3d_ros.text.synthetic_text import VOCABULARY

        vocab = VOCABULARY
    return dict(vocab() if callable(vocab) else vocab)


def ensembled(encoder, phrase: str, templates) -> np.ndarray:
    """The phrase's prompt-ensembled embedding. Encoders that ensemble templates themselves
    (open_clip's, with `templates` set) get the bare phrase."""
    if getattr(encoder, "templates", None):
        return encoder.encode([phrase])[0].astype(np.float32)
    emb = encoder.encode([t.format(phrase) for t in templates]).astype(np.float64)
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    mean = emb.mean(0)
    return (mean / np.linalg.norm(mean)).astype(np.float32)


def class_phrase_embeddings(encoder, templates=None) -> list[np.ndarray]:
    """Per class id (0..15), the (n_phrases, D) ensembled phrase embeddings."""
    templates = templates or prompt_templates(encoder)
    vocab = class_vocabulary(encoder)
    return [
        np.stack([ensembled(encoder, p, templates) for p in vocab[name]]) for name in CLASS_NAMES
    ]


def class_canonical_embeddings(encoder, templates=None) -> np.ndarray:
    """(16, D): the ensembled embedding of each class's first phrase (supervised targets)."""
    templates = templates or prompt_templates(encoder)
    vocab = class_vocabulary(encoder)
    return np.stack([ensembled(encoder, vocab[name][0], templates) for name in CLASS_NAMES])


class ZeroShotClassifier:
    """labels = argmax over classes of max over the class's phrases of cos(feature, phrase).

    The same rule as the node's zero-shot labels (`text.query.classify`), on torch tensors."""

    def __init__(self, phrase_embeddings: list[np.ndarray]):
        self.class_embeddings = dict(enumerate(phrase_embeddings))

    def __call__(self, features) -> torch.Tensor:
        from pop3d_ros.text.query import classify

        f = torch.as_tensor(features).detach().float().cpu().numpy()
        if f.shape[0] == 0:
            return torch.zeros(0, dtype=torch.long)
        return torch.from_numpy(classify(f, self.class_embeddings))
