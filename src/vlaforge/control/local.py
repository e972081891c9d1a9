"""`LocalPolicy`: a checkpoint in this process behind openpi's `infer(obs) -> {"actions": [H, A]}`.

The robot-side counterpart of a policy server for a policy that runs on the robot's own computer:
one observation window (`vlaforge.models.io`, the window eval and the server build), actions cut to
the embodiment's width in its units, and `infer_guided(obs, committed, delay)` for real-time chunking
with a flow head (`vlaforge.models.rtc`), which `AsyncChunkBroker(rtc=True)` calls. Not thread-safe:
one broker (one thread at a time) per `LocalPolicy`.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from vlaforge.models.io import PolicyIO
from vlaforge.models.rtc import sample_inpainted


class LocalPolicy:
    """`LocalPolicy(VLAPolicy.from_pretrained(ckpt), embodiment=None, seed=0)`."""

    def __init__(self, policy: Any, embodiment: int | str | None = None, seed: int | None = 0) -> None:
        self.policy = policy.eval()
        self.io = PolicyIO(policy, embodiment)
        self._window = self.io.window()
        self.generator = torch.Generator().manual_seed(seed) if seed is not None else None

    def infer(self, obs: dict[str, Any]) -> dict[str, np.ndarray]:
        with torch.inference_mode():
            raw = self.policy.sample_actions(self._window.push(obs), generator=self.generator)
        return {"actions": self.io.actions(raw)[0]}  # [H, A]

    def infer_guided(self, obs: dict[str, Any], committed: np.ndarray, delay: int) -> dict[str, np.ndarray]:
        """A chunk whose first rows continue `committed` [R, A] (row 0 = this observation's step)."""
        batch = self._window.push(obs)
        raw = sample_inpainted(
            self.policy, batch, np.asarray(committed)[None], delay, generator=self.generator
        )
        return {"actions": self.io.actions(raw)[0]}  # [H, A]

    def reset(self) -> None:
        self._window.reset()
