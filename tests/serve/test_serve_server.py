"""A real server on 127.0.0.1 serving a tiny real checkpoint, spoken to by openpi's own client."""

from __future__ import annotations

import socket
import struct
import threading
import urllib.error
import urllib.request

import msgpack
import numpy as np
import pytest
import torch
import websockets
from openpi_client import msgpack_numpy
from openpi_client.websocket_client_policy import WebsocketClientPolicy
from websockets.sync.client import connect

from vlaforge.control.client import PolicyClient, ServerError
from vlaforge.serve.runtime import PolicyRuntime
from vlaforge.serve.server import PolicyServer, ServerConfig

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


def _bad_frames() -> list[tuple[object, str]]:
    good = _obs(5)
    nan_state = {**good, "observation.state": np.array([0, np.nan, 0, 0], np.float32)}
    float_image = {**good, CAM: np.full((32, 32, 3), np.nan, np.float32)}
    object_array = msgpack.packb(
        {"x": {b"__ndarray__": True, b"data": b"\0" * 8, b"dtype": "|O", b"shape": [1]}}
    )
    return [
        ("a text frame", "text frame"),
        (b"\xc1 not msgpack", "not valid msgpack"),
        (msgpack_numpy.packb([1, 2, 3]), "map of observation keys"),
        (msgpack_numpy.packb({k: v for k, v in good.items() if k != CAM}), f"missing key '{CAM}'"),
        (msgpack_numpy.packb({k: v for k, v in good.items() if k != "prompt"}), "missing the instruction"),
        (msgpack_numpy.packb({**good, "observation.state": np.zeros(7, np.float32)}), r"shape [4]"),
        (msgpack_numpy.packb(nan_state), "NaN or Inf"),
        (msgpack_numpy.packb(float_image), "must be uint8"),
        (object_array, "is not allowed"),
    ]


def test_malformed_requests_get_errors_and_the_connection_keeps_serving(server):
    with connect(f"ws://127.0.0.1:{server.port}", max_size=None) as ws:
        ws.recv()  # metadata
        for frame, problem in _bad_frames():
            ws.send(frame)
            reply = ws.recv(timeout=10)
            assert isinstance(reply, str) and reply.startswith("bad request:") and problem in reply, reply
        ws.send(msgpack_numpy.packb(_obs(6)))
        assert msgpack_numpy.unpackb(ws.recv(timeout=10))["actions"].shape == (8, 4)
    assert _healthz(server.port) == 200


def test_openpi_client_sees_errors_as_runtime_error(server):
    client = WebsocketClientPolicy("127.0.0.1", server.port)
    with pytest.raises(RuntimeError, match="missing the instruction"):
        client.infer({CAM: np.zeros((32, 32, 3), np.uint8), "observation.state": np.zeros(4, np.float32)})
    assert client.infer(_obs(7))["actions"].shape == (8, 4)
    client._ws.close()


def test_oversized_message_closes_only_that_connection(server):
    good = WebsocketClientPolicy("127.0.0.1", server.port)
    with connect(f"ws://127.0.0.1:{server.port}", max_size=None) as ws:
        ws.recv()
        ws.send(msgpack_numpy.packb({CAM: np.zeros((256, 256, 3), np.uint8)}))  # 196 KB > 64 KB limit
        with pytest.raises(websockets.ConnectionClosed) as closed:
            ws.recv(timeout=10)
        assert closed.value.rcvd.code == 1009  # message too big
    assert good.infer(_obs(8))["actions"].shape == (8, 4)
    assert _healthz(server.port) == 200
    good._ws.close()


def _stalled_socket(port: int) -> socket.socket:
    """Complete the websocket handshake by hand, then send half of a masked binary frame and stall."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    sock.sendall(
        b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    assert b"101" in sock.recv(4096).split(b"\r\n", 1)[0]
    sock.sendall(struct.pack("!BBH", 0x82, 0x80 | 126, 1000) + b"mask" + b"x" * 10)  # 10 of 1000 bytes
    return sock


def test_stalled_bad_and_good_clients_at_the_same_time(server, runtime):
    stalled = _stalled_socket(server.port)
    silent = socket.create_connection(("127.0.0.1", server.port), timeout=10)  # never handshakes
    stop = threading.Event()

    def spam() -> None:
        with connect(f"ws://127.0.0.1:{server.port}") as ws:
            ws.recv()
            while not stop.is_set():
                ws.send(b"\xc1 garbage")
                assert ws.recv(timeout=10).startswith("bad request")

    bad = threading.Thread(target=spam)
    bad.start()
    try:
        client = WebsocketClientPolicy("127.0.0.1", server.port)
        for seed in range(5):
            assert client.infer(_obs(seed))["actions"].shape == (8, 4)
            assert _healthz(server.port) == 200
        client._ws.close()
    finally:
        stop.set()
        bad.join(timeout=10)
        stalled.close()
        silent.close()


def test_idle_timeout_closes_a_stalled_client(runtime):
    own = PolicyRuntime(runtime.policy, warmup=False)
    with PolicyServer(own, ServerConfig(port=0, idle_timeout_s=0.3)) as srv:
        sock = _stalled_socket(srv.port)
        sock.settimeout(10)
        data = b""
        while b"idle for" not in data and (chunk := sock.recv(4096)):  # metadata, then the close frame
            data += chunk
        assert b"\x88\x10\x03\xe8idle for 0.3 s" in data  # CLOSE, code 1000, the reason
        sock.close()
        assert _healthz(srv.port) == 200


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


def test_api_key_is_checked(runtime):
    own = PolicyRuntime(runtime.policy, warmup=False)
    with PolicyServer(own, ServerConfig(port=0, api_key="s3cret")) as srv:
        client = WebsocketClientPolicy("127.0.0.1", srv.port, api_key="s3cret")
        assert client.infer(_obs(9))["actions"].shape == (8, 4)
        client._ws.close()
        for key in (None, "wrong"):
            with pytest.raises(websockets.InvalidStatus) as refused:
                WebsocketClientPolicy("127.0.0.1", srv.port, api_key=key)
            assert refused.value.response.status_code == 401
        with pytest.raises(ServerError, match="HTTP 401"):
            PolicyClient("127.0.0.1", srv.port, api_key="wrong")
        assert _healthz(srv.port) == 200  # health checks need no key
        with pytest.raises(urllib.error.HTTPError):
            urllib.request.urlopen(f"http://127.0.0.1:{srv.port}/", timeout=5)
