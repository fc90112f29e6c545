"""Pixel semantics from a dense 2D teacher and the vocabulary (paper sec. 3.3.1, eq. 5).

Each teacher patch feature takes the class whose prompt embedding is most similar (the same
zero-shot rule as the evaluation: max over a class's phrases). Out-of-scope pixels are
ignored: patches with no feature (the synthetic teacher's zero vectors for sky) and patches
closer to an out-of-scope prompt ("sky") than to every class.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from pop3d_ros.data.classes import IGNORE, MOVABLE_CLASSES

OUT_OF_SCOPE = ("sky",)


class PixelSemantics:
    """`semantics(teacher_features (N, D, h, w), image_hw) -> uint8 (N, H, W)` class ids,
    IGNORE where out of scope.

    `class_embeddings`: per class id, (n_phrases, D) phrase embeddings (as for
    `training.zeroshot.ZeroShotClassifier`); `out_of_scope`: (k, D) embeddings of prompts
    outside the class space (may be empty); `min_norm`: features shorter than this are empty.
    """

    def __init__(self, class_embeddings, out_of_scope=None, min_norm: float = 1e-3):
        self.phrases = [
            np.asarray(e, np.float32).reshape(-1, np.shape(e)[-1]) for e in class_embeddings
        ]
        d = self.phrases[0].shape[1]
        oos = np.zeros((0, d), np.float32) if out_of_scope is None else np.asarray(out_of_scope)
        self.out_of_scope = oos.astype(np.float32).reshape(-1, d)
        self.min_norm = float(min_norm)

    def classify(self, features: np.ndarray) -> np.ndarray:
        """(M, D) features -> (M,) uint8 class ids / IGNORE."""
        f = np.asarray(features, np.float32)
        norm = np.linalg.norm(f, axis=1)
        fn = f / np.maximum(norm, 1e-12)[:, None]
        per_class = np.stack([(fn @ p.T).max(1) for p in self.phrases], 1)  # (M, C)
        labels = per_class.argmax(1).astype(np.uint8)
        best = per_class.max(1)
        ignore = norm < self.min_norm
        if len(self.out_of_scope):
            ignore |= (fn @ self.out_of_scope.T).max(1) > best
        labels[ignore] = IGNORE
        return labels

    def __call__(self, teacher_features, image_hw: tuple[int, int]) -> np.ndarray:
        tf = np.asarray(teacher_features, np.float32)
        n, d, h, w = tf.shape
        patches = self.classify(tf.transpose(0, 2, 3, 1).reshape(-1, d)).reshape(n, h, w)
        # Each pixel takes its patch's class: the map covers the image (pixel-area convention).
        up = F.interpolate(
            torch.from_numpy(patches)[:, None].float(), size=tuple(image_hw), mode="nearest"
        )
        return up[:, 0].to(torch.uint8).numpy()


def pixel_semantics_from_encoder(encoder) -> PixelSemantics:
    """PixelSemantics with the encoder's class vocabulary (prompt-ensembled, as the
    evaluation) and "sky" as out of scope where the encoder knows the word."""
    from pop3d_ros.evaluation.zeroshot import class_phrase_embeddings, ensembled, prompt_templates
    from pop3d_ros.text.base import TextEncodingError

    templates = prompt_templates(encoder)
    oos = []
    for word in OUT_OF_SCOPE:
        try:
            oos.append(ensembled(encoder, word, templates))
        except TextEncodingError:  # a closed text space may not know the word
            continue
    return PixelSemantics(
        class_phrase_embeddings(encoder, templates), np.array(oos) if oos else None
    )


def movable_mask(classes: np.ndarray) -> np.ndarray:
    """bool, True where the pixel's class can move."""
    return np.isin(np.asarray(classes), MOVABLE_CLASSES)
