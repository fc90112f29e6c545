"""Rewrite the build-machine paths baked into the ROS 2 wheels' exported CMake files.

The wheels were built under /opt/python/cp311-cp311; their exported targets name that
interpreter's include directory and numpy's include directory, which do not exist here.
Rewriting them inside the venv avoids needing root for symlinks. Idempotent.

numpy's headers live inside .venv, i.e. inside the package's source directory, and CMake
refuses exported include paths below the source directory. So the CMake files name a
symlink outside the tree (under the user's cache directory) that points to them.
"""

import hashlib
import os
import pathlib
import sys
import sysconfig

import numpy

BUILD_PREFIX = "/opt/python/cp311-cp311"
OLD_PYTHON_INCLUDE = f"{BUILD_PREFIX}/include/python3.11"
OLD_NUMPY_INCLUDE = f"{BUILD_PREFIX}/lib/python3.11/site-packages/numpy/_core/include"


def numpy_include_link(venv: pathlib.Path) -> pathlib.Path:
    cache = pathlib.Path(os.environ.get("XDG_CACHE_HOME", pathlib.Path.home() / ".cache"))
    key = hashlib.sha256(str(venv.resolve()).encode()).hexdigest()[:12]
    link = cache / "pop3d_ros" / f"venv-{key}" / "numpy_include"
    link.parent.mkdir(parents=True, exist_ok=True)
    target = pathlib.Path(numpy.get_include())
    if link.is_symlink() and pathlib.Path(os.readlink(link)) != target:
        link.unlink()
    if not link.is_symlink():
        link.symlink_to(target, target_is_directory=True)
    return link


def main(venv_arg: str) -> int:
    venv = pathlib.Path(venv_arg)
    link = numpy_include_link(venv)
    replacements = {
        OLD_NUMPY_INCLUDE: str(link),
        OLD_PYTHON_INCLUDE: sysconfig.get_paths()["include"],
        numpy.get_include(): str(link),  # undo an earlier in-tree rewrite
    }
    changed = 0
    for path in (venv / "share").rglob("*.cmake"):
        text = path.read_text(errors="surrogateescape")
        new_text = text
        for old, new in replacements.items():
            new_text = new_text.replace(old, new)
        if new_text != text:
            path.write_text(new_text, errors="surrogateescape")
            changed += 1
    print(f"rewrote build-machine paths in {changed} CMake file(s); numpy headers via:")
    print(link)  # last line: read by setup.sh
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
