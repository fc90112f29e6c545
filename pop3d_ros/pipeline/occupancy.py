"""Inference on camera sets and open-vocabulary queries over the latest occupancy.

`OccupancyPipeline` owns no threads: the ROS node calls `infer` from its worker and `query`
from its service callbacks. The latest result is an immutable object swapped under a lock, so
a query always sees one consistent occupancy while the next one is being computed.

The language head runs on demand: `infer` keeps the occupied voxels' features and runs the
head only when `needs_language(result)` says a consumer of every frame needs it (a colouring
vocabulary, or a hook in `language_hooks`, e.g. a map that integrates language features every
k-th frame). Otherwise the first query on that frame runs it once; the features stay cached
with the result for the next queries.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace

import numpy as np

from pop3d_ros.geometry.camera import PinholeCamera
from pop3d_ros.pipeline.grounding import GroundedObject, rank_and_ground
from pop3d_ros.pipeline.sampling_cache import SamplingCache
from pop3d_ros.text.base import TextEncodingError


@dataclass
class PipelineConfig:
    """Inference and query settings (node parameters of the same names)."""

    occupancy_threshold: float = 0.5  # P(occupied) at or above which a voxel is occupied
    vocabulary: tuple[str, ...] = ()  # class prompts for zero-shot labels; empty = none
    default_top_k: int = 10  # top_k used when a query asks for 0
    max_top_k: int = 10000  # upper bound on top_k (a response holds that many points)
    max_query_chars: int = 1000  # longer text is cut before tokenizing (BPE cost grows fast)
    text_cache_size: int = 512  # query strings whose embeddings are kept
    max_objects: int = 100  # grounded objects a query returns at most (the best ones)

    def __post_init__(self):
        if not 0.0 < float(self.occupancy_threshold) < 1.0:
            raise ValueError(
                f"occupancy_threshold must be in (0, 1), got {self.occupancy_threshold}"
            )
        self.vocabulary = tuple(str(v) for v in self.vocabulary if str(v).strip())


class LazyFeatures:
    """A value computed at most once, on first use, by whichever thread asks first."""

    def __init__(self, compute: Callable[[], np.ndarray] | None = None, value=None):
        self._compute, self._value = compute, value
        self._lock = threading.Lock()

    @property
    def computed(self) -> bool:
        return self._value is not None

    def get(self) -> np.ndarray:
        with self._lock:
            if self._value is None:
                self._value, self._compute = self._compute(), None
            return self._value


@dataclass(frozen=True)
class OccupancyResult:
    """The occupied voxels of one camera set (ego frame)."""

    stamp: float  # seconds, the camera set's stamp
    indices: np.ndarray  # (N, 3) int64 voxel indices
    centres: np.ndarray  # (N, 3) float32 metres in base_link
    probabilities: np.ndarray  # (N,) float32 P(occupied)
    voxel_features: np.ndarray  # (N, C_V) float32, the language head's input
    language: LazyFeatures  # (N, D) float32 L2-normalised language features, on first use
    labels: np.ndarray | None  # (N,) int64 index into the vocabulary, or None
    timings_ms: dict = field(default_factory=dict)  # language_head: 0 until the head ran
    # (X, Y, Z) float32 P(occupied) of every voxel: free space is information for a map
    probability_grid: np.ndarray | None = None

    @property
    def count(self) -> int:
        return int(self.indices.shape[0])

    @property
    def language_features(self) -> np.ndarray:
        """(N, D) language features (runs the language head the first time)."""
        return self.language.get()


@dataclass(frozen=True)
class QueryResult:
    success: bool
    message: str
    stamp: float = 0.0
    centres: np.ndarray | None = None  # (N, 3) every occupied voxel
    scores: np.ndarray | None = None  # (N,) cosine similarity
    top: np.ndarray | None = None  # indices into centres/scores, best first
    elapsed_ms: float = 0.0
    cached: bool = False  # the text embedding came from the cache
    objects: tuple[GroundedObject, ...] = ()  # groups scoring >= min_score, best first
    language_head_ms: float = 0.0  # time this query spent running the language head


def _normalise(x: np.ndarray) -> np.ndarray:
    norm = np.linalg.norm(x, axis=-1, keepdims=True)
    return (x / np.maximum(norm, 1e-12)).astype(np.float32)


def check_min_score(min_score) -> str:
    """Why `min_score` is not a valid grounding threshold ("" when it is: 0 <= s <= 1)."""
    try:
        value = float(min_score)
    except (TypeError, ValueError):
        return f"min_score must be a number, got {min_score!r}"
    if not np.isfinite(value):
        return f"min_score must be a finite number in [0, 1], got {value}"
    if not 0.0 <= value <= 1.0:
        return f"min_score must be in [0, 1] (a cosine similarity; 0 = no objects), got {value:g}"
    return ""


def prepare_query_text(text: str, context_length: int, max_chars: int) -> tuple[str, str]:
    """(text to encode, note). Raises TextEncodingError for empty text.

    CLIP's tokenizer keeps `context_length` tokens including start/end; every word is at least
    one token, so more words than that are cut here and the answer says so.
    """
    notes = []
    if not isinstance(text, str):
        raise TextEncodingError("query text must be a string")
    text = "".join(ch if ch.isprintable() else " " for ch in text[: max_chars * 4])
    text = " ".join(text.split())
    if not text:
        raise TextEncodingError("empty query: send a non-empty text, e.g. 'car'")
    if len(text) > max_chars:
        text = text[:max_chars].rsplit(" ", 1)[0] or text[:max_chars]
        notes.append(f"truncated to {len(text)} characters")
    words = text.split()
    limit = max(1, int(context_length) - 2)
    if len(words) > limit:
        text = " ".join(words[:limit])
        notes.append(f"truncated to the first {limit} words (text encoder limit)")
    if notes:
        return text, f"query {' and '.join(notes)}: {text[:60]!r}..."
    return text, ""


class OccupancyPipeline:
    """Runtime (encoder + language head) + text encoder + threshold -> occupancy and queries."""

    def __init__(self, runtime, text_encoder, config: PipelineConfig | None = None):
        self.runtime = runtime
        self.text_encoder = text_encoder
        self.config = config or PipelineConfig()
        model_cfg = runtime.config
        self.model_config = model_cfg
        self.grid = model_cfg.voxel_grid
        self.image_hw = tuple(model_cfg.image_size)
        self.num_cameras = int(model_cfg.num_cameras)
        self.sampling = SamplingCache.for_model(model_cfg)
        self._centres = self.grid.centers().reshape(-1, 3)
        self._latest: OccupancyResult | None = None
        self._lock = threading.Lock()
        self._text_cache: OrderedDict[str, tuple] = OrderedDict()
        self._text_lock = threading.Lock()
        self._vocab = self.encode_vocabulary(self.config.vocabulary)
        # Consumers that need every frame's language features (e.g. a map): each gets the
        # frame's result and says whether it needs them now.
        self.language_hooks: list[Callable[[OccupancyResult], bool]] = []

    def encode_vocabulary(self, vocabulary: Sequence[str]) -> dict | None:
        """Class embeddings of a colouring vocabulary (None when empty); TextEncodingError."""
        from pop3d_ros.text.query import encode_classes

        vocabulary = tuple(str(v) for v in vocabulary if str(v).strip())
        if not vocabulary:
            return None
        return encode_classes(self.text_encoder, {v: [v] for v in vocabulary})

    def reconfigure(self, occupancy_threshold: float, vocabulary: Sequence[str], encoded=None):
        """New threshold and vocabulary from the next `infer` on (ValueError or
        TextEncodingError, and nothing changes, when invalid). `encoded`: the vocabulary's
        `encode_vocabulary` result when the caller has it already."""
        config = replace(self.config, occupancy_threshold=occupancy_threshold,
                         vocabulary=tuple(vocabulary))  # fmt: skip
        vocab = encoded if encoded is not None else self.encode_vocabulary(config.vocabulary)
        self.config, self._vocab = config, vocab

    def needs_language(self, result: OccupancyResult) -> bool:
        """Whether the frame's language features are needed now rather than on a query."""
        return self._vocab is not None or any(hook(result) for hook in self.language_hooks)

    def _language_head(self, feats: np.ndarray, timings: dict) -> np.ndarray:
        t0 = time.perf_counter()
        if feats.shape[0]:
            lang = self.runtime.language_head.infer({"voxel_features": feats})
            lang = _normalise(np.asarray(lang["language_features"], dtype=np.float32))
        else:
            lang = np.zeros((0, self.model_config.heads.clip_dim), dtype=np.float32)
        timings["language_head"] = (time.perf_counter() - t0) * 1e3
        return lang

    @property
    def latest(self) -> OccupancyResult | None:
        with self._lock:
            return self._latest

    def infer(
        self, images_rgb: Sequence[np.ndarray], cameras: Sequence[PinholeCamera], stamp: float
    ) -> OccupancyResult:
        """Occupancy of one camera set: images RGB uint8 at the network size, cameras
        calibrated for that size (see `preprocess`), in the model's camera order."""
        from pop3d_ros.pipeline.preprocess import images_to_input

        if len(images_rgb) != self.num_cameras or len(cameras) != self.num_cameras:
            raise ValueError(
                f"need {self.num_cameras} images and cameras, got {len(images_rgb)}/{len(cameras)}"
            )
        h, w = self.image_hw
        for img in images_rgb:
            if img.shape != (h, w, 3):
                raise ValueError(f"image of shape {img.shape}, expected {(h, w, 3)}")
        t = {}
        t0 = time.perf_counter()
        feed = {"images": images_to_input(images_rgb), **self.sampling.feed(cameras)}
        t1 = time.perf_counter()
        out = self.runtime.encoder.infer(feed)
        t2 = time.perf_counter()
        config, vocab = self.config, self._vocab  # one consistent pair for this frame
        logits = np.asarray(out["occupancy_logits"], dtype=np.float32)[0].reshape(-1, 2)
        prob = 1.0 / (1.0 + np.exp(-(logits[:, 1] - logits[:, 0])))
        flat = np.flatnonzero(prob >= config.occupancy_threshold)
        feats = np.asarray(out["voxel_features"], dtype=np.float32)[0]
        feats = np.ascontiguousarray(feats.reshape(-1, feats.shape[-1])[flat])
        X, Y, Z = self.grid.shape
        indices = np.stack(np.unravel_index(flat, (X, Y, Z)), axis=-1).astype(np.int64)
        t["sampling"] = (t1 - t0) * 1e3
        t["inference"] = (t2 - t1) * 1e3
        t["language_head"] = 0.0
        result = OccupancyResult(
            stamp=float(stamp),
            indices=indices,
            centres=self._centres[flat],
            probabilities=prob[flat].astype(np.float32),
            voxel_features=feats,
            language=LazyFeatures(lambda: self._language_head(feats, t)),
            labels=None,
            timings_ms=t,
            probability_grid=prob.reshape(X, Y, Z).astype(np.float32),
        )
        t3 = time.perf_counter()
        if vocab is not None or any(hook(result) for hook in self.language_hooks):
            lang = result.language_features
            if vocab is not None:
                from pop3d_ros.text.query import classify

                labels = classify(lang, vocab) if flat.size else np.zeros(0, dtype=np.int64)
                result = replace(result, labels=labels)
        t["postprocess"] = (time.perf_counter() - t3) * 1e3 - t["language_head"]
        with self._lock:
            self._latest = result
        return result

    def embed_text(self, text: str) -> tuple[np.ndarray, bool, tuple[str, ...]]:
        """(normalised embedding (D,), from_cache, encoder notes). Raises TextEncodingError.

        Uses the text package's `encode_query` (prompt handling of the encoder in use)."""
        from pop3d_ros.text.query import encode_query

        with self._text_lock:
            if text in self._text_cache:
                self._text_cache.move_to_end(text)
                emb, notes = self._text_cache[text]
                return emb, True, notes
        emb, notes = encode_query(self.text_encoder, text)
        emb = np.asarray(emb, dtype=np.float32).reshape(-1)
        if not np.all(np.isfinite(emb)) or np.linalg.norm(emb) < 1e-8:
            raise TextEncodingError(f"the text space gives no embedding for {text[:40]!r}")
        emb, notes = _normalise(emb), tuple(str(n) for n in notes)
        with self._text_lock:
            self._text_cache[text] = (emb, notes)
            while len(self._text_cache) > self.config.text_cache_size:
                self._text_cache.popitem(last=False)
        return emb, False, notes

    def query(self, text: str, top_k: int = 0, min_score: float = 0.0) -> QueryResult:
        """Cosine similarity of `text` to every occupied voxel of the latest occupancy, and
        with `min_score` > 0 the connected groups of voxels scoring at least that (objects)."""
        t0 = time.perf_counter()
        bad = check_min_score(min_score)
        if bad:
            return QueryResult(False, bad)
        latest = self.latest
        if latest is None:
            return QueryResult(False, "no occupancy yet: waiting for a complete camera set")
        try:
            prepared, note = prepare_query_text(
                text, self.text_encoder.context_length, self.config.max_query_chars
            )
            emb, cached, enc_notes = self.embed_text(prepared)
        except TextEncodingError as exc:
            return QueryResult(False, f"cannot encode query: {exc}", stamp=latest.stamp)
        on_demand = not latest.language.computed
        lang = latest.language_features  # the frame's first query runs the language head
        head_ms = latest.timings_ms.get("language_head", 0.0) if on_demand else 0.0
        if emb.shape[0] != lang.shape[1]:
            return QueryResult(
                False,
                f"text space width {emb.shape[0]} != model width {lang.shape[1]}",
                stamp=latest.stamp,
            )
        scores = lang @ emb
        notes = ([note] if note else []) + list(enc_notes)
        if latest.count == 0:
            notes.append("the latest occupancy has no occupied voxels")
        top, objects, found_notes = rank_and_ground(
            latest.centres,
            scores,
            self.grid.voxel_size,
            min(int(top_k) or self.config.default_top_k, self.config.max_top_k),
            min_score,
            self.config.max_objects,
        )
        notes += found_notes
        return QueryResult(
            True,
            "; ".join(notes),
            stamp=latest.stamp,
            centres=latest.centres,
            scores=scores.astype(np.float32),
            top=top,
            elapsed_ms=(time.perf_counter() - t0) * 1e3,
            cached=cached,
            objects=objects,
            language_head_ms=head_ms,
        )

    def query_map(self, online_map, text: str, top_k: int = 0, min_score: float = 0.0):
        """`query` over an online map (`mapping.OnlineMap`) instead of the latest frame: the
        same text handling, heatmap, top-k and objects, over the map's occupied voxels that
        hold a language feature, in the map's frame."""
        t0 = time.perf_counter()
        bad = check_min_score(min_score)
        if bad:
            return QueryResult(False, bad)
        stamp = online_map.last_stamp or 0.0
        try:
            prepared, note = prepare_query_text(
                text, self.text_encoder.context_length, self.config.max_query_chars
            )
            emb, cached, enc_notes = self.embed_text(prepared)
        except TextEncodingError as exc:
            return QueryResult(False, f"cannot encode query: {exc}", stamp=stamp)
        answer = online_map.query(
            emb,
            top_k=min(int(top_k) or self.config.default_top_k, self.config.max_top_k),
            min_score=min_score,
            max_objects=self.config.max_objects,
        )
        notes = [n for n in ([note] if note else []) + list(enc_notes) + [answer.message] if n]
        return dataclasses.replace(
            answer,
            message="; ".join(notes),
            elapsed_ms=(time.perf_counter() - t0) * 1e3,
            cached=cached,
        )
