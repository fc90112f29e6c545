"""Per-layer counts of the POP-3D-protocol breakdown, on a hand-made grid."""

import sys
from pathlib import Path

import numpy as np
import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))

from train_fixtures import tiny_model_config  # noqa: E402

from tools.protocol_breakdown import iou, layer_counts, main  # noqa: E402


def test_layer_counts_score_only_observed_voxels_per_layer():
    labels = np.full((2, 2, 3), 255, np.uint8)  # unobserved unless set
    labels[0, 0, 0] = 1  # hit, predicted: TP in layer 0
    labels[1, 0, 0] = 0  # crossed, predicted: FP in layer 0
    labels[0, 1, 1] = 1  # hit, missed: FN in layer 1
    labels[1, 1, 1] = 0  # crossed, not predicted: TN
    pred = np.zeros((2, 2, 3), bool)
    pred[0, 0, 0] = pred[1, 0, 0] = True
    pred[:, :, 2] = True  # layer 2 is unobserved: never counted
    counts = layer_counts(pred, labels)
    assert counts.tolist() == [[1, 1, 0], [0, 0, 1], [0, 0, 0]]
    assert iou(counts) == pytest.approx(1 / 3)


def test_breakdown_runs_on_a_tiny_checkpoint(tmp_path, capsys):
    from pop3d_ros.model.checkpoint import save_checkpoint
    from pop3d_ros.model.pop3d import build_model
    from pop3d_ros.text.synthetic_text import SyntheticTextSpace

    cfg = tiny_model_config()
    cfg.heads.occupancy_output = "density"
    ckpt = tmp_path / "m.pt"
    save_checkpoint(
        ckpt, build_model(cfg), cfg, SyntheticTextSpace().describe(), {},
        occupancy_prior=torch.zeros(tuple(cfg.grid.shape)), prior_threshold=0.3,
    )  # fmt: skip
    assert main(["--checkpoint", str(ckpt), "--seeds", "100", "--frames-per-seed", "1"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("1 frames; ground in layer 1")  # z from -2 m, 2 m layers
    assert "prior                          IoU   0.0" in out  # an all-empty prior
    truth = next(line for line in out.splitlines() if line.startswith("truth "))
    assert 0.0 < float(truth.split("IoU")[1].split()[0]) <= 100.0
    assert "model IoU by density threshold:" in out
