"""The policy contract: what goes into a policy, what comes out, and what its checkpoint records.

Everything that feeds a trained policy outside the trainer (the eval runner, the server, the ONNX and
INT8 exports, the README's Python API) goes through this module, so they build identical inputs:

- `ObservationWindow`: per environment (or connection) step observations -> the model's `[1, T, ...]`
  window. Images and state of the last `history` steps; at an episode start the first step is
  repeated and marked in `observation_is_pad` (True = padding, as LeRobot pads windows); state is
  zero-padded to the policy's width with `state_dim_mask` (True = a real dimension, Octo); the
  embodiment (the training dataset's index inside a mixture) rides along as `dataset_index`.
- `collate`: windows of several environments -> one batch.
- `PolicyIO`: one policy seen as one embodiment: which cameras at which frame size the environment
  must render (the training frames' size, which may differ from the size the image stem resizes
  to), the real action/state dims, and `actions()`, which cuts `sample_actions`' output (already
  unnormalized with that embodiment's statistics) to the embodiment's real action dimensions.
- `CheckpointRecord`: what `metadata.json` next to the weights says about the training data, complete
  enough that nothing downstream reopens the dataset: per embodiment its dims, names, control mode,
  simulator, cameras (frame size, role), fps, episode split and origin; the training episodes'
  (task, seed) pairs; the preset. Statistics live in `stats.json`, one entry per embodiment, in the
  same order (`policy.stats[i]`).

Camera roles: a dataset does not store them, so the record takes them from the collection sidecar
when it names them (`camera_roles`), else the first camera is `primary` and a name containing
"wrist", "hand" or "gripper" is `wrist` (others `secondary`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from vlaforge import keys
from vlaforge.errors import VlaforgeError, unknown

RECORD_VERSION = 1
_WRIST_WORDS = ("wrist", "hand", "gripper")


def camera_role(name: str, position: int) -> str:
    """The default role of a camera (see the module docstring)."""
    if any(word in name.lower() for word in _WRIST_WORDS):
        return "wrist"
    return "primary" if position == 0 else "secondary"


# ---------------------------------------------------------------------------------- the record
@dataclass(frozen=True)
class CameraRecord:
    """One camera of a training dataset."""

    name: str
    frame_size: tuple[int, int]  # (H, W) of the stored frames
    role: str = "primary"
    slot: str | None = None  # the policy camera slot it feeds (None: the slot of its own name)

    @property
    def feeds(self) -> str:
        """The policy slot this camera's frames go to."""
        return self.slot or self.name


@dataclass(frozen=True)
class EmbodimentRecord:
    """One training dataset = one embodiment of a (mixture) policy."""

    index: int  # its dataset_index (row of the normalization statistics)
    name: str  # robot type, else the dataset directory's name
    action_dim: int  # its real action width (a mixture pads to the widest)
    state_dim: int
    action_names: tuple[str, ...] | None = None
    state_names: tuple[str, ...] | None = None
    control_mode: str | None = None  # e.g. "delta end-effector position + gripper"
    simulator: str | None = None  # the registry name of the simulator that collected it, if any
    protocol: str | None = None  # how its episodes were placed (SimulatorSpec.protocols), if recorded
    fps: float | None = None
    cameras: tuple[CameraRecord, ...] = ()
    tasks: tuple[str, ...] = ()
    root: str | None = None  # where the data was on the training machine (never read back)
    weight: float = 1.0  # its sampling weight in the mixture
    num_episodes: int | None = None
    train_episodes: tuple[int, ...] = ()
    val_episodes: tuple[int, ...] = ()

    def camera(self, name: str) -> CameraRecord | None:
        return next((c for c in self.cameras if c.name == name), None)


@dataclass(frozen=True)
class CheckpointRecord:
    """What a checkpoint knows of its training data (serialized as metadata.json)."""

    embodiments: tuple[EmbodimentRecord, ...] = ()
    train_seeds: tuple[tuple[str | None, int], ...] | None = None  # (task, env seed); None = unknown
    tasks: tuple[str, ...] = ()
    fps: float | None = None
    preset: str | None = None
    finetuned_from: str | None = None
    train_seed: int | None = None  # TrainConfig.seed (init, data order, episode split)
    extra: dict[str, Any] = field(default_factory=dict)  # metadata keys this record does not model

    @classmethod
    def from_metadata(cls, meta: dict[str, Any] | None) -> CheckpointRecord:
        """Parse metadata.json; older checkpoints (no cameras, names, ...) parse with those unknown."""
        meta = dict(meta or {})
        known = {"record_version", "datasets", "train_seeds", "tasks", "fps", "preset", "finetuned_from",
                 "train_seed"}  # fmt: skip
        datasets = [d for d in meta.get("datasets") or [] if isinstance(d, dict)]
        seeds = meta.get("train_seeds")
        return cls(
            embodiments=tuple(_embodiment(i, d, meta.get("fps")) for i, d in enumerate(datasets)),
            train_seeds=None if seeds is None else tuple(_seed_pairs(seeds)),
            tasks=tuple(meta.get("tasks") or ()),
            fps=meta.get("fps"),
            preset=meta.get("preset"),
            finetuned_from=meta.get("finetuned_from"),
            train_seed=meta.get("train_seed"),
            extra={k: v for k, v in meta.items() if k not in known},
        )

    def to_metadata(self) -> dict[str, Any]:
        """The metadata.json form (keys kept as earlier checkpoints wrote them, plus the new ones)."""
        out: dict[str, Any] = dict(self.extra)
        out.update(
            record_version=RECORD_VERSION,
            fps=self.fps,
            tasks=list(self.tasks),
            preset=self.preset,
            finetuned_from=self.finetuned_from,
            train_seed=self.train_seed,
            datasets=[_embodiment_dict(e) for e in self.embodiments],
        )
        if self.train_seeds is not None:
            out["train_seeds"] = [{"task": t, "seed": s} for t, s in self.train_seeds]
        return out

    def embodiment(self, which: int | str | None = None) -> EmbodimentRecord | None:
        """An embodiment by index or name (None: the first); None when the record has none."""
        if not self.embodiments:
            if which not in (None, 0):
                raise VlaforgeError(f"embodiment {which!r}: the checkpoint records no training datasets")
            return None
        if which is None:
            return self.embodiments[0]
        if isinstance(which, str) and not which.isdigit():
            names = [e.name for e in self.embodiments]
            if which not in names:
                raise unknown("embodiment", which, names)
            return self.embodiments[names.index(which)]
        index = int(which)
        if not 0 <= index < len(self.embodiments):
            raise VlaforgeError(
                f"embodiment {index} does not exist: the policy was trained on {len(self.embodiments)} "
                f"dataset(s) ({', '.join(f'{e.index}={e.name}' for e in self.embodiments)})"
            )
        return self.embodiments[index]


def _embodiment(index: int, d: dict[str, Any], fps: Any) -> EmbodimentRecord:
    cams = d.get("cameras") or {}
    return EmbodimentRecord(
        index=index,
        name=str(d.get("name") or d.get("robot_type") or _basename(d.get("root")) or f"dataset{index}"),
        action_dim=int(d.get("action_dim") or 0),
        state_dim=int(d.get("state_dim") or 0),
        action_names=feature_names(d.get("action_names")),
        state_names=feature_names(d.get("state_names")),
        control_mode=d.get("control_mode"),
        simulator=d.get("simulator"),
        protocol=d.get("protocol"),
        fps=d.get("fps", fps),
        cameras=tuple(
            CameraRecord(
                name,
                tuple(int(x) for x in c["frame_size"]),
                c.get("role") or camera_role(name, i),
                c.get("slot"),
            )
            for i, (name, c) in enumerate(cams.items())
        ),
        tasks=tuple(d.get("tasks") or ()),
        root=d.get("root"),
        weight=float(d.get("weight", 1.0)),
        num_episodes=d.get("num_episodes"),
        train_episodes=tuple(int(i) for i in d.get("train_episodes") or ()),
        val_episodes=tuple(int(i) for i in d.get("val_episodes") or ()),
    )


def _embodiment_dict(e: EmbodimentRecord) -> dict[str, Any]:
    return {
        "name": e.name,
        "action_dim": e.action_dim,
        "state_dim": e.state_dim,
        "action_names": None if e.action_names is None else list(e.action_names),
        "state_names": None if e.state_names is None else list(e.state_names),
        "control_mode": e.control_mode,
        "simulator": e.simulator,
        "protocol": e.protocol,
        "fps": e.fps,
        "cameras": {c.name: _camera_dict(c) for c in e.cameras},
        "tasks": list(e.tasks),
        "root": e.root,
        "weight": e.weight,
        "num_episodes": e.num_episodes,
        "train_episodes": list(e.train_episodes),
        "val_episodes": list(e.val_episodes),
    }


def _camera_dict(c: CameraRecord) -> dict[str, Any]:
    out: dict[str, Any] = {"frame_size": list(c.frame_size), "role": c.role}
    if c.slot is not None:
        out["slot"] = c.slot
    return out


def _basename(root: Any) -> str | None:
    return str(root).rstrip("/").rsplit("/", 1)[-1] if root else None


def feature_names(value: Any) -> tuple[str, ...] | None:
    """Feature names as LeRobot stores them: a list, or {"motors": [...]}-style dicts of lists."""
    if isinstance(value, dict):
        value = next((v for v in value.values() if isinstance(v, list)), None)
    return tuple(str(v) for v in value) if isinstance(value, list) else None


def _seed_pairs(value: Any) -> list[tuple[str | None, int]]:
    pairs = []
    for item in value if isinstance(value, list) else []:
        if isinstance(item, dict) and "seed" in item:
            task = item.get("task")
            pairs.append((task if isinstance(task, str) else None, int(item["seed"])))
    return pairs


# ---------------------------------------------------------------------------------- the window
class ObservationWindow:
    """One environment's observations -> `[1, T, ...]` model windows (see the module docstring).

    `push(obs)` takes one step (numpy, keys of `vlaforge.keys`: `observation.images.<cam>` uint8
    [H, W, 3], `observation.state` [S], `task` str; other keys are ignored) and returns the window
    ending at it. `reset()` at every episode start. Buffers are kept per key and shifted in place, so
    a push costs one copy of the window, whatever the history.

    `slots` ((slot, camera or None) per policy camera slot, `vlaforge.data.slots`) renames each
    camera's frames to its slot's key; a slot without a camera is left out and marked False in
    `camera_mask` [1, C] (the policy drops its tokens), as in training.
    """

    def __init__(
        self,
        history: int,
        *,
        cameras: tuple[str, ...] | None = None,
        state_width: int | None = None,
        embodiment: int | None = None,
        slots: tuple[tuple[str, str | None], ...] | None = None,
    ) -> None:
        if history < 1:
            raise ValueError(f"history must be >= 1, got {history}")
        self.history, self.cameras, self.embodiment = history, cameras, embodiment
        self.state_width = state_width
        self._rename = {keys.image_key(c): keys.image_key(s) for s, c in slots or () if c is not None}
        present = [c is not None for _, c in slots or ()]
        self._camera_mask = None if all(present) else torch.tensor([present])  # [1, C]
        self.reset()

    def reset(self) -> None:
        self._buffers: dict[str, np.ndarray] = {}  # key -> [T, ...]
        self._count = 0  # real steps since the reset

    def _keys(self, obs: dict[str, Any]) -> list[str]:
        if self.cameras is None:
            cams = [k for k in obs if k.startswith(keys.IMAGE_PREFIX)]
        else:
            cams = [keys.image_key(c) for c in self.cameras]
            missing = [k for k in cams if k not in obs]
            if missing:
                raise VlaforgeError(f"the observation lacks {missing[0]!r} (policy cameras: {self.cameras})")
        return cams + ([keys.STATE] if keys.STATE in obs else [])

    def push(self, obs: dict[str, Any]) -> dict[str, Any]:
        values = {k: np.asarray(obs[k], np.float32 if k == keys.STATE else None) for k in self._keys(obs)}
        shapes = {k: v.shape for k, v in values.items()}
        if self._count and shapes != {k: b.shape[1:] for k, b in self._buffers.items()}:
            self.reset()  # other keys or frame sizes than before: a new stream
        for key, value in values.items():
            if self._count == 0:  # the first step fills the window (marked as padding)
                self._buffers[key] = np.repeat(value[None], self.history, axis=0)  # [T, ...]
            else:
                buf = self._buffers[key]
                buf[:-1] = buf[1:]  # numpy copes with the overlap
                buf[-1] = value
        self._count += 1
        return self._window(obs.get(keys.TASK, ""))

    def _window(self, task: str) -> dict[str, Any]:
        window: dict[str, Any] = {}
        for key, buf in self._buffers.items():
            window[self._rename.get(key, key)] = torch.from_numpy(buf.copy())[None]  # [1, T, ...]
        if self._camera_mask is not None:
            window[keys.CAMERA_MASK] = self._camera_mask.clone()  # [1, C]
        if keys.STATE in window and self.state_width is not None:
            real = window[keys.STATE].shape[-1]
            if real > self.state_width:
                raise VlaforgeError(f"{keys.STATE} has {real} dims but the policy takes {self.state_width}")
            window[keys.STATE] = torch.nn.functional.pad(window[keys.STATE], (0, self.state_width - real))
            window[keys.STATE_DIM_MASK] = (torch.arange(self.state_width) < real)[None]  # [1, S]
        real_steps = min(self._count, self.history)
        window[keys.OBS_IS_PAD] = (torch.arange(self.history) < self.history - real_steps)[None]  # [1, T]
        window[keys.TASK] = [task]
        if self.embodiment is not None:
            window[keys.DATASET_INDEX] = torch.tensor([self.embodiment])  # [1] int64
        return window


def collate(windows: list[dict[str, Any]]) -> dict[str, Any]:
    """Concatenate windows along the batch dim (tensors) or extend lists (task)."""
    out: dict[str, Any] = {}
    for key, first in windows[0].items():
        values = [w[key] for w in windows]
        out[key] = torch.cat(values) if isinstance(first, torch.Tensor) else [v for vs in values for v in vs]
    return out


# ---------------------------------------------------------------------------------- the contract
class PolicyIO:
    """A policy as one embodiment: the inputs it needs and the actions it returns (module docstring).

    `policy` is anything with `.config` (a `PolicyConfig`) and `.record` (a `CheckpointRecord`):
    a `VLAPolicy`, or its INT8 copy.
    """

    def __init__(self, policy: Any, embodiment: int | str | None = None) -> None:
        self.config = cfg = policy.config
        self.record: CheckpointRecord = policy.record
        self.embodiment_record = self.record.embodiment(embodiment)
        e = self.embodiment_record
        self.embodiment = e.index if e is not None else 0
        self.slots: tuple[tuple[str, str | None], ...] = _slots(tuple(cfg.cameras), e)
        # The cameras this embodiment renders (and a client sends), in slot order.
        self.cameras: tuple[str, ...] = tuple(c for _, c in self.slots if c is not None)
        self.history, self.chunk, self.execute_steps = (
            int(cfg.history),
            int(cfg.chunk),
            int(cfg.execute_steps),
        )
        self.action_dim = int(e.action_dim) if e is not None and e.action_dim else int(cfg.action_dim)
        self.state_dim = int(e.state_dim) if e is not None and e.action_dim else int(cfg.state_dim)
        self.state_dim = min(self.state_dim, int(cfg.state_dim))
        self.fps = (e.fps if e is not None else None) or self.record.fps
        self.stats = (getattr(policy, "stats", None) or [None] * (self.embodiment + 1))[self.embodiment]

    def frame_size(self, camera: str) -> tuple[int, int]:
        """(H, W) the environment renders `camera` at: the training frames' size when recorded,
        else the image stem's size."""
        cam = self.embodiment_record.camera(camera) if self.embodiment_record is not None else None
        return cam.frame_size if cam is not None else (self.config.image_size, self.config.image_size)

    def camera_role(self, camera: str) -> str:
        cam = self.embodiment_record.camera(camera) if self.embodiment_record is not None else None
        return cam.role if cam is not None else camera_role(camera, self.cameras.index(camera))

    def window(self) -> ObservationWindow:
        """A fresh observation window for one environment or connection."""
        return ObservationWindow(
            self.history,
            cameras=self.cameras,
            state_width=int(self.config.state_dim) if self.config.state_dim else None,
            embodiment=self.embodiment,
            slots=self.slots,
        )

    def actions(self, raw: torch.Tensor | np.ndarray) -> np.ndarray:
        """`sample_actions` output [B, H, A_policy] (robot units) -> float32 [B, H, A] of this embodiment."""
        out = raw.detach().float().cpu().numpy() if isinstance(raw, torch.Tensor) else np.asarray(raw)
        return np.ascontiguousarray(out[..., : self.action_dim], dtype=np.float32)  # [B, H, A]

    def describe(self) -> dict[str, Any]:
        """The embodiment's interface as plain JSON (server metadata, export info)."""
        e = self.embodiment_record
        return {
            "embodiment": {"index": self.embodiment, "name": e.name if e else None},
            "cameras": {
                c: {"frame_size": list(self.frame_size(c)), "role": self.camera_role(c), "slot": slot}
                for slot, c in self.slots
                if c is not None
            },
            "image_size": int(self.config.image_size),
            "history": self.history,
            "chunk": self.chunk,
            "execute_steps": self.execute_steps,
            "action_dim": self.action_dim,
            "state_dim": self.state_dim,
            "action_names": list(e.action_names) if e and e.action_names else None,
            "state_names": list(e.state_names) if e and e.state_names else None,
            "control_mode": e.control_mode if e else None,
            "fps": self.fps,
        }


def _slots(policy_slots: tuple[str, ...], e: EmbodimentRecord | None) -> tuple[tuple[str, str | None], ...]:
    """(slot, camera or None) per policy slot for embodiment `e`: the camera recorded as feeding the
    slot; without camera records (older checkpoints) each slot is the camera of its own name."""
    if e is None or not e.cameras:
        return tuple((s, s) for s in policy_slots)
    fed = {c.feeds: c.name for c in e.cameras}
    return tuple((s, fed.get(s)) for s in policy_slots)
