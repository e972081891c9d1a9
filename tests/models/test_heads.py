"""Action heads, built directly from random `TrunkOutput`s (no trunk): contract, masking, sampler
math, caching, overfitting. The bimodal toy is in test_bimodal.py."""

from __future__ import annotations

import pytest
import torch
from heads_helpers import D, one_thread, train  # noqa: F401 (one_thread: autouse fixture)

from vlaforge.config import apply_overrides
from vlaforge.errors import VlaforgeError
from vlaforge.models.heads import HEAD_KINDS, HeadConfig, TrunkOutput, build_head
from vlaforge.models.heads.common import cosine_schedule, euler_integrate, masked_mean
from vlaforge.models.heads.diffusion import DiffusionHead
from vlaforge.models.heads.flow import FlowHead

A, H = 3, 4  # action dim, chunk (D: trunk width)
TOKEN_KINDS = ("tokens", "ar-fast", "ar-bins")  # targets are class indices: no gradient to the actions
TINY = {"hidden_dim": 32, "num_blocks": 1, "num_readouts": 2, "expert_width": 32, "expert_depth": 2}


def make_head(kind: str, seed: int = 0, **overrides) -> torch.nn.Module:
    torch.manual_seed(seed)
    return build_head(HeadConfig(kind=kind, **{**TINY, **overrides}), D, A, H)


def random_trunk(head, batch: int = 3, tokens: int = 5, seed: int = 1, pad_tokens: int = 0) -> TrunkOutput:
    g = torch.Generator().manual_seed(seed)
    mask = torch.ones(batch, tokens, dtype=torch.bool)
    mask[:, tokens - pad_tokens :] = False
    return TrunkOutput(
        torch.randn(batch, head.num_readouts, D, generator=g),
        torch.randn(batch, tokens, D, generator=g),
        mask,
    )


def seeded_loss(head, trunk, actions, mask, seed: int = 7):
    torch.manual_seed(seed)  # the same noise / timesteps for both calls being compared
    return head.loss(trunk, actions, mask)


def sample(head, trunk, num_samples: int = 1, seed: int = 0) -> torch.Tensor:
    with torch.no_grad():
        return head.sample(trunk, num_samples, torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("kind", HEAD_KINDS)
def test_shapes_readouts_and_loss(kind):
    head = make_head(kind)
    assert head.num_readouts == (H if kind in ("regression", "tokens") else 2)
    trunk = random_trunk(head, batch=3)
    loss, metrics = head.loss(trunk, torch.rand(3, H, A) * 2 - 1, torch.ones(3, H, A, dtype=torch.bool))
    assert loss.ndim == 0 and torch.isfinite(loss) and loss.item() > 0
    assert metrics["loss"] == pytest.approx(loss.item()) and all(
        isinstance(v, float) for v in metrics.values()
    )
    out = sample(head, trunk, num_samples=4)
    assert out.shape == (12, H, A) and torch.isfinite(out).all()


@pytest.mark.parametrize("kind", ["regression", "tokens"])
def test_deterministic_heads_repeat_samples_in_observation_order(kind):
    head = make_head(kind)
    trunk = random_trunk(head, batch=2)
    one, four = sample(head, trunk, 1), sample(head, trunk, 4)
    assert torch.equal(four, one.repeat_interleave(4, dim=0))  # rows b*S .. b*S+S-1 are observation b
    assert not torch.equal(one[0], one[1])


def test_unknown_kind_and_bad_values_are_user_errors():
    with pytest.raises(VlaforgeError, match="did you mean 'diffusion'"):
        build_head(HeadConfig(kind="difusion"), D, A, H)  # type: ignore[arg-type]
    with pytest.raises(VlaforgeError, match="num_bins"):
        build_head(HeadConfig(kind="tokens", num_bins=0), D, A, H)
    with pytest.raises(VlaforgeError, match="sample_steps"):
        build_head(HeadConfig(kind="diffusion", sample_steps=50, diffusion_train_steps=20), D, A, H)
    with pytest.raises(VlaforgeError, match="expert_heads"):
        build_head(HeadConfig(kind="flow-expert", expert_width=30, expert_heads=4), D, A, H)
    cfg = apply_overrides(HeadConfig(), ["kind=flow-expert", "flow_steps=4", "expert_depth=1"])
    assert (cfg.kind, cfg.flow_steps, cfg.expert_depth) == ("flow-expert", 4, 1)
    with pytest.raises(VlaforgeError, match="l1"):
        apply_overrides(HeadConfig(), ["loss=huber"])


@pytest.mark.parametrize("kind", HEAD_KINDS)
def test_masked_entries_do_not_change_loss_and_get_zero_gradient(kind):
    head = make_head(kind)
    trunk = random_trunk(head, batch=3)
    mask = torch.rand(3, H, A, generator=torch.Generator().manual_seed(3)) > 0.3
    mask[:, :, -1] = False  # a padded action dimension (smaller robot in a mixture)
    mask[0, -2:] = False  # chunk padding past the episode end
    actions = torch.rand(3, H, A) * 2 - 1

    def loss_and_grads(acts):
        acts = acts.clone().requires_grad_(kind not in TOKEN_KINDS)  # token targets are class indices
        head.zero_grad()
        loss, _ = seeded_loss(head, trunk, acts, mask)
        loss.backward()
        return loss.item(), [p.grad.clone() for p in head.parameters()], acts.grad

    loss, grads, action_grad = loss_and_grads(actions)
    if kind not in TOKEN_KINDS:
        assert torch.all(action_grad[~mask] == 0) and action_grad[mask].abs().sum() > 0
    for junk in (1e3, float("nan")):
        other, other_grads, _ = loss_and_grads(torch.where(mask, actions, torch.full_like(actions, junk)))
        assert other == pytest.approx(loss, rel=1e-6, abs=1e-7)
        assert all(torch.allclose(g, o, atol=1e-7) for g, o in zip(grads, other_grads, strict=True))


def test_masked_mean_counts_only_true_entries():
    values = torch.tensor([[1.0, 100.0], [3.0, float("inf")]])
    mask = torch.tensor([[True, False], [True, False]])
    assert masked_mean(values, mask).item() == 2.0
    assert masked_mean(values, torch.zeros_like(mask)).item() == 0.0


def test_token_binning_round_trip_within_half_a_bin():
    head = make_head("tokens")
    x = torch.cat([torch.linspace(-1, 1, 20001), torch.rand(5000) * 2 - 1])
    bins = head.encode(x)
    assert bins.min() == 0 and bins.max() == 255 and len(bins.unique()) == 256
    assert (head.decode(bins) - x).abs().max() <= 1 / 256 + 1e-6  # half a bin of width 2/256
    centres = head.decode(torch.arange(256))
    assert torch.equal(head.encode(centres), torch.arange(256))
    assert torch.equal(head.encode(torch.tensor([-7.0, 7.0])), torch.tensor([0, 255]))  # clipped


class _OracleDiffusion(DiffusionHead):
    """The exact epsilon for a data distribution that is a single point `target`."""

    target: torch.Tensor

    def epsilon(self, cond, x, k, embodiment=None):
        a = self.alpha_bar[k][:, None]
        return (x - a.sqrt() * self.target) / (1 - a).sqrt()


class _OracleFlow(FlowHead):
    """The exact velocity of the straight path to a single point `target` (t = 1 noise, 0 data)."""

    target: torch.Tensor

    def velocity(self, x, t, context):
        return (x - self.target) / t[:, None, None]


@pytest.mark.parametrize("steps,eta", [(10, 0.0), (20, 1.0), (3, 0.5)])
def test_ddim_with_exact_epsilon_lands_on_the_data(steps, eta):
    head = _OracleDiffusion(D, A, H, train_steps=20, sample_steps=steps, eta=eta, hidden_dim=8, num_blocks=1)
    head.target = torch.linspace(-0.9, 0.9, H * A)
    out = sample(head, random_trunk(head, batch=2), num_samples=3)
    assert torch.allclose(out, head.target.view(1, H, A).expand(6, H, A), atol=1e-4)


def test_euler_with_exact_velocity_lands_on_the_data():
    head = _OracleFlow(D, A, H, flow_steps=5, hidden_dim=8, num_blocks=1)
    head.target = torch.linspace(-0.9, 0.9, H * A).view(H, A)
    out = sample(head, random_trunk(head, batch=2), num_samples=3)
    assert torch.allclose(out, head.target.expand(6, H, A), atol=1e-5)
    x = euler_integrate(lambda x, t: torch.ones_like(x) * 2.0, torch.zeros(2, 3), num_steps=4)
    assert torch.allclose(x, torch.full((2, 3), -2.0))  # t from 1 to 0: x(0) = x(1) - 2


def test_flow_training_times_follow_the_scaled_beta():
    head = make_head("flow")
    torch.manual_seed(0)
    t = head.sample_time(20000, like=torch.zeros(1))
    assert t.min() >= 0.001 and t.max() <= 1.0
    assert t.mean().item() == pytest.approx(0.6 * 0.999 + 0.001, abs=0.01)  # Beta(1.5, 1) mean 0.6
    assert (t < 0.5).float().mean().item() == pytest.approx(0.5**1.5, abs=0.02)  # CDF t^1.5


def test_cosine_schedule_decreases_from_one_to_almost_zero():
    a = cosine_schedule(20)
    assert a.shape == (20,) and torch.all(a[1:] < a[:-1]) and 0.98 < a[0] < 1 and 0 < a[-1] < 1e-4


@pytest.mark.parametrize(
    "kind,overrides",
    [("diffusion", {"ddim_eta": 0.0}), ("diffusion", {"ddim_eta": 1.0}), ("flow", {}), ("flow-expert", {})],
)
def test_sampling_is_reproducible_under_a_generator(kind, overrides):
    head = make_head(kind, **overrides)
    trunk = random_trunk(head, batch=2, pad_tokens=2)
    a, b, c = sample(head, trunk, 3, seed=5), sample(head, trunk, 3, seed=5), sample(head, trunk, 3, seed=6)
    assert torch.equal(a, b) and not torch.allclose(a, c)
    assert not torch.allclose(a[0], a[1])  # samples of one observation differ


def _count_calls(module: torch.nn.Module) -> list[int]:
    calls = [0]
    module.register_forward_hook(lambda *_: calls.__setitem__(0, calls[0] + 1))
    return calls


@pytest.mark.parametrize("kind,steps_key", [("diffusion", "sample_steps"), ("flow", "flow_steps")])
def test_mlp_heads_condition_once_per_observation(kind, steps_key):
    head = make_head(kind, **{steps_key: 7, "diffusion_train_steps": 20})
    cond_calls, step_calls = _count_calls(head.net.cond_proj), _count_calls(head.net.x_proj)
    sample(head, random_trunk(head, batch=2), num_samples=3)
    assert (cond_calls[0], step_calls[0]) == (1, 7)


def test_flow_expert_prefix_kv_computed_once_and_cached_equals_uncached():
    head = make_head("flow-expert", flow_steps=6)
    trunk = random_trunk(head, batch=2, pad_tokens=2)
    prefix_calls = [_count_calls(layer.prefix_kv) for layer in head.expert.layers]
    step_calls = _count_calls(head.expert.layers[0].qkv)
    cached = sample(head, trunk, num_samples=3, seed=11)
    assert [c[0] for c in prefix_calls] == [1, 1] and step_calls[0] == 6
    with torch.no_grad():
        uncached = head.sample_uncached(trunk, 3, torch.Generator().manual_seed(11))
    assert [c[0] for c in prefix_calls] == [7, 7]  # the reference path re-encodes at every step
    assert torch.allclose(cached, uncached, atol=1e-5)
    junk = trunk.tokens.clone()
    junk[:, -2:] = 1e3  # tokens that token_mask marks as padding must not matter
    masked = sample(head, TrunkOutput(trunk.readouts, junk, trunk.token_mask), num_samples=3, seed=11)
    assert torch.allclose(cached, masked, atol=1e-5)


@pytest.mark.parametrize("kind", HEAD_KINDS)
def test_state_dict_round_trip_gives_identical_samples(kind):
    head, fresh = make_head(kind, seed=0), make_head(kind, seed=1)
    trunk = random_trunk(head)
    assert not torch.allclose(sample(head, trunk, 2), sample(fresh, trunk, 2))
    fresh.load_state_dict(head.state_dict())
    assert torch.equal(sample(head, trunk, 2), sample(fresh, trunk, 2))
    assert "alpha_bar" not in head.state_dict()  # derived from the config, not a weight


# Loss factor each head reaches on one batch. Diffusion's starts low (the skip in `epsilon` already
# predicts most of the noise) and has an irreducible floor near k=0, so its chunk error is the sharp check.
OVERFIT_FACTOR = {"regression": 10, "tokens": 10, "diffusion": 4, "flow": 10, "flow-expert": 8, "ar-fast": 10,
                  "ar-bins": 10}  # fmt: skip


@pytest.mark.parametrize("kind", HEAD_KINDS)
def test_each_head_overfits_one_small_batch(kind):
    head = make_head(kind, hidden_dim=64, num_blocks=2, num_readouts=1, expert_depth=2)
    trunk, batch = random_trunk(head, batch=8, seed=2), 8
    actions = torch.rand(batch, H, A, generator=torch.Generator().manual_seed(4)) * 2 - 1
    mask = torch.ones(batch, H, A, dtype=torch.bool)

    def eval_loss() -> float:
        with torch.no_grad():
            return sum(seeded_loss(head, trunk, actions, mask, seed=s)[0].item() for s in range(8)) / 8

    before, error_before = eval_loss(), (sample(head, trunk) - actions).abs().mean().item()
    train(head, trunk, lambda: actions, mask, steps=300, lr=3e-3)
    after, error_after = eval_loss(), (sample(head, trunk) - actions).abs().mean().item()
    assert before / after > OVERFIT_FACTOR[kind], (before, after)
    assert error_after < 0.2 and error_before / error_after > 4, (error_before, error_after)
