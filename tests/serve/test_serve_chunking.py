"""Robot-side chunk execution: alignment, blending, async requests, and a real server behind it."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from openpi_client.action_chunk_broker import ActionChunkBroker
from openpi_client.websocket_client_policy import WebsocketClientPolicy

from vlaforge.control.broker import AsyncChunkBroker, ChunkBroker, TemporalEnsemble, blend_overlap, chunk_fn
from vlaforge.control.client import PolicyClient
from vlaforge.serve.safety import SafetyConfig, SafetySupervisor


class Clock:
    """A 'policy' that predicts the time index of each future step: row i of a chunk requested at
    step t is t + i. Any correctly aligned execution returns exactly the current step, blended or not."""

    def __init__(self, horizon: int = 8, latency_s: float = 0.0) -> None:
        self.horizon, self.latency_s, self.calls = horizon, latency_s, 0
        self.lock = threading.Lock()

    def infer(self, obs: dict) -> dict:
        with self.lock:
            self.calls += 1
        time.sleep(self.latency_s)
        return {"actions": (obs["t"] + np.arange(self.horizon))[:, None] * np.ones((1, 2))}


@settings(max_examples=30, deadline=None, database=None)
@given(old=st.integers(0, 10), new=st.integers(1, 10), a=st.floats(-5, 5), b=st.floats(-5, 5))
def test_blend_overlap_crossfades_linearly(old, new, a, b):
    out = blend_overlap(np.full((old, 1), a), np.full((new, 1), b))
    assert out.shape == (max(old, new), 1)
    overlap = min(old, new)
    w = np.arange(1, overlap + 1) / (overlap + 1)
    np.testing.assert_allclose(out[:overlap, 0], (1 - w) * a + w * b, atol=1e-12)
    np.testing.assert_allclose(out[overlap:, 0], b if new >= old else a)
    if overlap:  # no jump larger than one cross-fade step at either end
        assert abs(out[0, 0] - a) <= abs(b - a) / (overlap + 1) + 1e-12


@pytest.mark.parametrize("refill_at", [0, 3, 7])
def test_synchronous_broker_is_time_aligned_and_refills_k_early(refill_at):
    policy = Clock(horizon=8)
    broker = AsyncChunkBroker(policy, refill_at=refill_at, synchronous=True)
    actions = [broker.act({"t": t}) for t in range(40)]
    np.testing.assert_allclose([a[0] for a in actions], np.arange(40))
    # a chunk lasts until `refill_at` actions remain after the current one
    assert policy.calls == 1 + (40 - 1) // (8 - refill_at)


def test_async_broker_requests_in_the_background_and_stays_aligned():
    policy = Clock(horizon=10, latency_s=0.02)
    broker = AsyncChunkBroker(policy, refill_at=5)
    actions = []
    for t in range(60):
        actions.append(broker.act({"t": t}))
        time.sleep(0.005)  # the control period; the request takes ~4 periods
    broker.close()
    np.testing.assert_allclose([a[0] for a in actions], np.arange(60))  # late chunks are re-aligned
    # timing decides how many chunks arrive before the plan runs dry (blended) or after (starved); never
    # the alignment above, and every request is one policy call
    assert broker.stats["requests"] == policy.calls >= 60 // 10


def test_blending_smooths_the_switch_between_disagreeing_chunks():
    chunks = iter([np.zeros((8, 1)), np.ones((8, 1)), np.ones((8, 1))])
    broker = AsyncChunkBroker(lambda obs: next(chunks), refill_at=3, synchronous=True)
    out = np.array([broker.act({})[0] for _ in range(9)])
    assert out[0] == 0 and out[-1] == 1 and (np.diff(out) >= 0).all()
    assert np.diff(out).max() <= 0.25 + 1e-12  # 4 overlapping steps: a 1/5 ... 1/5 ramp, never a jump


def test_non_blocking_broker_gives_none_and_the_supervisor_holds():
    policy = Clock(horizon=4, latency_s=0.2)
    broker = AsyncChunkBroker(policy, refill_at=1, block=False)
    sup = SafetySupervisor(
        config=SafetyConfig(
            position_dims=(0,),
            state_position_dims=(0,),
            action_low=None,
            action_high=None,
            workspace_low=None,
            workspace_high=None,
            gripper_dims=(1,),
            hold_after_ms=None,
            stop_after_ms=None,
        )
    )
    first = broker.act({"t": 0})
    assert first is None and broker.stats["starved"] == 1
    held = sup.filter(first)
    assert np.isfinite(held).all() and held[0] == 0 and sup.interventions["no_action"] == 1
    broker.close()


def test_broker_and_ensemble_over_a_real_server(server, runtime):
    """The robot side against the served checkpoint: async broker, then ACT ensembling."""
    obs = {
        "observation.images.corner2": np.zeros((32, 32, 3), np.uint8),
        "observation.state": np.zeros(4, np.float32),
        "prompt": "push the block",
    }
    with PolicyClient("127.0.0.1", server.port) as client:
        chunk = client.infer(obs)["actions"]
        client.reset()
        broker = AsyncChunkBroker(client, refill_at=4)
        first = broker.act(obs)
        np.testing.assert_allclose(first, chunk[0], atol=1e-5)
        steps = [broker.act(obs) for _ in range(12)]
        broker.close()
        assert all(s.shape == (4,) and np.isfinite(s).all() for s in steps)
        assert broker.stats["requests"] >= 3
        ensemble = ChunkBroker(chunk_fn(client), TemporalEnsemble(0.01))
        assert all(ensemble.act(obs).shape == (4,) for _ in range(3))
    # openpi's own broker slices our replies step by step (server_timing passes through)
    openpi = ActionChunkBroker(WebsocketClientPolicy("127.0.0.1", server.port), action_horizon=4)
    steps = [openpi.infer(obs)["actions"] for _ in range(5)]
    assert all(s.shape == (4,) for s in steps)
    np.testing.assert_allclose(steps[0], chunk[0], atol=1e-5)
