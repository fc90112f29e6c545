"""A closed, synthetic text-embedding space: one fixed near-orthogonal vector per class.

Randomly initialised CLIP text towers map every prompt to nearly the same direction, so
zero-shot tests on them mean nothing. This space stands in for CLIP where no pretrained
weights exist: each class (and each of its synonyms) has a seeded embedding, and a text is
embedded by finding the known phrases it contains ("a photo of a car." -> "car") and
averaging their embeddings. It implements `pop3d_ros.text.base.TextEncoder`.
"""

from __future__ import annotations

import re

import numpy as np

from pop3d_ros.data.classes import CLASS_NAMES
from pop3d_ros.text.base import TextEncodingError

# class name -> phrases that name it (lower case, words separated by single spaces).
# The first phrase is the class's canonical prompt.
VOCABULARY: dict[str, tuple[str, ...]] = {
    "barrier": ("barrier", "road barrier", "jersey barrier", "guardrail"),
    "bicycle": ("bicycle", "bike", "cyclist"),
    "bus": ("bus", "coach", "autobus"),
    "car": ("car", "automobile", "sedan", "hatchback"),
    "construction_vehicle": ("construction vehicle", "excavator", "bulldozer", "crane"),
    "motorcycle": ("motorcycle", "motorbike", "scooter"),
    "pedestrian": ("pedestrian", "person", "people", "man", "woman", "child"),
    "traffic_cone": ("traffic cone", "cone", "pylon"),
    "trailer": ("trailer", "semi trailer"),
    "truck": ("truck", "lorry", "pickup truck"),
    "driveable_surface": ("road", "driveable surface", "drivable surface", "street", "asphalt"),
    "other_flat": ("other flat", "traffic island", "parking lot", "median strip"),
    "sidewalk": ("sidewalk", "pavement", "footpath", "walkway"),
    "terrain": ("terrain", "grass", "lawn", "soil", "dirt"),
    "manmade": ("manmade", "man made", "building", "wall", "house", "pole", "structure"),
    "vegetation": ("vegetation", "tree", "bush", "hedge", "plant", "foliage"),
}
# Not a class, but a dense teacher sees it; the teacher may give sky pixels this vector.
EXTRA_VOCABULARY: dict[str, tuple[str, ...]] = {"sky": ("sky",)}

_WORD = re.compile(r"[a-z0-9]+")
# How far a synonym's vector strays from its class vector (0 = identical).
_SYNONYM_SPREAD = 0.25


def _words(text: str) -> list[str]:
    return _WORD.findall(text.lower().replace("-", " ").replace("_", " "))


def _singular(word: str) -> str:
    """Crude English singular so that "cars", "buses", "trees" match their class words."""
    if word.endswith("ies") and len(word) > 4:
        return word[:-3] + "y"
    if word.endswith(("ses", "xes", "ches", "shes")) and len(word) > 4:
        return word[:-2]
    if word.endswith("s") and not word.endswith("ss") and len(word) > 3:
        return word[:-1]
    return word


class SyntheticTextSpace:
    """TextEncoder over a closed vocabulary with seeded near-orthogonal class embeddings.

    Args:
        seed: seeds the embeddings; spaces with different seeds are unrelated.
        dim: embedding width (512 like CLIP ViT-B).
        version: bump when the vocabulary or construction changes; part of `space_id`.
    """

    context_length = 77

    def __init__(self, seed: int = 0, dim: int = 512, version: int = 1):
        if dim < len(CLASS_NAMES) + len(EXTRA_VOCABULARY):
            raise ValueError(f"dim must be at least {len(CLASS_NAMES) + 1}, got {dim}")
        self.seed = int(seed)
        self.embed_dim = int(dim)
        self.version = int(version)
        self.space_id = f"synthetic:v{self.version}:seed={self.seed}:dim={self.embed_dim}"
        rng = np.random.default_rng([self.seed, self.version, self.embed_dim, 20240])
        names = list(CLASS_NAMES) + list(EXTRA_VOCABULARY)
        base = rng.standard_normal((len(names), self.embed_dim))
        base /= np.linalg.norm(base, axis=1, keepdims=True)
        self._class_vectors = dict(zip(names, base, strict=True))
        # phrase (tuple of words) -> (class name, unit vector)
        self._phrases: dict[tuple[str, ...], tuple[str, np.ndarray]] = {}
        for name, phrases in {**VOCABULARY, **EXTRA_VOCABULARY}.items():
            for i, phrase in enumerate(phrases):
                vec = self._class_vectors[name].copy()
                if i > 0:
                    jitter = rng.standard_normal(self.embed_dim) / np.sqrt(self.embed_dim)
                    vec = vec + _SYNONYM_SPREAD * jitter
                    vec /= np.linalg.norm(vec)
                self._phrases[tuple(phrase.split())] = (name, vec)
        self._max_phrase_len = max(len(k) for k in self._phrases)

    # -- vocabulary ------------------------------------------------------------------------
    @property
    def vocabulary(self) -> dict[str, tuple[str, ...]]:
        """class name -> phrases, for zero-shot classification (the 16 classes only)."""
        return dict(VOCABULARY)

    def class_embeddings(self) -> np.ndarray:
        """(16, dim) float32 unit vectors of the canonical class phrases, in class-id order."""
        return np.stack([self._class_vectors[n] for n in CLASS_NAMES]).astype(np.float32)

    def sky_embedding(self) -> np.ndarray:
        """(dim,) float32 unit vector of "sky" (not a class)."""
        return self._class_vectors["sky"].astype(np.float32)

    def describe(self) -> dict:
        """How to rebuild this space; what checkpoints store as `text_space`."""
        return {"kind": "synthetic", "seed": self.seed, "dim": self.embed_dim,
                "version": self.version, "space_id": self.space_id}  # fmt: skip

    @classmethod
    def from_description(cls, d: dict) -> SyntheticTextSpace:
        return cls(seed=int(d["seed"]), dim=int(d["dim"]), version=int(d.get("version", 1)))

    # -- encoding --------------------------------------------------------------------------
    def match(self, text: str) -> list[str]:
        """The known phrases found in `text`, longest match first, left to right."""
        words = [_singular(w) for w in _words(text)]
        raw = _words(text)
        found, i = [], 0
        while i < len(words):
            for n in range(min(self._max_phrase_len, len(words) - i), 0, -1):
                # try the words as written first ("people", "bus"), then singularised
                for cand in (tuple(raw[i : i + n]), tuple(words[i : i + n])):
                    if cand in self._phrases:
                        found.append(" ".join(cand))
                        break
                else:
                    continue
                i += n
                break
            else:
                i += 1
        return found

    def encode(self, texts: list[str]) -> np.ndarray:
        if isinstance(texts, str):
            texts = [texts]
        out = np.zeros((len(texts), self.embed_dim), dtype=np.float64)
        for row, text in enumerate(texts):
            if not isinstance(text, str) or not text.strip():
                raise TextEncodingError("empty text cannot be encoded")
            phrases = self.match(text)
            if not phrases:
                raise TextEncodingError(
                    f"not in the synthetic text space's vocabulary: {text!r} "
                    f"(known classes: {', '.join(VOCABULARY)})"
                )
            vec = np.mean([self._phrases[tuple(p.split())][1] for p in phrases], axis=0)
            out[row] = vec / np.linalg.norm(vec)
        return out.astype(np.float32)

    def classes_of(self, text: str) -> list[str]:
        """Class names that `text` mentions (what its embedding averages)."""
        return [self._phrases[tuple(p.split())][0] for p in self.match(text)]
