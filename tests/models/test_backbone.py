"""The `Backbone` interface: the trunk adapter (no behaviour change) and the SmolVLM backbone."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch

from vlaforge.errors import VlaforgeError
from vlaforge.models.backbones import BackboneOutput, SmolVLMBackbone, TrunkBackbone
from vlaforge.models.backbones.smolvlm import resize_with_pad
from vlaforge.models.config import BackboneConfig
from vlaforge.models.policy import VLAPolicy
from vlaforge.models.presets import get_preset

TINY_VLM = BackboneConfig(kind="smolvlm", text_layers=3, num_vlm_layers=2, vision_image_size=32)


def _frames(b: int, h: int = 32, w: int = 32, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (b, 1, h, w, 3), generator=g, dtype=torch.uint8)  # [B, T, H, W, C]


def test_trunk_adapter_keeps_tensor_names_and_outputs(tiny_config, fake_batch):
    torch.manual_seed(0)
    policy = VLAPolicy(tiny_config("flow-expert")).eval()
    assert isinstance(policy.backbone, TrunkBackbone)
    names = list(policy.state_dict())
    assert not any(n.startswith("backbone.") for n in names) and any(n.startswith("trunk.") for n in names)
    batch = fake_batch(policy.config)
    with torch.no_grad():
        out = policy.encode(batch)
        task = policy.task_encoder(batch["task"], None)
        obs = policy.obs_encoder(
            [batch["observation.images.corner2"]], policy._state(batch, None, slice(-2, None), policy.device)
        )
        direct = policy.trunk(task, obs, batch["observation_is_pad"])
    assert torch.equal(out.readouts, direct.readouts) and torch.equal(out.tokens, direct.tokens)
    assert out.layer_kv is None and policy.backbone.logits(out) is None


def test_smolvlm_prefix_shapes_kv_per_layer_and_logits():
    torch.manual_seed(0)
    bb = SmolVLMBackbone(TINY_VLM, state_dim=4)
    out = bb.encode([_frames(2)], ["reach", "open the drawer"], torch.randn(2, 1, 4))
    assert isinstance(out, BackboneOutput)
    images = (32 // 8 // 2) ** 2  # 4 tokens per image after the pixel shuffle
    text = len("open the drawer\n")
    assert out.tokens.shape == (2, images + text + 1, 64) and out.readouts.shape == (2, 1, 64)
    assert out.token_mask[0].sum() == images + len("reach\n") + 1 and out.token_mask[1].all()
    assert len(out.layer_kv) == 2  # the top text layer is skipped (num_vlm_layers)
    assert all(k.shape == v.shape == (2, out.tokens.shape[1], 2, 16) for k, v in out.layer_kv)
    assert bb.logits(out).shape == (2, out.tokens.shape[1], len(bb.tokenizer))


def test_smolvlm_blocks_state_is_unseen_and_padding_changes_nothing():
    """Images and text never attend to the state token; a longer neighbour's padding changes nothing."""
    torch.manual_seed(0)
    bb = SmolVLMBackbone(TINY_VLM, state_dim=4).eval()
    frames = _frames(1)
    with torch.no_grad():
        a = bb.encode([frames], ["push"], torch.zeros(1, 1, 4))
        b = bb.encode([frames], ["push"], torch.ones(1, 1, 4))
        padded = bb.encode(
            [frames.repeat(2, 1, 1, 1, 1)], ["push", "push the puck to the goal"], torch.zeros(2, 1, 4)
        )
    n = a.tokens.shape[1]
    assert torch.allclose(a.tokens[:, :-1], b.tokens[:, :-1]) and not torch.allclose(
        a.tokens[:, -1], b.tokens[:, -1]
    )
    real = padded.token_mask[0]
    assert torch.allclose(padded.tokens[0][real][:-1], a.tokens[0][: n - 1], atol=1e-5)
    for (k0, _), (k1, _) in zip(a.layer_kv, padded.layer_kv, strict=True):
        assert torch.allclose(k1[0][real], k0[0], atol=1e-5)


def test_image_preprocessing_keeps_aspect_and_pads_left_top():
    x = torch.ones(1, 3, 16, 32)  # wide frame
    out = resize_with_pad(x, 32)
    assert out.shape == (1, 3, 32, 32)
    assert (out[:, :, :16] == 0).all() and (out[:, :, 16:] == 1).all()  # padding on top
    bb = SmolVLMBackbone(TINY_VLM, state_dim=0)
    pixels = bb.images(torch.full((1, 16, 32, 3), 255, dtype=torch.uint8))
    assert torch.allclose(pixels[:, :, 16:], torch.ones(1)) and torch.allclose(
        pixels[:, :, :16], -torch.ones(1)
    )


def test_backbone_id_loads_a_local_folder_and_names_missing_files(tmp_path):
    from transformers import SmolVLMForConditionalGeneration

    from vlaforge.models.backbones.smolvlm import tiny_config as vlm_tiny_config
    from vlaforge.models.backbones.tokenizer import char_tokenizer

    folder = tmp_path / "vlm"
    torch.manual_seed(1)
    model = SmolVLMForConditionalGeneration(vlm_tiny_config(TINY_VLM, len(char_tokenizer())))
    model.save_pretrained(folder)
    char_tokenizer().save_pretrained(folder)
    with pytest.raises(VlaforgeError, match="preprocessor_config.json"):
        SmolVLMBackbone(dataclasses.replace(TINY_VLM, id=str(folder)), state_dim=4)
    (folder / "preprocessor_config.json").write_text(
        json.dumps({"image_mean": [0.5] * 3, "image_std": [0.25] * 3})
    )
    bb = SmolVLMBackbone(dataclasses.replace(TINY_VLM, id=str(folder)), state_dim=4)
    w = "model.text_model.layers.0.self_attn.q_proj.weight"
    assert torch.equal(bb.vlm.state_dict()[w], model.state_dict()[w])
    assert torch.allclose(bb.images.std, torch.full((3, 1, 1), 0.25))
    with pytest.raises(VlaforgeError, match="not a local folder and not in the local Hub cache"):
        SmolVLMBackbone(dataclasses.replace(TINY_VLM, id=str(tmp_path / "absent")), state_dim=4)


def test_backbone_config_validation():
    cfg = get_preset("smolvla-tiny")
    with pytest.raises(VlaforgeError, match="smolvla-expert"):
        VLAPolicy(dataclasses.replace(cfg, head=dataclasses.replace(cfg.head, kind="flow")))
    with pytest.raises(VlaforgeError, match="num_vlm_layers"):
        VLAPolicy(dataclasses.replace(cfg, backbone=dataclasses.replace(cfg.backbone, num_vlm_layers=9)))
    with pytest.raises(VlaforgeError, match="scale_factor"):
        VLAPolicy(dataclasses.replace(cfg, backbone=dataclasses.replace(cfg.backbone, scale_factor=3)))
