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
`open_timeout_s`. One client's problems never stall another: each connection is its own coroutine
and model code runs on the runtime's inference thread, never on the event loop.

API key: when set, the handshake must carry `Authorization: Api-Key <key>` (what openpi's client
sends for `api_key=`), otherwise it is refused with HTTP 401. The default host is loopback.
"""

from __future__ import annotations

import asyncio
import hmac
import http
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import websockets
from websockets.asyncio.server import Request, Response, ServerConnection, serve

from vlaforge.serve.protocol import ProtocolError, is_reset, packb, unpackb, validate_observation
from vlaforge.serve.runtime import ConnectionWindow, PolicyRuntime

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


class PolicyServer:
    """Serve a `PolicyRuntime` over websockets; `serve_forever()` or `start_in_thread()`."""

    def __init__(self, runtime: PolicyRuntime, config: ServerConfig | None = None) -> None:
        self.runtime = runtime
        self.config = config or ServerConfig()
        self._metadata = packb(runtime.metadata())
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
            given = request.headers.get("Authorization", "")
            if not hmac.compare_digest(given.encode(), f"Api-Key {key}".encode()):
                logger.warning("refused %s: missing or wrong API key", connection.remote_address)
                return connection.respond(http.HTTPStatus.UNAUTHORIZED, "missing or wrong API key\n")
        return None

    # ------------------------------------------------------------------ one connection
    async def _handler(self, ws: ServerConnection) -> None:
        peer = ws.remote_address
        logger.info("connection from %s", peer)
        history = self.runtime.connection()
        await ws.send(self._metadata)
        prev_total_ms: float | None = None
        try:
            while True:
                frame = await self._receive(ws)
                if frame is None:
                    return
                start = time.perf_counter()
                reply = await self._answer(frame, history, prev_total_ms)
                await ws.send(reply)
                if not isinstance(reply, str):
                    prev_total_ms = (time.perf_counter() - start) * 1000
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

    async def _answer(self, frame: bytes | str, history: ConnectionWindow, prev_total_ms: float | None):
        """The reply to one frame: packed bytes, or a text frame naming the problem."""
        try:
            obs = unpackb(frame)
            if is_reset(obs):
                history.clear()
                return packb({"reset": True})
            window = history.window(validate_observation(obs, self.runtime.spec))
        except ProtocolError as err:
            logger.info("bad request: %s", err)
            return f"bad request: {err}"
        except Exception as err:  # a bug of ours must not end the client's session either
            logger.exception("could not prepare a request")
            return f"server error: {type(err).__name__}: {err}"
        try:
            result = await asyncio.wrap_future(self.runtime.submit(window))
        except Exception as err:
            return f"inference failed: {type(err).__name__}: {err}"
        timing = {
            "infer_ms": result["infer_ms"],
            "queue_ms": result["queue_ms"],
            "batch_size": result["batch_size"],
        }
        if prev_total_ms is not None:
            timing["prev_total_ms"] = prev_total_ms
        return packb({"actions": result["actions"], "server_timing": timing})
