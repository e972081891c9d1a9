"""A real server on 127.0.0.1 serving a tiny real checkpoint, spoken to by openpi's own client."""

from __future__ import annotations

import threading
import urllib.error
import urllib.request

import numpy as np
import pytest
import torch
from openpi_client.websocket_client_policy import WebsocketClientPolicy

from vlaforge.control.client import PolicyClient

CAM = "observation.images.corner2"


def _obs(seed: int, task: str = "reach the goal", *, window: bool = False) -> dict:
    rng = np.random.default_rng(seed)
    shape = (2, 32, 32, 3) if window else (32, 32, 3)
    state = rng.uniform(-0.5, 1.0, (2, 4) if window else 4).astype(np.float32)
    return {CAM: rng.integers(0, 256, shape, dtype=np.uint8), "observation.state": state, "prompt": task}


def _expected(policy, frames: list[dict], pad: int) -> np.ndarray:
    """Direct `sample_actions` on the window the server should build (first frame repeated as padding)."""
    frames = [frames[0]] * pad + frames
    batch = {
        CAM: torch.from_numpy(np.stack([f[CAM] for f in frames])[None]),
        "observation.state": torch.from_numpy(np.stack([f["observation.state"] for f in frames])[None]),
        "observation_is_pad": torch.tensor([[i < pad for i in range(len(frames))]]),
        "task": [frames[-1]["prompt"]],
    }
    return policy.sample_actions(batch)[0].numpy()


def _healthz(port: int) -> int:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5) as reply:
        return reply.status


def test_openpi_client_round_trip(server, runtime):
    client = WebsocketClientPolicy("127.0.0.1", server.port)
    meta = client.get_server_metadata()
    a, b = _obs(1), _obs(2)
    first, second = client.infer(a), client.infer(b)
    assert first["actions"].shape == tuple(meta["action"]["shape"]) == (8, 4)
    assert first["actions"].dtype == np.float32 and np.isfinite(first["actions"]).all()
    assert first["server_timing"]["infer_ms"] > 0 and "prev_total_ms" in second["server_timing"]
    # robot units and the server-side history: exactly what the policy gives for the same window
    np.testing.assert_allclose(first["actions"], _expected(runtime.policy, [a], pad=1), atol=1e-5)
    np.testing.assert_allclose(second["actions"], _expected(runtime.policy, [a, b], pad=0), atol=1e-5)
    client._ws.close()


def test_metadata_is_enough_to_build_a_request(server):
    client = WebsocketClientPolicy("127.0.0.1", server.port)
    meta = client.get_server_metadata()
    assert meta["policy"] == {"name": "ckpt", "preset": "test-tiny", "head": "regression"}
    assert (meta["action_dim"], meta["chunk"], meta["state_dim"], meta["history"], meta["fps"]) == (
        4,
        8,
        4,
        2,
        80,
    )
    assert meta["observation"][CAM] == {**meta["observation"][CAM], "dtype": "uint8", "shape": [32, 32, 3]}
    assert meta["observation"]["observation.state"]["shape"] == [4]
    assert set(meta["instruction_keys"]) == {"prompt", "task"} and "reach the goal" in meta["tasks"]
    # a generic client: fill every advertised key with zeros of the advertised shape and dtype
    request = {k: np.zeros(v["shape"], v["dtype"]) for k, v in meta["observation"].items()}
    request[meta["instruction_keys"][0]] = meta["tasks"][0]
    reply = client.infer(request)
    assert reply["actions"].shape == tuple(meta["action"]["shape"])
    client._ws.close()


def test_full_window_equals_streamed_frames_and_reset_clears_history(server):
    a, b = _obs(3), _obs(4)
    with PolicyClient("127.0.0.1", server.port) as client:
        first = client.infer(a)["actions"]
        streamed = client.infer(b)["actions"]
        client.reset()
        window = {
            CAM: np.stack([a[CAM], b[CAM]]),
            "observation.state": np.stack([a["observation.state"], b["observation.state"]]),
            "task": a["prompt"],
        }
        np.testing.assert_allclose(client.infer(window)["actions"], streamed, atol=1e-5)
        client.reset()
        np.testing.assert_allclose(client.infer(a)["actions"], first, atol=1e-5)


def test_openpi_client_sees_errors_as_runtime_error(server):
    client = WebsocketClientPolicy("127.0.0.1", server.port)
    with pytest.raises(RuntimeError, match="missing the instruction"):
        client.infer({CAM: np.zeros((32, 32, 3), np.uint8), "observation.state": np.zeros(4, np.float32)})
    assert client.infer(_obs(7))["actions"].shape == (8, 4)
    client._ws.close()


def test_concurrent_clients_get_their_own_answers(server, runtime):
    tasks = ["reach the goal", "push the block"]
    results: dict[int, tuple[np.ndarray, np.ndarray]] = {}

    def worker(i: int) -> None:
        client = WebsocketClientPolicy("127.0.0.1", server.port)
        obs = _obs(100 + i, tasks[i % 2])
        for _ in range(3):  # same frame each time: after the first, the window is [obs, obs], no pad
            actions = client.infer(obs)["actions"]
        results[i] = (actions, _expected(runtime.policy, [obs, obs], pad=0))
        client._ws.close()

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert sorted(results) == list(range(8))
    for got, want in results.values():  # batching never mixes up rows between clients
        np.testing.assert_allclose(got, want, atol=1e-5)
