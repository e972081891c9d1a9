"""The autoregressive decoder head (ar-fast, ar-bins): KV cache == recomputation, EOS and lengths,
overfitting per new preset, save/load with the tokenizer, INT8 and the ONNX refusal."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from heads_helpers import D, one_thread  # noqa: F401  (autouse fixture)

from vlaforge.errors import VlaforgeError
from vlaforge.models.heads import HeadConfig, build_head
from vlaforge.models.heads.base import TrunkOutput
from vlaforge.models.heads.decoder import prefix_lm_mask
from vlaforge.models.policy import VLAPolicy
from vlaforge.models.presets import get_preset
from vlaforge.models.tokenizers import TOKENIZER_KEY
from vlaforge.models.tokenizers.fast import FastTokenizer

H, A = 4, 3


def _trunk(b: int = 3, n: int = 7, seed: int = 0, padded: bool = True) -> TrunkOutput:
    g = torch.Generator().manual_seed(seed)
    mask = torch.ones(b, n, dtype=torch.bool)
    if padded:
        mask[0, 2:4] = False  # a padded history step of row 0
    return TrunkOutput(readouts=torch.randn(b, 1, D, generator=g), tokens=torch.randn(b, n, D, generator=g),
                       token_mask=mask)  # fmt: skip


def _head(kind: str, **fields):
    torch.manual_seed(0)
    cfg = HeadConfig(kind=kind, decoder_depth=2, decoder_heads=4, fast_vocab=300, **fields)
    return build_head(cfg, D, A, H).eval()


def test_prefix_lm_mask():
    m = prefix_lm_mask(2, 3)
    assert m[:2, :2].all() and not m[:2, 2:].any()  # the prefix never sees action tokens
    assert m[2:, :2].all() and torch.equal(m[2:, 2:], torch.ones(3, 3, dtype=torch.bool).tril())


@pytest.mark.parametrize("kind", ["ar-bins", "ar-fast"])
def test_kv_cache_decoding_equals_full_recomputation(kind):
    head, trunk = _head(kind), _trunk()
    with torch.no_grad():
        prefix, real = head._prefix(trunk)
        tokens = torch.randint(
            0, head.tokenizer.vocab_size, (3, 6), generator=torch.Generator().manual_seed(1)
        )
        bos = torch.full((3, 1), head.bos)
        full = head.full_logits(prefix, real, torch.cat([bos, tokens], 1))  # [B, 7, V+1]
        logits, cache = head.prefill(prefix, real)
        stepped = [logits]
        for i in range(6):
            stepped.append(head.extend(tokens[:, i], i + 1, cache, real))
        assert torch.allclose(torch.stack(stepped, 1), full, atol=1e-5)
    for temperature in (0.0, 1.5):
        head.temperature = temperature
        runs = [
            head.generate(trunk, 2, torch.Generator().manual_seed(7), use_cache=cache_on)
            for cache_on in (True, False)
        ]
        assert runs[0] == runs[1] and len(runs[0]) == 6


def test_eos_ends_decoding_and_max_length_caps_it():
    head, trunk = _head("ar-bins"), _trunk(padded=False)
    with torch.no_grad():
        head.out.bias.zero_()
        head.out.weight.zero_()
        head.out.bias[head.eos] = 10.0  # EOS first: an empty sequence, repaired and counted
        out = head.sample(trunk)
        assert head.decode_stats == {"chunks": 3, "failures": 3}
        assert out.shape == (3, H, A) and torch.count_nonzero(out) == 0
        head.out.bias[head.eos], head.out.bias[5] = -10.0, 10.0  # never EOS: stops at max tokens
        seqs = head.generate(trunk)
        assert all(s == [5] * (H * A) for s in seqs) and head.max_tokens == H * A
        assert head.sample(trunk).shape == (3, H, A) and head.decode_stats["failures"] == 3


def _overfit(cfg, steps: int, fake_batch, make_stats, lr: float = 3e-3):
    torch.manual_seed(0)
    policy = VLAPolicy(cfg, stats=[make_stats(cfg.action_dim, cfg.state_dim)])
    batch = fake_batch(cfg, batch=4)
    batch["action"] = batch["action"] * 0.5 + torch.linspace(-0.2, 0.3, cfg.action_dim)  # inside q01/q99
    if policy.needs_tokenizer:
        actions, _ = policy.normalized_targets(batch)
        policy.set_action_tokenizer(FastTokenizer.fit(actions.numpy(), vocab_size=cfg.head.fast_vocab))
    opt = torch.optim.Adam(policy.parameters(), lr=lr)
    for _ in range(steps):
        loss, metrics = policy.compute_loss(batch)
        opt.zero_grad()
        loss.backward()
        opt.step()
    policy.eval()
    return policy, batch, metrics


@pytest.mark.parametrize("preset", ["pi0-fast", "openvla"])
def test_each_new_preset_overfits_a_tiny_dataset(preset, tiny_config, fake_batch, make_stats):
    head = dataclasses.replace(get_preset(preset).head, decoder_heads=4, fast_vocab=256)
    cfg = tiny_config(head.kind, normalization="bounds", head=head, chunk=get_preset(preset).chunk // 2)
    policy, batch, metrics = _overfit(cfg, 120, fake_batch, make_stats)
    assert metrics["token_accuracy"] == 1.0 and metrics["decode_fail_pct"] == 0.0
    out = policy.sample_actions(batch)
    assert policy.head.decode_stats["failures"] == 0
    # within the tokenizer's quantization: half a bin (1/256 of the [-1, 1] range per unit of
    # normalized action) or FAST's rounding; robot units here are 1:1 with normalized ones
    assert (out - batch["action"][:, : cfg.chunk]).abs().max() < 0.1


def test_save_load_keeps_the_tokenizer_and_int8_serves(tmp_path, tiny_config, fake_batch, make_stats):
    cfg = tiny_config("ar-fast", normalization="bounds")
    policy, batch, _ = _overfit(cfg, 5, fake_batch, make_stats)
    saved = policy.head.tokenizer.to_dict()
    policy.save_pretrained(tmp_path / "ckpt")
    again = VLAPolicy.from_pretrained(tmp_path / "ckpt")
    assert again.head.tokenizer.fitted and again.head.tokenizer.to_dict() == saved
    assert again.metadata[TOKENIZER_KEY] == saved and not again.needs_tokenizer
    assert torch.equal(again.sample_actions(batch), policy.sample_actions(batch))
    from vlaforge.deploy.quantize import load_policy, save_int8

    save_int8(again, tmp_path / "ckpt", tmp_path / "int8")
    q = load_policy(tmp_path / "int8")
    assert q.head.tokenizer.to_dict() == saved
    out = q.sample_actions(batch)
    assert out.shape == (4, cfg.chunk, cfg.action_dim) and torch.isfinite(out).all()


def test_onnx_export_is_refused_with_a_reason(tmp_path, tiny_config, make_stats):
    from vlaforge.deploy.export import save_onnx_export

    policy = VLAPolicy(tiny_config("ar-bins", normalization="bounds"), stats=[make_stats()]).eval()
    with pytest.raises(VlaforgeError, match="ar-bins"):
        save_onnx_export(policy, tmp_path / "onnx")
    with pytest.raises(VlaforgeError, match="not ONNX-exportable"):
        torch.jit.trace(
            lambda r, t: policy.head.sample(TrunkOutput(r, t)), (torch.randn(1, 1, 32), torch.randn(1, 5, 32))
        )


def test_config_errors_name_the_field(tiny_config):
    with pytest.raises(VlaforgeError, match="normalization"):
        VLAPolicy(tiny_config("ar-fast"))
    with pytest.raises(VlaforgeError, match="decoder_heads"):
        VLAPolicy(
            tiny_config("ar-bins", normalization="bounds", head=HeadConfig(kind="ar-bins", decoder_heads=5))
        )
    policy = VLAPolicy(tiny_config("ar-fast", normalization="bounds"))
    wrong = FastTokenizer.fit(np.zeros((3, 7, 4)) + np.linspace(0, 0.5, 7)[None, :, None])
    with pytest.raises(VlaforgeError, match="7 x 4"):
        policy.set_action_tokenizer(wrong)
