"""Eval and serve build identical model inputs from the same stream of observations (property test).

The eval side is the checkpoint adapter the runner drives (`CheckpointPolicy.observe` every step,
`infer` every k steps); the serve side is a server connection's window (`PolicyRuntime.connection()`
fed one request per step). Streams have random episode lengths and episode starts; whenever eval
calls the model, the batch it passes must equal the server's window at that step, key by key.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from vlaforge import keys as T
from vlaforge.eval.config import EvalConfig
from vlaforge.eval.policies import CheckpointPolicy


class Recording(torch.nn.Module):
    """A real `VLAPolicy` whose `sample_actions` inputs are kept."""

    def __init__(self, policy) -> None:
        super().__init__()
        self.inner = policy
        self.config, self.record, self.metadata, self.stats = (
            policy.config,
            policy.record,
            policy.metadata,
            policy.stats,
        )
        self.batches: list[dict] = []

    def sample_actions(self, batch, generator=None):
        self.batches.append(batch)
        return self.inner.sample_actions(batch, generator=generator)

    def reset(self) -> None:
        self.inner.reset()


def _policy(history: int):
    from vlaforge.models.config import ImageEncoderConfig, PolicyConfig, TrunkConfig
    from vlaforge.models.heads import HeadConfig
    from vlaforge.models.policy import VLAPolicy

    cfg = PolicyConfig(
        image_size=16, history=history, chunk=4, execute_steps=2,
        image=ImageEncoderConfig(stem_channels=(4, 8), patch_size=8),
        trunk=TrunkConfig(width=16, depth=1, heads=2), head=HeadConfig(kind="regression", hidden_dim=16, num_blocks=1),
    )  # fmt: skip
    return VLAPolicy(cfg).eval()


@pytest.fixture(scope="module")
def policies():
    return {h: _policy(h) for h in (1, 2, 3)}


def _obs(rng: np.random.Generator, step: int) -> dict:
    return {
        T.image_key("corner2"): rng.integers(0, 256, (16, 16, 3), dtype=np.uint8),
        T.STATE: rng.normal(size=4).astype(np.float32),
        T.ENV_STATE: rng.normal(size=39).astype(np.float32),  # never a model input
        T.TASK: f"task {step % 3}",
    }


@settings(max_examples=25, deadline=None)
@given(
    history=st.integers(1, 3),
    episodes=st.lists(st.integers(1, 9), min_size=1, max_size=4),
    every=st.integers(1, 4),
    seed=st.integers(0, 2**16),
)
def test_eval_and_serve_build_identical_inputs(policies, history, episodes, every, seed):
    from vlaforge.serve.protocol import ObservationRequest
    from vlaforge.serve.runtime import PolicyRuntime

    model = Recording(policies[history])
    runtime = PolicyRuntime(policies[history], warmup=False)
    try:
        adapter = CheckpointPolicy(model, EvalConfig(policy="p", suite="reach", out="E"))
        rng, step = np.random.default_rng(seed), 0
        for length in episodes:
            connection = runtime.connection()  # a new episode: a new connection (or a reset)
            for t in range(length):
                obs = _obs(rng, step)
                step += 1
                adapter.observe(0, obs, episode_start=t == 0)
                key = T.image_key("corner2")
                request = ObservationRequest({key: obs[key][None]}, obs[T.STATE][None], obs[T.TASK])
                served = connection.window(request)
                if t % every:
                    continue
                adapter.infer([0])
                ours = model.batches[-1]
                assert set(ours) == set(served)
                for name, value in served.items():
                    if torch.is_tensor(value):
                        torch.testing.assert_close(ours[name], value, rtol=0, atol=0)
                    else:
                        assert ours[name] == value
    finally:
        runtime.close()
