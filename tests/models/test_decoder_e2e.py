"""pi0-fast end to end on real Meta-World: collect, `vlaforge train --preset pi0-fast` (tiny
overrides; the FAST tokenizer is fitted on the training split), `vlaforge tokenizer fit`, then the
checkpoint alone serves over the websocket protocol and evaluates."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

from vlaforge.cli import main
from vlaforge.models.tokenizers import TOKENIZER_KEY, load_tokenizer

TINY = [
    "--set", "model.image_size=32", "--set", "model.image.stem_channels=[8,8]", "--set", "model.image.patch_size=8",
    "--set", "model.image.norm_groups=4", "--set", "model.trunk.width=32", "--set", "model.trunk.depth=1",
    "--set", "model.trunk.heads=2", "--set", "model.head.decoder_depth=1", "--set", "model.head.decoder_heads=2",
    "--set", "model.head.fast_vocab=300",
    "--set", "train.tensorboard=false", "--set", "train.log_every=1", "--set", "train.warmup_steps=2",
    "--set", "train.val_batches=1",
]  # fmt: skip


@pytest.fixture(scope="module")
def reach_data(tmp_path_factory):
    from vlaforge.data.collect import CollectConfig, collect

    out = tmp_path_factory.mktemp("mw") / "reach"
    collect(CollectConfig(tasks="reach", out=str(out), episodes_per_task=3, image_size=32, workers=0))
    return out


@pytest.fixture(scope="module")
def run_dir(reach_data, tmp_path_factory):
    run = tmp_path_factory.mktemp("runs") / "pi0fast"
    argv = ["train", "--preset", "pi0-fast", "--data", str(reach_data), "--steps", "6", "--batch-size", "8",
            "--device", "cpu", "--out", str(run), *TINY]  # fmt: skip
    assert main(argv) == 0
    return run


def test_training_fits_the_tokenizer_logs_failures_and_the_checkpoint_carries_it(
    run_dir, reach_data, tmp_path
):
    records = [json.loads(line) for line in (run_dir / "log.jsonl").read_text().splitlines()]
    steps = [r for r in records if "loss" in r]
    assert steps and all(0.0 <= r["decode_fail_pct"] <= 100.0 and r["tokens_per_chunk"] > 0 for r in steps)
    meta = json.loads((run_dir / "checkpoints" / "last" / "metadata.json").read_text())
    saved = meta[TOKENIZER_KEY]
    assert saved["kind"] == "fast" and saved["fitted"] and saved["horizon"] == 10
    # `vlaforge tokenizer fit` with the same chunk, split and settings fits the same tokenizer
    out = tmp_path / "fast.json"
    argv = ["tokenizer", "fit", "--data", str(reach_data), "--vocab", "300", "--out", str(out)]
    assert main(argv) == 0
    assert load_tokenizer(out).to_dict() == saved
    assert main(["tokenizer", "fit", "--out", str(out)]) == 2  # no --data: one-line error


def test_the_checkpoint_serves(run_dir):
    from openpi_client.websocket_client_policy import WebsocketClientPolicy

    from vlaforge.serve.runtime import load_runtime
    from vlaforge.serve.server import PolicyServer, ServerConfig

    runtime = load_runtime(run_dir / "checkpoints" / "last")
    with PolicyServer(runtime, ServerConfig(port=0)) as srv:
        client = WebsocketClientPolicy("127.0.0.1", srv.port)
        reply = client.infer({"observation.images.corner2": np.zeros((32, 32, 3), np.uint8),
                              "observation.state": np.zeros(4, np.float32), "prompt": "reach the goal"})  # fmt: skip
        assert reply["actions"].shape == (10, 4) and np.isfinite(reply["actions"]).all()
        client._ws.close()
    assert runtime.policy.head.decode_stats["chunks"] >= 1


def test_the_checkpoint_evaluates(run_dir, tmp_path):
    from vlaforge.eval.command import run
    from vlaforge.eval.config import EvalConfig

    cfg = EvalConfig(policy=str(run_dir / "checkpoints" / "last"), suite="reach-v3", out=str(tmp_path / "E"),
                     episodes_per_task=1, max_steps=15, workers=1, videos_per_task=0)  # fmt: skip
    assert run(cfg) == 0
    info = json.loads((tmp_path / "E" / "eval_info.json").read_text())
    assert info["per_task"]["reach-v3"]["episodes"] == 1
    assert info["decode_stats"]["chunks"] >= 3  # 15 steps, 5 executed per chunk: in eval_info.json too
    # Decode failures in evaluation: the head counts every decoded chunk and every repaired one.
    from vlaforge.envs.registry import get_simulator
    from vlaforge.eval.policies import resolve_policy
    from vlaforge.eval.runner import run_evaluation

    cfg = dataclasses.replace(cfg, out=str(tmp_path / "E2"), max_steps=10)
    policy = resolve_policy(cfg, get_simulator("metaworld"))
    run_evaluation(policy, ["reach-v3"], cfg)
    stats = policy.policy.head.decode_stats
    assert stats["chunks"] >= 2 and 0 <= stats["failures"] <= stats["chunks"]  # 10 steps, 5 per chunk
