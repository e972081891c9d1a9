"""SmolVLA's action expert on the SmolVLM backbone: attention structure, freezing, save/load, CLI."""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

import pytest
import torch

from vlaforge.errors import VlaforgeError
from vlaforge.models.policy import VLAPolicy
from vlaforge.models.presets import get_preset

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "train"))
from train_helpers import FAST_TRAIN, write_dataset  # noqa: E402


def tiny(chunk: int = 6, **backbone) -> object:
    cfg = get_preset("smolvla-tiny")
    bb = dataclasses.replace(cfg.backbone, vision_image_size=32, **backbone)
    return dataclasses.replace(cfg, chunk=chunk, execute_steps=2, image_size=32, backbone=bb)


def _context(policy, batch):
    with torch.no_grad():
        return policy.head.context(policy.encode(batch), 1)


def test_actions_are_causal_and_see_the_prefix(fake_batch):
    """SmolVLA's suffix: action j never sees later noisy actions; every action sees the observation."""
    torch.manual_seed(0)
    policy = VLAPolicy(tiny()).eval()
    batch = fake_batch(policy.config, batch=1, frame=32)
    ctx = _context(policy, batch)
    x, t = torch.randn(1, 6, 4), torch.full((1,), 0.7)
    x2 = x.clone()
    x2[:, 3:] += 1.0
    with torch.no_grad():
        v, v2 = policy.head.velocity(x, t, ctx), policy.head.velocity(x2, t, ctx)
        other = _context(policy, fake_batch(policy.config, batch=1, frame=32, seed=5))
        v3 = policy.head.velocity(x, t, other)
    assert torch.allclose(v[:, :3], v2[:, :3], atol=1e-6) and not torch.allclose(v[:, 3:], v2[:, 3:])
    assert (v3 - v).abs().amax(dim=-1).min() > 1e-6  # each action token reads the prefix


def test_fewer_expert_layers_and_all_cross_attention(fake_batch):
    torch.manual_seed(0)
    policy = VLAPolicy(tiny(num_expert_layers=2, self_attn_every_n_layers=0))
    assert len(policy.head.expert.layers) == 2 and policy.head.layer_for(1) is None
    batch = fake_batch(policy.config, batch=2, frame=32)
    loss, _ = policy.compute_loss(batch)
    assert loss.isfinite()
    with pytest.raises(ValueError, match="must divide"):
        VLAPolicy(tiny(num_expert_layers=3))


def test_freezing_follows_smolvla_defaults():
    expert_only = VLAPolicy(tiny())
    frozen = {n for n, p in expert_only.named_parameters() if not p.requires_grad}
    assert frozen and all(n.startswith("backbone.vlm.") for n in frozen)
    assert expert_only.backbone.state_proj.weight.requires_grad
    vlm_too = VLAPolicy(tiny(train_expert_only=False))
    trainable = {n for n, p in vlm_too.named_parameters() if p.requires_grad}
    assert any(".text_model.layers." in n for n in trainable)
    assert not any(".vision_model." in n for n in trainable)  # freeze_vision stays on


def test_save_load_round_trip_gives_the_same_actions(tmp_path, fake_batch):
    torch.manual_seed(0)
    policy = VLAPolicy(tiny()).eval()
    batch = fake_batch(policy.config, batch=2, frame=48)
    before = policy.sample_actions(batch, torch.Generator().manual_seed(3))
    policy.save_pretrained(tmp_path / "ckpt")
    loaded = VLAPolicy.from_pretrained(tmp_path / "ckpt")
    assert any(k.startswith("backbone.vlm.") for k in loaded.state_dict())
    assert torch.equal(loaded.sample_actions(batch, torch.Generator().manual_seed(3)), before)


def _train(tmp_path) -> Path:
    from vlaforge.cli import main

    data = tmp_path / "data"
    write_dataset(data, episodes=2, length=12, action_dim=4, state_dim=4, seed=3)
    out = tmp_path / "run"
    sets = [a for s in [*FAST_TRAIN, "model.chunk=4", "model.execute_steps=2", "model.backbone.vision_image_size=32"] for a in ("--set", s)]  # fmt: skip
    args = ["train", "--preset", "smolvla-tiny", "--data", str(data), "--steps", "2", "--batch-size", "2"]
    assert main([*args, "--out", str(out), "--device", "cpu", *sets]) == 0
    return out / "checkpoints" / "last"


def test_train_through_the_cli_then_load_and_sample(tmp_path, fake_batch):
    policy = VLAPolicy.from_pretrained(_train(tmp_path))
    assert policy.config.backbone.kind == "smolvlm" and policy.config.chunk == 4
    obs = fake_batch(policy.config, batch=1, frame=32)
    assert policy.sample_actions(obs).shape == (1, 4, 4)


@pytest.mark.slow
def test_trained_checkpoint_evaluates_in_meta_world(tmp_path):
    import json

    from vlaforge.cli import main

    ckpt, out = _train(tmp_path), tmp_path / "eval"
    args = ["eval", "--policy", str(ckpt), "--suite", "reach", "--episodes-per-task", "1", "--workers", "1"]
    assert (
        main(
            [*args, "--envs-per-worker", "1", "--max-steps", "8", "--videos-per-task", "0", "--out", str(out)]
        )
        == 0
    )
    assert (out / "eval_info.json").exists() and json.loads((out / "eval_info.json").read_text())


def test_head_needs_its_backbone():
    from vlaforge.models.heads import HeadConfig, build_head

    with pytest.raises(VlaforgeError, match="backbone.kind"):
        build_head(HeadConfig(kind="smolvla-expert"), 64, 4, 8)


def test_lora_adapts_the_vlm_text_layers_and_merges_to_plain_names(fake_batch):
    from vlaforge.train.lora import add_lora, merged_copy

    torch.manual_seed(0)
    cfg = tiny()
    policy = VLAPolicy(dataclasses.replace(cfg, backbone=dataclasses.replace(cfg.backbone, lora_alpha=4.0)))
    plain = set(policy.state_dict())
    targets = add_lora(policy, rank=2)
    assert "layers.0.self_attn.q_proj" in targets and "layers.3.mlp.down_proj" in targets
    lora = [n for n, p in policy.named_parameters() if "lora_" in n]
    assert lora and all(n.startswith("backbone.vlm.model.text_model.layers.") for n in lora)
    assert (
        policy.backbone.vlm.model.text_model.layers[0].self_attn.q_proj.scaling["default"] == 2.0
    )  # alpha / r
    batch = fake_batch(policy.config, batch=2, frame=32)
    with torch.no_grad():
        for n, p in policy.named_parameters():
            if "lora_B" in n:
                p.add_(0.1)  # a trained adapter (B starts at zero)
        before = policy.eval().sample_actions(batch, torch.Generator().manual_seed(1))
    merged = merged_copy(policy)
    assert set(merged.state_dict()) == plain
    assert torch.allclose(merged.sample_actions(batch, torch.Generator().manual_seed(1)), before, atol=1e-4)


def test_onnx_export_refuses_a_vlm_policy_naming_the_backbone():
    from vlaforge.deploy.export import check_exportable
    from vlaforge.models.policy import VLAPolicy

    with pytest.raises(VlaforgeError, match="not the 'smolvlm' vision-language backbone"):
        check_exportable(VLAPolicy(tiny()))
