"""`PolicyClient`: vlaforge's own client for a policy server (ours or openpi's).

Same interface as `openpi_client.websocket_client_policy.WebsocketClientPolicy` (`infer(obs) -> dict`,
`reset()`, `get_server_metadata()`), plus:
- `reset()` sends `{"reset": True}` so the server clears this connection's observation history
  (openpi's client `reset()` does nothing: its server is stateless);
- a text frame from the server raises `ServerError` with the server's message (openpi raises a bare
  `RuntimeError`); a closed connection raises `ServerError` naming the close code and reason;
- `timeout_s` bounds connecting and each reply;
- `retry_s`: keep retrying a refused connection this long (openpi's client retries forever).
"""

from __future__ import annotations

import time
from typing import Any

import websockets
from websockets.sync.client import ClientConnection, connect

from vlaforge.control.wire import packb, to_str_keys, unpackb
from vlaforge.errors import VlaforgeError


class ServerError(VlaforgeError):
    """The server answered with an error, or the connection ended."""


class PolicyClient:
    """A blocking websocket client: `PolicyClient("127.0.0.1", 8000).infer(obs)["actions"]`."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int | None = 8000,
        *,
        api_key: str | None = None,
        timeout_s: float | None = 60.0,
        retry_s: float = 0.0,
    ) -> None:
        self.uri = host if host.startswith("ws") else f"ws://{host}"
        if port is not None:
            self.uri += f":{port}"
        self.api_key = api_key
        self.timeout_s = timeout_s
        self._ws, self.metadata = self._connect(retry_s)

    def _connect(self, retry_s: float) -> tuple[ClientConnection, dict]:
        headers = {"Authorization": f"Api-Key {self.api_key}"} if self.api_key else None
        deadline = time.monotonic() + retry_s
        while True:
            try:
                ws = connect(
                    self.uri,
                    compression=None,
                    max_size=None,
                    additional_headers=headers,
                    open_timeout=self.timeout_s,
                )
                break
            except ConnectionRefusedError as err:
                if time.monotonic() >= deadline:
                    raise ServerError(f"no policy server at {self.uri} (connection refused)") from err
                time.sleep(0.2)
            except websockets.InvalidStatus as err:
                raise ServerError(
                    f"{self.uri} refused the connection: HTTP {err.response.status_code} "
                    f"{err.response.body.decode(errors='replace').strip()}"
                ) from err
        return ws, to_str_keys(self._decode(ws.recv(timeout=self.timeout_s)))

    def get_server_metadata(self) -> dict:
        return self.metadata

    def infer(self, obs: dict[str, Any]) -> dict[str, Any]:
        """Send one observation; return `{"actions": [H, A], "server_timing": {...}}`."""
        return self._request(obs)

    def reset(self) -> None:
        """Clear the server's observation history for this connection (call at each episode start)."""
        self._request({"reset": True})

    def close(self) -> None:
        self._ws.close()

    def __enter__(self) -> PolicyClient:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _request(self, message: dict[str, Any]) -> dict[str, Any]:
        try:
            self._ws.send(packb(message))
            reply = self._ws.recv(timeout=self.timeout_s)
        except websockets.ConnectionClosed as err:
            raise ServerError(f"connection to {self.uri} closed: {err}") from err
        except TimeoutError as err:
            raise ServerError(f"no reply from {self.uri} within {self.timeout_s} s") from err
        return to_str_keys(self._decode(reply))

    @staticmethod
    def _decode(reply: bytes | str) -> Any:
        if isinstance(reply, str):
            raise ServerError(f"server error: {reply}")
        return unpackb(reply)
