"""EfficientNet-Lite0 through the tools: `vlaforge train --set model.image.encoder=...`, LoRA
fine-tuning (the frozen encoder and its BatchNorm statistics do not move), INT8 and ONNX export."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from vlaforge.cli import main
from vlaforge.deploy.export import OnnxPolicy
from vlaforge.deploy.quantize import load_policy
from vlaforge.models.policy import VLAPolicy, read_weights

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "train"))
from train_helpers import FAST_TRAIN, TINY_MODEL, write_dataset  # noqa: E402

EFFNET = ["model.image.encoder=efficientnet-lite0", "model.image.trainable_blocks=1"]
ENCODER = "obs_encoder.stem.stem."


def _sets(overrides: list[str]) -> list[str]:
    return [a for s in overrides for a in ("--set", s)]


@pytest.fixture(scope="module")
def effnet_run(tmp_path_factory):
    """4 training steps of a 32 px EfficientNet-Lite0 policy from the CLI: RUN/checkpoints/last."""
    root = tmp_path_factory.mktemp("vision")
    write_dataset(root / "data", episodes=3, length=20, action_dim=4, state_dim=4, seed=3)
    args = ["train", "--data", str(root / "data"), "--steps", "4", "--batch-size", "4"]
    args += ["--out", str(root / "run"), "--device", "cpu", *_sets(TINY_MODEL + FAST_TRAIN + EFFNET)]
    assert main(args) == 0
    return root


def test_train_cli_builds_trains_and_saves_the_encoder(effnet_run):
    ckpt = effnet_run / "run" / "checkpoints" / "last"
    policy = VLAPolicy.from_pretrained(ckpt)
    assert policy.config.image.encoder == "efficientnet-lite0" and policy.config.image.trainable_blocks == 1
    saved = read_weights(ckpt)
    fresh = VLAPolicy(policy.config).state_dict()  # the ImageNet weights, untrained
    moved = {k.split(".")[5] for k in saved if k.startswith(ENCODER) and not torch.equal(saved[k], fresh[k])}
    assert moved == {"10"}  # only the last unit at stride 16 (block 10) trained, its BN stats too


def test_lora_finetune_leaves_the_frozen_encoder_and_its_statistics(effnet_run, tmp_path, capsys):
    src = effnet_run / "run" / "checkpoints" / "last"
    args = ["finetune", "--from", str(src), "--data", str(effnet_run / "data"), "--lora-rank", "2"]
    args += ["--steps", "2", "--batch-size", "4", "--out", str(tmp_path / "ft"), "--device", "cpu"]
    assert main([*args, *_sets(FAST_TRAIN)]) == 0
    assert "LoRA rank 2" in capsys.readouterr().err
    before, after = read_weights(src), read_weights(tmp_path / "ft" / "checkpoints" / "last")
    encoder = [k for k in before if k.startswith(ENCODER)]
    assert any("running_mean" in k for k in encoder)
    for key in encoder:
        assert torch.equal(before[key], after[key]), key


def test_int8_and_onnx_exports_match_the_policy(effnet_run, tmp_path):
    ckpt, out = effnet_run / "run" / "checkpoints" / "last", tmp_path / "export"
    assert main(["export", "--policy", str(ckpt), "--int8", "--onnx", "--out", str(out)]) == 0
    g = torch.Generator().manual_seed(0)
    batch = {
        "observation.images.corner2": torch.randint(
            0, 256, (1, 2, 32, 32, 3), generator=g, dtype=torch.uint8
        ),
        "observation.state": torch.rand(1, 2, 4, generator=g),
        "observation_is_pad": torch.tensor([[True, False]]),
        "task": ["reach the goal"],
    }
    ref = load_policy(ckpt).sample_actions(batch).numpy()  # [1, H, A]
    int8 = load_policy(out).sample_actions(batch).numpy()
    assert 0 < np.abs(int8 - ref).max() < 0.05  # linears quantized; the convs stay fp32
    embedding = load_file(str(out / "text_embeddings.safetensors"))["reach the goal"][None]
    got = OnnxPolicy(out / "policy.onnx").sample_actions({**batch, "text_embedding": embedding})
    np.testing.assert_allclose(got, ref, atol=1e-4)
