"""The request schema of the policy server: what an observation message must hold, validated.

The byte-level format (msgpack-numpy, as openpi) lives in `vlaforge.control.wire`, shared with the
clients; this module checks a decoded request against the policy's `ObservationSpec`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from vlaforge.control.wire import (  # noqa: F401  (re-exported)
    DecodeLimits,
    ProtocolError,
    packb,
    to_str_keys,
    unpackb,
)
from vlaforge.errors import did_you_mean

# ----------------------------------------------------------------------------- request schema

STATE_KEY = "observation.state"
IMAGE_PREFIX = "observation.images."
INSTRUCTION_KEYS = ("prompt", "task")  # openpi clients send `prompt`; LeRobot batches use `task`
RESET_KEY = "reset"
MAX_INSTRUCTION_CHARS = 1000  # instructions are embedded and cached per string: bound the cost


@dataclass(frozen=True)
class ObservationSpec:
    """What a request must contain; built from the policy config and sent to clients in the metadata."""

    # Camera names; each is sent as `observation.images.<camera>`.
    cameras: tuple[str, ...]
    # Native image side the policy sees (frames of another size are resized by the policy).
    image_size: int
    # Observation history T the policy consumes; the server keeps it per connection.
    history: int
    # Proprio dimension S (0 = the policy takes no state; the key is then optional).
    state_dim: int
    # Largest accepted frame (H, W) per camera, in `cameras` order; empty = any size (the server sets
    # it to `ServerConfig.max_frame_scale` x the recorded frame size).
    max_frames: tuple[tuple[int, int], ...] = field(default=())


def request_limits(spec: ObservationSpec, max_message_bytes: int) -> DecodeLimits:
    """Decoding bounds for one request of `spec`: a request is one map of a few keys (the cameras,
    state, instruction, reset) whose arrays are maps of 4 entries with a short shape list, so the
    counts are small and fixed; only a bin (an image) may be as long as the message."""
    keys = len(spec.cameras) + 8
    return DecodeLimits(
        max_bin_len=max_message_bytes,
        max_str_len=4 * MAX_INSTRUCTION_CHARS + 1024,  # UTF-8: up to 4 bytes a character
        max_array_len=64,
        max_map_len=max(64, 2 * keys),
        max_containers=max(256, 8 * keys),
        max_depth=8,
    )


@dataclass
class ObservationRequest:
    """A validated observation. `images[key]` uint8 [T, H, W, 3]; `state` float32 [T, S]; T is 1
    (the current frame; the server supplies the history) or `spec.history` (a full window)."""

    images: dict[str, np.ndarray]
    state: np.ndarray
    task: str


def _require(ok: bool, message: str) -> None:
    if not ok:
        raise ProtocolError(message)


def _check_image(
    key: str, value: Any, spec: ObservationSpec, max_frame: tuple[int, int] | None
) -> np.ndarray:
    _require(isinstance(value, np.ndarray), f"{key} must be a numpy array, got {type(value).__name__}")
    _require(value.dtype == np.uint8, f"{key} must be uint8 [H, W, 3] (0-255), got dtype {value.dtype}")
    frames = value[None] if value.ndim == 3 else value  # [T, H, W, 3]
    _require(
        frames.ndim == 4 and frames.shape[-1] == 3 and min(frames.shape[1:3], default=0) > 0,
        f"{key} must have shape [H, W, 3] or [{spec.history}, H, W, 3], got {value.shape}",
    )
    _require(
        frames.shape[0] in (1, spec.history),
        f"{key} carries {frames.shape[0]} frames; send 1 (current) or {spec.history} (full history)",
    )
    if max_frame is not None:
        h, w = frames.shape[1:3]
        _require(
            h <= max_frame[0] and w <= max_frame[1],
            f"{key} is {h}x{w} px, larger than the {max_frame[0]}x{max_frame[1]} accepted "
            f"(send frames near the metadata's shape)",
        )
    return np.array(frames)  # a writable copy, detached from the message buffer  # [T, H, W, 3]


def _check_state(value: Any, spec: ObservationSpec) -> np.ndarray:
    if spec.state_dim == 0 and value is None:
        return np.zeros((1, 0), np.float32)
    _require(value is not None, f"missing key {STATE_KEY!r} (float [{spec.state_dim}])")
    _require(isinstance(value, np.ndarray), f"{STATE_KEY} must be a numpy array, got {type(value).__name__}")
    _require(value.dtype.kind in "fiu", f"{STATE_KEY} must be a float array, got dtype {value.dtype}")
    state = value[None] if value.ndim == 1 else value  # [T, S]
    _require(
        state.ndim == 2 and state.shape[-1] == spec.state_dim,
        f"{STATE_KEY} must have shape [{spec.state_dim}] or [{spec.history}, {spec.state_dim}], got {value.shape}",
    )
    with np.errstate(over="ignore", invalid="ignore"):
        state = state.astype(np.float32)  # checked after the cast: 1e300 becomes Inf here
    _require(bool(np.isfinite(state).all()), f"{STATE_KEY} contains NaN or Inf, or values beyond float32")
    return state


def _instruction(obs: dict) -> str:
    given = {k: obs[k] for k in INSTRUCTION_KEYS if k in obs}
    _require(bool(given), "missing the instruction: send 'prompt' (openpi) or 'task' (a string)")
    for key, value in given.items():
        _require(isinstance(value, str) and value.strip() != "", f"{key!r} must be a non-empty string")
        _require(
            len(value) <= MAX_INSTRUCTION_CHARS, f"{key!r} is longer than {MAX_INSTRUCTION_CHARS} characters"
        )
    _require(len(set(given.values())) == 1, "'prompt' and 'task' disagree: send one of them")
    return next(iter(given.values()))


def validate_observation(obs: Any, spec: ObservationSpec) -> ObservationRequest:
    """Check one decoded request against `spec`; raise `ProtocolError` naming the first problem."""
    _require(isinstance(obs, dict), f"a request must be a map of observation keys, got {type(obs).__name__}")
    obs = to_str_keys(obs)
    images = {}
    limits = dict(zip(spec.cameras, spec.max_frames, strict=False))
    for camera in spec.cameras:
        key = IMAGE_PREFIX + camera
        if key not in obs:
            hint = did_you_mean(key, [k for k in obs if isinstance(k, str)])
            raise ProtocolError(f"missing key {key!r} (uint8 [H, W, 3]){hint}")
        images[key] = _check_image(key, obs[key], spec, limits.get(camera))
    state = _check_state(obs.get(STATE_KEY), spec)
    lengths = {a.shape[0] for a in images.values()} | ({state.shape[0]} if spec.state_dim else set())
    _require(
        len(lengths) == 1, f"images and state must carry the same number of steps, got {sorted(lengths)}"
    )
    sizes = {a.shape[1:] for a in images.values()}
    _require(len(sizes) == 1, f"all cameras must have the same image size, got {sorted(sizes)}")
    return ObservationRequest(images=images, state=state, task=_instruction(obs))


def is_reset(obs: Any) -> bool:
    """A reset message: `{"reset": True}` (clears this connection's observation history)."""
    return isinstance(obs, dict) and to_str_keys(obs).get(RESET_KEY) is True
