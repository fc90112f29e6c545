"""Concept ids of the synthetic world (version 2): the 16 classes plus long-tail concepts.

Concept ids 0..15 are the classes themselves (a plain car, a building); id 16 = EMPTY in
occupancy grids, never a concept; ids 17.. are the long-tail concepts of
`text.synthetic_text.CONCEPT_VOCABULARY` in its order (stairs, bench, ...); IGNORE (255)
marks sky / unknown, as for class ids. `CONCEPT_CLASS[c]` maps a concept id to its
evaluation class, so every 16-class protocol reads class ids as before.
"""

from __future__ import annotations

import numpy as np

from pop3d_ros.data.classes import CLASS_ID, CLASS_NAMES, EMPTY, IGNORE
from pop3d_ros.text.synthetic_text import CONCEPT_VOCABULARY, VOCABULARY

assert tuple(VOCABULARY) == CLASS_NAMES, "text vocabulary and class ids out of order"

FIRST_LONG_TAIL = EMPTY + 1
LONG_TAIL_NAMES: tuple[str, ...] = tuple(CONCEPT_VOCABULARY)
# id -> name; id EMPTY is a placeholder so that ids index this tuple
CONCEPT_NAMES: tuple[str, ...] = CLASS_NAMES + ("<empty>",) + LONG_TAIL_NAMES
NUM_CONCEPTS = len(CONCEPT_NAMES)
CONCEPT_ID = {name: i for i, name in enumerate(CONCEPT_NAMES) if i != EMPTY}
LONG_TAIL_IDS = tuple(range(FIRST_LONG_TAIL, NUM_CONCEPTS))
PARENT = {name: CONCEPT_VOCABULARY[name][0] for name in LONG_TAIL_NAMES}

# concept id (0..255) -> class id; EMPTY and IGNORE map to themselves
CONCEPT_CLASS = np.full(256, IGNORE, dtype=np.uint8)
CONCEPT_CLASS[: len(CLASS_NAMES)] = np.arange(len(CLASS_NAMES))
CONCEPT_CLASS[EMPTY] = EMPTY
for _name in LONG_TAIL_NAMES:
    CONCEPT_CLASS[CONCEPT_ID[_name]] = CLASS_ID[PARENT[_name]]

assert NUM_CONCEPTS < IGNORE


def concept_to_class(concepts) -> np.ndarray:
    """Class ids (uint8, same shape) of concept ids; EMPTY / IGNORE pass through."""
    return CONCEPT_CLASS[np.asarray(concepts, dtype=np.uint8)]
