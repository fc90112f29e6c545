"""The model at inference time, whichever backend runs it (contract: docs/architecture.md,
"Runtime contract"; the ROS node and the benchmarks use this).

`load_runtime(checkpoint, backend="auto")` gives a `Pop3DRuntime` whose `encoder` and
`language_head` are `Backend`s with numpy in/out. For onnxruntime and tensorrt the ONNX
export (and engines) are created on first use under `cache_dir/<checkpoint sha256[:16]>/`
and reused while the manifest, file hashes and engine sidecars still match.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import shutil
from collections.abc import Callable, Sequence
from pathlib import Path

from pop3d_ros.export.backends.base import Backend, TensorSpec
from pop3d_ros.export.errors import DeploymentError, RuntimeLoadError
from pop3d_ros.export.onnx_export import (
    ENCODER_FILE,
    ENCODER_OUTPUTS,
    LANGUAGE_HEAD_FILE,
    LANGUAGE_INPUTS,
    LANGUAGE_OUTPUTS,
)

__all__ = ["BACKENDS", "Pop3DRuntime", "RuntimeLoadError", "choose_backend", "load_runtime"]

BACKENDS = ("auto", "torch", "onnxruntime", "tensorrt")
Log = Callable[[str], None]


def default_cache_dir() -> Path:
    return Path(os.environ.get("POP3D_CACHE_DIR", Path.home() / ".cache" / "pop3d_ros"))


def tensorrt_usable() -> tuple[bool, str]:
    """(usable, reason): a `tensorrt` module with bindings and a CUDA GPU."""
    from pop3d_ros.export.trt_builder import gpu_identity, import_tensorrt

    try:
        import_tensorrt()
        gpu_identity()
    except DeploymentError as e:
        return False, str(e)
    return True, "tensorrt and a CUDA GPU found"


def choose_backend(requested: str = "auto", log: Log = print) -> str:
    """`auto` -> tensorrt (GPU + tensorrt), else onnxruntime, else torch; says why."""
    if requested not in BACKENDS:
        raise ValueError(f"unknown backend {requested!r}; choose one of {', '.join(BACKENDS)}")
    if requested != "auto":
        return requested
    ok, reason = tensorrt_usable()
    if ok:
        chosen = "tensorrt"
    elif importlib.util.find_spec("onnxruntime") is not None:
        chosen = "onnxruntime"
    else:
        chosen, reason = "torch", f"{reason}; onnxruntime not installed"
    log(
        f"backend auto -> {chosen} ({reason})"
        if chosen != "tensorrt"
        else f"backend auto -> {chosen}"
    )
    return chosen


class Pop3DRuntime:
    """Encoder + language head behind one backend. Context manager; `close()` frees both."""

    def __init__(
        self,
        config,
        text_space: dict,
        backend_name: str,
        encoder: Backend,
        language_head: Backend,
        description: str,
        export_dir: Path | None = None,
        manifest: dict | None = None,
        checkpoint_sha256: str = "",
    ):
        self.config = config  # pop3d_ros.model.config.ModelConfig
        self.text_space = text_space  # feeds text.factory.text_encoder_from_spec
        self.backend_name = backend_name  # "torch" | "onnxruntime" | "tensorrt"
        self.encoder = encoder
        self.language_head = language_head
        self.description = description  # one line for logs and diagnostics
        self.export_dir = export_dir  # where the ONNX/engines live (None for torch)
        self.manifest = manifest  # the export's manifest (None for torch)
        self.checkpoint_sha256 = checkpoint_sha256
        self.precision = "fp32"  # the precision actually run (set by load_runtime)
        self.precision_note = ""  # why it differs from the requested one, if it does

    def close(self) -> None:
        self.encoder.close()
        self.language_head.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<Pop3DRuntime {self.backend_name}: {self.description}>"


def _torch_backends(model, cfg, source: str) -> tuple[Backend, Backend]:
    from pop3d_ros.export.backends.torch_backend import TorchBackend

    h, w = cfg.image_size
    n_cam, n_vox, c_v = cfg.num_cameras, int(cfg.voxel_grid.num_voxels), cfg.decoder.voxel_channels
    x, y, z = cfg.grid.shape
    enc = TorchBackend(
        model,
        [
            TensorSpec("images", (None, n_cam, 3, h, w)),
            TensorSpec("sampling_grid", (None, n_cam, n_vox, 2)),
            TensorSpec("sampling_mask", (None, n_cam, n_vox)),
        ]
        + ([TensorSpec("sampling_depth", (None, n_cam, n_vox))] if cfg.lifting.depth_bins else []),
        [
            TensorSpec("occupancy_logits", (None, x, y, z, 2)),
            TensorSpec("voxel_features", (None, x, y, z, c_v)),
        ],
        source,
    )
    head = TorchBackend(
        model.language_head,
        [TensorSpec("voxel_features", (None, c_v))],
        [TensorSpec("language_features", (None, cfg.heads.clip_dim))],
        source,
    )
    return enc, head


def ensure_export(checkpoint: Path, sha: str, cfg, cache_dir: Path, log: Log = print):
    """(export_dir, manifest): a verified export of this checkpoint, exporting if needed."""
    export_dir = cache_dir / sha[:16]
    cached = _cached_export(export_dir, sha, cfg, log)
    if cached is not None:
        return export_dir, cached
    # One exporter per checkpoint and cache: nodes that start together (two rigs, two
    # namespaces) wait for the first one's export instead of each exporting it again.
    with export_lock(cache_dir, sha, log):
        cached = _cached_export(export_dir, sha, cfg, lambda _m: None)
        if cached is not None:
            log(f"export cache hit after waiting: {export_dir}")
            return export_dir, cached
        return export_dir, _export_into(checkpoint, sha, cfg, cache_dir, export_dir, log)


def _cached_export(export_dir: Path, sha: str, cfg, log: Log) -> dict | None:
    from pop3d_ros.export.manifest import verify_export

    if not export_dir.exists():
        log(f"export cache miss: {export_dir}")
        return None
    try:
        manifest = verify_export(export_dir, sha, cfg.to_dict())
    except DeploymentError as e:
        log(f"export cache invalid, re-exporting ({e})")
        return None
    from pop3d_ros.model.onnx_io import GRAPH_REVISION

    if manifest.get("graph_revision", 1) < GRAPH_REVISION:
        log(f"export cache of an older graph revision, re-exporting ({export_dir})")
        return None
    log(f"export cache hit: {export_dir}")
    return manifest


@contextlib.contextmanager
def export_lock(cache_dir: Path, sha: str, log: Log = print):
    """An exclusive advisory lock (flock) on `cache_dir/.export-<sha16>.lock` while held.

    Blocks while another process exports the same checkpoint into the same cache; released
    by the kernel if that process dies. Without fcntl (not POSIX) nothing is locked."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows
        yield
        return
    cache_dir.mkdir(parents=True, exist_ok=True)
    path = cache_dir / f".export-{sha[:16]}.lock"
    with open(path, "a+b") as fh:
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            log(f"waiting for another process exporting this checkpoint ({path})")
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


def _export_into(checkpoint: Path, sha: str, cfg, cache_dir: Path, export_dir: Path, log: Log):
    from pop3d_ros.export.manifest import verify_export
    from pop3d_ros.export.onnx_export import export_model

    log(f"exporting {checkpoint.name} to {export_dir}")
    from pop3d_ros.model.checkpoint import load_model

    model, ckpt = load_model(checkpoint)
    tmp = cache_dir / f".tmp-{sha[:16]}-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        export_model(model, model.cfg, ckpt["text_space"], sha, tmp, verify=False, log=log)
        # Engines of an older export stay valid only if keyed by ONNX sha; keep them.
        old_engines = export_dir / "engines"
        if old_engines.is_dir():
            shutil.move(os.fspath(old_engines), os.fspath(tmp / "engines"))
        shutil.rmtree(export_dir, ignore_errors=True)
        os.replace(tmp, export_dir)  # atomic: other processes see old or new, never half
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return verify_export(export_dir, sha, cfg.to_dict())


def _check_io(backend: Backend, inputs, outputs) -> None:
    if backend.input_names != list(inputs) or backend.output_names != list(outputs):
        raise RuntimeLoadError(
            backend.source,
            f"graph I/O {backend.input_names} -> {backend.output_names}, "
            f"expected {list(inputs)} -> {list(outputs)}",
        )


def language_head_profiles(cfg) -> dict:
    """The language head's optimisation profile: 1 .. all voxels rows, 4096 typical."""
    c_v, n_vox = cfg.decoder.voxel_channels, int(cfg.voxel_grid.num_voxels)
    return {"voxel_features": ((1, c_v), (min(4096, n_vox), c_v), (n_vox, c_v))}


def ort_precision(precision: str, providers: Sequence | None, log: Log) -> tuple[str, str]:
    """(precision to load, note): fp16 needs a GPU EP; on the CPU EP alone it runs as fp32."""
    import onnxruntime as ort

    from pop3d_ros.export.backends.ort_backend import CPU_EP, resolve_providers

    if precision != "fp16":
        return precision, ""
    chosen = [n for n, _ in resolve_providers(providers, ort.get_available_providers(), log=log)]
    if chosen == [CPU_EP]:
        note = "fp16 requested, fp32 used: the CPU execution provider has no fp16 kernels"
        log(f"onnxruntime: {note}")
        return "fp32", note
    return precision, ""


def _tensorrt_backends(export_dir: Path, cfg, precision: str, build: bool, log: Log):
    from pop3d_ros.export.backends.trt_backend import TrtBackend
    from pop3d_ros.export.engine_cache import ensure_engine
    from pop3d_ros.export.hashing import sha256_file
    from pop3d_ros.export.precision import resolve_variant
    from pop3d_ros.export.trt_builder import BuildOptions, build_serialized_engine, engine_key

    out = []
    for file, profiles in ((ENCODER_FILE, {}), (LANGUAGE_HEAD_FILE, language_head_profiles(cfg))):
        # The precision is the graph's (strongly typed build): fp16 / Q/DQ int8 variant.
        onnx_path = resolve_variant(export_dir / file, precision, log)
        options = BuildOptions(precision=precision, profiles=profiles)
        key = engine_key(sha256_file(onnx_path), options)

        def _build(p=onnx_path, o=options):
            return build_serialized_engine(p, o, log)

        path = ensure_engine(
            export_dir / "engines", Path(file).stem, key, _build if build else None, log
        )
        out.append(TrtBackend(path, key, log))
    return out[0], out[1]


def load_runtime(
    checkpoint: str | os.PathLike,
    backend: str = "auto",
    cache_dir: str | os.PathLike | None = None,
    providers: Sequence | None = None,
    precision: str = "fp32",
    log: Log = print,
    build_engines: bool = True,
    threads: int = 0,
) -> Pop3DRuntime:
    """Load a checkpoint for inference; RuntimeLoadError (one line) on any failure.

    backend: auto | torch | onnxruntime | tensorrt. providers: onnxruntime EP list (names
    or aliases tensorrt/cuda/cpu). precision: fp32 | fp16 | int8 (TensorRT engines and the
    ORT TensorRT EP). build_engines=False refuses to build missing TensorRT engines.
    threads: onnxruntime intra-op threads (0 = its default, all cores); set it equal to
    torch's thread count for like-for-like timings. The precision actually run is
    `runtime.precision` (fp16 on the CPU EP alone runs fp32: `runtime.precision_note`).
    """
    from pop3d_ros.model.checkpoint import CheckpointError, checkpoint_sha256, read_checkpoint
    from pop3d_ros.model.config import ModelConfig

    checkpoint = Path(checkpoint)
    cache_dir = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    try:
        name = choose_backend(backend, log)
        if precision not in ("fp32", "fp16", "int8"):
            raise ValueError(f"precision must be fp32, fp16 or int8, got {precision!r}")
    except ValueError as e:
        raise RuntimeLoadError(None, e) from None
    try:
        sha = checkpoint_sha256(checkpoint)
        if name == "torch":
            from pop3d_ros.model.checkpoint import load_model

            model, ckpt = load_model(checkpoint)
            cfg = model.cfg
            if threads > 0:
                import torch

                torch.set_num_threads(int(threads))
            enc, head = _torch_backends(model, cfg, os.fspath(checkpoint))
            desc = f"{enc.description} fp32, checkpoint sha {sha[:10]}.."
            rt = Pop3DRuntime(cfg, dict(ckpt["text_space"]), name, enc, head, desc, None, None, sha)
            if precision != "fp32":
                rt.precision_note = f"{precision} requested, fp32 used: the torch backend is fp32"
                log(f"torch: {rt.precision_note}")
            return rt
        if name == "tensorrt":  # fail before a possibly long export
            from pop3d_ros.export.trt_builder import gpu_identity, import_tensorrt

            import_tensorrt()
            gpu_identity()
        ckpt = read_checkpoint(checkpoint)
        cfg = ModelConfig.from_dict(ckpt["config"])
        export_dir, manifest = ensure_export(checkpoint, sha, cfg, cache_dir, log)
        note = ""
        if name == "onnxruntime":
            from pop3d_ros.export.backends.ort_backend import OrtBackend
            from pop3d_ros.export.precision import resolve_variant

            precision, note = ort_precision(precision, providers, log)
            trt_cache = export_dir / "ort_trt_cache"
            fp16 = precision == "fp16"
            enc = OrtBackend(
                resolve_variant(export_dir / ENCODER_FILE, precision, log),
                providers, trt_cache, fp16, threads, log,
            )  # fmt: skip
            head = OrtBackend(
                resolve_variant(export_dir / LANGUAGE_HEAD_FILE, precision, log),
                providers, trt_cache, fp16, threads, log, language_head_profiles(cfg),
            )  # fmt: skip
        else:
            enc, head = _tensorrt_backends(export_dir, cfg, precision, build_engines, log)
        _check_io(enc, cfg.encoder_input_names, ENCODER_OUTPUTS)
        _check_io(head, LANGUAGE_INPUTS, LANGUAGE_OUTPUTS)
        from pop3d_ros.export.precision import read_variant_info

        enc_sha = manifest["graphs"]["encoder"]["sha256"]
        enc_file = ENCODER_FILE
        if name == "onnxruntime" and precision != "fp32":  # the variant's own sha (sidecar)
            enc_file = Path(enc.source).name
            enc_sha = (read_variant_info(enc.source) or {}).get("sha256", "?")
        desc = f"{enc.description} {precision}, {enc_file} sha {enc_sha[:10]}.."
        rt = Pop3DRuntime(
            cfg, dict(ckpt["text_space"]), name, enc, head, desc, export_dir, manifest, sha
        )
        rt.precision, rt.precision_note = precision, note
        return rt
    except RuntimeLoadError:
        raise
    except DeploymentError as e:
        raise RuntimeLoadError(e.path, e.problem) from None
    except CheckpointError as e:
        raise RuntimeLoadError(None, e) from None
    except (ValueError, OSError) as e:
        raise RuntimeLoadError(checkpoint, f"{type(e).__name__}: {e}") from None
