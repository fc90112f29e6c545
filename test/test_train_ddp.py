"""DDP with gloo on CPU: 2 processes under torchrun, identical replicas afterwards."""

import os
import subprocess
import sys
from pathlib import Path

import torch


def test_two_process_gloo_replicas_identical(tmp_path):
    env = dict(os.environ, OMP_NUM_THREADS="1")
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node=2",
        str(Path(__file__).parent / "ddp_worker.py"),
        str(tmp_path),
    ]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    r0 = torch.load(tmp_path / "rank0.pt", weights_only=True)
    r1 = torch.load(tmp_path / "rank1.pt", weights_only=True)
    assert r0["world_size"] == r1["world_size"] == 2
    # In an epoch (4 frames = 2 steps per rank) the ranks train on different frames
    # (DistributedSampler shards the data) ...
    assert len(r0["seen"]) == len(r1["seen"]) == 3
    assert set(r0["seen"][:2]).isdisjoint(r1["seen"][:2])
    # ... yet hold identical weights, which moved away from rank 0's initialisation.
    changed = False
    for k, v in r0["state"].items():
        assert torch.equal(v, r1["state"][k]), k
        changed |= not torch.equal(v, r0["init"][k])
    assert changed
    # Logged losses are reduced across ranks, so both ranks report the same values.
    assert r0["history"] == r1["history"]
    assert (tmp_path / "run" / "model.pt").exists()
