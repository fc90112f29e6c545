"""Moved to `pop3d_ros.text.synthetic_text` (a text encoder lives in `text/`); this alias
keeps imports written against the old place working. New code imports from `text/`."""

from pop3d_ros.text.synthetic_text import *  # noqa: F403
from pop3d_ros.text.synthetic_text import CONCEPT_VOCABULARY, VOCABULARY, SyntheticTextSpace

__all__ = ["CONCEPT_VOCABULARY", "VOCABULARY", "SyntheticTextSpace"]
