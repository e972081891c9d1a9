"""Presets: each real preset builds, trains a step and samples; registry errors; CLI tables; bench."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch

from vlaforge.cli import main
from vlaforge.errors import VlaforgeError
from vlaforge.models.config import validate
from vlaforge.models.policy import VLAPolicy
from vlaforge.models.presets import DEFAULT_PRESET, PRESETS, get_preset, with_head

# octo-base (89 M parameters) costs several seconds per step on 2 cores: its full-size run is slow-marked.
# smolvla needs SmolVLM2's files (backbone.id); its architecture is smolvla-tiny's at full size.
# openvla-prismatic needs Llama-2-7B, SigLIP and DINOv2 files; pi0-paligemma paligemma-3b-pt-224's.
FAST = [
    name for name in PRESETS if name not in ("octo-base", "smolvla", "openvla-prismatic", "pi0-paligemma")
]


def _train_step_and_sample(cfg, fake_batch, frame: int = 128) -> None:
    torch.manual_seed(0)
    policy = VLAPolicy(cfg)
    batch = fake_batch(cfg, batch=1, frame=frame)
    loss, metrics = policy.compute_loss(batch)
    loss.backward()
    assert loss.isfinite() and isinstance(metrics, dict)
    grads = [p.grad for p in policy.parameters() if p.requires_grad]  # a frozen VLM or image encoder has none
    assert sum(g is not None and bool(g.abs().sum() > 0) for g in grads) > 0.9 * len(grads)
    policy.eval()
    out = policy.sample_actions(batch, generator=torch.Generator().manual_seed(0))
    assert out.shape == (1, cfg.chunk, cfg.action_dim) and out.isfinite().all()


@pytest.mark.parametrize("name", FAST)
def test_every_preset_trains_a_step_and_samples(name, fake_batch):
    _train_step_and_sample(get_preset(name), fake_batch)


def test_octo_base_builds_at_full_width_and_runs_shallow(fake_batch):
    cfg = get_preset("octo-base")  # its full parameter count is checked through `vlaforge presets`
    _train_step_and_sample(
        dataclasses.replace(cfg, trunk=dataclasses.replace(cfg.trunk, depth=1)), fake_batch
    )


@pytest.mark.slow
def test_octo_base_full_step(fake_batch):
    _train_step_and_sample(get_preset("octo-base"), fake_batch)


@pytest.mark.parametrize("kind", ["regression", "tokens", "diffusion", "flow", "flow-expert"])
def test_default_preset_takes_every_head(kind, fake_batch):
    cfg = with_head(get_preset(DEFAULT_PRESET), kind)
    assert cfg.normalization == ("bounds" if kind == "tokens" else "mean_std")
    _train_step_and_sample(cfg, fake_batch, frame=64)


def test_registry_errors_and_validation():
    assert get_preset("rt2") == get_preset("openvla") and get_preset("openvla").normalization == "bounds"
    with pytest.raises(VlaforgeError, match="did you mean 'octo-small'"):
        get_preset("octo-smal")
    tokens_mean_std = dataclasses.replace(
        with_head(get_preset("default"), "tokens"), normalization="mean_std"
    )
    with pytest.raises(VlaforgeError, match="bounds"):
        validate(tokens_mean_std)
    for cfg in PRESETS.values():
        validate(cfg)


def test_presets_command_lists_every_preset(capsys):
    assert main(["presets", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["preset"].split()[0] for r in rows] == list(PRESETS)
    by_name = {r["preset"].split()[0]: r for r in rows}
    sizes = [by_name[name]["trainable_M"] for name in ("octo-base", "octo-small", "default")]
    assert sizes == sorted(sizes, reverse=True) and sizes[0] > 80
    trunk_rows = [
        r for r in rows if not r["preset"].startswith(("smolvla", "openvla-prismatic", "pi0-paligemma"))
    ]
    assert all(r["frozen_text_M"] == pytest.approx(22.71, abs=0.01) for r in trunk_rows)
    assert 440 < by_name["smolvla"]["total_M"] < 460 and 95 < by_name["smolvla"]["trainable_M"] < 105
    # OpenVLA: ~7.5B (SigLIP so400m + DINOv2-L without their last layer, projector, Llama-2-7B), all trained
    assert (
        7400 < by_name["openvla-prismatic"]["total_M"] == by_name["openvla-prismatic"]["trainable_M"] < 7600
    )
    # pi0: PaliGemma 3B (2.92 B) + the 300 M Gemma expert, all trained
    assert 3200 < by_name["pi0-paligemma"]["total_M"] == by_name["pi0-paligemma"]["trainable_M"] < 3300


def test_bench_latency_reports_figures(capsys):
    assert main(["bench", "latency", "--head", "flow", "--iters", "2", "--warmup", "1", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["head"] == "flow" and result["preset"] == DEFAULT_PRESET and result["chunk"] == 16
    assert result["p90_ms"] >= result["p50_ms"] > 0 and result["gflops"] > 0.05
    assert result["params_trainable"] > 1e6 and result["params_frozen_text"] > 2e7
    assert main(["bench", "latency", "--head", "flw"]) == 2
    assert "did you mean 'flow'" in capsys.readouterr().err
