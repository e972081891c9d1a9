"""pi0-paligemma-tiny end to end on real Meta-World: collect, `vlaforge train --preset
pi0-paligemma-tiny` (a few steps, 32 px), then the checkpoint alone evaluates an episode and serves
over the openpi websocket protocol."""

from __future__ import annotations

import json

import numpy as np
import pytest

from vlaforge.cli import main

TINY = [
    "--set", "model.image_size=32", "--set", "model.backbone.vision_image_size=32", "--set", "model.chunk=10",
    "--set", "train.tensorboard=false", "--set", "train.log_every=1", "--set", "train.warmup_steps=2",
    "--set", "train.val_batches=1", "--set", "train.grad_checkpointing=true",
]  # fmt: skip


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    from vlaforge.data.collect import CollectConfig, collect

    data = tmp_path_factory.mktemp("mw") / "reach"
    collect(CollectConfig(tasks="reach", out=str(data), episodes_per_task=2, image_size=32, workers=0))
    run = tmp_path_factory.mktemp("runs") / "pi0"
    argv = ["train", "--preset", "pi0-paligemma-tiny", "--data", str(data), "--steps", "3", "--batch-size", "4",
            "--device", "cpu", "--out", str(run), *TINY]  # fmt: skip
    assert main(argv) == 0
    return run


def test_the_trained_checkpoint_evaluates_an_episode(run_dir, tmp_path):
    records = [json.loads(line) for line in (run_dir / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records if "loss" in r][-1] == 3
    argv = ["eval", "--policy", str(run_dir / "checkpoints" / "last"), "--suite", "reach-v3",
            "--episodes-per-task", "1", "--max-steps", "12", "--workers", "1", "--videos-per-task", "0",
            "--out", str(tmp_path / "E")]  # fmt: skip
    assert main(argv) == 0
    info = json.loads((tmp_path / "E" / "eval_info.json").read_text())
    assert info["per_task"]["reach-v3"]["episodes"] == 1


def test_the_checkpoint_serves(run_dir):
    from openpi_client.websocket_client_policy import WebsocketClientPolicy

    from vlaforge.serve.runtime import load_runtime
    from vlaforge.serve.server import PolicyServer, ServerConfig

    runtime = load_runtime(run_dir / "checkpoints" / "last")
    assert runtime.policy.config.backbone.kind == "paligemma"
    with PolicyServer(runtime, ServerConfig(port=0)) as srv:
        client = WebsocketClientPolicy("127.0.0.1", srv.port)
        reply = client.infer({"observation.images.corner2": np.zeros((32, 32, 3), np.uint8),
                              "observation.state": np.zeros(4, np.float32), "prompt": "reach the goal"})  # fmt: skip
        assert reply["actions"].shape == (10, 4) and np.isfinite(reply["actions"]).all()
        client._ws.close()
