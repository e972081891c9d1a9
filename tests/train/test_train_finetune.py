"""`vlaforge finetune`: new robot dims, LoRA through peft (merged on save), frozen globs."""

from __future__ import annotations

import torch
from train_helpers import FAST_TRAIN, TINY_MODEL

from vlaforge.cli import main
from vlaforge.models.policy import VLAPolicy, read_weights
from vlaforge.train.config import FINETUNE_DEFAULTS
from vlaforge.train.distributed import Dist
from vlaforge.train.setup import build_trainer

LORA_TARGETS = (".qkv.", ".proj.", ".mlp.0.", ".mlp.2.")


def test_lora_on_a_new_robot_trains_only_adapters_head_and_new_layers(
    pretrained_ckpt, new_robot_data, tmp_path
):
    spec = {
        "command": "finetune",
        "from": str(pretrained_ckpt),
        "freeze": [],
        "lora_rank": 4,
        "data": [str(new_robot_data)],
        "overrides": list(FINETUNE_DEFAULTS)
        + FAST_TRAIN
        + ["train.steps=3", "train.batch_size=4", "train.lr=1e-2"],
    }
    out = tmp_path / "ft"
    trainer = build_trainer(spec, out, False, Dist())
    before = read_weights(pretrained_ckpt)
    params = dict(trainer.policy.named_parameters())
    plain = {n: n.replace(".base_layer", "") for n in params if "lora_" not in n}  # LoRA wraps the linears
    fresh = {n for n, k in plain.items() if k not in before or before[k].shape != params[n].shape}
    assert "obs_encoder.state.weight" in fresh  # 4-d -> 5-d proprio input
    assert any(n.startswith("head.") for n in fresh)  # 4-d -> 6-d action output
    assert all(params[n].requires_grad for n in fresh)
    trainable = {n for n, p in params.items() if p.requires_grad}
    lora = {n for n in trainable if "lora_" in n}
    assert len(lora) == 2 * 4  # A and B for qkv, proj, mlp.0, mlp.2 of the one block
    assert trainable == lora | {n for n in params if n.startswith("head.")} | fresh
    trainer.fit()

    tuned = VLAPolicy.from_pretrained(out / "checkpoints" / "last")  # a plain policy: adapters merged
    assert (tuned.config.action_dim, tuned.config.state_dim) == (6, 5)
    assert len(tuned.stats[0]["action"]["mean"]) == 6  # the new data's normalization
    after = tuned.state_dict()
    assert not any("lora" in k for k in after)
    changed = {
        k
        for k, v in before.items()
        if k in after and v.shape == after[k].shape and not torch.equal(v, after[k])
    }
    merged = {
        k
        for k in changed
        if k.startswith("trunk.") and k.endswith(".weight") and any(t in k for t in LORA_TARGETS)
    }
    assert merged, "LoRA updates must be merged into the trunk's linear weights"
    frozen_changed = {
        k for k in changed - merged if not k.startswith(("head.", "action_norm.", "state_norm."))
    }
    assert frozen_changed == set(), (
        frozen_changed
    )  # stem, text projection, norms, biases, readouts: untouched


def test_finetune_cli_freezes_globs_and_reports_trainable_count(
    pretrained_ckpt, pretrain_data, tmp_path, capsys
):
    out = tmp_path / "ft"
    sets = [a for s in FAST_TRAIN for a in ("--set", s)]
    args = [
        "finetune",
        "--from",
        str(pretrained_ckpt),
        "--data",
        str(pretrain_data),
        "--freeze",
        "obs_encoder.*",
        "--freeze",
        "trunk.*",
        "--steps",
        "2",
        "--batch-size",
        "4",
        "--lr",
        "1e-2",
        "--out",
        str(out),
        "--device",
        "cpu",
        *sets,
    ]
    assert main(args) == 0
    err = capsys.readouterr().err
    assert "trainable parameters" in err and "every pretrained tensor loaded" in err
    before, after = (
        read_weights(pretrained_ckpt),
        VLAPolicy.from_pretrained(out / "checkpoints" / "last").state_dict(),
    )
    for key, value in before.items():
        if key.startswith(("obs_encoder.", "trunk.")):
            assert torch.equal(value, after[key]), key
    assert any(not torch.equal(before[k], after[k]) for k in before if k.startswith("head."))
    bad = args[: -len(sets) - 2] + ["--out", str(tmp_path / "ft2"), "--device", "cpu"]
    bad[bad.index("trunk.*")] = "trunc.*"
    assert main(bad) == 2
    assert "matches no parameter" in capsys.readouterr().err


def test_separate_embodiment_layers_train_per_dataset_and_finetune_from_the_matched_one(
    pretrain_data, new_robot_data, tmp_path, capsys
):
    """`model.embodiment_layers=separate` on a two-robot mixture: one weight set per dataset; a
    fine-tune on the second robot alone continues that robot's set, not the first's."""
    sets = [a for s in FAST_TRAIN for a in ("--set", s)]
    common = ["--batch-size", "4", "--lr", "1e-2", "--device", "cpu", *sets]
    run = tmp_path / "mix"
    tiny = [a for s in TINY_MODEL for a in ("--set", s)]
    args = ["train", "--data", str(pretrain_data), "--data", str(new_robot_data), "--steps", "3"]
    assert main([*args, "--out", str(run), *tiny, "--set", "model.embodiment_layers=separate", *common]) == 0
    ckpt = run / "checkpoints" / "last"
    mix = VLAPolicy.from_pretrained(ckpt)
    assert (mix.config.embodiment_layers, mix.config.num_embodiments) == ("separate", 2)
    weights = read_weights(ckpt)
    assert tuple(weights["obs_encoder.state.weight"].shape) == (2, 32, 5)  # [E, width, padded S]
    assert not torch.equal(weights["obs_encoder.state.weight"][0], weights["obs_encoder.state.weight"][1])
    capsys.readouterr()

    out = tmp_path / "ft"
    ft = ["finetune", "--from", str(ckpt), "--data", str(new_robot_data), "--steps", "1"]
    assert main([*ft, "--out", str(out), *common[:2], "--lr", "1e-9", *common[4:]]) == 0
    assert "dataset 0 <- embodiment 1" in capsys.readouterr().err
    tuned = read_weights(out / "checkpoints" / "last")
    for key in ("obs_encoder.state.weight", "head.mlp.mlp.out.1.weight", "head.mlp.mlp.out.1.bias"):
        assert tuned[key].shape[0] == 1, key
        torch.testing.assert_close(tuned[key][0], weights[key][1], rtol=0, atol=1e-6)  # lr 1e-9
