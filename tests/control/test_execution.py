"""Receding horizon, single step and ACT temporal ensembling (pure numpy, no environment)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vlaforge.control.execution import (
    ChunkBroker,
    RecedingHorizon,
    SingleStep,
    TemporalEnsemble,
    make_executor,
)


def _chunk(t: int, horizon: int = 5, dims: int = 2) -> np.ndarray:
    """A chunk planned at step t whose row j encodes (t, j) so we can see which prediction ran."""
    return np.stack([np.full(dims, 100.0 * t + j) for j in range(horizon)])  # [H, A]


def test_receding_horizon_executes_k_actions_then_replans():
    ex = RecedingHorizon(3)
    executed, plans = [], 0
    for t in range(7):
        if ex.needs_chunk():
            ex.add_chunk(_chunk(t))
            plans += 1
        executed.append(ex.pop()[0])
    assert plans == 3  # planned at steps 0, 3, 6
    assert executed == [0, 1, 2, 300, 301, 302, 600]


def test_single_step_replans_every_step_and_runs_the_first_action():
    ex = SingleStep()
    out = []
    for t in range(4):
        assert ex.needs_chunk()
        ex.add_chunk(_chunk(t))
        out.append(ex.pop()[0])
    assert out == [0, 100, 200, 300]


def test_receding_rejects_k_longer_than_the_chunk():
    with pytest.raises(ValueError, match="exceeds the chunk length"):
        RecedingHorizon(6).add_chunk(_chunk(0, horizon=5))


def test_reset_drops_the_rest_of_a_plan():
    ex = RecedingHorizon(4)
    ex.add_chunk(_chunk(0))
    ex.pop()
    ex.reset()
    assert ex.needs_chunk()


def _brute_force_ensemble(chunks: list[np.ndarray], t: int, coeff: float) -> np.ndarray:
    """ACT: all predictions for step t, oldest first, weights exp(-coeff * i), i = 0 the oldest."""
    preds = [c[t - s] for s, c in enumerate(chunks) if s <= t < s + len(c)]
    w = np.exp(-coeff * np.arange(len(preds)))
    return (w[:, None] * np.stack(preds)).sum(0) / w.sum()


@settings(max_examples=40, deadline=None)
@given(
    horizon=st.integers(1, 6),
    steps=st.integers(1, 12),
    coeff=st.floats(-1.0, 1.0),
    seed=st.integers(0, 2**16),
)
def test_temporal_ensemble_matches_the_act_weighted_average(horizon, steps, coeff, seed):
    rng = np.random.default_rng(seed)
    ex, chunks = TemporalEnsemble(coeff), []
    for t in range(steps):
        chunks.append(rng.normal(size=(horizon, 3)))
        ex.add_chunk(chunks[-1])
        np.testing.assert_allclose(ex.pop(), _brute_force_ensemble(chunks, t, coeff), rtol=1e-9, atol=1e-12)


def test_positive_coeff_weights_the_oldest_prediction_most():
    ex = TemporalEnsemble(coeff=2.0)
    ex.add_chunk(np.zeros((3, 1)))
    ex.pop()  # step 0
    ex.add_chunk(np.ones((3, 1)))
    a = ex.pop()[0]  # step 1: old prediction 0 (weight 1), new 1 (weight e^-2)
    assert a == pytest.approx(np.exp(-2.0) / (1 + np.exp(-2.0)))
    assert a < 0.5


def test_make_executor_and_broker_call_inference_only_when_needed():
    calls = []

    def infer(obs):
        calls.append(obs)
        return _chunk(obs)

    broker = ChunkBroker(infer, make_executor("receding", execute_steps=2))
    actions = [broker.act(t)[0] for t in range(5)]
    assert calls == [0, 2, 4]
    assert actions == [0, 1, 200, 201, 400]
    with pytest.raises(ValueError, match="unknown execution mode"):
        make_executor("sometimes")


# ----------------------------------------------------------------------------- simulated delay
def clock_chunk(t: int, horizon: int = 8) -> np.ndarray:
    """Row i predicts the time index t + i (one action dim): correct alignment returns the step."""
    return (t + np.arange(horizon, dtype=np.float64))[:, None]  # [H, 1]


@pytest.mark.parametrize("delay", [0, 1, 2, 3])
def test_delayed_receding_horizon_stays_aligned(delay):
    ex = make_executor("receding", execute_steps=4, delay=delay)
    requests, got = [], []
    for t in range(40):
        if ex.needs_chunk():
            requests.append(t)
            ex.add_chunk(clock_chunk(t))
        got.append(float(ex.pop()[0]))
    assert got == list(range(40))  # every action is the one predicted for its own step
    # after the first chunk, a request goes out when `delay` planned actions remain
    assert all(b - a == 4 for a, b in zip(requests[1:], requests[2:], strict=False))


def test_delayed_ensemble_averages_late_predictions():
    ex = make_executor("ensemble", ensemble_coeff=0.0, delay=2)
    out = []
    for t in range(12):
        assert ex.needs_chunk()
        ex.add_chunk(clock_chunk(t))
        out.append(float(ex.pop()[0]))
    assert out == list(range(12))


def test_planned_is_the_rest_of_the_chunk_and_bad_delays_are_refused():
    ex = make_executor("receding", execute_steps=4, delay=2)
    ex.add_chunk(clock_chunk(0))
    ex.pop()
    assert ex.planned()[:, 0].tolist() == [1, 2, 3, 4, 5, 6, 7]  # 3 still executed, then the tail
    with pytest.raises(ValueError, match="more than 4 executed actions"):
        make_executor("receding", execute_steps=4, delay=4)
    ex = make_executor("receding", execute_steps=4, delay=3)
    ex.add_chunk(clock_chunk(0, horizon=8))
    with pytest.raises(ValueError, match="leaves nothing"):
        ex.add_chunk(clock_chunk(0, horizon=3))


def test_async_broker_feeds_the_measured_delay_to_a_guided_local_policy(tmp_path):
    """A flow checkpoint behind `LocalPolicy`; a broker whose requests take ~2 control steps asks for
    guided chunks with that measured delay, and the executed actions stay finite and in sequence."""
    import dataclasses
    import time

    import torch

    from vlaforge.control.broker import AsyncChunkBroker
    from vlaforge.control.local import LocalPolicy
    from vlaforge.models.config import ImageEncoderConfig, PolicyConfig, TrunkConfig
    from vlaforge.models.heads import HeadConfig
    from vlaforge.models.policy import VLAPolicy

    torch.manual_seed(0)
    cfg = PolicyConfig(image_size=32, chunk=8, execute_steps=4, image=ImageEncoderConfig(stem_channels=(8, 8)),
                       trunk=TrunkConfig(width=32, depth=1, heads=2),
                       head=HeadConfig(kind="flow", hidden_dim=32, num_blocks=1, flow_steps=4))  # fmt: skip
    local = LocalPolicy(VLAPolicy(dataclasses.replace(cfg)))
    calls: list[int] = []
    real = local.infer_guided

    def slow_guided(obs, committed, delay):
        calls.append(delay)
        return real(obs, committed, delay)

    local.infer_guided = slow_guided
    broker = AsyncChunkBroker(local, refill_at=4, rtc=True)
    obs = {"observation.images.corner2": np.zeros((32, 32, 3), np.uint8),
           "observation.state": np.zeros(4, np.float32), "task": "reach the goal"}  # fmt: skip
    actions = []
    for _ in range(30):
        actions.append(broker.act(obs))
        time.sleep(0.02)  # the control period: inference spans a step or more
    broker.close()
    assert all(a is not None and np.isfinite(a).all() for a in actions)
    assert broker.stats["guided"] >= 1 and calls and all(d >= 1 for d in calls)
    with pytest.raises(ValueError, match="needs a policy with infer_guided"):
        AsyncChunkBroker(lambda o: np.zeros((8, 4)), rtc=True)
