"""Vectorised Meta-World evaluation: many environments in worker processes, one policy call per step.

`evaluate(policy, tasks, config)` runs `episodes_per_task` episodes of each task (`run_evaluation`
also writes the videos, eval_info.json and report.html into a directory). Episodes
are queued task by task and handed to environment slots (`workers * envs_per_worker` of them); when
an episode ends its slot takes the next one. At each control step the runner

1. gathers the slots whose executor needs a new chunk and calls `policy.sample_actions` once on the
   batch of their observation histories (`[B, T, ...]` with `observation_is_pad` for steps before the
   episode start, filled with copies of the first frame as LeRobot pads),
2. pops one action per live slot from its executor (receding horizon, temporal ensembling or single
   step, `vlaforge.control.execution`), clips it to Meta-World's [-1, 1] box and steps all workers at once,
3. ends an episode at the first success (it counts as a success, as in Meta-World's own evaluation),
   at the step limit, or when the environment says done.

Seeds come from a range disjoint from collection seeds (`eval_seeds`); a crashed worker's episodes are
retried from their start with the same seed; Ctrl-C returns what finished so far with
`interrupted: True`, and an error inside the loop still writes the results so far (with the error)
before it is raised. Policies are checked against the environment first (`vlaforge.eval.compat`).
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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from vlaforge import keys as T
from vlaforge.control.execution import ActionExecutor, make_executor
from vlaforge.errors import VlaforgeError
from vlaforge.eval.compat import (
    ENV_ACTION_DIM,
    check_env_spec,
    check_policy_fits,
    env_spec_for,
    resolve_execute_steps,
)
from vlaforge.eval.metrics import EpisodeResult
from vlaforge.eval.report import build_info, write_report
from vlaforge.eval.seeds import TrainSeeds, eval_seeds
from vlaforge.eval.workers import EXPERT_ACTION, EnvPool, EnvSpec

MAX_RETRIES = 3  # per episode, after which the evaluation gives up


@dataclass(frozen=True)
class EvalConfig:
    """Settings of one evaluation run."""

    episodes_per_task: int = 10  # episodes (distinct seeds) per task
    workers: int = 2  # environment worker processes
    envs_per_worker: int = 4  # environment slots per worker; the policy batch is up to workers * this
    max_steps: int = 500  # step limit per episode (Meta-World's 500)
    seed: int = 0  # selects the block of eval seeds and seeds the policy's sampling noise
    execution: str = "receding"  # "receding" | "ensemble" | "single" (vlaforge.control.execution)
    execute_steps: int | None = None  # receding horizon: actions executed per chunk (None: the policy's)
    ensemble_coeff: float = 0.01  # temporal ensembling m in w_i = exp(-m * i), i = 0 the oldest (ACT)
    videos_per_task: int = 2  # mp4 videos of the first K episodes of each task
    video_fps: int = 80  # Meta-World's control rate
    allow_train_seeds: bool = False  # evaluate even if an eval seed was used to collect training data
    # torch threads of the policy while the workers render; None: the cores the workers leave free
    # (at least 1). More threads than free cores makes torch spin against the renderers (8x slower
    # measured on 2 cores with 2 workers).
    torch_threads: int | None = None
    # Which of a mixture policy's datasets (its normalization stats) Meta-World is; None: the policy's
    # default (a single-dataset policy).
    dataset_index: int | None = None


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
    history: deque
    steps: int = 0
    frames: list | None = None
    pending_reset: bool = True


class Rollouts:
    """The rollout loop: owns the slots, the pool and the finished results."""

    def __init__(self, policy: Any, tasks: list[str], cfg: EvalConfig, pool: EnvPool, spec: EnvSpec) -> None:
        self.policy, self.cfg, self.pool, self.spec = policy, cfg, pool, spec
        self.history = max(1, int(getattr(policy.config, "history", 1)))
        self.uses_images = bool(getattr(policy, "uses_images", True))
        self.execute_steps = resolve_execute_steps(policy, cfg)
        seeds = eval_seeds(cfg.seed, cfg.episodes_per_task)
        self.queue = deque(_Episode(t, i, s) for t in tasks for i, s in enumerate(seeds))
        self.slots: dict[int, _Slot] = {}
        self.results: list[EpisodeResult] = []
        self.env_steps = self.policy_calls = self.retries = 0
        self.policy_time = 0.0
        self.device = _policy_device(policy)
        self.generator = torch.Generator(device=self.device).manual_seed(cfg.seed)
        self.on_step: Callable[[Rollouts], None] | None = None
        self.on_episode: Callable[[EpisodeResult, list | None], None] | None = None
        self.error: dict | None = None  # {"message", "traceback"} when an error stopped the loop

    # -- episode bookkeeping -------------------------------------------------------------------
    def _assign(self, slot: int, episode: _Episode) -> None:
        record = episode.index < self.cfg.videos_per_task
        executor = make_executor(self.cfg.execution, self.execute_steps, self.cfg.ensemble_coeff)
        self.slots[slot] = _Slot(episode, executor, deque(maxlen=self.history), frames=[] if record else None)

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

    def _finish(self, slot: int, success: bool) -> None:
        s = self.slots.pop(slot)
        ep = s.episode
        video = f"videos/{ep.task}/episode_{ep.index:03d}.mp4" if s.frames is not None else None
        result = EpisodeResult(ep.task, ep.index, ep.seed, bool(success), s.steps, ep.retries, video)
        self.results.append(result)
        if self.on_episode is not None:
            self.on_episode(result, s.frames)

    # -- observations -------------------------------------------------------------------------
    def _observe(self, slot: int, obs: dict) -> None:
        s = self.slots[slot]
        if s.pending_reset:
            s.history.extend([obs] * self.history)
        else:
            s.history.append(obs)
        if s.frames is not None:
            s.frames.append(obs[T.image_key(self.spec.cameras[0])])

    def _renders(self, slot: int) -> bool:
        """Render when the policy looks at images or this episode's video is kept."""
        return self.uses_images or self.slots[slot].frames is not None

    def _batch(self, slots: list[int]) -> dict:
        """The policy input for `slots`: images [B, T, H, W, C] uint8, state [B, T, S], pads [B, T]."""
        hist = [list(self.slots[s].history) for s in slots]
        batch: dict[str, Any] = {}
        for cam in self.spec.cameras if self.uses_images else ():
            key = T.image_key(cam)
            batch[key] = torch.from_numpy(np.stack([[o[key] for o in h] for h in hist]))  # [B, T, H, W, C]
        states = np.stack([[o[T.STATE] for o in h] for h in hist]).astype(np.float32)
        batch[T.STATE] = torch.from_numpy(states)  # [B, T, S]
        pad = [[i < self.history - 1 - self.slots[s].steps for i in range(self.history)] for s in slots]
        batch[T.OBS_IS_PAD] = torch.tensor(pad, dtype=torch.bool)  # [B, T]
        batch[T.TASK] = [self.slots[s].history[-1][T.TASK] for s in slots]
        if self.cfg.dataset_index is not None:
            batch[T.DATASET_INDEX] = torch.full((len(slots),), self.cfg.dataset_index)  # [B] int64
        if self.spec.expert:
            batch[EXPERT_ACTION] = torch.from_numpy(np.stack([h[-1][EXPERT_ACTION] for h in hist]))  # [B, A]
        return batch

    def _plan(self) -> None:
        need = [s for s, slot in self.slots.items() if slot.executor.needs_chunk()]
        if not need:
            return
        start = time.perf_counter()
        batch = {k: v.to(self.device) if torch.is_tensor(v) else v for k, v in self._batch(need).items()}
        with torch.inference_mode():
            chunks = self.policy.sample_actions(batch, generator=self.generator)  # [B, H, A]
        chunks = chunks.detach().float().cpu().numpy()
        chunks = chunks[..., :ENV_ACTION_DIM]  # [B, H, 4]: a mixture policy's real dims come first
        if not np.isfinite(chunks).all():
            raise VlaforgeError(
                f"the policy returned non-finite actions (NaN/inf) at policy call {self.policy_calls + 1}"
            )
        self.policy_time += time.perf_counter() - start
        self.policy_calls += 1
        for s, chunk in zip(need, chunks, strict=True):
            self.slots[s].executor.add_chunk(chunk)

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
                    self._observe(s, obs[s])
                    self.slots[s].pending_reset = False
            self._retry(crashed)

    def _step(self) -> None:
        self._plan()
        actions = {s: np.clip(slot.executor.pop(), -1.0, 1.0) for s, slot in self.slots.items()}
        out, crashed = self.pool.step(actions)
        for s, (obs, success, done, _info) in out.items():
            if s in crashed:
                continue
            slot = self.slots[s]
            slot.steps += 1
            self.env_steps += 1
            self._observe(s, obs)
            if success or done or slot.steps >= self.cfg.max_steps:
                self._finish(s, success)
        self._retry(crashed)

    def run(self) -> bool:
        """Run until every episode finished; False when stopped early by Ctrl-C or by an error (kept
        in `self.error` with its traceback, so the results so far can still be written)."""
        if hasattr(self.policy, "reset"):
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


def preflight(
    policy: Any, tasks: list[str], cfg: EvalConfig, train_seeds: TrainSeeds | None
) -> tuple[EnvSpec, dict]:
    """Every check that can fail before an environment starts: dims, cameras, k, training seeds."""
    check_policy_fits(policy, cfg.dataset_index)
    spec = env_spec_for(policy, cfg)
    check_env_spec(spec, cfg)
    resolve_execute_steps(policy, cfg)
    seeds = eval_seeds(cfg.seed, cfg.episodes_per_task)
    return spec, (train_seeds or TrainSeeds.unknown()).check(tasks, seeds, allow=cfg.allow_train_seeds)


def evaluate(
    policy: Any,
    tasks: list[str],
    cfg: EvalConfig,
    *,
    train_seeds: TrainSeeds | None = None,
    on_episode: Callable[[EpisodeResult, list | None], None] | None = None,
    on_step: Callable[[Rollouts], None] | None = None,
) -> dict:
    """Roll out `policy` on `tasks`; returns the raw run record (results, timing, counters)."""
    spec, seed_check = preflight(policy, tasks, cfg, train_seeds)
    threads = cfg.torch_threads or max(1, (os.cpu_count() or 1) - cfg.workers)
    saved_threads = torch.get_num_threads()
    start = time.perf_counter()
    try:
        torch.set_num_threads(threads)
        with EnvPool(cfg.workers, spec) as pool:
            loop = Rollouts(policy, tasks, cfg, pool, spec)
            loop.on_step, loop.on_episode = on_step, on_episode
            rollout_start = time.perf_counter()
            completed = loop.run()
            rollout = time.perf_counter() - rollout_start
            restarts = pool.restarts
    finally:
        torch.set_num_threads(saved_threads)
    wall = time.perf_counter() - start
    return {
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
        "torch_threads": threads,
        "env": {"cameras": list(spec.cameras), "image_size": spec.image_size, "max_steps": spec.max_steps},
        "train_seeds": seed_check,
    }


def _policy_device(policy: Any) -> torch.device:
    params = getattr(policy, "parameters", None)
    first = next(iter(params()), None) if callable(params) else None
    return first.device if first is not None else torch.device("cpu")


def run_evaluation(
    policy: Any,
    tasks: list[str],
    cfg: EvalConfig,
    out_dir: str | Path,
    *,
    name: str,
    suite: str | None = None,
    train_seeds: TrainSeeds | None = None,
    on_step: Callable[[Rollouts], None] | None = None,
) -> dict:
    """Evaluate, write the videos as episodes finish, then eval_info.json and report.html."""
    from vlaforge.data.video import write_mp4

    out = Path(out_dir)  # created by the first video or the report, after the checks passed

    def save_video(result: EpisodeResult, frames: list | None) -> None:
        if frames and result.video:
            (out / result.video).parent.mkdir(parents=True, exist_ok=True)
            # yuv420p: the 4:4:4 dataset format does not play in browsers; these videos are for people.
            write_mp4(
                out / result.video, np.stack(frames), fps=cfg.video_fps, pix_fmt="yuv420p", crf=20
            )  # [T, H, W, 3]

    run = evaluate(policy, tasks, cfg, train_seeds=train_seeds, on_episode=save_video, on_step=on_step)
    info = build_info(policy, name, suite or ",".join(tasks), tasks, cfg, run)
    write_report(out, info)
    if run["error"]:
        raise VlaforgeError(
            f"evaluation stopped after {len(run['results'])} episodes by {run['error']['message']} "
            f"(results so far and the traceback: {out / 'eval_info.json'})"
        )
    return info
