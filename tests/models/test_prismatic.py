"""OpenVLA's Prismatic backbone (SigLIP + DINOv2 -> projector -> LM) and its `lm-bins` action tokens."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from vlaforge.errors import VlaforgeError
from vlaforge.models.backbones.prismatic import prompt
from vlaforge.models.policy import VLAPolicy
from vlaforge.models.presets import get_preset


def tiny(**backbone) -> object:
    cfg = get_preset("openvla-prismatic-tiny")
    return dataclasses.replace(cfg, image_size=32, backbone=dataclasses.replace(cfg.backbone, **backbone))


def two_cameras(**backbone) -> object:
    return dataclasses.replace(tiny(**backbone), cameras=("corner2", "gripperPOV"))


def test_prefix_layout_shapes_and_prompt(fake_batch):
    torch.manual_seed(0)
    policy = VLAPolicy(two_cameras()).eval()
    batch = fake_batch(policy.config, batch=2, frame=32)
    out = policy.encode(batch)
    bb = policy.backbone
    k = (32 // 8) ** 2  # patches per camera (SigLIP and DINOv2 fused on the channel axis)
    ids, mask = bb.tokenize(batch["task"], torch.device("cpu"))
    assert out.tokens.shape == (2, 1 + 2 * k + ids.shape[1], bb.width)
    assert out.token_mask.shape == out.tokens.shape[:2] and bool(out.token_mask[:, -1].all())  # left-padded
    first = "".join(bb.tokenizer.convert_ids_to_tokens(ids[0][mask[0]].tolist()))  # characters
    assert (
        first
        == prompt(batch["task"][0])
        == f"In: What action should the robot take to {batch['task'][0].lower()}?\nOut: "
    )
    assert bb.tokenizer.convert_ids_to_tokens([0]) and bb.logits(out).shape == (
        *out.tokens.shape[:2],
        bb.vocab_end,
    )


def test_a_masked_camera_is_padded_out_and_not_seen(fake_batch):
    torch.manual_seed(0)
    policy = VLAPolicy(two_cameras()).eval()
    batch = fake_batch(policy.config, batch=2, frame=32)
    batch["camera_mask"] = torch.tensor([[True, False], [True, True]])
    k = 16
    out = policy.encode(batch)
    assert not out.token_mask[0, 1 + k : 1 + 2 * k].any() and out.token_mask[1, 1 + k : 1 + 2 * k].all()
    other = dict(
        batch,
        **{"observation.images.gripperPOV": torch.randint(0, 255, (2, 1, 32, 32, 3), dtype=torch.uint8)},
    )
    inputs = torch.tensor([[257, 3, 200]] * 2)  # BOS + two action tokens (head ids)
    with torch.no_grad():
        a = policy.head.full_logits(*policy.head._prefix(out), inputs)  # [B, 3, 257]
        b = policy.head.full_logits(*policy.head._prefix(policy.encode(other)), inputs)
    # row 0 masks the second camera: its new frames change nothing; row 1 sees them
    assert torch.allclose(a[0], b[0], atol=1e-5) and not torch.allclose(a[1], b[1], atol=1e-5)


def test_action_tokens_are_the_last_256_lm_ids_and_round_trip():
    torch.manual_seed(0)
    policy = VLAPolicy(tiny())
    head, v = policy.head, policy.backbone.vocab_end
    assert v == policy.backbone.lm.config.vocab_size == len(policy.backbone.tokenizer) + 256
    lm_ids = head.lm_ids
    assert lm_ids[:256].tolist() == list(range(v - 1, v - 257, -1))  # bin b -> V - 1 - b (OpenVLA)
    assert lm_ids[256] == policy.backbone.tokenizer.eos_token_id
    chunk = torch.rand(3, 4, 4) * 2 - 1  # [B, H, A], normalized
    tokens = torch.tensor(head.tokenizer.encode(chunk))  # [B, H*A] head ids
    assert tokens.shape == (3, 16) and bool(((lm_ids[tokens] >= v - 256) & (lm_ids[tokens] < v)).all())
    back = head.tokenizer.decode(tokens.tolist()).actions
    assert (back - chunk).abs().max() <= 1 / 256 + 1e-6


def test_cached_greedy_decoding_matches_recomputing(fake_batch):
    torch.manual_seed(0)
    policy = VLAPolicy(tiny()).eval()
    out = policy.encode(fake_batch(policy.config, batch=2, frame=32))
    cached, full = policy.head.generate(out), policy.head.generate(out, use_cache=False)
    assert cached == full and all(len(s) <= 16 for s in cached)


def test_training_steps_reduce_the_loss_on_a_fixed_batch(fake_batch, stats):
    torch.manual_seed(0)
    policy = VLAPolicy(tiny(), stats=stats).train()
    batch = fake_batch(policy.config, batch=2, frame=32)
    opt = torch.optim.AdamW(policy.parameters(), lr=3e-3)
    losses = []
    for _ in range(20):
        loss, metrics = policy.compute_loss(batch)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0] and {"token_accuracy", "decode_fail_pct"} <= set(metrics)
    assert all(p.grad is not None for p in policy.backbone.siglip.parameters() if p.requires_grad)


def test_save_and_load_give_identical_actions(tmp_path, fake_batch, stats):
    torch.manual_seed(0)
    policy = VLAPolicy(tiny(), stats=stats).eval()
    batch = fake_batch(policy.config, batch=2, frame=32)
    before = policy.sample_actions(batch)
    policy.save_pretrained(tmp_path / "ckpt")
    loaded = VLAPolicy.from_pretrained(tmp_path / "ckpt")
    assert not any(k.startswith("head.") for k in loaded.state_dict())  # the LM is saved once
    assert torch.equal(loaded.sample_actions(batch), before)


@pytest.mark.parametrize(
    ("targets", "prefixes"),
    [
        ("lm", ("backbone.lm.model.",)),
        ("vision", ("backbone.siglip.", "backbone.dino.", "backbone.projector.")),
        ("lm+vision", ("backbone.lm.model.", "backbone.siglip.", "backbone.dino.", "backbone.projector.")),
    ],
)
def test_lora_targets_train_only_adapters_and_merge_to_plain_weights(targets, prefixes, fake_batch, stats):
    from vlaforge.train.lora import add_lora, is_lora_parameter, merged_copy

    torch.manual_seed(0)
    policy = VLAPolicy(tiny(lora_targets=targets), stats=stats)
    plain = set(policy.state_dict())
    add_lora(policy, rank=4)
    for name, p in policy.named_parameters():
        p.requires_grad_(is_lora_parameter(name))  # what finetune does (the head owns no weights)
    lora = {n for n, p in policy.named_parameters() if p.requires_grad}
    assert lora and all(n.startswith(prefixes) and "lora_" in n for n in lora)
    assert {n.split(".lora_")[0].split(".")[1] for n in lora} == {p.split(".")[1] for p in prefixes}
    batch = fake_batch(policy.config, batch=2, frame=32)
    frozen = {n: p.detach().clone() for n, p in policy.named_parameters() if not p.requires_grad}
    opt = torch.optim.SGD([p for p in policy.parameters() if p.requires_grad], lr=0.5)
    for _ in range(2):
        loss, _ = policy.compute_loss(batch)
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert all(torch.equal(p, frozen[n]) for n, p in policy.named_parameters() if n in frozen)
    policy.eval()
    before = policy.sample_actions(batch)
    merged = merged_copy(policy)
    assert set(merged.state_dict()) == plain
    assert torch.equal(merged.sample_actions(batch), before)


def test_smolvla_takes_vision_lora_too():
    from vlaforge.train.lora import add_lora

    cfg = get_preset("smolvla-tiny")
    bb = dataclasses.replace(cfg.backbone, vision_image_size=32, lora_targets="vision")
    policy = VLAPolicy(dataclasses.replace(cfg, image_size=32, backbone=bb))
    add_lora(policy, rank=2)
    lora = [n for n, _ in policy.named_parameters() if "lora_" in n]
    vision = ("backbone.vlm.model.vision_model.", "backbone.vlm.model.connector.")
    assert lora and all(n.startswith(vision) for n in lora)
    assert any(n.startswith(vision[1]) for n in lora)


def test_a_qwen2_lm_builds_trains_and_samples(fake_batch):
    torch.manual_seed(0)
    policy = VLAPolicy(tiny(lm_type="qwen2"))
    assert type(policy.backbone.lm).__name__ == "Qwen2ForCausalLM"
    batch = fake_batch(policy.config, batch=2, frame=32)
    loss, _ = policy.compute_loss(batch)
    loss.backward()
    assert loss.isfinite() and policy.eval().sample_actions(batch).shape == (2, 4, 4)


def test_bad_configs_are_one_line_errors(tmp_path):
    from vlaforge.models.heads import HeadConfig, build_head

    with pytest.raises(VlaforgeError, match='backbone.kind="prismatic"'):
        build_head(HeadConfig(kind="lm-bins"), 64, 4, 8)
    with pytest.raises(VlaforgeError, match="needs backbone.siglip_id and backbone.dino_id"):
        VLAPolicy(tiny(id=str(tmp_path)))
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(VlaforgeError, match=r"^backbone.id .*: missing .*model.safetensors$"):
        VLAPolicy(tiny(id=str(tmp_path), siglip_id=str(tmp_path), dino_id=str(tmp_path)))
    with pytest.raises(VlaforgeError, match="not a local folder and not in the local Hub cache"):
        VLAPolicy(tiny(id="nobody/no-such-llm", siglip_id="a/b", dino_id="c/d"))
    with pytest.raises(VlaforgeError, match='needs normalization="bounds"'):
        VLAPolicy(dataclasses.replace(tiny(), normalization="mean_std"))
    with pytest.raises(VlaforgeError, match="no vision tower"):
        from vlaforge.train.lora import add_lora

        cfg = get_preset("default")
        add_lora(
            VLAPolicy(
                dataclasses.replace(cfg, backbone=dataclasses.replace(cfg.backbone, lora_targets="vision"))
            ),
            2,
        )


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A tiny collected Meta-World dataset and openvla-prismatic-tiny trained 2 steps on it (CLI)."""
    from vlaforge.cli import main

    root = tmp_path_factory.mktemp("prismatic")
    collect = ["collect", "metaworld", "--tasks", "reach", "--episodes-per-task", "2", "--image-size", "64"]
    assert main([*collect, "--workers", "0", "--out", str(root / "data")]) == 0
    sets = [
        a
        for s in ("train.tensorboard=false", "train.val_batches=1", "train.log_every=1")
        for a in ("--set", s)
    ]
    train = ["train", "--preset", "openvla-prismatic-tiny", "--data", str(root / "data"), "--steps", "2"]
    assert main([*train, "--batch-size", "2", "--out", str(root / "run"), "--device", "cpu", *sets]) == 0
    return root, root / "run" / "checkpoints" / "last", sets


def test_cli_trains_on_meta_world_then_evaluates_one_episode(trained):
    import json

    from vlaforge.cli import main

    root, ckpt, _ = trained
    assert VLAPolicy.from_pretrained(ckpt).config.backbone.kind == "prismatic"
    args = ["eval", "--policy", str(ckpt), "--suite", "reach", "--episodes-per-task", "1", "--workers", "1"]
    out = root / "eval"
    assert (
        main(
            [*args, "--envs-per-worker", "1", "--max-steps", "8", "--videos-per-task", "0", "--out", str(out)]
        )
        == 0
    )
    assert json.loads((out / "eval_info.json").read_text())


def test_cli_lora_finetune_prints_trainable_parameters_and_saves_plain_weights(trained, capsys):
    from vlaforge.cli import main

    root, ckpt, sets = trained
    args = [
        "finetune",
        "--from",
        str(ckpt),
        "--data",
        str(root / "data"),
        "--lora-rank",
        "32",
        "--steps",
        "1",
    ]
    targets = ["--set", "model.backbone.lora_targets=lm+vision"]
    assert (
        main([*args, "--batch-size", "2", "--out", str(root / "ft"), "--device", "cpu", *sets, *targets]) == 0
    )
    line = next(ln for ln in capsys.readouterr().err.splitlines() if ln.startswith("fine-tuning:"))
    assert "LoRA rank 32 on the linear layers of the LlamaModel + SiglipVisionModel + Dinov2Model" in line
    trainable, total = (
        int(x.replace(",", "")) for x in line.split("parameters ")[1].split(" (")[0].split(" of ")
    )
    assert 0 < trainable < total
    tuned = VLAPolicy.from_pretrained(root / "ft" / "checkpoints" / "last")
    assert set(tuned.state_dict()) == set(VLAPolicy.from_pretrained(ckpt).state_dict())  # merged on save


def test_loads_towers_and_lm_from_local_folders(tmp_path, fake_batch):
    """`backbone.id` / `siglip_id` / `dino_id` as local folders (what a user's Hub cache holds): a full
    SigLIP checkpoint (text + vision), a DINOv2 and a causal LM with its tokenizer."""
    import json

    from transformers import Dinov2Model, SiglipConfig, SiglipModel

    from vlaforge.models.backbones.prismatic import TINY_SPECIALS, tiny_lm_config, tiny_towers
    from vlaforge.models.backbones.tokenizer import char_tokenizer

    torch.manual_seed(0)
    bb = tiny().backbone
    sig_cfg, dino_cfg = tiny_towers(bb)
    tok = char_tokenizer(TINY_SPECIALS, bos_token="<s>", eos_token="</s>")
    text = dict(
        hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2, vocab_size=len(tok)
    )
    siglip = SiglipModel(SiglipConfig(text_config=text, vision_config=sig_cfg.to_dict()))
    dino = Dinov2Model(dino_cfg)
    from transformers import AutoModelForCausalLM

    lm = AutoModelForCausalLM.from_config(
        tiny_lm_config(bb, len(tok) + 256, tok.bos_token_id, tok.eos_token_id)
    )
    dirs = {name: tmp_path / name for name in ("siglip", "dino", "lm")}
    for name, model in (("siglip", siglip), ("dino", dino), ("lm", lm)):
        model.save_pretrained(dirs[name])
    tok.save_pretrained(dirs["lm"])
    pre = {"rescale_factor": 1 / 255, "image_mean": [0.5] * 3, "image_std": [0.5] * 3}
    (dirs["siglip"] / "preprocessor_config.json").write_text(json.dumps(pre))
    (dirs["dino"] / "preprocessor_config.json").write_text(
        json.dumps({**pre, "crop_size": {"height": 32, "width": 32}})
    )
    policy = VLAPolicy(tiny(id=str(dirs["lm"]), siglip_id=str(dirs["siglip"]), dino_id=str(dirs["dino"])))
    bb_ = policy.backbone
    want = siglip.vision_model.embeddings.patch_embedding.weight
    assert torch.equal(
        bb_.siglip.state_dict()[
            [k for k in bb_.siglip.state_dict() if k.endswith("patch_embedding.weight")][0]
        ],
        want,
    )
    assert torch.equal(
        bb_.dino.embeddings.patch_embeddings.projection.weight,
        dino.embeddings.patch_embeddings.projection.weight,
    )
    assert torch.equal(bb_.lm.get_input_embeddings().weight, lm.get_input_embeddings().weight)
    assert bb_.dino_images.size == 32 and bb_.vocab_end == len(tok) + 256
    batch = fake_batch(policy.config, batch=1, frame=32)
    before = policy.eval().sample_actions(batch)
    assert before.shape == (1, 4, 4)
    policy.save_pretrained(
        tmp_path / "ckpt"
    )  # reloads configs + tokenizer from the folders, weights from here
    assert torch.equal(VLAPolicy.from_pretrained(tmp_path / "ckpt").sample_actions(batch), before)


def test_int8_export_quantizes_the_lm_the_head_decodes_with(trained, fake_batch):
    from vlaforge.cli import main
    from vlaforge.deploy.quantize import load_policy

    root, ckpt, _ = trained
    assert main(["export", "--policy", str(ckpt), "--out", str(root / "int8"), "--int8"]) == 0
    policy = load_policy(root / "int8")
    q_proj = policy.head.lm.model.layers[0].self_attn.q_proj  # the head's LM is the backbone's
    assert "quantized" in type(q_proj).__module__ and policy.head.lm is policy.backbone.lm
    batch = fake_batch(policy.config, batch=1, frame=64)
    assert policy.sample_actions(batch).shape == (1, 4, 4)
