"""Prompt templates for ensembling (after ViLD / POP-3D's zero-shot protocol).

A query's embedding is the normalised mean of the normalised embeddings of every template
filled with the query. A short list keeps a cold query cheap (one text-tower pass per
template); the templates speak about street scenes, where the model is used.
"""

from __future__ import annotations

DEFAULT_TEMPLATES: tuple[str, ...] = (
    "a photo of a {}.",
    "a photo of the {}.",
    "a photo of a {} in the street.",
    "a cropped photo of a {}.",
    "a blurry photo of a {}.",
    "a photo of a small {}.",
    "a photo of a large {}.",
    "there is a {} in the scene.",
)


def fill_templates(text: str, templates=DEFAULT_TEMPLATES) -> list[str]:
    """Every template with `{}` replaced by `text` (a template without `{}` gets ' text')."""
    return [t.replace("{}", text) if "{}" in t else f"{t} {text}" for t in templates]
