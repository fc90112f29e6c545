"""A closed, synthetic text-embedding space standing in for CLIP's text tower.

Randomly initialised CLIP text towers map every prompt to nearly the same direction, so
zero-shot tests on them mean nothing. This space stands in for CLIP where no pretrained
weights exist: each class, long-tail concept and synonym has a seeded embedding, and a text
is embedded by finding the known phrases it contains ("a photo of a car." -> "car"; longest
match first, so "a fire truck" is the fire truck, not a truck) and averaging their
embeddings. It implements `pop3d_ros.text.base.TextEncoder`.

Version 1 (`synthetic:v1:...`, what older checkpoints record) knows the 16 evaluation
classes only, one near-orthogonal vector each. Version 2 (`synthetic:v2:...`, the default)
extends it and is structured like CLIP's space: the 16 classes and their synonyms keep
their version-1 vectors (so a v1 model's class features stay valid), and each long-tail
concept (`CONCEPT_VOCABULARY`: "stairs", "fire hydrant", "ambulance", ...) lies near its
parent class, child = normalise(parent + CONCEPT_SPREAD * own direction), so siblings are
nearer each other (cos ~0.6) than unrelated concepts (cos ~0) and a child is nearer its
parent (cos ~0.78) than any other class. Synonyms stray a little from their concept.

The text layer knows names and phrases only; the ids the synthetic world gives concepts
live in `data/concepts.py`.
"""

from __future__ import annotations

import re

import numpy as np

from pop3d_ros.text.base import TextEncodingError

# class name -> phrases that name it (lower case, words separated by single spaces).
# The first phrase is the class's canonical prompt. Order = the 16 classes' id order.
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

# Version 2: long-tail concept -> (parent class, phrases); the first phrase is canonical.
# Parents follow nuScenes lidarseg (street furniture is static.manmade, vans are cars, ...).
CONCEPT_VOCABULARY: dict[str, tuple[str, tuple[str, ...]]] = {
    "stairs": ("manmade", ("stairs", "steps", "staircase", "stairway")),
    "bench": ("manmade", ("bench", "park bench", "seat")),
    "fire_hydrant": ("manmade", ("fire hydrant", "hydrant", "fireplug")),
    "traffic_light": ("manmade", ("traffic light", "traffic signal", "stoplight")),
    "street_sign": ("manmade", ("street sign", "road sign", "signpost")),
    "bus_shelter": ("manmade", ("bus shelter", "bus stop", "shelter")),
    "mailbox": ("manmade", ("mailbox", "post box", "letter box")),
    "trash_bin": ("manmade", ("trash bin", "trash can", "garbage can", "litter bin")),
    "street_lamp": ("manmade", ("street lamp", "lamp post", "streetlight")),
    "bike_rack": ("manmade", ("bike rack", "bicycle rack", "bicycle stand")),
    "parking_meter": ("manmade", ("parking meter", "pay station")),
    "kiosk": ("manmade", ("kiosk", "newsstand", "booth")),
    "bollard": ("barrier", ("bollard", "security post", "traffic post")),
    "ambulance": ("car", ("ambulance", "emergency vehicle", "paramedic car")),
    "police_car": ("car", ("police car", "patrol car", "squad car", "cop car")),
    "taxi": ("car", ("taxi", "cab", "taxicab")),
    "delivery_van": ("truck", ("delivery van", "van", "panel van", "cargo van")),
    "fire_truck": ("truck", ("fire truck", "fire engine")),
    "school_bus": ("bus", ("school bus", "yellow bus")),
    "stroller": ("pedestrian", ("stroller", "pram", "baby carriage", "pushchair")),
    "pine_tree": ("vegetation", ("pine tree", "pine", "conifer", "fir tree")),
    "flower_bed": ("vegetation", ("flower bed", "planter", "flowers")),
    "crosswalk": ("driveable_surface", ("crosswalk", "zebra crossing", "pedestrian crossing")),
    "manhole": ("driveable_surface", ("manhole", "manhole cover", "sewer cover")),
}

_WORD = re.compile(r"[a-z0-9]+")
# How far a synonym's vector strays from its concept's vector (0 = identical).
_SYNONYM_SPREAD = 0.25
# v2: child = normalise(parent + CONCEPT_SPREAD * own unit direction).
CONCEPT_SPREAD = 0.8
VERSIONS = (1, 2)


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


def _unit(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v)


class SyntheticTextSpace:
    """TextEncoder over a closed vocabulary with seeded class (and concept) embeddings.

    Args:
        seed: seeds the embeddings; spaces with different seeds are unrelated.
        dim: embedding width (512 like CLIP ViT-B).
        version: 1 = the 16 classes only (older checkpoints); 2 = classes + long-tail
            concepts near their parents. Part of `space_id`.
    """

    context_length = 77

    def __init__(self, seed: int = 0, dim: int = 512, version: int = 2):
        if int(version) not in VERSIONS:
            raise ValueError(f"synthetic text space version must be one of {VERSIONS}")
        n_min = len(VOCABULARY) + len(EXTRA_VOCABULARY)
        if version >= 2:
            n_min += len(CONCEPT_VOCABULARY)
        if dim < n_min:
            raise ValueError(f"dim must be at least {n_min}, got {dim}")
        self.seed = int(seed)
        self.embed_dim = int(dim)
        self.version = int(version)
        self.space_id = f"synthetic:v{self.version}:seed={self.seed}:dim={self.embed_dim}"
        # The classes, sky and their synonyms are drawn exactly as in version 1 (version 2
        # extends version 1: a v1 model's class features are right in v2 as well).
        rng = np.random.default_rng([self.seed, 1, self.embed_dim, 20240])
        names = list(VOCABULARY) + list(EXTRA_VOCABULARY)
        base = rng.standard_normal((len(names), self.embed_dim))
        base /= np.linalg.norm(base, axis=1, keepdims=True)
        # name -> unit vector (classes, sky and, in v2, concepts); name -> its class
        self._vectors = dict(zip(names, base, strict=True))
        self._parent = {n: n for n in names}
        # phrase (tuple of words) -> (concept or class name, unit vector)
        self._phrases: dict[tuple[str, ...], tuple[str, np.ndarray]] = {}
        self._add_phrases({**VOCABULARY, **EXTRA_VOCABULARY}, rng)
        if self.version >= 2:
            rng = np.random.default_rng([self.seed, 2, self.embed_dim, 20241])
            own = rng.standard_normal((len(CONCEPT_VOCABULARY), self.embed_dim))
            own /= np.linalg.norm(own, axis=1, keepdims=True)
            for (name, (parent, _)), d in zip(CONCEPT_VOCABULARY.items(), own, strict=True):
                self._vectors[name] = _unit(self._vectors[parent] + CONCEPT_SPREAD * d)
                self._parent[name] = parent
            self._add_phrases({n: p for n, (_, p) in CONCEPT_VOCABULARY.items()}, rng)
        self._max_phrase_len = max(len(k) for k in self._phrases)

    def _add_phrases(self, groups: dict[str, tuple[str, ...]], rng) -> None:
        """Each phrase: its concept's vector, synonyms (not the first) jittered a little."""
        for name, phrases in groups.items():
            for i, phrase in enumerate(phrases):
                vec = self._vectors[name].copy()
                if i > 0:
                    jitter = rng.standard_normal(self.embed_dim) / np.sqrt(self.embed_dim)
                    vec = _unit(vec + _SYNONYM_SPREAD * jitter)
                self._phrases[tuple(phrase.split())] = (name, vec)

    # -- vocabulary ------------------------------------------------------------------------
    @property
    def vocabulary(self) -> dict[str, tuple[str, ...]]:
        """class name -> phrases, for zero-shot classification (the 16 classes only)."""
        return dict(VOCABULARY)

    @property
    def concepts(self) -> dict[str, tuple[str, ...]]:
        """long-tail concept name -> phrases (empty in version 1)."""
        if self.version < 2:
            return {}
        return {name: phrases for name, (_, phrases) in CONCEPT_VOCABULARY.items()}

    def parent_of(self, name: str) -> str:
        """The class a concept (or class) belongs to."""
        if name not in self._parent:
            raise KeyError(f"{name!r} is not a class or concept of {self.space_id}")
        return self._parent[name]

    def embedding(self, name: str) -> np.ndarray:
        """(dim,) float32 unit vector of a class, concept or "sky" by name. In version 1 a
        long-tail concept has its parent class's vector (v1 cannot tell them apart)."""
        if name not in self._vectors and name in CONCEPT_VOCABULARY:
            name = CONCEPT_VOCABULARY[name][0]
        if name not in self._vectors:
            raise KeyError(f"{name!r} is not a class or concept of {self.space_id}")
        return self._vectors[name].astype(np.float32)

    def class_embeddings(self) -> np.ndarray:
        """(16, dim) float32 unit vectors of the canonical class phrases, in class-id order."""
        return np.stack([self._vectors[n] for n in VOCABULARY]).astype(np.float32)

    def sky_embedding(self) -> np.ndarray:
        """(dim,) float32 unit vector of "sky" (not a class)."""
        return self._vectors["sky"].astype(np.float32)

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
                extra = ""
                if self.version >= 2:
                    extra = f"; long-tail concepts: {', '.join(self.concepts)}"
                raise TextEncodingError(
                    f"not in the synthetic text space's vocabulary: {text!r} "
                    f"(known classes: {', '.join(VOCABULARY)}{extra})"
                )
            vec = np.mean([self._phrases[tuple(p.split())][1] for p in phrases], axis=0)
            out[row] = vec / np.linalg.norm(vec)
        return out.astype(np.float32)

    def concepts_of(self, text: str) -> list[str]:
        """Class or concept names that `text` mentions (what its embedding averages)."""
        return [self._phrases[tuple(p.split())][0] for p in self.match(text)]

    def classes_of(self, text: str) -> list[str]:
        """Class names that `text` mentions (a concept counts as its parent class)."""
        return [self._parent[n] for n in self.concepts_of(text)]
