"""The `Policy` protocol the eval runner drives, and the adapter for trained checkpoints.

Every policy the runner evaluates implements `Policy`: a trained checkpoint (`CheckpointPolicy`),
the scripted expert and the random baseline (`vlaforge.eval.baselines`) and a remote policy server
(`vlaforge.eval.remote`). The runner reads only `policy.spec` (a `PolicySpec`) and calls

    policy.observe(slot, obs, episode_start)   # every env step of every live slot
    chunks = policy.infer(slots)               # when those slots' executors need a new chunk
    policy.reset(); policy.close()

`infer` returns `Chunks`: float32 actions [B, H, A] in the simulator's units plus, per slot, the
reason its inference failed (a remote server's error or timeout): that episode then fails with the
reason and the run goes on.

`CheckpointPolicy` builds its inputs with the policy contract (`vlaforge.models.io`): one
`ObservationWindow` per slot (history, padding at an episode start, embodiment index), `collate`,
`sample_actions` and `PolicyIO.actions` (cut to the embodiment's real action dims): the same window
code the server uses. The environment renders each camera at `PolicyIO.frame_size` (the checkpoint
record), never at a size read from the training dataset.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np
import torch

from vlaforge.envs.registry import SimulatorSpec
from vlaforge.errors import VlaforgeError
from vlaforge.eval.config import SCRIPTED, EvalConfig, is_remote
from vlaforge.eval.seeds import TrainSeeds


@dataclass(frozen=True)
class PolicySpec:
    """What the runner needs to know of a policy before any environment starts."""

    name: str  # shown in the report
    cameras: tuple[str, ...]  # cameras the environments render (the first one is the video's)
    image_size: int  # square render size in px (the training frames' size for a checkpoint)
    history: int  # observation steps the policy looks at (shown in the report)
    chunk: int  # actions per predicted chunk (H); 0 when only the replies tell (a remote server)
    execute_steps: int  # receding horizon default: actions executed per chunk
    action_dim: int  # real action dims it returns
    state_dim: int  # proprio dims it expects (0: none)
    uses_images: bool = True  # False: episodes without a kept video run physics only
    needs_expert_action: bool = False  # workers attach the simulator's expert action to observations
    train_seeds: TrainSeeds = field(default_factory=TrainSeeds.unknown)
    supports_rtc: bool = False  # implements `GuidedPolicy.infer_guided` (real-time chunking)
    protocol: str | None = None  # the placement protocol of its training data, when recorded


@dataclass
class Chunks:
    """`infer`'s answer for `slots`: actions float32 [B, H, A] (or one [H, A] per slot); the entries
    of failed slots are undefined."""

    actions: np.ndarray | list[np.ndarray | None]
    errors: dict[int, str] = field(default_factory=dict)  # slot -> why its inference failed


@runtime_checkable
class Policy(Protocol):
    """What the eval runner drives (see the module docstring)."""

    spec: PolicySpec

    def observe(self, slot: int, obs: dict[str, Any], episode_start: bool) -> None:
        """One environment step of `slot` (its first step of an episode when `episode_start`)."""
        ...

    def infer(self, slots: list[int]) -> Chunks:
        """Action chunks for `slots`, from what each observed last."""
        ...

    def reset(self) -> None:
        """Forget every slot (a new evaluation)."""
        ...

    def close(self) -> None:
        """Release connections and devices."""
        ...


@runtime_checkable
class GuidedPolicy(Policy, Protocol):
    """A `Policy` that can also sample real-time-chunking chunks (`vlaforge.models.rtc`)."""

    def infer_guided(
        self, slots: list[int], committed: list[np.ndarray], delay: int, max_guidance: float
    ) -> Chunks:
        """Chunks for `slots` guided toward each slot's committed plan [R, A] (row 0 = now)."""
        ...


class CheckpointPolicy:
    """A `VLAPolicy` (or its INT8 copy) as a `Policy`, for one embodiment (`embodiment_for`)."""

    def __init__(self, policy: Any, cfg: EvalConfig, *, name: str | None = None) -> None:
        from vlaforge.models.io import PolicyIO

        self.policy = policy
        self.io = io = PolicyIO(policy, embodiment=embodiment_for(policy.record, cfg))
        self.device = _device_of(policy)
        self.generator = torch.Generator(device=self.device).manual_seed(cfg.seed)
        self.spec = PolicySpec(
            name=name or cfg.policy,
            cameras=io.cameras,
            image_size=_square_size(io),
            history=io.history,
            chunk=io.chunk,
            execute_steps=io.execute_steps,
            action_dim=io.action_dim,
            state_dim=io.state_dim,
            train_seeds=TrainSeeds.from_record(policy.record, policy.metadata),
            supports_rtc=supports_rtc(policy),
            protocol=io.embodiment_record.protocol if io.embodiment_record is not None else None,
        )
        self._windows: dict[int, Any] = {}  # slot -> ObservationWindow
        self._latest: dict[int, dict] = {}  # slot -> its last window [1, T, ...]

    def observe(self, slot: int, obs: dict[str, Any], episode_start: bool) -> None:
        window = self._windows.get(slot)
        if window is None:
            window = self._windows[slot] = self.io.window()
        if episode_start:
            window.reset()
        self._latest[slot] = window.push(obs)

    def _batch(self, slots: list[int]) -> dict[str, Any]:
        from vlaforge.models.io import collate

        batch = collate([self._latest[s] for s in slots])
        return {k: v.to(self.device) if torch.is_tensor(v) else v for k, v in batch.items()}

    def infer(self, slots: list[int]) -> Chunks:
        with torch.inference_mode():
            raw = self.policy.sample_actions(self._batch(slots), generator=self.generator)  # [B, H, A_policy]
        return Chunks(self.io.actions(raw))  # [B, H, A] the embodiment's real dims

    def infer_guided(
        self, slots: list[int], committed: list[np.ndarray], delay: int, max_guidance: float
    ) -> Chunks:
        from vlaforge.models.rtc import sample_inpainted

        rows = min(len(c) for c in committed)
        plan = np.stack([c[:rows] for c in committed])  # [B, R, A]
        raw = sample_inpainted(
            self.policy, self._batch(slots), plan, delay, max_guidance=max_guidance, generator=self.generator
        )  # [B, H, A_policy]
        return Chunks(self.io.actions(raw))

    def reset(self) -> None:
        self._windows.clear()
        self._latest.clear()
        self.policy.reset()

    def close(self) -> None:
        self.reset()


def supports_rtc(policy: Any) -> bool:
    from vlaforge.models.rtc import supports_rtc as head_supports

    return head_supports(policy)


def _square_size(io: Any) -> int:
    sizes = {io.frame_size(cam) for cam in io.cameras}
    if len(sizes) != 1 or len({*next(iter(sizes))}) != 1:
        raise VlaforgeError(
            f"the checkpoint's cameras were recorded at {sorted(sizes)}; environments render one square size"
        )
    return int(next(iter(sizes))[0])


def _device_of(policy: Any) -> torch.device:
    first = next(iter(policy.parameters()), None)
    return first.device if first is not None else torch.device("cpu")


def resolve_policy(cfg: EvalConfig, sim: SimulatorSpec) -> Policy:
    """`cfg.policy` -> a `Policy`: 'expert' / 'random', ws://HOST:PORT, a checkpoint dir or hub id."""
    if cfg.policy in SCRIPTED:
        from vlaforge.eval.baselines import ExpertPolicy, RandomPolicy

        return (ExpertPolicy if cfg.policy == "expert" else RandomPolicy)(cfg, sim)
    if is_remote(cfg.policy):
        from vlaforge.eval.remote import RemotePolicy

        return RemotePolicy(cfg, sim)
    if not Path(cfg.policy).exists() and cfg.policy.count("/") != 1:
        raise VlaforgeError(
            f"--policy {cfg.policy!r}: no such checkpoint directory (or use 'expert', 'random', ws://HOST:PORT)"
        )
    from vlaforge.models.policy import VLAPolicy

    policy = VLAPolicy.from_pretrained(cfg.policy)
    return CheckpointPolicy(policy.eval().to(_torch_device(cfg.device)), cfg)


def embodiment_for(record: Any, cfg: EvalConfig) -> str | None:
    """The embodiment a checkpoint is evaluated as: `cfg.embodiment` (a name or an index), else the
    one embodiment collected on `cfg.simulator`, else None (the first: a single-robot policy)."""
    if cfg.embodiment:
        record.embodiment(cfg.embodiment)  # an unknown name fails here, naming the choices
        return cfg.embodiment
    ours = [e for e in record.embodiments if e.simulator == cfg.simulator]
    if len(ours) == 1 and len(record.embodiments) > 1:
        return str(ours[0].index)
    if len(ours) > 1:
        names = ", ".join(f"{e.index}={e.name}" for e in ours)
        raise VlaforgeError(
            f"the policy has {len(ours)} embodiments collected on {cfg.simulator} ({names}): choose one with --embodiment"
        )
    return None


def as_policy(policy: Any, cfg: EvalConfig) -> Policy:
    """A `Policy` as is; a `VLAPolicy` (or its INT8 copy, an `nn.Module`) wrapped as a `CheckpointPolicy`."""
    if isinstance(policy, torch.nn.Module):
        return CheckpointPolicy(policy, cfg, name=cfg.policy)
    if not isinstance(policy, Policy):
        raise TypeError(f"{type(policy).__name__} does not implement vlaforge.eval.policies.Policy")
    return policy


def _torch_device(name: str) -> str:
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise VlaforgeError(f"--device {name}: CUDA is not available here")
    return name
