"""TensorRT engine cache: engines named by content, validated before deserialising.

An engine is only valid for the ONNX bytes, precision, optimisation profile, TensorRT
version and GPU it was built with. All of these form the `EngineKey`; the key is part of the
file name and is stored in a JSON sidecar together with the engine's size and sha256. A
file whose sidecar is missing, unreadable, for another key, or whose bytes differ (e.g. a
truncated copy) is never handed to TensorRT — deserialising such files can crash the process
— it is rebuilt, or reported in one line where building is impossible.
"""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, fields
from pathlib import Path

from pop3d_ros.atomic import write_bytes_atomic, write_text_atomic
from pop3d_ros.export.errors import EngineError
from pop3d_ros.export.hashing import sha256_bytes, sha256_file

SIDECAR_FORMAT = "pop3d_ros.engine/1"
PRECISIONS = ("fp32", "fp16", "int8")


@dataclass(frozen=True)
class EngineKey:
    """Everything an engine's validity depends on."""

    onnx_sha256: str  # sha256 of the ONNX file the engine was parsed from
    precision: str  # fp32 | fp16 | int8
    tensorrt_version: str  # trt.__version__ of the builder; engines are not portable across it
    gpu_name: str  # e.g. "NVIDIA GeForce RTX 3090"; tactics are chosen per GPU
    compute_capability: str  # e.g. "8.6"
    # Optimisation profiles as ((input, min, opt, max), ...) with shapes as tuples.
    profile: tuple = ()

    def __post_init__(self):
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {self.precision!r}")

    def to_dict(self) -> dict:
        d = asdict(self)
        d["profile"] = json.loads(json.dumps(self.profile))  # tuples -> lists, canonical
        return d

    @classmethod
    def from_dict(cls, d: dict) -> EngineKey:
        names = {f.name for f in fields(cls)}
        if not isinstance(d, dict) or not names <= set(d):
            raise ValueError("not an engine key")
        profile = tuple(
            (p[0], tuple(p[1]), tuple(p[2]), tuple(p[3])) for p in d.get("profile") or ()
        )
        return cls(**{k: d[k] for k in names if k != "profile"}, profile=profile)

    def digest(self) -> str:
        return sha256_bytes(json.dumps(self.to_dict(), sort_keys=True).encode())

    def filename(self, stem: str) -> str:
        """Readable and unique: `<stem>-<onnx12>-<prec>-trt<ver>-<gpu>-sm<cc>-<key8>.engine`."""
        gpu = re.sub(r"[^a-z0-9]+", "-", self.gpu_name.lower()).strip("-")[:40] or "gpu"
        cc = self.compute_capability.replace(".", "")
        return (
            f"{stem}-{self.onnx_sha256[:12]}-{self.precision}-trt{self.tensorrt_version}"
            f"-{gpu}-sm{cc}-{self.digest()[:8]}.engine"
        )

    def first_difference(self, other: EngineKey) -> str | None:
        """Human words for the first field where `other` (the file's key) differs."""
        words = {
            "onnx_sha256": "another ONNX file",
            "precision": "precision",
            "tensorrt_version": "TensorRT",
            "gpu_name": "GPU",
            "compute_capability": "compute capability",
            "profile": "optimisation profile",
        }
        for f in fields(self):
            mine, theirs = getattr(self, f.name), getattr(other, f.name)
            if mine != theirs:
                if f.name == "onnx_sha256":
                    return f"built from {words[f.name]} (sha256 {str(theirs)[:12]}..)"
                return f"built for {words[f.name]} {theirs} (this machine: {mine})"
        return None


def sidecar_path(engine_path: str | os.PathLike) -> Path:
    return Path(os.fspath(engine_path) + ".json")


def check_engine(engine_path: str | os.PathLike, key: EngineKey) -> str | None:
    """The reason an engine file must not be used for `key`, or None when it is valid.

    Reads only the sidecar and the file's bytes (for size and sha256); never TensorRT.
    """
    engine_path = Path(engine_path)
    if not engine_path.is_file():
        return "engine file not found"
    side = sidecar_path(engine_path)
    if not side.is_file():
        return f"sidecar {side.name} missing (engine of unknown origin)"
    try:
        meta = json.loads(side.read_text())
        if meta.get("format") != SIDECAR_FORMAT:
            return f"sidecar {side.name} has unknown format {meta.get('format')!r}"
        file_key = EngineKey.from_dict(meta["key"])
        size, digest = int(meta["engine_bytes"]), str(meta["engine_sha256"])
    except (ValueError, KeyError, TypeError, AttributeError, UnicodeDecodeError):
        return f"sidecar {side.name} is corrupt"
    diff = key.first_difference(file_key)
    if diff:
        return diff
    actual = engine_path.stat().st_size
    if actual != size:
        return f"truncated or altered: {actual} bytes, sidecar says {size}"
    if sha256_file(engine_path) != digest:
        return "content sha256 differs from the sidecar (corrupt)"
    return None


def write_engine(
    engine_path: str | os.PathLike, data: bytes, key: EngineKey, extra: dict | None = None
) -> Path:
    """Write engine bytes and sidecar atomically (sidecar last, so a crash leaves no match)."""
    engine_path = Path(engine_path)
    engine_path.parent.mkdir(parents=True, exist_ok=True)
    side = sidecar_path(engine_path)
    side.unlink(missing_ok=True)
    write_bytes_atomic(engine_path, data)
    meta = {
        "format": SIDECAR_FORMAT,
        "key": key.to_dict(),
        "engine_bytes": len(data),
        "engine_sha256": sha256_bytes(data),
        "written_unix": time.time(),
        **(extra or {}),
    }
    write_text_atomic(side, json.dumps(meta, indent=2, sort_keys=True) + "\n")
    return engine_path


def ensure_engine(
    cache_dir: str | os.PathLike,
    stem: str,
    key: EngineKey,
    build: Callable[[], bytes] | None,
    log: Callable[[str], None] = print,
) -> Path:
    """Path of a valid engine for `key` in `cache_dir`, building it when needed.

    `build()` returns serialized engine bytes; with `build=None` (e.g. a node told not to
    build) a missing or invalid engine raises EngineError naming the file and the reason.
    """
    path = Path(cache_dir) / key.filename(stem)
    problem = check_engine(path, key)
    if problem is None:
        log(f"engine cache hit: {path}")
        return path
    if build is None:
        raise EngineError(path, f"{problem}; building is disabled")
    log(f"engine cache miss ({problem}): building {path.name}")
    t0 = time.monotonic()
    data = build()
    if not data:
        raise EngineError(path, "TensorRT returned an empty engine")
    write_engine(path, bytes(data), key, {"build_seconds": round(time.monotonic() - t0, 2)})
    return path
