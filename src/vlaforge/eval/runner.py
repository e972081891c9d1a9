"""Vectorised evaluation on any registered simulator: environments in worker processes, one policy call
per step for every slot that needs a chunk.

`evaluate(policy, tasks, cfg)` runs `cfg.episodes_per_task` episodes of each task (`run_evaluation`
also writes the videos, eval_info.json and report.html into `cfg.out`). The policy is any
`vlaforge.eval.policies.Policy` (checkpoint, scripted expert, random, remote server). Episodes are
queued task by task and handed to environment slots (`workers * envs_per_worker` of them); when an
episode ends its slot takes the next one. At each control step the runner

1. hands every live slot's observation to `policy.observe` (which keeps the observation window),
   then calls `policy.infer` once for the slots whose executor needs a new chunk; a slot whose
   inference failed (a remote server's error or timeout) ends its episode as a failure with the
   reason (`EpisodeResult.error`) and the run goes on,
2. pops one action per live slot from its executor (receding horizon, temporal ensembling or single
   step, `vlaforge.control.execution`), clips it to the simulator's action box and steps all workers,
3. ends an episode at the first success (it counts as a success, as in Meta-World's own evaluation),
   at the step limit, or when the environment says done.

Videos: every episode records its frames in memory while its task still lacks K kept successes or K
kept failures (K = `videos_per_task`), so the report shows failures too. Seeds come from a range
disjoint from collection seeds (`eval_seeds`); a crashed worker's episodes are retried from their
start with the same seed; Ctrl-C returns what finished so far with `interrupted: True`, and an error
inside the loop still writes the results so far (with the error) before it is raised. Policies are
checked against the simulator first (`vlaforge.eval.compat`).
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
import traceback
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from vlaforge import keys as T
from vlaforge.control.execution import ActionExecutor, make_executor
from vlaforge.envs.registry import SimulatorSpec, get_simulator
from vlaforge.errors import VlaforgeError
from vlaforge.eval.compat import (
    check_delay,
    check_env_spec,
    check_policy_fits,
    delay_steps,
    env_spec_for,
    resolve_execute_steps,
)
from vlaforge.eval.config import EvalConfig
from vlaforge.eval.metrics import EpisodeResult, smoothness
from vlaforge.eval.policies import Chunks, Policy, as_policy
from vlaforge.eval.progress import Progress
from vlaforge.eval.report import build_info, write_report
from vlaforge.eval.seeds import eval_seeds
from vlaforge.eval.workers import EnvPool, EnvSpec

MAX_RETRIES = 3  # per episode, after which the evaluation gives up


@dataclass
class _Episode:
    task: str
    index: int
    seed: int
    retries: int = 0


@dataclass
class _Slot:
    """One environment slot running one episode."""

    episode: _Episode
    executor: ActionExecutor
    steps: int = 0
    frames: list | None = None  # the video camera's frames while this episode may be kept
    pending_reset: bool = True
    actions: list = field(default_factory=list)  # executed actions, for the smoothness figures
    switches: list = field(default_factory=list)  # steps whose action came first from a new chunk


class _Videos:
    """Which episodes' videos to keep: the first K successes and the first K failures of each task.

    Every episode records its frames in memory while its task still lacks a kept success or failure
    (at most one episode per slot at a time); at its end it is kept if its outcome still has room."""

    def __init__(self, k: int) -> None:
        self.k = k
        self.kept: dict[tuple[str, bool], int] = {}

    def wanted(self, task: str) -> bool:
        return self.k > 0 and min(self.kept.get((task, True), 0), self.kept.get((task, False), 0)) < self.k

    def keep(self, task: str, success: bool) -> bool:
        n = self.kept.get((task, success), 0)
        if n >= self.k:
            return False
        self.kept[(task, success)] = n + 1
        return True


class Rollouts:
    """The rollout loop: owns the slots, the pool and the finished results."""

    def __init__(
        self,
        policy: Policy,
        tasks: list[str],
        cfg: EvalConfig,
        pool: EnvPool,
        env: EnvSpec,
        sim: SimulatorSpec,
    ) -> None:
        self.policy, self.cfg, self.pool, self.env, self.sim = policy, cfg, pool, env, sim
        self.spec = policy.spec
        self.execute_steps = resolve_execute_steps(self.spec, cfg)
        self.delay = delay_steps(cfg, sim)
        receding = cfg.execution in ("receding", "rtc")
        self.needed = (self.execute_steps if receding else 1) + self.delay  # rows of a chunk used
        seeds = eval_seeds(cfg.seed, cfg.episodes_per_task)
        self.queue = deque(_Episode(t, i, s) for t in tasks for i, s in enumerate(seeds))
        self.total = len(self.queue)
        self.slots: dict[int, _Slot] = {}
        self.results: list[EpisodeResult] = []
        self.videos = _Videos(cfg.videos_per_task)
        self.video_key = T.image_key(env.cameras[0])
        self.env_steps = self.policy_calls = self.retries = 0
        self.policy_time = 0.0
        self.on_step: Callable[[Rollouts], None] | None = None
        self.on_episode: Callable[[EpisodeResult, list | None], None] | None = None
        self.error: dict | None = None  # {"message", "traceback"} when an error stopped the loop

    # -- episode bookkeeping -------------------------------------------------------------------
    def _assign(self, slot: int, episode: _Episode) -> None:
        record = self.videos.wanted(episode.task)
        executor = make_executor(self.cfg.execution, self.execute_steps, self.cfg.ensemble_coeff, self.delay)
        self.slots[slot] = _Slot(episode, executor, frames=[] if record else None)

    def _fill(self) -> None:
        for slot in range(self.pool.num_workers * self.cfg.envs_per_worker):
            if slot not in self.slots and self.queue:
                self._assign(slot, self.queue.popleft())

    def _retry(self, slots: set[int]) -> None:
        for slot in slots & set(self.slots):
            ep = self.slots[slot].episode
            if ep.retries >= MAX_RETRIES:
                raise VlaforgeError(
                    f"{ep.task} episode {ep.index} (seed {ep.seed}) crashed its worker {MAX_RETRIES + 1} times"
                )
            ep.retries += 1
            self.retries += 1
            self._assign(slot, ep)

    def _finish(self, slot: int, success: bool, error: str | None = None) -> None:
        s = self.slots.pop(slot)
        ep = s.episode
        # an episode a policy error ended shows nothing of the policy's behaviour: no video for it
        kept = s.frames is not None and error is None and self.videos.keep(ep.task, bool(success))
        video = f"videos/{ep.task}/episode_{ep.index:03d}.mp4" if kept else None
        jerk, boundary = smoothness(s.actions, s.switches, self.sim)
        result = EpisodeResult(
            ep.task, ep.index, ep.seed, bool(success), s.steps, ep.retries, video, error, jerk, boundary
        )
        self.results.append(result)
        if self.on_episode is not None:
            self.on_episode(result, s.frames if kept else None)

    # -- observations -------------------------------------------------------------------------
    def _observe(self, slot: int, obs: dict, episode_start: bool, final: bool = False) -> None:
        s = self.slots[slot]
        if s.frames is not None:
            s.frames.append(obs[self.video_key])
        if not final:
            self.policy.observe(slot, obs, episode_start)

    def _renders(self, slot: int) -> bool:
        """Render when the policy looks at images or this episode's video may be kept."""
        return self.spec.uses_images or self.slots[slot].frames is not None

    def _plan(self) -> None:
        need = [s for s, slot in self.slots.items() if slot.executor.needs_chunk()]
        if not need:
            return
        start = time.perf_counter()
        chunks = self._infer(need)
        self.policy_time += time.perf_counter() - start
        self.policy_calls += 1
        for i, s in enumerate(need):
            if s in chunks.errors:
                self._finish(s, False, error=chunks.errors[s])
                continue
            chunk = np.asarray(chunks.actions[i])  # [H, A]
            if len(chunk) < self.needed:
                self._finish(
                    s, False, error=f"the policy returned {len(chunk)} actions, {self.needed} are executed"
                )
                continue
            self._check(chunk)
            slot = self.slots[s]
            if not self.delay or not slot.actions:  # applies at once (no delay, or the first chunk)
                slot.switches.append(slot.steps)
            slot.executor.add_chunk(chunk)

    def _infer(self, need: list[int]):
        """One policy call; with real-time chunking, slots that have a plan get guided chunks."""
        if self.cfg.execution != "rtc":
            return self.policy.infer(need)
        guided = [s for s in need if self.slots[s].actions]
        if not guided:
            return self.policy.infer(need)
        if len(guided) < len(need):  # episode starts have no plan to continue: sample those apart
            fresh = [s for s in need if s not in guided]
            a, b = self._infer(fresh), self._infer(guided)
            order = {s: i for i, s in enumerate(fresh)} | {s: len(fresh) + i for i, s in enumerate(guided)}
            both = [*list(a.actions), *list(b.actions)]
            return Chunks([both[order[s]] for s in need], {**a.errors, **b.errors})
        committed = [self.slots[s].executor.planned() for s in guided]
        return self.policy.infer_guided(guided, committed, self.delay, self.cfg.rtc_max_guidance)

    def _check(self, chunk: np.ndarray) -> None:
        if chunk.ndim != 2 or chunk.shape[-1] != self.sim.action.dim:
            raise VlaforgeError(
                f"the policy returned actions of shape {chunk.shape}, {self.sim.display_name} takes "
                f"[H, {self.sim.action.dim}] (policy call {self.policy_calls})"
            )
        if not np.isfinite(chunk).all():
            raise VlaforgeError(
                f"the policy returned non-finite actions (NaN/inf) at policy call {self.policy_calls}"
            )

    # -- the loop ---------------------------------------------------------------------------------
    def _reset_pending(self) -> None:
        while True:
            pending = [s for s, slot in self.slots.items() if slot.pending_reset]
            if not pending:
                return
            items = [
                (s, self.slots[s].episode.task, self.slots[s].episode.seed, self._renders(s)) for s in pending
            ]
            obs, crashed = self.pool.reset(items)
            for s in pending:
                if s in obs and s not in crashed:
                    self._observe(s, obs[s], episode_start=True)
                    self.slots[s].pending_reset = False
            self._retry(crashed)

    def _step(self) -> None:
        self._plan()
        if not self.slots:
            return
        actions = {s: self.sim.action.clip(slot.executor.pop()) for s, slot in self.slots.items()}
        for s, slot in self.slots.items():
            slot.actions.append(actions[s])
            if getattr(slot.executor, "switched", False):  # a delayed chunk takes over at the next step
                slot.switches.append(slot.steps + 1)
        out, crashed = self.pool.step(actions)
        for s, (obs, success, done, _info) in out.items():
            if s in crashed:
                continue
            slot = self.slots[s]
            slot.steps += 1
            self.env_steps += 1
            final = success or done or slot.steps >= self.env.max_steps
            self._observe(s, obs, episode_start=False, final=final)
            if final:
                self._finish(s, success)
        self._retry(crashed)

    def run(self) -> bool:
        """Run until every episode finished; False when stopped early by Ctrl-C or by an error (kept
        in `self.error` with its traceback, so the results so far can still be written)."""
        self.policy.reset()
        try:
            with _sigint_flag() as interrupted:
                while not interrupted:
                    self._fill()
                    if not self.slots:
                        return True
                    self._reset_pending()
                    self._step()
                    if self.on_step is not None:
                        self.on_step(self)
                return False
        except KeyboardInterrupt:
            return False
        except Exception as err:
            self.error = {"message": f"{type(err).__name__}: {err}", "traceback": traceback.format_exc()}
            return False


@contextlib.contextmanager
def _sigint_flag():
    """Ctrl-C sets a flag the loop checks between steps, so it cannot be lost: a KeyboardInterrupt
    raised inside a finalizer or a C callback (video encoding, pipes) is swallowed by Python. A second
    Ctrl-C raises KeyboardInterrupt as usual. Outside the main thread, signals stay as they are."""
    flag: list[int] = []
    if threading.current_thread() is not threading.main_thread():
        yield flag
        return

    def handler(signum, frame):
        if flag:
            raise KeyboardInterrupt
        flag.append(signum)

    previous = signal.signal(signal.SIGINT, handler)
    try:
        yield flag
    finally:
        signal.signal(signal.SIGINT, previous)


def preflight(policy: Policy, tasks: list[str], cfg: EvalConfig, sim: SimulatorSpec) -> tuple[EnvSpec, dict]:
    """Every check that can fail before an environment starts: dims, cameras, k, delay, training seeds."""
    check_policy_fits(policy.spec, sim, cfg)
    check_delay(policy.spec, cfg, sim)
    env = env_spec_for(policy.spec, cfg, sim)
    check_env_spec(env, cfg)
    resolve_execute_steps(policy.spec, cfg)
    seeds = eval_seeds(cfg.seed, cfg.episodes_per_task)
    seed_check = policy.spec.train_seeds.check(
        tasks, seeds, allow=cfg.allow_train_seeds, instructions=sim.instructions
    )
    return env, seed_check


def evaluate(
    policy: Policy | Any,
    tasks: list[str],
    cfg: EvalConfig,
    *,
    on_episode: Callable[[EpisodeResult, list | None], None] | None = None,
    on_step: Callable[[Rollouts], None] | None = None,
) -> dict:
    """Roll out `policy` (a `Policy`, or a `VLAPolicy` wrapped by `as_policy`) on `tasks` of
    `cfg.simulator`; returns the raw run record (results, timing, counters)."""
    policy = as_policy(policy, cfg)
    sim = get_simulator(cfg.simulator)
    threads = cfg.torch_threads or max(1, (os.cpu_count() or 1) - cfg.workers)
    saved_threads = torch.get_num_threads()
    start = time.perf_counter()
    try:
        env, seed_check = preflight(policy, tasks, cfg, sim)
        torch.set_num_threads(threads)
        with EnvPool(cfg.workers, env) as pool:
            loop = Rollouts(policy, tasks, cfg, pool, env, sim)
            loop.on_step, loop.on_episode = on_step, on_episode
            rollout_start = time.perf_counter()
            completed = loop.run()
            rollout = time.perf_counter() - rollout_start
            restarts = pool.restarts
    finally:
        torch.set_num_threads(saved_threads)
        policy.close()
    wall = time.perf_counter() - start
    return {
        "policy_spec": policy.spec,
        "decode_stats": _decode_stats(policy),
        "results": loop.results,
        "interrupted": not completed and loop.error is None,
        "error": loop.error,
        "wall_time_s": wall,
        "env_steps": loop.env_steps,
        "env_steps_per_s": loop.env_steps / wall if wall > 0 else None,
        "rollout_time_s": rollout,  # wall time without starting the workers
        "rollout_steps_per_s": loop.env_steps / rollout if rollout > 0 else None,
        "policy_calls": loop.policy_calls,
        "policy_time_s": loop.policy_time,
        "retries": loop.retries,
        "worker_restarts": restarts,
        "execute_steps": loop.execute_steps,
        "delay_steps": loop.delay,
        "torch_threads": threads,
        "env": {
            "simulator": sim.name,
            "cameras": list(env.cameras),
            "image_size": env.image_size,
            "max_steps": env.max_steps,
            "protocol": env.protocol,
            "training_protocol": policy.spec.protocol,
        },
        "train_seeds": seed_check,
    }


def _decode_stats(policy: Policy) -> dict | None:
    """Token decoding of an autoregressive head (chunks decoded, decodes repaired), else None."""
    stats = getattr(getattr(getattr(policy, "policy", None), "head", None), "decode_stats", None)
    return dict(stats) if stats is not None else None


def run_evaluation(
    policy: Policy | Any,
    tasks: list[str],
    cfg: EvalConfig,
    *,
    on_step: Callable[[Rollouts], None] | None = None,
) -> dict:
    """Evaluate, write the videos as episodes finish, then eval_info.json and report.html into `cfg.out`."""
    from vlaforge.data.video import write_mp4

    out = Path(cfg.out)  # created by the first video or the report, after the checks passed
    sim = get_simulator(cfg.simulator)
    progress = Progress(len(tasks) * cfg.episodes_per_task, enabled=cfg.progress)

    def save_video(result: EpisodeResult, frames: list | None) -> None:
        if frames and result.video:
            (out / result.video).parent.mkdir(parents=True, exist_ok=True)
            # yuv420p: the 4:4:4 dataset format does not play in browsers; these videos are for people.
            write_mp4(
                out / result.video, np.stack(frames), fps=sim.fps, pix_fmt="yuv420p", crf=20
            )  # [T, H, W, 3]
        progress.episode(result)

    try:
        run = evaluate(policy, tasks, cfg, on_episode=save_video, on_step=on_step)
    finally:
        progress.close()
    info = build_info(run["policy_spec"], sim, cfg, tasks, run)
    write_report(out, info)
    if run["error"]:
        raise VlaforgeError(
            f"evaluation stopped after {len(run['results'])} episodes by {run['error']['message']} "
            f"(results so far and the traceback: {out / 'eval_info.json'})"
        )
    return info
