"""The block-wise attention rules, checked on the mask and on real outputs (perturbation tests)."""

from __future__ import annotations

import torch

from vlaforge.models.config import TrunkConfig
from vlaforge.models.trunk import Trunk, blockwise_mask

L, T, K, R, D = 2, 3, 4, 2, 32


def _inputs(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(2, L, D, generator=g), torch.randn(2, T, K, D, generator=g)


def _trunk() -> Trunk:
    torch.manual_seed(0)
    return Trunk(TrunkConfig(width=D, depth=2, heads=4), num_readouts=R).eval()


def test_mask_encodes_octo_rules():
    m = blockwise_mask(L, T, K, R)
    obs = lambda t: slice(L + t * K, L + (t + 1) * K)
    ro = slice(L + T * K, None)
    assert m[:L, :L].all() and not m[:L, L:].any()  # task sees task only
    for t in range(T):
        assert m[obs(t), : L + (t + 1) * K].all()  # task + obs up to and including t
        assert not m[obs(t), L + (t + 1) * K :].any()  # nothing later, no readouts
    assert m[ro, :].all()  # readouts see everything, including their own group
    assert not m[: L + T * K, ro].any()  # nothing but readouts attends to readouts


def test_later_steps_do_not_change_earlier_tokens():
    trunk = _trunk()
    task, obs = _inputs()
    base = trunk(task, obs)
    later = obs.clone()
    later[:, -1] += 5.0  # perturb the last step only
    out = trunk(task, later)
    n_early = L + (T - 1) * K
    torch.testing.assert_close(out.tokens[:, :n_early], base.tokens[:, :n_early])
    assert not torch.allclose(out.tokens[:, n_early:], base.tokens[:, n_early:])
    assert not torch.allclose(out.readouts, base.readouts)  # readouts do read the last step


def test_task_tokens_see_no_observation_and_readouts_are_read_by_none():
    trunk = _trunk()
    task, obs = _inputs()
    base = trunk(task, obs)
    out = trunk(task, obs + 3.0)
    torch.testing.assert_close(out.tokens[:, :L], base.tokens[:, :L])
    with torch.no_grad():
        trunk.readouts.add_(1.0)  # perturb the readout tokens themselves
    out = trunk(task, obs)
    torch.testing.assert_close(out.tokens, base.tokens)
    assert not torch.allclose(out.readouts, base.readouts)
    assert out.readouts.shape == (2, R, D) and out.tokens.shape == (2, L + T * K, D)


def test_padded_history_steps_are_ignored():
    trunk = _trunk()
    task, obs = _inputs()
    pad = torch.tensor([[True, False, False], [False, False, False]])
    base = trunk(task, obs, pad)
    changed = obs.clone()
    changed[:, 0] = torch.randn_like(changed[:, 0]) * 10  # new content in step 0
    out = trunk(task, changed, pad)
    assert torch.isfinite(out.readouts).all()
    torch.testing.assert_close(out.readouts[0], base.readouts[0])  # row 0: step 0 is padding
    assert not torch.allclose(out.readouts[1], base.readouts[1])  # row 1: step 0 is real
    assert out.token_mask.shape == (2, L + T * K)
    assert not out.token_mask[0, L : L + K].any() and out.token_mask[1].all()
