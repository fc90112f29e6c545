"""Command-line options generated from config dataclasses (the mapping commands).

Each field becomes `--field-name` with its default, type and the `# comment` on its line as
help (the convention of every config dataclass here), so a command is one dataclass and
moves to a generated CLI (tyro) without changing what it takes.
"""

from __future__ import annotations

import argparse
import dataclasses
import inspect
import re
import typing


def field_comments(cls) -> dict[str, str]:
    """field name -> the comment on its line (or the comment lines just above it)."""
    out: dict[str, str] = {}
    above: list[str] = []
    try:
        lines = inspect.getsource(cls).splitlines()
    except (OSError, TypeError):
        return out
    for line in lines:
        text = line.strip()
        if text.startswith("#"):
            above.append(text.lstrip("# "))
            continue
        m = re.match(r"(\w+)\s*:[^#]*?(?:#\s*(.*))?$", text)
        if m and not text.startswith(("def ", "class ", "@", "return")):
            out[m.group(1)] = m.group(2) or " ".join(above)
        above = []
    return out


def _default(f: dataclasses.Field):
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return None


def add_dataclass_arguments(parser: argparse.ArgumentParser, cls, skip=(), required=()) -> None:
    """`--name` options for the scalar fields of dataclass `cls` (bool, int, float, str)."""
    helps = field_comments(cls)
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        if f.name in skip:
            continue
        default, kind = _default(f), hints.get(f.name)
        name = "--" + f.name.replace("_", "-")
        help_text = helps.get(f.name, "")
        if kind is bool:
            parser.add_argument(name, action=argparse.BooleanOptionalAction, default=default,
                                help=help_text)  # fmt: skip
        elif kind in (int, float, str):
            req = f.name in required
            parser.add_argument(
                name,
                type=kind,
                default=None if req else default,
                required=req,
                help=help_text + ("" if req else f" (default: {default})"),
            )


def dataclass_from_args(cls, args, skip=(), **extra):
    """An instance of `cls` from parsed options (fields in `skip` from `extra`)."""
    values = {}
    for f in dataclasses.fields(cls):
        if f.name in skip or not hasattr(args, f.name):
            continue
        values[f.name] = getattr(args, f.name)
    values.update(extra)
    return cls(**values)
