"""The policy side of the server: per-connection observation history, micro-batched inference, metadata.

`PolicyRuntime` owns one `VLAPolicy` and a single inference thread. Requests from every connection
go into one queue; the thread takes whatever is waiting (up to `max_batch`, same image size), stacks
it into one batch and calls `policy.sample_actions` once, so 8 concurrent clients cost about one
batched forward pass instead of 8 serial ones, and the asyncio event loop never runs model code.

History (deviation from openpi, whose server is stateless): the policy consumes `config.history`
frames. A client may send the current frame only (`[H, W, 3]`, `[S]`), and `ObservationHistory`
(one per connection, built on the model's own history helper that the eval runner uses too)
supplies the earlier ones; at the start of an episode the first frame is repeated and marked as
padding (`observation_is_pad`), as LeRobot pads windows. A client may instead
send the whole window (`[T, H, W, 3]`, `[T, S]`), which replaces the stored history. The history is
cleared by a `{"reset": True}` message, or by reconnecting.
"""

from __future__ import annotations

import json
import logging
import queue
import threading
import time
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from vlaforge.models.policy import ObservationHistory as PolicyHistory
from vlaforge.models.policy import collate
from vlaforge.serve.protocol import (
    IMAGE_PREFIX,
    INSTRUCTION_KEYS,
    RESET_KEY,
    STATE_KEY,
    ObservationSpec,
    Request,
)

logger = logging.getLogger("vlaforge.serve")


class ObservationHistory:
    """One connection's history: the model's own `vlaforge.models.policy.ObservationHistory` (the
    eval runner's padding rule) plus full-window requests and frame-size changes."""

    def __init__(self, history: int) -> None:
        self.history = history
        self._inner = PolicyHistory(history)
        self._frame_shape: list[int] | None = None

    def clear(self) -> None:
        self._inner.reset()
        self._frame_shape = None

    def window(self, req: Request) -> dict[str, Any]:
        """The model batch [1, T, ...] for this request (images, state, observation_is_pad, task)."""
        steps, *frame_shape = next(iter(req.images.values())).shape  # [T, H, W, 3]
        if (steps == self.history and steps > 1) or self._frame_shape not in (None, frame_shape):
            self.clear()  # a full window replaces the history; a new frame size starts over
        self._frame_shape = frame_shape
        for t in range(steps):
            frame = {key: v[t] for key, v in req.images.items()}  # [H, W, 3] each
            batch = self._inner.push({**frame, STATE_KEY: req.state[t], "task": req.task})
        return batch


@dataclass
class _Job:
    window: dict[str, Any]  # a model batch [1, T, ...]
    future: Future
    queued_at: float


class PolicyRuntime:
    """A loaded policy behind a queue and one inference thread; `submit(window) -> Future[dict]`.

    The future's result is `{"actions": float32 [H, A], "infer_ms", "queue_ms", "batch_size"}`.
    """

    def __init__(
        self,
        policy: Any,
        *,
        name: str = "policy",
        max_batch: int = 8,
        seed: int | None = 0,
        warmup: bool = True,
    ) -> None:
        self.policy = policy.eval()
        self.name = name
        self.max_batch = max(1, max_batch)
        self.generator = torch.Generator().manual_seed(seed) if seed is not None else None
        cfg = policy.config
        self.spec = ObservationSpec(
            cameras=tuple(cfg.cameras),
            image_size=int(cfg.image_size),
            history=int(cfg.history),
            state_dim=int(cfg.state_dim),
        )
        if warmup:
            self.warmup()
        self._queue: queue.Queue[_Job | None] = queue.Queue()
        self._thread = threading.Thread(target=self._loop, name="vlaforge-infer", daemon=True)
        self._thread.start()

    # ------------------------------------------------------------------ public API
    def warmup(self) -> None:
        """One dummy forward pass (loads the text encoder, caches the known tasks' embeddings), so the
        first client is not served a multi-second first request."""
        side, t, s = self.spec.image_size, self.spec.history, self.spec.state_dim
        tasks = list((getattr(self.policy, "metadata", None) or {}).get("tasks") or []) or ["warm up"]
        images = {
            f"observation.images.{c}": np.zeros((t, side, side, 3), np.uint8) for c in self.spec.cameras
        }
        windows = [
            ObservationHistory(t).window(Request(images, np.zeros((t, s), np.float32), task))
            for task in tasks[:256]
        ]
        for i in range(0, len(windows), self.max_batch):
            self._forward(windows[i : i + self.max_batch])

    def submit(self, window: dict[str, Any]) -> Future:
        future: Future = Future()
        self._queue.put(_Job(window, future, time.perf_counter()))
        return future

    def infer(self, window: dict[str, Any]) -> dict:
        """Blocking inference for one window (used by tests and the latency benchmark)."""
        return self.submit(window).result()

    def close(self) -> None:
        self._queue.put(None)
        self._thread.join(timeout=10)

    def metadata(self) -> dict:
        """The metadata dict sent to every client on connect (see `build_metadata`)."""
        return build_metadata(self.policy, self.spec, name=self.name)

    # ------------------------------------------------------------------ inference thread
    def _loop(self) -> None:
        while True:
            job = self._queue.get()
            if job is None:
                return
            jobs = [job]
            while len(jobs) < self.max_batch:
                try:
                    nxt = self._queue.get_nowait()
                except queue.Empty:
                    break
                if nxt is None:
                    self._queue.put(None)
                    break
                jobs.append(nxt)
            for group in _group_by_shape(jobs):
                self._run(group)

    def _run(self, jobs: list[_Job]) -> None:
        start = time.perf_counter()
        try:
            actions = self._forward([j.window for j in jobs])  # [B, H, A]
        except Exception as err:  # reported to the client(s); the server keeps serving
            if len(jobs) > 1:  # find the culprit: the others must not fail with it
                for job in jobs:
                    self._run([job])
                return
            logger.exception("inference failed")
            jobs[0].future.set_exception(err)
            return
        infer_ms = (time.perf_counter() - start) * 1000
        for i, job in enumerate(jobs):
            job.future.set_result(
                {
                    "actions": actions[i],
                    "infer_ms": infer_ms,
                    "batch_size": len(jobs),
                    "queue_ms": (start - job.queued_at) * 1000,
                }
            )

    @torch.inference_mode()
    def _forward(self, windows: list[dict[str, Any]]) -> np.ndarray:
        batch = collate(windows)  # images [B, T, H, W, 3] uint8, state [B, T, S], is_pad [B, T], task
        actions = self.policy.sample_actions(batch, generator=self.generator)  # [B, H, A]
        return actions.float().cpu().numpy().astype(np.float32)


def _group_by_shape(jobs: list[_Job]) -> list[list[_Job]]:
    groups: dict[tuple, list[_Job]] = {}
    for job in jobs:
        key = tuple(sorted((k, tuple(v.shape)) for k, v in job.window.items() if k.startswith(IMAGE_PREFIX)))
        groups.setdefault(key, []).append(job)
    return list(groups.values())


def build_metadata(policy: Any, spec: ObservationSpec, *, name: str) -> dict:
    """Everything a client needs to build a valid request without reading vlaforge's code."""
    cfg, meta = policy.config, dict(getattr(policy, "metadata", None) or {})
    hist = spec.history
    side = _recorded_frame_size(meta, spec.cameras[0]) or spec.image_size
    observation = {
        f"observation.images.{cam}": {
            "dtype": "uint8",
            "shape": [side, side, 3],
            "history_shape": [hist, side, side, 3],
            "description": f"camera {cam!r}, RGB, LeRobot orientation, at the training frames' size; "
            f"any size is accepted and resized (bilinear) to the model's {spec.image_size} px",
        }
        for cam in spec.cameras
    }
    if spec.state_dim:
        observation[STATE_KEY] = {
            "dtype": "float32",
            "shape": [spec.state_dim],
            "history_shape": [hist, spec.state_dim],
            "description": "proprio, robot units",
        }
    return {
        "server": "vlaforge",
        "protocol": "openpi websocket, msgpack-numpy",
        "policy": {"name": name, "preset": meta.get("preset"), "head": getattr(cfg.head, "kind", None)},
        "observation": observation,
        "instruction_keys": list(INSTRUCTION_KEYS),
        "instruction": "send the task string under 'prompt' (openpi) or 'task'",
        "history": hist,
        "history_note": "send the current frame; the server keeps the last `history` per connection "
        "(first frame repeated as padding) - or send full [history, ...] arrays",
        "cameras": list(spec.cameras),
        "image_size": spec.image_size,
        "state_dim": spec.state_dim,
        "action_dim": int(cfg.action_dim),
        "chunk": int(cfg.chunk),
        "action_horizon": int(cfg.chunk),
        "execute_steps": int(cfg.execute_steps),
        "fps": meta.get("fps"),
        "action": {
            "key": "actions",
            "dtype": "float32",
            "shape": [int(cfg.chunk), int(cfg.action_dim)],
            "units": "robot units (unnormalized)",
            "names": meta.get("action_names"),
        },
        "tasks": list(meta.get("tasks") or []),
        "reset": {RESET_KEY: True},
        "reset_note": "send {'reset': True} at an episode start to clear this connection's history",
        "errors": "a bad request gets a text frame naming the problem; the connection stays open",
    }


def _recorded_frame_size(meta: dict, camera: str) -> int | None:
    """The frame side of the training data (its meta/info.json, when that dataset is on this machine)."""
    for ds in meta.get("datasets") or []:
        info = Path(str(ds.get("root", "") if isinstance(ds, dict) else ds), "meta", "info.json")
        try:
            shape = json.loads(info.read_text())["features"][f"observation.images.{camera}"]["shape"]
            return int(shape[0])
        except (OSError, KeyError, ValueError, TypeError, IndexError):
            continue
    return None


def checkpoint_name(path: str | Path) -> str:
    """A readable policy name: `RUN/checkpoints/last` -> `RUN/last`, else the directory name."""
    p = Path(path).resolve()
    return f"{p.parent.parent.name}/{p.name}" if p.parent.name == "checkpoints" else p.name


def load_runtime(
    path: str | Path, *, int8: bool = False, max_batch: int = 8, seed: int | None = 0
) -> PolicyRuntime:
    """Load a checkpoint (fp32, or an INT8 export from `vlaforge export --int8`) behind a runtime."""
    from vlaforge.deploy.quantize import load_policy

    policy = load_policy(path, int8=int8)
    return PolicyRuntime(policy, name=checkpoint_name(path), max_batch=max_batch, seed=seed)
