"""Reference policies that run through the same runner as a trained one (both implement `Policy`).

- `ExpertPolicy`: the simulator's scripted expert (`SimulatorSpec.expert_action`). It needs the
  privileged state, so its spec asks the workers to attach the expert's action to each observation
  (`needs_expert_action`) and it returns that as a one-step chunk. A set-up that scores well below
  ~98% with it on Meta-World is broken.
- `RandomPolicy`: uniform actions in the simulator's action box, the floor (about 0 on anything but
  the easiest tasks).

Neither looks at images (`uses_images=False`): the runner then renders only the episodes whose video
it may keep. Cameras and render size come from `EvalConfig.cameras` / `image_size` (default: the
simulator's default camera at 128 px).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from vlaforge.envs.registry import SimulatorSpec
from vlaforge.errors import VlaforgeError
from vlaforge.eval.config import EvalConfig, cameras_of
from vlaforge.eval.policies import Chunks, PolicySpec
from vlaforge.eval.seeds import TrainSeeds
from vlaforge.eval.workers import EXPERT_ACTION

DEFAULT_IMAGE_SIZE = 128


def scripted_spec(cfg: EvalConfig, sim: SimulatorSpec, *, expert: bool) -> PolicySpec:
    """The spec of a scripted policy: no history, one-step chunks, the simulator's dims."""
    return PolicySpec(
        name=cfg.policy,
        cameras=sim.check_cameras(cameras_of(cfg) or sim.default_cameras),
        image_size=cfg.image_size or DEFAULT_IMAGE_SIZE,
        history=1,
        chunk=1,
        execute_steps=1,
        action_dim=sim.action.dim,
        state_dim=sim.state.dim,
        uses_images=False,
        needs_expert_action=expert,
        train_seeds=TrainSeeds.not_applicable(cfg.policy),
    )


class ExpertPolicy:
    """The simulator's scripted expert: the worker computes the action from the privileged state."""

    def __init__(self, cfg: EvalConfig, sim: SimulatorSpec) -> None:
        if sim.expert_action is None:
            raise VlaforgeError(f"simulator {sim.name!r} has no scripted expert")
        self.spec = scripted_spec(cfg, sim, expert=True)
        self._actions: dict[int, np.ndarray] = {}

    def observe(self, slot: int, obs: dict[str, Any], episode_start: bool) -> None:
        self._actions[slot] = obs[EXPERT_ACTION]

    def infer(self, slots: list[int]) -> Chunks:
        return Chunks(np.stack([self._actions[s] for s in slots])[:, None].astype(np.float32))  # [B, 1, A]

    def reset(self) -> None:
        self._actions.clear()

    def close(self) -> None:
        self.reset()


class RandomPolicy:
    """Uniform random actions in the simulator's action box (seeded by `cfg.seed`)."""

    def __init__(self, cfg: EvalConfig, sim: SimulatorSpec) -> None:
        self.spec = scripted_spec(cfg, sim, expert=False)
        self.low, self.high = np.asarray(sim.action.low), np.asarray(sim.action.high)
        self.seed = cfg.seed
        self.rng = np.random.default_rng(cfg.seed)

    def observe(self, slot: int, obs: dict[str, Any], episode_start: bool) -> None:
        pass

    def infer(self, slots: list[int]) -> Chunks:
        shape = (len(slots), self.spec.chunk, self.spec.action_dim)
        return Chunks(self.rng.uniform(self.low, self.high, size=shape).astype(np.float32))  # [B, H, A]

    def reset(self) -> None:
        self.rng = np.random.default_rng(self.seed)

    def close(self) -> None:
        pass
