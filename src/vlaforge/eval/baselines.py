"""Reference policies that run through the same runner as a trained one.

- `ExpertPolicy`: Meta-World's scripted expert. It needs the privileged 39-d state, so the runner asks
  the workers to attach `env.expert_action()` to each observation (`uses_expert_action`) and this
  policy returns it as a one-step chunk. A set-up that scores well below ~98% with it is broken.
- `RandomPolicy`: uniform actions in [-1, 1]^4, the floor (about 0 on anything but the easiest tasks).

Both expose the slice of `PolicyConfig` the runner reads (`ScriptedConfig`) and set
`uses_images = False`: the runner then renders only the episodes whose video it keeps.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from vlaforge.eval.workers import EXPERT_ACTION


@dataclass(frozen=True)
class ScriptedConfig:
    """What the runner reads from a policy's config; a scripted policy needs no history or chunk."""

    cameras: tuple[str, ...] = ("corner2",)  # rendered for the videos only
    image_size: int = 128  # render size (videos only)
    history: int = 1
    chunk: int = 1
    execute_steps: int = 1
    action_dim: int = 4
    state_dim: int = 4


class _ScriptedPolicy:
    """What the runner needs of a policy object, for policies that are not networks."""

    uses_images = False  # episodes without a kept video run physics only (set True to render anyway)

    def __init__(self, config: ScriptedConfig | None = None) -> None:
        self.config = config or ScriptedConfig()
        self.metadata: dict = {}

    def reset(self) -> None:
        pass


class ExpertPolicy(_ScriptedPolicy):
    """Meta-World's scripted expert: the worker computes the action from the privileged state."""

    uses_expert_action = True

    def sample_actions(self, observation: dict, generator: torch.Generator | None = None) -> torch.Tensor:
        return observation[EXPERT_ACTION].float()[:, None, :]  # [B, 1, A]


class RandomPolicy(_ScriptedPolicy):
    """Uniform random actions in [-1, 1]^A."""

    def sample_actions(self, observation: dict, generator: torch.Generator | None = None) -> torch.Tensor:
        batch = len(observation["task"])
        shape = (batch, self.config.chunk, self.config.action_dim)
        return torch.rand(shape, generator=generator) * 2.0 - 1.0  # [B, H, A]
