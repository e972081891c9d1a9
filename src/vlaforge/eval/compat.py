"""Does a policy fit Meta-World? Checked before any environment starts.

- Dimensions: Meta-World takes 4-d actions and gives 4-d proprio. A mixture policy (actions padded to
  its widest robot, real dimensions first) fits when `--dataset-index` names a training dataset whose
  own dims are Meta-World's; the runner then executes the first 4 action dimensions.
- Rendering: environments render exactly like the training data: the policy's cameras, and the frame
  size of its training dataset (from the dataset's info.json, named in the checkpoint metadata), which
  may differ from the size the policy's image stem resizes to.
- Execution: receding horizon executes k <= H actions per chunk (`execute_steps`, default the policy's).

`cfg` arguments are the runner's `EvalConfig`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from vlaforge import keys as T
from vlaforge.control.execution import EXECUTION_MODES
from vlaforge.errors import VlaforgeError, unknown
from vlaforge.eval.workers import EnvSpec

ENV_ACTION_DIM = 4  # Meta-World: dx, dy, dz, gripper in [-1, 1]
ENV_STATE_DIM = 4  # hand xyz + gripper opening


def _dataset_dims(policy: Any, index: int | None) -> tuple[int | None, int | None]:
    """(action_dim, state_dim) of training dataset `index` as the checkpoint metadata records them."""
    datasets = (getattr(policy, "metadata", None) or {}).get("datasets") or []
    if index is None or not 0 <= index < len(datasets) or not isinstance(datasets[index], dict):
        return None, None
    return datasets[index].get("action_dim"), datasets[index].get("state_dim")


def check_policy_fits(policy: Any, dataset_index: int | None = None) -> None:
    """Fail before any rollout if the policy's action/proprio dimensions do not fit Meta-World.

    A mixture policy pads every robot's actions to its widest one (real dimensions first); it fits
    when `dataset_index` names a training dataset whose own action and state dims are Meta-World's,
    and the runner then executes the first 4 action dimensions.
    """
    cfg = policy.config
    data_action, data_state = _dataset_dims(policy, dataset_index)
    action_dim = data_action if data_action and cfg.action_dim > ENV_ACTION_DIM else cfg.action_dim
    if int(action_dim) != ENV_ACTION_DIM:
        raise VlaforgeError(
            f"the policy predicts {action_dim}-d actions but Meta-World takes {ENV_ACTION_DIM}-d actions "
            "(dx, dy, dz, gripper): evaluate a policy trained on Meta-World data"
            + ("" if dataset_index is not None else " (or pass --dataset-index for a mixture policy)")
        )
    state_dim = getattr(cfg, "state_dim", ENV_STATE_DIM) or 0
    if data_state and state_dim > ENV_STATE_DIM:
        state_dim = data_state
    if state_dim not in (0, ENV_STATE_DIM):
        raise VlaforgeError(
            f"the policy expects {state_dim}-d proprio but Meta-World gives {ENV_STATE_DIM}-d"
        )


def env_spec_for(policy: Any, cfg: Any) -> EnvSpec:
    """Environments rendered exactly as the policy's training data was (cameras, size, flags)."""
    pcfg = policy.config
    meta = getattr(policy, "metadata", None) or {}
    size = meta.get("image_size") or _data_image_size(meta, pcfg.cameras) or pcfg.image_size
    return EnvSpec(
        cameras=tuple(pcfg.cameras),
        image_size=int(size),
        max_steps=cfg.max_steps,
        expert=bool(getattr(policy, "uses_expert_action", False)),
    )


def _data_image_size(meta: dict, cameras: tuple[str, ...]) -> int | None:
    """The frame size of the training data (its info.json), which may differ from the stem's size."""
    for ds in meta.get("datasets") or []:
        root = ds.get("root") if isinstance(ds, dict) else ds
        info = Path(str(root), "meta", "info.json")
        if not info.is_file():
            continue
        feature = json.loads(info.read_text()).get("features", {}).get(T.image_key(cameras[0]))
        if feature and feature.get("shape"):
            return int(feature["shape"][0])  # [H, W, 3]
    return None


def check_env_spec(spec: EnvSpec, cfg: Any) -> None:
    from vlaforge.envs.metaworld import CAMERAS

    for cam in spec.cameras:
        if cam not in CAMERAS:
            raise unknown("Meta-World camera", cam, CAMERAS)
    if cfg.execution not in EXECUTION_MODES:
        raise VlaforgeError(
            f"unknown execution mode {cfg.execution!r}; choose from {', '.join(EXECUTION_MODES)}"
        )
    if cfg.videos_per_task and spec.image_size % 2:
        raise VlaforgeError(
            f"videos need an even image size, got {spec.image_size}; pass --videos-per-task 0"
        )


def resolve_execute_steps(policy: Any, cfg: Any) -> int:
    pcfg = policy.config
    k = cfg.execute_steps if cfg.execute_steps is not None else int(getattr(pcfg, "execute_steps", 1) or 1)
    if not 1 <= k <= int(pcfg.chunk):
        raise VlaforgeError(
            f"--execute-steps {k} must be between 1 and the policy's chunk length {pcfg.chunk}"
        )
    return k
