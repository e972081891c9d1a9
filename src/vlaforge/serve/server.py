"""A websocket policy server speaking openpi's protocol (so `openpi_client.WebsocketClientPolicy` works).

Protocol (as openpi's `WebsocketPolicyServer`):
- on connect the server sends one binary frame: the packed metadata dict (`PolicyRuntime.metadata`);
- each request is one binary msgpack-numpy frame holding an observation dict; the reply is one binary
  frame `{"actions": float32 [H, A] (robot units), "server_timing": {"infer_ms", "queue_ms",
  "batch_size", "prev_total_ms"}}`;
- `{"reset": True}` clears this connection's observation history and is answered `{"reset": True}`;
- `GET /healthz` answers 200 "OK" (no API key needed).

Errors (deviation from openpi): openpi sends the traceback as a text frame, then closes the connection
with code 1011 and re-raises. We send one text frame naming the problem (`bad request: ...` for a
malformed frame or observation, `inference failed: ...` for a model error) and keep the connection
open, since the framing is intact and the next request may be fine; openpi's client turns the text
frame into a `RuntimeError`. A frame over `max_message_bytes` closes the connection (code 1009,
"message too big"), a connection silent for `idle_timeout_s` (including a client stalled mid-frame)
is closed with code 1000 and reason "idle for N s", and the handshake must finish within
`open_timeout_s`. One client's problems never stall another: each connection is its own coroutine,
requests are decoded and checked on a thread pool (never on the event loop) within bounded counts
(`vlaforge.serve.protocol.request_limits`: array/map/string lengths, containers, nesting) and
`decode_timeout_s` (past it the connection is closed with 1008), and model code runs on the
runtime's inference thread.

Hostile input, each refused with a `bad request: ...` text frame: frames wider or taller than
`max_frame_scale` x the recorded frame size, a state that is not finite after the cast to float32,
maps nested deeper than 8 levels, more elements than a request can hold. A policy that outputs NaN
or Inf gets `inference failed: ... non-finite actions`: such actions are never sent. With a
`SafetyConfig` (`vlaforge serve --safety FILE`) every reply chunk is passed through a per-connection
`SafetySupervisor` and the reply carries `safety: {"interventions": {...}, "estop": reason | None}`.

API key: when set, the handshake must carry `Authorization: Api-Key <key>` (what openpi's client
sends for `api_key=`), otherwise it is refused with HTTP 401 (two `Authorization` headers: 400).
The default host is loopback.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hmac
import http
import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np
import websockets
from websockets.asyncio.server import Request, Response, ServerConnection, serve

from vlaforge.errors import VlaforgeError
from vlaforge.serve.protocol import (
    ObservationSpec,
    ProtocolError,
    is_reset,
    packb,
    request_limits,
    unpackb,
    validate_observation,
)
from vlaforge.serve.runtime import ConnectionWindow, PolicyRuntime
from vlaforge.serve.safety import SafetyConfig, SafetySupervisor

logger = logging.getLogger("vlaforge.serve")


@dataclass(frozen=True)
class ServerConfig:
    """Network settings of `PolicyServer`."""

    host: str = "127.0.0.1"
    """Interface to bind; loopback by default (0.0.0.0 accepts other machines: then set an API key)."""
    port: int = 8000
    """TCP port; 0 picks a free one (see `PolicyServer.port`)."""
    api_key: str | None = None
    """When set, clients must send the header `Authorization: Api-Key <api_key>` (`vlaforge serve`
    takes $VLAFORGE_API_KEY when this is not given)."""
    max_message_bytes: int = 16 * 1024 * 1024
    """Largest accepted request frame in bytes (at least 1024); bigger ones close the connection with
    1009. 16 MiB fits 8 cameras at 512 px."""
    idle_timeout_s: float | None = 300.0
    """Close a connection that sends nothing for this many seconds (also frees a client stalled
    mid-frame); none (or 0) = never."""
    open_timeout_s: float = 10.0
    """The websocket handshake must complete within this many seconds."""
    ping_interval_s: float | None = 20.0
    """Seconds between keepalive pings (websockets' own); a peer that stops answering is dropped.
    None = no pings."""
    max_frame_scale: float = 4.0
    """Refuse image frames wider or taller than this multiple of the recorded frame size per side
    (the metadata's `shape`); bigger frames cost every client resize time and memory."""
    decode_timeout_s: float = 5.0
    """Deadline to decode and check one request (off the event loop); past it the connection is
    closed with 1008."""
    decode_threads: int = 4
    """Threads that decode and check requests, shared by all connections."""

    def __post_init__(self) -> None:
        """Bad values fail here, before any policy is loaded (`vlaforge serve --port 99999`)."""
        checks = [
            (0 <= self.port <= 65535, f"port {self.port} is not in 0..65535"),
            (
                self.max_message_bytes >= 1024,
                f"max_message_bytes {self.max_message_bytes} is too small (at least 1024)",
            ),
            (self.idle_timeout_s is None or self.idle_timeout_s >= 0, "idle_timeout_s must be >= 0"),
            (self.open_timeout_s > 0, f"open_timeout_s {self.open_timeout_s} must be > 0"),
            (self.ping_interval_s is None or self.ping_interval_s > 0, "ping_interval_s must be > 0"),
            (self.max_frame_scale >= 1, f"max_frame_scale {self.max_frame_scale} must be >= 1"),
            (self.decode_timeout_s > 0, f"decode_timeout_s {self.decode_timeout_s} must be > 0"),
            (self.decode_threads >= 1, f"decode_threads {self.decode_threads} must be >= 1"),
            (bool(self.host.strip()), "host must not be empty"),
        ]
        for ok, message in checks:
            if not ok:
                raise VlaforgeError(f"server: {message}")


def request_spec(runtime: PolicyRuntime, config: ServerConfig) -> ObservationSpec:
    """The runtime's spec with the largest accepted frame per camera set from `max_frame_scale`."""
    scale = config.max_frame_scale
    sizes = [runtime.io.frame_size(c) for c in runtime.spec.cameras]
    max_frames = tuple((int(h * scale), int(w * scale)) for h, w in sizes)
    return dataclasses.replace(runtime.spec, max_frames=max_frames)


class _Connection:
    """Per-connection state: the observation history and, with server-side safety, a supervisor."""

    def __init__(self, history: ConnectionWindow, safety: SafetyConfig | None) -> None:
        self.history = history
        self.safety = SafetySupervisor(None, safety) if safety is not None else None
        self.prev_total_ms: float | None = None


class PolicyServer:
    """Serve a `PolicyRuntime` over websockets; `serve_forever()` or `start_in_thread()`."""

    def __init__(
        self, runtime: PolicyRuntime, config: ServerConfig | None = None, safety: SafetyConfig | None = None
    ) -> None:
        self.runtime = runtime
        self.config = config or ServerConfig()
        self.safety = safety
        self.spec = request_spec(runtime, self.config)
        self._limits = request_limits(self.spec, self.config.max_message_bytes)
        self._pool = ThreadPoolExecutor(self.config.decode_threads, thread_name_prefix="vlaforge-decode")
        self._metadata = packb(self._describe(runtime.metadata()))
        self._server = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self.port: int | None = None

    # ------------------------------------------------------------------ running
    async def _start(self):
        cfg = self.config
        self._server = await serve(
            self._handler,
            cfg.host,
            cfg.port,
            process_request=self._process_request,
            compression=None,
            max_size=cfg.max_message_bytes,
            open_timeout=cfg.open_timeout_s,
            ping_interval=cfg.ping_interval_s,
            ping_timeout=cfg.ping_interval_s,
        )
        self.port = self._server.sockets[0].getsockname()[1]
        logger.info("serving %s on ws://%s:%d", self.runtime.name, cfg.host, self.port)
        return self._server

    def _describe(self, meta: dict) -> dict:
        """The runtime's metadata plus this server's limits."""
        for cam, (h, w) in zip(self.spec.cameras, self.spec.max_frames, strict=True):
            entry = meta["observation"].get(f"observation.images.{cam}")
            if entry is not None:
                entry["max_shape"] = [h, w, 3]
                entry["description"] = entry["description"].replace("any size is accepted", f"up to {h}x{w}")
        meta["limits"] = {
            "max_message_bytes": self.config.max_message_bytes,
            "max_frame_scale": self.config.max_frame_scale,
        }
        meta["safety"] = dataclasses.asdict(self.safety) if self.safety is not None else None
        return meta

    async def run(self, on_ready: Callable[[int], None] | None = None) -> None:
        server = await self._start()
        if on_ready is not None:
            on_ready(self.port)
        await server.serve_forever()

    def serve_forever(self, on_ready: Callable[[int], None] | None = None) -> None:
        """Serve until interrupted; `on_ready(port)` runs once the port is bound."""
        asyncio.run(self.run(on_ready))

    def start_in_thread(self) -> PolicyServer:
        """Start on a background event loop; returns once the port is bound (tests, benchmarks)."""
        ready = threading.Event()
        self._loop = asyncio.new_event_loop()

        def main() -> None:
            asyncio.set_event_loop(self._loop)
            self._loop.run_until_complete(self._start())
            ready.set()
            self._loop.run_forever()

        self._thread = threading.Thread(target=main, name="vlaforge-server", daemon=True)
        self._thread.start()
        if not ready.wait(30):
            raise RuntimeError("the policy server did not start within 30 s")
        return self

    def stop(self) -> None:
        """Stop a server started with `start_in_thread` and its runtime."""
        if self._loop is not None and self._server is not None:

            async def shutdown() -> None:
                self._server.close()
                await self._server.wait_closed()

            asyncio.run_coroutine_threadsafe(shutdown(), self._loop).result(timeout=10)
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=10)
        self._pool.shutdown(wait=False, cancel_futures=True)
        self.runtime.close()

    def __enter__(self) -> PolicyServer:
        return self if self._thread else self.start_in_thread()

    def __exit__(self, *exc) -> None:
        self.stop()

    # ------------------------------------------------------------------ HTTP before the upgrade
    def _process_request(self, connection: ServerConnection, request: Request) -> Response | None:
        if request.path == "/healthz":
            return connection.respond(http.HTTPStatus.OK, "OK\n")
        key = self.config.api_key
        if key is not None:
            given = request.headers.get_all("Authorization")
            if len(given) > 1:
                logger.warning("refused %s: %d Authorization headers", connection.remote_address, len(given))
                return connection.respond(http.HTTPStatus.BAD_REQUEST, "send one Authorization header\n")
            sent = given[0].encode("utf-8", "replace") if given else b""
            if not hmac.compare_digest(sent, f"Api-Key {key}".encode()):
                logger.warning("refused %s: missing or wrong API key", connection.remote_address)
                return connection.respond(http.HTTPStatus.UNAUTHORIZED, "missing or wrong API key\n")
        return None

    # ------------------------------------------------------------------ one connection
    async def _handler(self, ws: ServerConnection) -> None:
        peer = ws.remote_address
        logger.info("connection from %s", peer)
        conn = _Connection(self.runtime.connection(), self.safety)
        await ws.send(self._metadata)
        try:
            while True:
                frame = await self._receive(ws)
                if frame is None:
                    return
                start = time.perf_counter()
                reply = await self._answer(frame, conn)
                if reply is None:  # past the decode deadline: the connection is closed
                    await ws.close(1008, f"request not decoded within {self.config.decode_timeout_s:g} s")
                    return
                await ws.send(reply)
                if not isinstance(reply, str):
                    conn.prev_total_ms = (time.perf_counter() - start) * 1000
        except websockets.ConnectionClosed as closed:
            logger.info("connection from %s closed: %s", peer, closed)

    async def _receive(self, ws: ServerConnection) -> bytes | str | None:
        timeout = self.config.idle_timeout_s
        try:
            return await asyncio.wait_for(ws.recv(), timeout)
        except asyncio.TimeoutError:
            logger.info("closing %s: idle for %s s", ws.remote_address, timeout)
            await ws.close(1000, f"idle for {timeout:g} s")
            return None

    def _prepare(self, frame: bytes | str, conn: _Connection) -> dict[str, Any] | bytes | str:
        """Decode and check one frame (on the decode pool): a model window, a packed reply or an error."""
        try:
            obs = unpackb(frame, self._limits)
            if is_reset(obs):
                conn.history.clear()
                if conn.safety is not None:
                    conn.safety.reset()
                return packb({"reset": True})
            request = validate_observation(obs, self.spec)
            window = conn.history.window(request)
        except ProtocolError as err:
            logger.info("bad request: %s", err)
            return f"bad request: {err}"
        except RecursionError:
            return "bad request: the message is nested too deeply"
        except Exception as err:  # a bug of ours must not end the client's session either
            logger.exception("could not prepare a request")
            return f"server error: {type(err).__name__}: {err}"
        return {"window": window, "state": request.state[-1] if request.state.size else None}

    async def _answer(self, frame: bytes | str, conn: _Connection) -> bytes | str | None:
        """The reply to one frame: packed bytes, a text frame naming the problem, or None (deadline)."""
        loop = asyncio.get_running_loop()
        job = loop.run_in_executor(self._pool, self._prepare, frame, conn)
        try:
            prepared = await asyncio.wait_for(job, self.config.decode_timeout_s)
        except asyncio.TimeoutError:
            logger.warning("request not decoded within %s s: closing", self.config.decode_timeout_s)
            return None
        if not isinstance(prepared, dict):
            return prepared
        try:
            result = await asyncio.wrap_future(self.runtime.submit(prepared["window"]))
        except Exception as err:
            return f"inference failed: {type(err).__name__}: {err}"
        return self._reply(result, prepared["state"], conn)

    def _reply(self, result: dict, state: np.ndarray | None, conn: _Connection) -> bytes | str:
        actions = np.asarray(result["actions"], dtype=np.float32)  # [H, A]
        message: dict[str, Any] = {}
        if conn.safety is not None:
            actions = conn.safety.filter_chunk(
                actions, state, commit=self.runtime.io.execute_steps
            )  # finite, within the limits, counted
            message["safety"] = {
                "interventions": dict(conn.safety.interventions),
                "estop": conn.safety.stopped,
            }
        elif not np.isfinite(actions).all():
            bad = int((~np.isfinite(actions)).sum())
            logger.warning("the policy produced %d non-finite action values: not sent", bad)
            return f"inference failed: the policy produced non-finite actions ({bad} of {actions.size} values NaN/Inf)"
        timing = {key: result[key] for key in ("infer_ms", "queue_ms", "batch_size")}
        if conn.prev_total_ms is not None:
            timing["prev_total_ms"] = conn.prev_total_ms
        return packb({"actions": actions, "server_timing": timing, **message})
