"""A policy server (openpi's websocket protocol) as an eval `Policy`: `EvalConfig(policy="ws://HOST:PORT")`.

One `vlaforge.control.client.PolicyClient` connection per environment slot, so a server that keeps
history per connection (`vlaforge serve`) sees each episode as its own stream. What to send comes
from the server's metadata (sent on connect):

- `vlaforge serve` describes everything: `observation` (key -> {shape, dtype}), `instruction_keys`,
  `cameras`, `state_dim`, `action_dim`, `chunk`, `execute_steps`, `history`, and a `reset` message.
- A server whose metadata does not (openpi's own) is described by `EvalConfig.key_map`
  ("env key=server key,...", e.g. `observation.images.corner2=observation/image,
  observation.state=observation/state,task=prompt`) plus `cameras` / `image_size` / `action_dim` /
  `execute_steps`; anything not given falls back to the simulator's defaults.

Episode starts: `{"reset": True}` is sent (client.reset()) only when the metadata says the server
understands it (`"server": "vlaforge"` or a `reset` entry); openpi's stateless server would try to
infer on it. History: a server with `history` T > 1 keeps the last T frames per connection; the
runner asks for a chunk only every k steps, so the frames in between are sent too: one by one while
the episode has fewer than T frames (the server pads exactly as a local checkpoint does), else as one
full `[T, ...]` window that replaces the server's history. Either way the server's model sees the
window a local checkpoint would see.

Failures: a server error, a closed connection or a timeout (`timeout_s`) fails that slot's episode with
the reason (the runner records it in `EpisodeResult.error`); the slot reconnects for its next episode.
"""

from __future__ import annotations

import contextlib
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np

from vlaforge import keys as T
from vlaforge.config import key_value_pairs
from vlaforge.control.client import PolicyClient, ServerError
from vlaforge.envs.registry import SimulatorSpec
from vlaforge.errors import VlaforgeError
from vlaforge.eval.baselines import DEFAULT_IMAGE_SIZE
from vlaforge.eval.config import EvalConfig, cameras_of
from vlaforge.eval.policies import Chunks, PolicySpec
from vlaforge.eval.seeds import TrainSeeds


def parse_key_map(text: str) -> dict[str, str]:
    """'a=b,c=d' -> {"a": "b", "c": "d"} (env key -> server key)."""
    return dict(key_value_pairs(text, "key_map", "ENV_KEY=SERVER_KEY"))


@dataclass(frozen=True)
class Layout:
    """How an env observation becomes a request to this server."""

    keys: dict[str, str]  # env key -> server key, for the images, the state (when sent) and `task`
    history: int  # frames the server keeps per connection
    send_reset: bool  # the server understands {"reset": True}


def _metadata_cameras(meta: dict, key_map: dict[str, str]) -> tuple[str, ...]:
    mapped = tuple(T.camera_of(k) for k in key_map if k.startswith(T.IMAGE_PREFIX))
    return tuple(meta.get("cameras") or ()) or mapped


def _frame_size(meta: dict, camera: str) -> int | None:
    shape = ((meta.get("observation") or {}).get(T.image_key(camera)) or {}).get("shape")
    if isinstance(shape, list) and len(shape) == 3:
        return int(shape[0])
    return int(meta["image_size"]) if isinstance(meta.get("image_size"), int) else None


def describe(meta: dict, cfg: EvalConfig, sim: SimulatorSpec) -> tuple[PolicySpec, Layout]:
    """The policy spec and request layout of a server, from its metadata, the key map and `cfg`."""
    key_map = parse_key_map(cfg.key_map)
    cameras = cameras_of(cfg) or _metadata_cameras(meta, key_map) or sim.default_cameras
    size = cfg.image_size or _frame_size(meta, cameras[0]) or DEFAULT_IMAGE_SIZE
    state_dim = int(meta.get("state_dim", sim.state.dim) or 0)
    instruction = (meta.get("instruction_keys") or ["prompt"])[0]
    keys = {T.image_key(c): T.image_key(c) for c in cameras}
    if state_dim:
        keys[T.STATE] = T.STATE
    keys[T.TASK] = instruction
    keys.update(key_map)
    chunk = int(meta.get("chunk") or meta.get("action_horizon") or 0)
    spec = PolicySpec(
        name=cfg.policy,
        cameras=cameras,
        image_size=int(size),
        history=int(meta.get("history") or 1),
        chunk=chunk,
        execute_steps=int(meta.get("execute_steps") or 1),
        action_dim=int(cfg.action_dim or meta.get("action_dim") or sim.action.dim),
        state_dim=state_dim if T.STATE in keys else 0,
        train_seeds=TrainSeeds.from_metadata(meta)
        if "train_seeds" in meta
        else TrainSeeds.unknown("the policy server does not report its training seeds"),
    )
    send_reset = meta.get("server") == "vlaforge" or "reset" in meta
    return spec, Layout(keys, spec.history, send_reset)


class _Stream:
    """One slot's connection and the frames it has not sent yet."""

    def __init__(self, history: int) -> None:
        self.client: PolicyClient | None = None
        self.frames: deque[dict] = deque(maxlen=history)  # the last `history` requests' contents
        self.unsent: list[dict] = []
        self.count = 0  # frames since the episode start
        self.needs_reset = True


class RemotePolicy:
    """A policy server behind the `Policy` protocol (module docstring)."""

    def __init__(self, cfg: EvalConfig, sim: SimulatorSpec) -> None:
        self.uri, self.timeout_s = cfg.policy, cfg.timeout_s
        try:
            probe = self._connect()
        except ServerError as err:
            raise VlaforgeError(f"cannot use policy server {self.uri}: {err}") from None
        self.metadata = probe.get_server_metadata()
        self.spec, self.layout = describe(self.metadata, cfg, sim)
        self._spare: PolicyClient | None = probe  # the first slot's connection
        self._streams: dict[int, _Stream] = {}
        self._pool: ThreadPoolExecutor | None = None

    def _connect(self) -> PolicyClient:
        return PolicyClient(self.uri, None, timeout_s=self.timeout_s)

    def observe(self, slot: int, obs: dict[str, Any], episode_start: bool) -> None:
        stream = self._streams.get(slot)
        if stream is None:
            stream = self._streams[slot] = _Stream(self.layout.history)
        if episode_start:
            stream.frames.clear()
            stream.unsent, stream.count, stream.needs_reset = [], 0, True
        message = {server: obs[env] for env, server in self.layout.keys.items()}
        stream.frames.append(message)
        stream.unsent.append(message)
        stream.count += 1

    def infer(self, slots: list[int]) -> Chunks:
        if self._pool is None:
            self._pool = ThreadPoolExecutor(max_workers=64, thread_name_prefix="vlaforge-remote")
        futures = [self._pool.submit(self._infer_one, s) for s in slots]
        actions, errors = [], {}
        for slot, future in zip(slots, futures, strict=True):
            chunk, error = future.result()
            actions.append(chunk)
            if error is not None:
                errors[slot] = error
        return Chunks(actions, errors)

    def _infer_one(self, slot: int) -> tuple[np.ndarray | None, str | None]:
        stream = self._streams[slot]
        try:
            chunk = self._request(stream)
        except Exception as err:  # noqa: BLE001 - any failure fails this episode only, with the reason
            self._drop(stream)
            reason = str(err) if isinstance(err, ServerError) else f"{type(err).__name__}: {err}"
            return None, f"policy server {self.uri}: {reason}"
        if chunk.ndim != 2 or chunk.shape[1] != self.spec.action_dim:
            return (
                None,
                f"policy server {self.uri} returned actions of shape {chunk.shape}, expected [H, {self.spec.action_dim}]",
            )
        return chunk, None

    def _request(self, stream: _Stream) -> np.ndarray:
        if stream.client is None:
            stream.client, self._spare = self._spare or self._connect(), None
        if stream.needs_reset and self.layout.send_reset:
            stream.client.reset()
        stream.needs_reset = False
        for message in self._messages(stream):
            reply = stream.client.infer(message)
        stream.unsent = []
        return np.asarray(reply["actions"], dtype=np.float32)  # [H, A]

    def _messages(self, stream: _Stream) -> list[dict]:
        """The current frame alone for a server without history (openpi's); single frames while the
        episode is shorter than the server's history (it pads them) or when only the current frame
        is new; else one full window [T, ...] of the last T frames."""
        if self.layout.history == 1:
            return stream.unsent[-1:]
        if stream.count < self.layout.history or len(stream.unsent) == 1:
            return stream.unsent
        task_key = self.layout.keys[T.TASK]
        window = {k: np.stack([f[k] for f in stream.frames]) for k in stream.frames[-1] if k != task_key}
        window[task_key] = stream.frames[-1][task_key]
        return [window]

    @staticmethod
    def _drop(stream: _Stream) -> None:
        if stream.client is not None:
            with contextlib.suppress(Exception):  # already broken
                stream.client.close()
        stream.client = None

    def reset(self) -> None:
        for stream in self._streams.values():
            stream.needs_reset = True

    def close(self) -> None:
        for stream in self._streams.values():
            self._drop(stream)
        self._streams.clear()
        if self._spare is not None:
            self._spare.close()
            self._spare = None
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None
