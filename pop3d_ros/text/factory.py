"""Build a TextEncoder from its description (a checkpoint's `text_space` dict)."""

from __future__ import annotations

_META_KEYS = ("kind", "space_id")


def text_encoder_from_spec(spec: dict, **overrides):
    """`{"kind": "open_clip", "model_name": ..., "checkpoint": ..., "seed": ...}` or
    `{"kind": "synthetic", ...}` -> a TextEncoder. `overrides` replace/add constructor args.

    When the spec records a `space_id`, the built encoder must reproduce it; otherwise a model
    would be queried in a space it was not trained for.
    """
    if not isinstance(spec, dict) or "kind" not in spec:
        raise ValueError(f"text space spec must be a dict with a 'kind', got {spec!r}")
    kind = spec["kind"]
    kwargs = {k: v for k, v in spec.items() if k not in _META_KEYS}
    kwargs.update(overrides)
    if kind == "open_clip":
        from pop3d_ros.text.clip_text import OpenClipTextEncoder

        encoder = OpenClipTextEncoder(**kwargs)
    elif kind == "synthetic":
        from pop3d_ros.text.synthetic_text import SyntheticTextSpace

        encoder = SyntheticTextSpace(**kwargs)
    else:
        raise ValueError(f"unknown text space kind {kind!r} (expected 'open_clip' or 'synthetic')")
    expected = spec.get("space_id")
    if expected and not overrides and encoder.space_id != expected:
        raise ValueError(f"text space mismatch: spec says {expected!r}, built {encoder.space_id!r}")
    return encoder
