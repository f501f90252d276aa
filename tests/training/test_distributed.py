"""The same train command under torchrun: two CPU processes with DistributedDataParallel (gloo)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[2]


def test_two_process_torchrun_on_cpu(shapes, tmp_path):
    out = tmp_path / "ddp"
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m", "segcore",
               "train", "--model", "unet", "--depth", "2", "--width", "4", "--data", str(shapes), "--out", str(out),
               "--epochs", "2", "--batch-size", "2", "--device", "cpu", "--log-every", "1", "--no-progress",
               # validating mid-epoch on rank 0 while rank 1 waits at the barrier, not in a gradient all-reduce
               "--val-every", "1", "--val-images", "2"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300, env=env)
    assert result.returncode == 0, result.stderr[-2000:]
    manifest = json.loads((out / "run.json").read_text())
    assert manifest["world_size"] == 2 and manifest["status"] == "finished"
    # 8 images split over 2 processes at batch 2: 2 steps an epoch, each step seeing 4 images
    assert manifest["iterations_done"] == 4
    rows = (out / "validation.csv").read_text().splitlines()
    assert [int(r.split(",")[1]) for r in rows[1:]] == [1, 2, 3, 4]
    assert torch.load(out / "checkpoint.pt", weights_only=True)["state_dict"]
