"""pi0 on PaliGemma: the prefix, the Gemma expert's block-causal attention, camera slots, padding,
training, save/load, loading from a folder, gradient checkpointing, bf16 autocast."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch

from vlaforge.errors import VlaforgeError
from vlaforge.models.backbones import PaliGemmaBackbone
from vlaforge.models.backbones.paligemma import clean_prompt, tiny_config
from vlaforge.models.backbones.pi0_expert import suffix_mask
from vlaforge.models.checkpointing import set_grad_checkpointing
from vlaforge.models.policy import VLAPolicy
from vlaforge.models.presets import get_preset


def tiny(chunk: int = 6, cameras: tuple[str, ...] = ("corner2",), **backbone) -> object:
    cfg = get_preset("pi0-paligemma-tiny")
    bb = dataclasses.replace(cfg.backbone, vision_image_size=32, **backbone)
    return dataclasses.replace(cfg, chunk=chunk, execute_steps=2, image_size=32, cameras=cameras, backbone=bb)


def _frames(b: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (b, 1, 32, 32, 3), generator=g, dtype=torch.uint8)  # [B, T, H, W, C]


def _velocity(policy, batch, x, t):
    with torch.no_grad():
        return policy.head.velocity(x, t, policy.head.context(policy.encode(batch), 1))  # [B, H, A]


def test_prefix_shapes_kv_per_gemma_layer_state_and_logits():
    torch.manual_seed(0)
    bb = PaliGemmaBackbone(tiny().backbone)
    state = torch.randn(2, 1, 4)
    out = bb.encode([_frames(2)], ["reach", "open_the drawer"], state)
    images, text = (32 // 8) ** 2, len("open the drawer\n")  # 16 SigLIP patches, no pixel shuffle
    assert out.tokens.shape == (2, images + text, 64) and out.readouts.shape == (2, 1, 64)
    assert out.token_mask[0].sum() == images + len("reach\n") and out.token_mask[1].all()
    assert len(out.layer_kv) == 4  # every Gemma layer
    assert all(k.shape == v.shape == (2, images + text, 1, 16) for k, v in out.layer_kv)  # 1 K/V head
    assert torch.equal(out.state, state[:, -1])  # pi0: the state is the expert's token, not the prefix's
    assert bb.logits(out).shape == (2, images + text, len(bb.tokenizer))
    assert clean_prompt("  pick_up the\nblock ") == "pick up the block\n"


def test_suffix_mask_is_pi0s_block_causal_mask():
    pad = torch.tensor([[True, True, False]])  # [B, P]: two real prefix tokens, one padded
    m = suffix_mask(pad, num_state=1, horizon=3)[0]  # [S, P+S]
    assert m.shape == (4, 7)
    assert m[:, :3].tolist() == [[True, True, False]] * 4  # every suffix token sees the real prefix
    assert m[0, 3:].tolist() == [True, False, False, False]  # the state sees only itself
    assert m[1:, 3:].all()  # actions see the state and every action (bidirectional among actions)
    assert suffix_mask(pad, num_state=0, horizon=2)[0, :, 3:].all()


def test_actions_see_each_other_the_state_and_the_observation(fake_batch):
    torch.manual_seed(0)
    policy = VLAPolicy(tiny()).eval()
    batch = fake_batch(policy.config, batch=1, frame=32)
    x, t = torch.randn(1, 6, 4), torch.full((1,), 0.7)
    v = _velocity(policy, batch, x, t)
    x2 = x.clone()
    x2[:, 3:] += 1.0
    assert not torch.allclose(v[:, :3], _velocity(policy, batch, x2, t)[:, :3])  # not causal among actions
    moved = dict(batch, **{"observation.state": batch["observation.state"] + 1.0})
    assert (_velocity(policy, moved, x, t) - v).abs().amax(dim=-1).min() > 1e-6  # each action reads the state
    other = fake_batch(policy.config, batch=1, frame=32, seed=5)
    other["observation.state"] = batch["observation.state"]
    assert (_velocity(policy, other, x, t) - v).abs().amax(dim=-1).min() > 1e-6  # ... and the images


def test_a_masked_camera_slot_and_instruction_padding_change_nothing(fake_batch):
    torch.manual_seed(0)
    policy = VLAPolicy(tiny(cameras=("corner2", "wrist"))).eval()
    batch = fake_batch(policy.config, batch=1, frame=32)
    batch["camera_mask"] = torch.tensor([[True, False]])
    x, t = torch.randn(1, 6, 4), torch.full((1,), 0.4)
    v = _velocity(policy, batch, x, t)
    repainted = dict(batch, **{"observation.images.wrist": _frames(1, seed=9)})
    assert torch.allclose(_velocity(policy, repainted, x, t), v, atol=1e-6)
    shown = dict(repainted, camera_mask=torch.tensor([[True, True]]))
    assert not torch.allclose(_velocity(policy, shown, x, t), v, atol=1e-4)
    # A longer neighbour pads this row's instruction: its actions stay the same.
    pair = fake_batch(policy.config, batch=2, frame=32)
    for key in ("observation.images.corner2", "observation.images.wrist", "observation.state"):
        pair[key][0] = batch[key][0]
    pair["task"] = [batch["task"][0], batch["task"][0] + " and then something much longer"]
    pair["camera_mask"] = torch.tensor([[True, False], [True, True]])
    both = _velocity(policy, pair, x.repeat(2, 1, 1), t.repeat(2))
    assert torch.allclose(both[0], v[0], atol=1e-5)


def test_loss_decreases_on_a_fixed_batch(fake_batch):
    torch.manual_seed(0)
    policy = VLAPolicy(tiny())
    batch = fake_batch(policy.config, batch=4, frame=32)
    opt = torch.optim.Adam([p for p in policy.parameters() if p.requires_grad], lr=3e-3)
    losses = []
    for step in range(30):
        torch.manual_seed(step % 2)  # the same noise and times every other step: a fixed objective
        loss, _ = policy.compute_loss(batch)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert sum(losses[-4:]) / 4 < 0.6 * sum(losses[:4]) / 4


def test_save_load_round_trip_gives_the_same_actions(tmp_path, fake_batch):
    torch.manual_seed(0)
    policy = VLAPolicy(tiny()).eval()
    batch = fake_batch(policy.config, batch=2, frame=48)
    before = policy.sample_actions(batch, torch.Generator().manual_seed(3))
    assert before.shape == (2, 6, 4)
    policy.save_pretrained(tmp_path / "ckpt")
    loaded = VLAPolicy.from_pretrained(tmp_path / "ckpt")
    names = set(loaded.state_dict())
    assert any(k.startswith("backbone.vlm.") for k in names) and "head.state_proj.weight" in names
    assert torch.equal(loaded.sample_actions(batch, torch.Generator().manual_seed(3)), before)


def test_backbone_id_loads_a_local_folder_and_names_missing_files(tmp_path):
    from transformers import PaliGemmaForConditionalGeneration

    from vlaforge.models.backbones.tokenizer import char_tokenizer

    bb, folder = tiny().backbone, tmp_path / "paligemma"
    torch.manual_seed(1)
    model = PaliGemmaForConditionalGeneration(tiny_config(bb, len(char_tokenizer())))
    model.save_pretrained(folder)
    char_tokenizer().save_pretrained(folder)
    with pytest.raises(VlaforgeError, match="preprocessor_config.json"):
        PaliGemmaBackbone(dataclasses.replace(bb, id=str(folder)))
    (folder / "preprocessor_config.json").write_text(
        json.dumps({"image_mean": [0.5] * 3, "image_std": [0.5] * 3})
    )
    loaded = PaliGemmaBackbone(dataclasses.replace(bb, id=str(folder)))
    w = "model.language_model.layers.0.self_attn.q_proj.weight"
    assert torch.equal(loaded.vlm.state_dict()[w], model.state_dict()[w])
    with pytest.raises(VlaforgeError, match="not a local folder and not in the local Hub cache"):
        PaliGemmaBackbone(dataclasses.replace(bb, id=str(tmp_path / "absent")))


def test_head_and_backbone_go_together():
    from vlaforge.models.heads import HeadConfig, build_head

    with pytest.raises(VlaforgeError, match='backbone.kind="paligemma"'):
        build_head(HeadConfig(kind="pi0-expert"), 64, 4, 8)
    cfg = tiny()
    with pytest.raises(VlaforgeError, match="pi0-expert"):
        VLAPolicy(dataclasses.replace(cfg, head=dataclasses.replace(cfg.head, kind="flow")))
    with pytest.raises(VlaforgeError, match="num_expert_layers"):
        VLAPolicy(dataclasses.replace(cfg, backbone=dataclasses.replace(cfg.backbone, num_expert_layers=2)))


def _loss_and_grads(policy, batch):
    torch.manual_seed(7)
    policy.zero_grad()
    loss, _ = policy.compute_loss(batch)
    loss.backward()
    return loss.detach(), {n: p.grad.clone() for n, p in policy.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("preset", ["pi0-paligemma-tiny", "trunk"])
def test_grad_checkpointing_gives_the_same_loss_and_gradients(preset, fake_batch, tiny_config):
    torch.manual_seed(0)
    policy = VLAPolicy(tiny() if preset != "trunk" else tiny_config("flow-expert")).train()
    batch = fake_batch(policy.config, batch=2, frame=32 if preset != "trunk" else None)
    loss, grads = _loss_and_grads(policy, batch)
    assert set_grad_checkpointing(policy) == (2 if preset != "trunk" else 1)  # backbone + expert; the trunk
    saved = []
    with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(t.numel()) or t, lambda t: t):
        loss_ckpt, grads_ckpt = _loss_and_grads(policy, batch)
    set_grad_checkpointing(policy, False)
    plain = []
    with torch.autograd.graph.saved_tensors_hooks(lambda t: plain.append(t.numel()) or t, lambda t: t):
        _loss_and_grads(policy, batch)
    assert torch.allclose(loss_ckpt, loss) and set(grads_ckpt) == set(grads) and len(grads) > 10
    assert all(torch.allclose(grads_ckpt[n], grads[n], atol=1e-6, rtol=1e-4) for n in grads)
    assert sum(saved) < 0.8 * sum(plain)  # the layers' activations were not kept


def test_bf16_autocast_keeps_padded_rows_finite(fake_batch):
    """Under bf16 autocast (train.bf16 on CUDA; CPU autocast here) the masked float32 scores must
    not become -inf: a padded instruction token's fully masked row would turn into NaN."""
    torch.manual_seed(0)
    policy = VLAPolicy(tiny())
    batch = fake_batch(policy.config, batch=2, frame=32)
    batch["task"] = ["reach", "reach the goal far away"]  # the first row has padded text tokens
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss, _ = policy.compute_loss(batch)
    loss.backward()
    assert loss.isfinite() and all(p.grad.isfinite().all() for p in policy.parameters() if p.grad is not None)
