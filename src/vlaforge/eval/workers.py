"""Environment worker processes: each owns a few environment slots and steps them on request.

The main process owns the policy; the workers own MuJoCo. Slot `s` lives on worker `s % num_workers`.
Each episode renders its cameras or not (`render=False`: physics only, ~20x faster, for scripted
policies on episodes whose video is not kept). One message per worker per step carries the actions of
all its slots; the pool sends to every worker
first and then collects the replies, so the workers render in parallel.

A worker that dies (segfault, OOM kill, SIGKILL) is restarted; every slot it held loses its episode and
is reported back as crashed so the runner can retry those episodes. A Python exception inside an
environment is a bug, not a crash: it is re-raised in the main process with the worker's traceback.

Environments are built only through the simulator registry (`EnvSpec.simulator`, looked up by name
in the worker). Workers start with the `forkserver` method (the simulator's module is imported once in
the server, so a restart takes milliseconds) and ignore SIGINT: Ctrl-C reaches the main process only, which then
writes its results and closes the pool in order.
"""

from __future__ import annotations

import contextlib  # noqa: E402
import multiprocessing as mp  # noqa: E402
import signal  # noqa: E402
import time  # noqa: E402
import traceback  # noqa: E402
from dataclasses import dataclass  # noqa: E402
from typing import Any  # noqa: E402

import numpy as np  # noqa: E402

from vlaforge.envs.base import Environment  # noqa: E402
from vlaforge.envs.registry import BUILTIN, SimulatorSpec, get_simulator  # noqa: E402

EXPERT_ACTION = "expert_action"  # extra observation key holding env.expert_action() when requested
StepResult = tuple[dict, bool, bool, dict]  # (obs, success, done, info) as Environment.step returns
ResetItem = tuple[int, str, int, bool]  # (slot, task, seed, render): render=False leaves the images out
_CONNECTION_ERRORS = (EOFError, BrokenPipeError, ConnectionResetError, OSError)


@dataclass(frozen=True)
class EnvSpec:
    """How every environment of an evaluation is built (the collection settings)."""

    simulator: str = "metaworld"  # registry name (vlaforge.envs.registry); the worker looks it up
    cameras: tuple[str, ...] = ("corner2",)  # camera names of that simulator, rendered upright
    image_size: int = 128  # square render size in pixels
    max_steps: int = 500  # the environment's own step limit (Meta-World's 500)
    expert: bool = False  # attach the simulator's expert action to each observation under EXPERT_ACTION
    module: str | None = None  # the module registering `simulator` when it is not built in
    protocol: str | None = None  # placement protocol (SimulatorSpec.protocols); None: no choice

    def simulator_spec(self) -> SimulatorSpec:
        return get_simulator(self.simulator, self.module)


def _make_env(task: str, spec: EnvSpec) -> Environment:
    sim = spec.simulator_spec()
    return sim.new_env(
        task,
        cameras=spec.cameras,
        image_size=spec.image_size,
        max_steps=spec.max_steps,
        protocol=spec.protocol,
    )


def _with_expert(env: Environment, obs: dict, spec: EnvSpec) -> dict:
    if spec.expert:
        expert = spec.simulator_spec().expert_action
        obs[EXPERT_ACTION] = np.asarray(expert(env), dtype=np.float32)
    return obs


class _Envs:
    """The worker side: slot -> environment, rebuilt when a slot changes task."""

    def __init__(self, spec: EnvSpec) -> None:
        self.spec = spec
        self.envs: dict[int, Any] = {}
        self.render: dict[int, bool] = {}  # per slot, for the current episode

    def reset(self, items: list[ResetItem]) -> dict[int, dict]:
        out = {}
        for slot, task, seed, render in items:
            env = self.envs.get(slot)
            if env is None or env.task != task:
                if env is not None:
                    env.close()
                env = self.envs[slot] = _make_env(task, self.spec)
            self.render[slot] = render
            out[slot] = _with_expert(env, env.reset(seed, render=render), self.spec)
        return out

    def step(self, actions: dict[int, np.ndarray]) -> dict[int, StepResult]:
        out = {}
        for slot, action in actions.items():
            env = self.envs[slot]
            obs, success, done, info = env.step(action, render=self.render[slot])
            out[slot] = (_with_expert(env, obs, self.spec), bool(success), bool(done), _plain(info))
        return out

    def close(self) -> None:
        for env in self.envs.values():
            env.close()
        self.envs.clear()


def _plain(info: dict) -> dict:
    """Keep the small scalar entries of an info dict (what the runner may log)."""
    return {
        k: float(v) for k, v in info.items() if np.ndim(v) == 0 and isinstance(v, (int, float, np.number))
    }


def worker_main(conn: Any, spec: EnvSpec) -> None:
    """Serve ("reset", items) / ("step", actions) / ("close", None) requests until told to close."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    envs = _Envs(spec)
    try:
        while True:
            cmd, payload = conn.recv()
            if cmd == "close":
                break
            try:
                reply = ("ok", getattr(envs, cmd)(payload))
            except Exception:
                reply = ("error", traceback.format_exc())
            conn.send(reply)
    except (EOFError, KeyboardInterrupt):
        pass
    finally:
        envs.close()
        conn.close()


class EnvPool:
    """`num_workers` processes stepping environment slots; crashed workers are restarted."""

    def __init__(self, num_workers: int, spec: EnvSpec, *, reply_timeout_s: float = 600.0) -> None:
        if num_workers < 1:
            raise ValueError(f"num_workers must be >= 1, got {num_workers}")
        self.spec = spec
        self.num_workers = num_workers
        self.reply_timeout_s = reply_timeout_s
        self.restarts = 0
        self._ctx = mp.get_context("forkserver")
        module = spec.module or BUILTIN.get(spec.simulator)
        self._ctx.set_forkserver_preload(["vlaforge.eval.workers", *([module] if module else [])])
        self._procs: list[Any] = [None] * num_workers
        self._conns: list[Any] = [None] * num_workers
        self._slots: list[set[int]] = [set() for _ in range(num_workers)]
        for w in range(num_workers):
            self._start(w)

    def worker_of(self, slot: int) -> int:
        return slot % self.num_workers

    @property
    def pids(self) -> list[int]:
        return [p.pid for p in self._procs]

    def reset(self, items: list[ResetItem]) -> tuple[dict[int, dict], set[int]]:
        """Reset slots to (task, seed), rendering their episode or not; returns {slot: obs} and the
        slots lost to a crashed worker."""
        per_worker: dict[int, list] = {}
        for slot, task, seed, render in items:
            per_worker.setdefault(self.worker_of(slot), []).append((slot, task, int(seed), bool(render)))
            self._slots[self.worker_of(slot)].add(slot)
        return self._call("reset", per_worker)

    def step(self, actions: dict[int, np.ndarray]) -> tuple[dict[int, StepResult], set[int]]:
        """Step slots; returns {slot: (obs, success, done, info)} and the slots lost to a crash."""
        per_worker: dict[int, dict] = {}
        for slot, action in actions.items():
            per_worker.setdefault(self.worker_of(slot), {})[slot] = np.asarray(action, dtype=np.float32)
        return self._call("step", per_worker)

    def close(self, timeout_s: float = 5.0) -> None:
        """Ask every worker to close its environments and exit; kill those that do not in time.

        After an interruption a worker may still be sending a reply nobody will read (larger than the
        pipe buffer, so it blocks): we keep draining until it exits.
        """
        for conn in self._conns:
            with contextlib.suppress(*_CONNECTION_ERRORS):
                conn.send(("close", None))
        deadline = time.monotonic() + timeout_s
        for proc, conn in zip(self._procs, self._conns, strict=True):
            while proc.is_alive() and time.monotonic() < deadline:
                with contextlib.suppress(*_CONNECTION_ERRORS):
                    if conn.poll(0.05):
                        conn.recv()
                proc.join(timeout=0)
            if proc.is_alive():
                proc.kill()
            proc.join()
            conn.close()

    def __enter__(self) -> EnvPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _start(self, w: int) -> None:
        parent, child = self._ctx.Pipe()
        proc = self._ctx.Process(
            target=worker_main, args=(child, self.spec), daemon=True, name=f"vlaforge-env-{w}"
        )
        proc.start()
        child.close()
        self._procs[w], self._conns[w] = proc, parent

    def _restart(self, w: int) -> set[int]:
        """Replace a dead worker; returns the slots whose episodes died with it."""
        self._conns[w].close()
        if self._procs[w].is_alive():
            self._procs[w].kill()
        self._procs[w].join()
        self.restarts += 1
        lost, self._slots[w] = self._slots[w], set()
        self._start(w)
        return lost

    def _call(self, cmd: str, per_worker: dict[int, Any]) -> tuple[dict, set[int]]:
        crashed: set[int] = set()
        sent = []
        for w, payload in per_worker.items():
            try:
                self._conns[w].send((cmd, payload))
                sent.append(w)
            except _CONNECTION_ERRORS:
                crashed |= self._restart(w)
        results: dict = {}
        for w in sent:
            try:
                if not self._conns[w].poll(self.reply_timeout_s):
                    raise TimeoutError
                status, reply = self._conns[w].recv()
            except (*_CONNECTION_ERRORS, TimeoutError):
                crashed |= self._restart(w)
                continue
            if status == "error":
                raise RuntimeError(f"environment worker {w} failed:\n{reply}")
            results.update(reply)
        return results, crashed
