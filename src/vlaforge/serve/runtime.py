"""The policy side of the server: per-connection observation history, micro-batched inference, metadata.

`PolicyRuntime` owns one `VLAPolicy` and a single inference thread. Requests from every connection
go into one queue; the thread takes whatever is waiting (up to `max_batch`, same image size), stacks
it into one batch and calls `policy.sample_actions` once, so 8 concurrent clients cost about one
batched forward pass instead of 8 serial ones, and the asyncio event loop never runs model code.

History (deviation from openpi, whose server is stateless): the policy consumes `config.history`
frames. A client may send the current frame only (`[H, W, 3]`, `[S]`), and `ConnectionWindow`
(one per connection, around `vlaforge.models.io.ObservationWindow`, the window the eval runner
builds too) supplies the earlier ones; at the start of an episode the first frame is repeated and
marked as padding (`observation_is_pad`), as LeRobot pads windows. A client may instead
send the whole window (`[T, H, W, 3]`, `[T, S]`), which replaces the stored history. The history is
cleared by a `{"reset": True}` message, or by reconnecting.

Embodiment: a mixture policy is served as one of its training datasets (`embodiment`, default the
first): requests carry that robot's state width, replies its action width in its units
(`vlaforge.models.io.PolicyIO`); frame sizes, names and fps in the metadata come from the checkpoint
record, never from the training dataset.
"""

from __future__ import annotations

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

from vlaforge.models.io import ObservationWindow, PolicyIO, collate
from vlaforge.serve.protocol import (
    IMAGE_PREFIX,
    INSTRUCTION_KEYS,
    RESET_KEY,
    STATE_KEY,
    ObservationRequest,
    ObservationSpec,
)

logger = logging.getLogger("vlaforge.serve")


class ConnectionWindow:
    """One connection's observation window: `vlaforge.models.io.ObservationWindow` (the eval
    runner's too) fed from requests of one frame or of a full window."""

    def __init__(self, window: ObservationWindow) -> None:
        self._window = window
        self.history = window.history

    def clear(self) -> None:
        self._window.reset()

    def window(self, req: ObservationRequest) -> dict[str, Any]:
        """The model batch [1, T, ...] for this request (images, state, observation_is_pad, task)."""
        steps = next(iter(req.images.values())).shape[0]  # [T, H, W, 3]
        if steps == self.history and steps > 1:
            self.clear()  # a full window replaces the history
        for t in range(steps):
            frame = {key: v[t] for key, v in req.images.items()}  # [H, W, 3] each
            batch = self._window.push({**frame, STATE_KEY: req.state[t], "task": req.task})
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
        embodiment: int | str | None = None,
    ) -> None:
        self.policy = policy.eval()
        self.name = name
        self.max_batch = max(1, max_batch)
        self.generator = torch.Generator().manual_seed(seed) if seed is not None else None
        self.io = PolicyIO(policy, embodiment)
        self.spec = ObservationSpec(
            cameras=self.io.cameras,
            image_size=int(policy.config.image_size),
            history=self.io.history,
            state_dim=self.io.state_dim if policy.config.state_dim else 0,
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
        t, s = self.spec.history, self.spec.state_dim
        tasks = list(self.io.record.tasks) or ["warm up"]
        images = {
            f"{IMAGE_PREFIX}{c}": np.zeros((t, *self.io.frame_size(c), 3), np.uint8)
            for c in self.spec.cameras
        }
        windows = [
            self.connection().window(ObservationRequest(images, np.zeros((t, s), np.float32), task))
            for task in tasks[:256]
        ]
        for i in range(0, len(windows), self.max_batch):
            self._forward(windows[i : i + self.max_batch])

    def connection(self) -> ConnectionWindow:
        """A fresh observation window for one client connection."""
        return ConnectionWindow(self.io.window())

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
        return build_metadata(self.policy, self.io, self.spec, name=self.name)

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
        actions = self.policy.sample_actions(batch, generator=self.generator)  # [B, H, A_policy]
        return self.io.actions(actions)  # [B, H, A] of the served embodiment


def _group_by_shape(jobs: list[_Job]) -> list[list[_Job]]:
    groups: dict[tuple, list[_Job]] = {}
    for job in jobs:
        key = tuple(sorted((k, tuple(v.shape)) for k, v in job.window.items() if k.startswith(IMAGE_PREFIX)))
        groups.setdefault(key, []).append(job)
    return list(groups.values())


def build_metadata(policy: Any, io: PolicyIO, spec: ObservationSpec, *, name: str) -> dict:
    """Everything a client needs to build a valid request without reading vlaforge's code."""
    hist, record, described = spec.history, io.record, io.describe()
    observation = {}
    for cam in spec.cameras:
        h, w = io.frame_size(cam)
        observation[f"{IMAGE_PREFIX}{cam}"] = {
            "dtype": "uint8",
            "shape": [h, w, 3],
            "history_shape": [hist, h, w, 3],
            "role": io.camera_role(cam),
            "description": f"camera {cam!r}, RGB, LeRobot orientation, at the training frames' size; "
            f"any size is accepted and resized (vlaforge.image.resize) to the model's {spec.image_size} px",
        }
    if spec.state_dim:
        observation[STATE_KEY] = {
            "dtype": "float32",
            "shape": [spec.state_dim],
            "history_shape": [hist, spec.state_dim],
            "names": described["state_names"],
            "description": "proprio, robot units",
        }
    return {
        "server": "vlaforge",
        "protocol": "openpi websocket, msgpack-numpy",
        "policy": {"name": name, "preset": record.preset, "head": getattr(policy.config.head, "kind", None)},
        "observation": observation,
        "instruction_keys": list(INSTRUCTION_KEYS),
        "instruction": "send the task string under 'prompt' (openpi) or 'task'",
        "history": hist,
        "history_note": "send the current frame; the server keeps the last `history` per connection "
        "(first frame repeated as padding) - or send full [history, ...] arrays",
        "cameras": list(spec.cameras),
        "image_size": spec.image_size,
        "state_dim": spec.state_dim,
        "action_dim": io.action_dim,
        "chunk": io.chunk,
        "action_horizon": io.chunk,
        "execute_steps": io.execute_steps,
        "fps": io.fps,
        "embodiment": described["embodiment"],
        "embodiments": [{"index": e.index, "name": e.name} for e in record.embodiments],
        "control_mode": described["control_mode"],
        "action": {
            "key": "actions",
            "dtype": "float32",
            "shape": [io.chunk, io.action_dim],
            "units": "robot units (unnormalized)",
            "names": described["action_names"],
        },
        "tasks": list(record.tasks),
        "reset": {RESET_KEY: True},
        "reset_note": "send {'reset': True} at an episode start to clear this connection's history",
        "errors": "a bad request gets a text frame naming the problem; the connection stays open",
    }


def checkpoint_name(path: str | Path) -> str:
    """A readable policy name: `RUN/checkpoints/last` -> `RUN/last`, else the directory name."""
    p = Path(path).resolve()
    return f"{p.parent.parent.name}/{p.name}" if p.parent.name == "checkpoints" else p.name


def load_runtime(
    path: str | Path,
    *,
    int8: bool = False,
    max_batch: int = 8,
    seed: int | None = 0,
    embodiment: int | str | None = None,
) -> PolicyRuntime:
    """Load a checkpoint (fp32, or an INT8 export from `vlaforge export --int8`) behind a runtime."""
    from vlaforge.deploy.quantize import load_policy

    policy = load_policy(path, int8=int8)
    return PolicyRuntime(
        policy, name=checkpoint_name(path), max_batch=max_batch, seed=seed, embodiment=embodiment
    )
