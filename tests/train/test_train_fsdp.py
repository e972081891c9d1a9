"""Fully sharded data parallel (train.fsdp=true): 2 torchrun processes (gloo on CPU, torch's FSDP2).

1. Our trunk with the regression head (chunk 1: no noise, no padding) reproduces the single-process
   run, as data parallel does (test_train_ddp.py): losses and weights agree up to float rounding.
2. pi0 on the tiny PaliGemma trains 2 steps sharded; its checkpoint is an ordinary full state dict
   that loads in one process and samples the same actions as the same weights loaded by hand.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch
from train_helpers import FAST_TRAIN, TINY_MODEL

from vlaforge.errors import VlaforgeError
from vlaforge.models.policy import VLAPolicy, read_weights
from vlaforge.train.config import TrainConfig, validate
from vlaforge.train.setup import execute

COMMON = [*FAST_TRAIN, "train.ema_decay=0", "train.lr=1e-3", "train.seed=3"]


def losses(run) -> list[float]:
    return [r["loss"] for r in map(json.loads, (run / "log.jsonl").read_text().splitlines()) if "loss" in r]


def torchrun(args: list[str], settings: list[str]) -> subprocess.CompletedProcess:
    sets = [a for s in settings for a in ("--set", s)]
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "vlaforge.cli", *args, "--device", "cpu", *sets]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "x2" in proc.stderr  # the run reported 2 processes
    return proc


def test_sharded_trunk_matches_one_process(pretrain_data, tmp_path):
    settings = [*TINY_MODEL, *COMMON, "model.chunk=1", "model.execute_steps=1", "train.steps=3",
                "train.batch_size=8", "train.val_fraction=0"]  # fmt: skip
    one, two = tmp_path / "one", tmp_path / "two"
    spec = {"command": "train", "preset": None, "data": [str(pretrain_data)], "overrides": settings}
    assert execute(spec, one, False, device="cpu") == 0
    torchrun(["train", "--data", str(pretrain_data), "--out", str(two)], [*settings, "train.fsdp=true"])
    a, b = losses(one), losses(two)
    assert len(a) == len(b) == 3 and all(
        abs(x - y) <= 1e-5 * max(1.0, abs(x)) for x, y in zip(a, b, strict=True)
    ), (a, b)
    wa, wb = read_weights(one / "checkpoints" / "last"), read_weights(two / "checkpoints" / "last")
    assert wa.keys() == wb.keys() and all(wa[k].shape == wb[k].shape for k in wa)  # full tensors, not shards
    for key in [k for k in wa if k.endswith("qkv.bias")]:  # see test_train_ddp.py: the key bias is noise
        width = wa[key].shape[0] // 3
        wa[key], wb[key] = (torch.cat([w[:width], w[2 * width :]]) for w in (wa[key], wb[key]))
    diffs = {k: float((wa[k].double() - wb[k].double()).abs().max()) for k in wa}
    assert max(diffs.values()) < 1e-5, sorted(diffs.items(), key=lambda kv: -kv[1])[:5]


def test_sharded_pi0_paligemma_checkpoint_loads_in_one_process(pretrain_data, tmp_path):
    settings = [*COMMON, "model.image_size=32", "model.backbone.vision_image_size=32", "model.chunk=4",
                "model.execute_steps=2", "train.steps=2", "train.batch_size=4"]  # fmt: skip
    run = tmp_path / "pi0"
    args = ["train", "--preset", "pi0-paligemma-tiny", "--data", str(pretrain_data), "--out", str(run)]
    torchrun(args, [*settings, "train.fsdp=true"])
    assert len(losses(run)) == 2
    ckpt = run / "checkpoints" / "last"
    loaded = VLAPolicy.from_pretrained(ckpt).eval()
    weights = read_weights(ckpt)
    fresh = VLAPolicy(loaded.config, stats=loaded.stats, metadata=loaded.metadata)
    assert {k: v.shape for k, v in fresh.state_dict().items()} == {k: v.shape for k, v in weights.items()}
    fresh.load_state_dict(weights)
    obs = {"observation.images.corner2": torch.zeros(1, 1, 32, 32, 3, dtype=torch.uint8),
           "observation.state": torch.zeros(1, 1, 4), "task": "reach the goal"}  # fmt: skip
    a = loaded.sample_actions(obs, torch.Generator().manual_seed(0))
    b = fresh.eval().sample_actions(obs, torch.Generator().manual_seed(0))
    assert a.shape == (1, 4, 4) and a.isfinite().all() and torch.equal(a, b)
    # resume the sharded run from its checkpoint (full state dicts, sharded again on each process)
    torchrun(["train", "--resume", str(run), "--steps", "3"], [])
    assert len(losses(run)) == 3


def test_fsdp_needs_ema_off():
    with pytest.raises(VlaforgeError, match="train.ema_decay=0"):
        validate(TrainConfig(fsdp=True))
