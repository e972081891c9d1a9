"""Data parallel: 2 processes (torchrun, gloo on CPU) reproduce the single-process run.

Both runs see the same global batch (each process keeps its half, augmented exactly as the single
process augments it). The regression head with chunk 1 has no random noise and no chunk padding,
so the per-process mean losses average to the global mean and gradients agree up to float rounding.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import torch
from train_helpers import FAST_TRAIN, TINY_MODEL

from vlaforge.models.policy import read_weights
from vlaforge.train.setup import execute

SETTINGS = (
    TINY_MODEL
    + FAST_TRAIN
    + [
        "model.chunk=1",
        "model.execute_steps=1",
        "train.steps=3",
        "train.batch_size=8",
        "train.ema_decay=0",
        "train.val_fraction=0",
        "train.lr=1e-3",
        "train.seed=3",
        # the budget fraction is all-reduced every step; 3 steps use ~1e-5 of the hour, so the
        # steps, not the clock, set the lr in both runs
        "train.max_minutes=60",
        "train.lr_follows_clock=true",
    ]
)


def losses(run) -> list[float]:
    return [r["loss"] for r in map(json.loads, (run / "log.jsonl").read_text().splitlines()) if "loss" in r]


def test_two_processes_match_one_process(pretrain_data, tmp_path):
    one, two = tmp_path / "one", tmp_path / "two"
    spec = {"command": "train", "preset": None, "data": [str(pretrain_data)], "overrides": SETTINGS}
    assert execute(spec, one, False, device="cpu") == 0

    sets = [a for s in SETTINGS for a in ("--set", s)]
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node",
        "2",
        "-m",
        "vlaforge.cli",
        "train",
        "--data",
        str(pretrain_data),
        "--out",
        str(two),
        "--device",
        "cpu",
        *sets,
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "x2" in proc.stderr  # the run reported 2 processes

    a, b = losses(one), losses(two)
    assert len(a) == len(b) == 3
    assert all(abs(x - y) <= 1e-5 * max(1.0, abs(x)) for x, y in zip(a, b, strict=True)), (a, b)
    wa, wb = read_weights(one / "checkpoints" / "last"), read_weights(two / "checkpoints" / "last")
    assert wa.keys() == wb.keys()
    for key in [k for k in wa if k.endswith("qkv.bias")]:
        # The key bias has an exactly-zero true gradient (softmax ignores a per-query constant), so
        # Adam turns float-rounding noise into +-lr steps; compare only its query and value parts.
        width = wa[key].shape[0] // 3
        wa[key], wb[key] = (torch.cat([w[:width], w[2 * width :]]) for w in (wa[key], wb[key]))
    diffs = {k: float((wa[k].double() - wb[k].double()).abs().max()) for k in wa}
    assert max(diffs.values()) < 1e-5, sorted(diffs.items(), key=lambda kv: -kv[1])[:5]
