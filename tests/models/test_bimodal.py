"""The bimodal toy: one conditioning, a 1-D action that is +1 or -1 with equal probability.

The seed documents' claim for generative heads (Diffusion Policy, Octo, pi0): a diffusion or flow
head reproduces both modes, while L1 regression returns a single point (any median of {-1, +1}) and
MSE regression averages the modes into the middle, an action no demonstration took.
"""

from __future__ import annotations

import pytest
import torch
from heads_helpers import D, one_thread, train  # noqa: F401 (one_thread: autouse fixture)

from vlaforge.models.heads import HeadConfig, TrunkOutput, build_head

BATCH, SAMPLES = 64, 400


def trained_on_bimodal_toy(kind: str, steps: int, **overrides):
    torch.manual_seed(0)
    cfg = HeadConfig(kind=kind, hidden_dim=64, num_blocks=2, expert_width=32, expert_depth=1, **overrides)
    head = build_head(cfg, D, action_dim=1, horizon=1)
    g = torch.Generator().manual_seed(1)
    one = TrunkOutput(torch.randn(1, head.num_readouts, D, generator=g), torch.randn(1, 4, D, generator=g))
    trunk = TrunkOutput(one.readouts.expand(BATCH, -1, -1), one.tokens.expand(BATCH, -1, -1))
    signs = torch.tensor([1.0, -1.0]).repeat(BATCH // 2)  # balanced: exactly half of each mode
    mask = torch.ones(BATCH, 1, 1, dtype=torch.bool)
    train(head, trunk, lambda: signs[torch.randperm(BATCH)].view(BATCH, 1, 1), mask, steps=steps, lr=2e-3)
    with torch.no_grad():
        return head.sample(one, SAMPLES, torch.Generator().manual_seed(2)).flatten()  # [SAMPLES]


def mode_fractions(samples: torch.Tensor) -> tuple[float, float, float]:
    """Fractions of samples near +1, near -1 (within 0.3) and in the middle (|x| < 0.5)."""
    near = lambda c: (samples - c).abs().lt(0.3).float().mean().item()
    return near(1.0), near(-1.0), samples.abs().lt(0.5).float().mean().item()


@pytest.mark.parametrize(
    "kind,overrides",
    [("diffusion", {"ddim_eta": 0.0}), ("diffusion", {"ddim_eta": 1.0}), ("flow", {}), ("flow-expert", {})],
)
def test_generative_heads_reproduce_both_modes(kind, overrides):
    plus, minus, middle = mode_fractions(trained_on_bimodal_toy(kind, steps=400, **overrides))
    assert plus >= 0.25 and minus >= 0.25 and middle <= 0.1, (plus, minus, middle)


def test_l1_regression_collapses_to_one_point():
    samples = trained_on_bimodal_toy("regression", steps=150, loss="l1")
    plus, minus, _ = mode_fractions(samples)
    assert samples.max() - samples.min() < 1e-6  # every sample is the same action
    assert min(plus, minus) == 0.0  # so at most one mode is ever produced


def test_mse_regression_averages_the_modes_into_the_middle():
    samples = trained_on_bimodal_toy("regression", steps=150, loss="mse")
    assert samples.max() - samples.min() < 1e-6 and samples.abs().max() < 0.1
