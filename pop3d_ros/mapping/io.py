"""Map files: one `.npz` read without pickle, and PLY export for Open3D / CloudCompare.

`save_map` writes plain arrays plus a JSON schema (as bytes) into one npz, atomically.
`read_map` trusts nothing in the file: the archive's member names and sizes are checked
before any array is read, arrays are read with `allow_pickle=False` (an object array, i.e.
a pickle, is refused by numpy itself), and every array's dtype, shape and values are checked
against the schema. A crafted, truncated or foreign file raises `MapFileError` with one line
and leaves nothing half-loaded.
"""

from __future__ import annotations

import json
import os
import zipfile
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import numpy as np

from pop3d_ros.atomic import atomic_path
from pop3d_ros.mapping.config import MapConfig
from pop3d_ros.mapping.store import UPDATES_MAX, bf16_to_float, pack_blocks

FORMAT = "pop3d_ros.map"
VERSION = 1
# name -> dtype; shapes are checked against the schema's counts
_ARRAYS = {
    "schema": np.uint8,
    "block_coords": np.int64,
    "log_odds": np.float32,
    "updates": np.uint16,
    "feature_address": np.int64,
    "features": np.uint16,
    "feature_weight": np.float32,
}
_LATTICE = ("voxel_size", "origin", "block_size")


class MapFileError(ValueError):
    """A map file that cannot be loaded; the message is one line."""


def save_map(online_map, path) -> Path:
    """Write the map (stored blocks, occupancy, language features) to `path` (.npz)."""
    s = online_map.store
    path = Path(path)
    if path.suffix != ".npz":
        path = path.with_name(path.name + ".npz")
    slots = s.stored_slots()
    position = np.full(max(s.block_used.size, 1), -1, np.int64)
    position[slots] = np.arange(slots.size)
    n = s.num_features
    owners = s.feature_owner[:n]
    slot, local = np.divmod(owners, s.block_voxels)
    schema = {
        "format": FORMAT,
        "version": VERSION,
        "config": asdict(online_map.config),
        "feature_dim": s.feature_dim,
        "feature_dtype": "bfloat16",
        "blocks": int(slots.size),
        "features": int(n),
        "frames_integrated": int(online_map.frames_integrated),
        "last_stamp": online_map.last_stamp,
        "last_pose": None if online_map.last_pose is None else online_map.last_pose.tolist(),
    }
    arrays = {
        "schema": np.frombuffer(json.dumps(schema).encode(), np.uint8),
        "block_coords": s.block_coords[slots].astype(np.int64),
        "log_odds": s.log_odds[slots],
        "updates": s.updates[slots],
        "feature_address": position[slot] * s.block_voxels + local,
        "features": s.features[:n],
        "feature_weight": s.feature_weight[:n],
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        np.savez(f, **arrays)
    return path


def _fail(path, why: str):
    raise MapFileError(f"{path}: not a usable map file: {why}")


def _read_arrays(path: Path, max_bytes: int) -> dict:
    if not path.is_file():
        raise MapFileError(f"{path}: no such map file")
    try:
        with zipfile.ZipFile(path) as z:
            infos = z.infolist()
    except (zipfile.BadZipFile, OSError, EOFError) as exc:
        _fail(path, f"not an npz archive ({type(exc).__name__})")
    names = {i.filename for i in infos}
    expected = {f"{k}.npy" for k in _ARRAYS}
    if names != expected:
        extra, missing = sorted(names - expected), sorted(expected - names)
        _fail(path, f"unexpected members {extra[:3]} / missing {missing[:3]}")
    total = sum(i.file_size for i in infos)
    if total > max_bytes:
        _fail(path, f"{total} bytes unpacked, more than the limit {max_bytes}")
    out = {}
    try:
        with np.load(path, allow_pickle=False) as data:
            for key, dtype in _ARRAYS.items():
                arr = data[key]
                if arr.dtype != np.dtype(dtype):
                    _fail(path, f"{key} has dtype {arr.dtype}, expected {np.dtype(dtype)}")
                out[key] = arr
    except MapFileError:
        raise
    except (ValueError, OSError, EOFError, zipfile.BadZipFile, KeyError) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        _fail(path, f"cannot read arrays ({reason[:120]})")
    return out


def _schema(path, raw: np.ndarray) -> dict:
    try:
        schema = json.loads(raw.tobytes().decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        _fail(path, "schema is not JSON")
    if not isinstance(schema, dict) or schema.get("format") != FORMAT:
        _fail(path, f"format is not {FORMAT!r}")
    if schema.get("version") != VERSION:
        _fail(path, f"schema version {schema.get('version')!r}, this build reads {VERSION}")
    if schema.get("feature_dtype") != "bfloat16":
        _fail(path, f"feature dtype {schema.get('feature_dtype')!r} is not bfloat16")
    for key in ("feature_dim", "blocks", "features", "frames_integrated"):
        if not isinstance(schema.get(key), int) or schema[key] < 0:
            _fail(path, f"schema field {key!r} must be a non-negative integer")
    if not isinstance(schema.get("config"), dict):
        _fail(path, "schema has no map config")
    return schema


def _config(path, saved: dict, given: MapConfig | None) -> MapConfig:
    known = {f.name for f in fields(MapConfig)}
    unknown = sorted(set(saved) - known)
    if unknown:
        _fail(path, f"unknown config fields {unknown[:3]}")
    try:
        stored = MapConfig(**saved)
    except (TypeError, ValueError) as exc:
        _fail(path, f"invalid map config ({str(exc).splitlines()[0][:120]})")
    if given is None:
        return stored
    for name in _LATTICE:
        if not np.allclose(getattr(stored, name), getattr(given, name)):
            _fail(path, f"its {name} {getattr(stored, name)} differs from the configured "
                  f"{getattr(given, name)}")  # fmt: skip
    return given


@dataclass(frozen=True)
class MapFile:
    """A checked map file: the settings, the store's arrays, the counters."""

    config: MapConfig
    feature_dim: int
    block_coords: np.ndarray  # (B, 3) int64
    log_odds: np.ndarray  # (B, block voxels) float32
    updates: np.ndarray  # (B, block voxels) uint16
    feature_address: np.ndarray  # (F,) int64 into the blocks in file order
    features: np.ndarray  # (F, D) uint16 bfloat16 bits
    feature_weight: np.ndarray  # (F,) float32
    frames_integrated: int
    last_stamp: float | None
    last_pose: np.ndarray | None


def read_map(path, config: MapConfig | None = None, max_bytes: int | None = None) -> MapFile:
    """The contents of a file written by `save_map`, checked. `config` (optional) must have
    the file's lattice (voxel size, origin, block size); its other settings apply from now on.
    `max_bytes`: refuse archives that unpack to more (default: 2 x the byte budget of
    `max_voxels` and `max_features`). Raises MapFileError."""
    path = Path(os.fspath(path))
    if max_bytes is None:
        c = config or MapConfig()
        max_bytes = 2 * (c.max_voxels * 16 + c.max_features * (2 * 4096 + 16)) + (1 << 20)
    a = _read_arrays(path, max_bytes)
    schema = _schema(path, a["schema"])
    cfg = _config(path, schema["config"], config)
    nb, nf, dim = schema["blocks"], schema["features"], schema["feature_dim"]
    bv = int(cfg.block_size) ** 3
    shapes = {
        "block_coords": (nb, 3),
        "log_odds": (nb, bv),
        "updates": (nb, bv),
        "feature_address": (nf,),
        "features": (nf, dim),
        "feature_weight": (nf,),
    }
    for key, shape in shapes.items():
        if a[key].shape != shape:
            _fail(path, f"{key} has shape {a[key].shape}, the schema says {shape}")
    coords, lo, up = a["block_coords"], a["log_odds"], a["updates"]
    if nb and np.abs(coords).max() >= (1 << 20) - 1:
        _fail(path, "block coordinates out of range")
    if len(np.unique(coords, axis=0)) != nb:
        _fail(path, "a block is stored twice")
    if (
        not np.all(np.isfinite(lo))
        or lo.min(initial=0) < cfg.log_odds_min - 1e-4
        or (lo.max(initial=0) > cfg.log_odds_max + 1e-4)
    ):
        _fail(path, "log-odds outside the configured clamp")
    addr, w = a["feature_address"], a["feature_weight"]
    if nf:
        if addr.min() < 0 or addr.max() >= nb * bv or len(np.unique(addr)) != nf:
            _fail(path, "feature addresses out of range or repeated")
        if not np.all(up.reshape(-1)[addr] > 0):
            _fail(path, "a feature belongs to a voxel never observed")
        if not np.all(np.isfinite(w)) or w.min() <= 0:
            _fail(path, "feature weights must be finite and positive")
        if not np.all(np.isfinite(bf16_to_float(a["features"]))):
            _fail(path, "features contain NaN or inf")
    stamp, pose = schema.get("last_stamp"), schema.get("last_pose")
    if stamp is not None and not (isinstance(stamp, int | float) and np.isfinite(stamp)):
        _fail(path, "last_stamp is not a finite number")
    if pose is not None:
        try:
            pose = np.asarray(pose, np.float64)
        except (TypeError, ValueError):
            _fail(path, "last_pose is not a matrix")
        if pose.shape != (4, 4) or not np.all(np.isfinite(pose)):
            _fail(path, "last_pose is not a finite 4x4 matrix")
    return MapFile(cfg, dim, coords, lo, up, addr, a["features"], w,
                   schema["frames_integrated"], None if stamp is None else float(stamp),
                   pose)  # fmt: skip


def fill_store(store, f: MapFile) -> None:
    """Put a checked file's blocks and features into an empty VoxelStore of its lattice."""
    bv = store.block_voxels
    slots = store._allocate(len(f.block_coords))  # noqa: SLF001 - the loader fills a fresh store
    store.block_coords[slots] = f.block_coords
    store.log_odds[slots] = f.log_odds
    store.updates[slots] = np.minimum(f.updates, UPDATES_MAX)
    store._insert(pack_blocks(f.block_coords), slots)  # noqa: SLF001
    if len(f.feature_address):
        block, local = np.divmod(f.feature_address, bv)
        rows = store.add_feature_rows(slots[block] * bv + local)
        store.features[rows] = f.features
        store.feature_weight[rows] = f.feature_weight
        store.feature_norm[rows] = np.linalg.norm(bf16_to_float(f.features), axis=1)


def write_ply(path, centres, occupancy, colors, labels=None, binary: bool = True) -> Path:
    """A PLY point cloud of voxel centres: float x, y, z, occupancy; uchar red, green, blue
    (Open3D reads the colours; CloudCompare shows occupancy and label as scalar fields);
    ushort label with `labels`. binary_little_endian by default, else ascii."""
    centres = np.asarray(centres, np.float32).reshape(-1, 3)
    n = centres.shape[0]
    fields_ = [("x", "<f4"), ("y", "<f4"), ("z", "<f4"), ("occupancy", "<f4"),
               ("red", "u1"), ("green", "u1"), ("blue", "u1")]  # fmt: skip
    if labels is not None:
        fields_.append(("label", "<u2"))
    rec = np.zeros(n, dtype=fields_)
    rec["x"], rec["y"], rec["z"] = centres[:, 0], centres[:, 1], centres[:, 2]
    rec["occupancy"] = np.asarray(occupancy, np.float32).reshape(-1)
    rgb = np.asarray(colors, np.uint8).reshape(-1, 3)
    rec["red"], rec["green"], rec["blue"] = rgb[:, 0], rgb[:, 1], rgb[:, 2]
    if labels is not None:
        rec["label"] = np.asarray(labels, np.uint16).reshape(-1)
    ply_types = {"<f4": "float", "u1": "uchar", "<u2": "ushort"}
    header = ["ply", f"format {'binary_little_endian' if binary else 'ascii'} 1.0",
              "comment pop3d_ros map: occupied voxel centres in map_frame",
              f"element vertex {n}"]  # fmt: skip
    header += [f"property {ply_types[t]} {name}" for name, t in fields_]
    header.append("end_header")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        f.write(("\n".join(header) + "\n").encode("ascii"))
        if binary:
            f.write(rec.tobytes())
        else:
            for row in rec:
                vals = [f"{row[k]:.6g}" if t == "<f4" else str(int(row[k])) for k, t in fields_]
                f.write((" ".join(vals) + "\n").encode("ascii"))
    return path
