"""Atomic file writes: readers (other runs sharing a cache, the node loading a model) see the
old file or the new one, never half of one, and an interrupted writer leaves nothing behind.

The temporary name is per process, since runs that share a cache may write the same file at
the same moment.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, suffix: str = "") -> Iterator[Path]:
    """A temporary path next to `path`, renamed onto it when the block ends normally and
    removed when it raises. `suffix` for writers that append their own (np.save ".npy",
    np.savez ".npz"), so the name they write is the name renamed."""
    path = Path(path)
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp{suffix}")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_text_atomic(path: str | os.PathLike, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def write_bytes_atomic(path: str | os.PathLike, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
