"""The label-free class balance of the feature distillation (training/feature_balance.py).

Expected weights are worked out by hand from the definition: factor_g = (mean mass / mass_g)
** P over the groups present, clipped to [1 / max_factor, max_factor].
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pop3d_ros.training.config import LossConfig
from pop3d_ros.training.feature_balance import (
    FeatureBalance,
    feature_balance_from,
    vocabulary_phrases,
)
from pop3d_ros.training.strategies.pop3d import Pop3DStrategy


def _basis_balance(power, max_factor=10.0):
    # Four phrases along the axes of R^4; phrases 0 and 1 name group 0, 2 -> 1, 3 -> 2.
    return FeatureBalance(np.eye(4), [0, 0, 1, 2], power, max_factor)


def _targets():
    # Three voxels nearest group 0 (two via phrase 0, one via phrase 1), one nearest group 1.
    return torch.tensor([[1.0, 0.1, 0, 0], [0.9, 0, 0.2, 0], [0.1, 2.0, 0, 0.3], [0, 0, 0.5, 0.1]])


def test_groups_are_the_nearest_phrase_s_group():
    assert _basis_balance(1.0).groups(_targets()).tolist() == [0, 0, 0, 1]


def test_power_one_gives_every_present_group_the_same_mass():
    w = _basis_balance(1.0)(_targets(), torch.ones(4))
    # masses 3 and 1 (group 2 absent), mean 2: factors 2/3 and 2.
    assert w.tolist() == pytest.approx([2 / 3, 2 / 3, 2 / 3, 2.0])
    assert w[:3].sum().item() == pytest.approx(w[3].item())


def test_power_half_and_point_weights():
    # Pair-count weights: group 0 mass 1 + 2 + 1 = 4, group 1 mass 4 -> already balanced.
    assert _basis_balance(0.5)(_targets(), torch.tensor([1.0, 2.0, 1.0, 4.0])).tolist() == (
        pytest.approx([1.0, 2.0, 1.0, 4.0])
    )
    # Masses 3 and 1, mean 2: factors sqrt(2/3), sqrt(2).
    w = _basis_balance(0.5)(_targets(), None)
    assert w.tolist() == pytest.approx([np.sqrt(2 / 3)] * 3 + [np.sqrt(2)])


def test_factors_are_clipped_and_power_zero_is_the_plain_loss():
    w = _basis_balance(1.0, max_factor=1.5)(_targets(), torch.ones(4))
    assert w.tolist() == pytest.approx([2 / 3, 2 / 3, 2 / 3, 1.5])
    plain = torch.tensor([1.0, 2.0, 3.0, 4.0])
    assert torch.equal(_basis_balance(0.0)(_targets(), plain), plain)
    assert _basis_balance(1.0)(torch.zeros(0, 4), torch.zeros(0)).numel() == 0


def test_bad_settings_are_refused():
    with pytest.raises(ValueError, match=">= 0"):
        _basis_balance(-1.0)
    with pytest.raises(ValueError, match="max_factor"):
        _basis_balance(1.0, max_factor=0.5)
    with pytest.raises(ValueError, match="do not match"):
        FeatureBalance(np.eye(4), [0, 1], 1.0)
    with pytest.raises(ValueError, match="5-d"):
        _basis_balance(1.0).groups(torch.zeros(2, 5))
    with pytest.raises(ValueError, match="feature_balance"):
        LossConfig(feature_balance=-0.5).validate()


def test_vocabulary_holds_classes_and_long_tail_concepts():
    from pop3d_ros.text.synthetic_text import SyntheticTextSpace

    space = SyntheticTextSpace(seed=0, dim=64)
    emb, group, names = vocabulary_phrases(space)
    assert set(space.vocabulary) <= set(names) and "stairs" in names
    assert len(names) == len(space.vocabulary) + len(space.concepts)
    n_phrases = sum(len(v) for v in space.vocabulary.values())
    n_phrases += sum(len(v) for v in space.concepts.values())
    assert emb.shape == (n_phrases, 64) and group.shape == (n_phrases,)
    # A concept's own phrase embedding is nearest to its own group.
    balance = FeatureBalance(emb, group, 1.0)
    stairs = torch.from_numpy(space.encode(["stairs"]))
    assert names[int(balance.groups(stairs)[0])] == "stairs"


def test_strategy_loss_uses_the_balanced_weights():
    balance = _basis_balance(1.0)
    strategy = Pop3DStrategy(teacher=None, feature_balance=balance)
    target = _targets()
    pred = torch.zeros(4, 4)
    batch = {
        "occ_target": torch.zeros(1, 2, 2, 2, dtype=torch.uint8),
        "features": target.half(),
        "weight": torch.ones(4),
    }
    outputs = {"occupancy_logits": torch.zeros(1, 2, 2, 2, 2), "language_features": pred}
    err = (target.half().float() ** 2).mean(-1)
    w = torch.tensor([2 / 3, 2 / 3, 2 / 3, 2.0])
    expected = (err * w).sum() / w.sum()
    assert strategy.losses(outputs, batch)["ft"].item() == pytest.approx(expected.item(), rel=1e-5)
    plain = Pop3DStrategy(teacher=None).losses(outputs, batch)["ft"].item()
    assert plain == pytest.approx(err.mean().item(), rel=1e-5)
    assert plain != pytest.approx(expected.item(), rel=1e-3)


def test_balance_from_the_cli_settings():
    from pop3d_ros.text.synthetic_text import SyntheticTextSpace

    built = []

    def encoder():  # the run's lazily built text encoder
        built.append(1)
        return SyntheticTextSpace(seed=0, dim=64)

    assert feature_balance_from(0.0, encoder, "pop3d") is None
    assert not built  # off: no encoder is built
    balance = feature_balance_from(0.5, encoder, "pop3d_render")
    assert balance.power == 0.5 and balance.phrases.shape[1] == 64
    with pytest.raises(ValueError, match="render has none"):
        feature_balance_from(1.0, encoder, "render")
