"""Does a policy fit the simulator? Checked before any environment starts.

Everything here comes from two declarations: the policy's `PolicySpec` and the simulator's
`SimulatorSpec` (vlaforge.envs.registry); nothing is hard-coded for one simulator.

- Dimensions: the policy's real action dims must be the simulator's, its proprio dims the
  simulator's (or 0). A mixture checkpoint reports the dims of the embodiment `--embodiment` names.
- Rendering: environments render the policy's cameras (which the simulator must have) at the policy's
  frame size (a checkpoint's recorded training-frame size).
- Execution: receding horizon executes k <= H actions per chunk (`execute_steps`, default the policy's).
"""

from __future__ import annotations

from vlaforge.envs.registry import SimulatorSpec
from vlaforge.errors import VlaforgeError
from vlaforge.eval.config import EvalConfig
from vlaforge.eval.policies import PolicySpec
from vlaforge.eval.workers import EnvSpec


def check_policy_fits(spec: PolicySpec, sim: SimulatorSpec, cfg: EvalConfig) -> None:
    """Fail before any rollout if the policy's action/proprio dimensions do not fit the simulator."""
    action = sim.action
    if spec.action_dim != action.dim:
        raise VlaforgeError(
            f"the policy predicts {spec.action_dim}-d actions but {sim.display_name} takes {action.dim}-d "
            f"actions ({', '.join(action.names)}): evaluate a policy trained on {sim.display_name} data"
            + ("" if cfg.embodiment else " (or pass --embodiment NAME for a mixture policy)")
        )
    if spec.state_dim not in (0, sim.state.dim):
        raise VlaforgeError(
            f"the policy expects {spec.state_dim}-d proprio but {sim.display_name} gives {sim.state.dim}-d"
        )


def env_spec_for(spec: PolicySpec, cfg: EvalConfig, sim: SimulatorSpec) -> EnvSpec:
    """Environments rendered exactly as the policy's training data was (cameras, size)."""
    return EnvSpec(
        simulator=sim.name,
        module=sim.module,
        cameras=sim.check_cameras(spec.cameras),
        image_size=int(spec.image_size),
        max_steps=max_steps(cfg, sim),
        expert=spec.needs_expert_action,
        protocol=sim.check_protocol(
            cfg.protocol or (spec.protocol if spec.protocol in sim.protocols else None)
        ),
    )


def max_steps(cfg: EvalConfig, sim: SimulatorSpec) -> int:
    return cfg.max_steps if cfg.max_steps is not None else sim.max_steps


def check_env_spec(env: EnvSpec, cfg: EvalConfig) -> None:
    if cfg.videos_per_task and env.image_size % 2:
        raise VlaforgeError(f"videos need an even image size, got {env.image_size}; pass --videos-per-task 0")


def resolve_execute_steps(spec: PolicySpec, cfg: EvalConfig) -> int:
    """k for receding horizon: `cfg.execute_steps`, else the policy's; at most its chunk (when known)."""
    k = cfg.execute_steps if cfg.execute_steps is not None else max(1, spec.execute_steps)
    if k < 1 or (spec.chunk and k > spec.chunk):
        raise VlaforgeError(
            f"--execute-steps {k} must be between 1 and the policy's chunk length {spec.chunk}"
        )
    return k


def check_delay(spec: PolicySpec, cfg: EvalConfig, sim: SimulatorSpec) -> None:
    """A simulated inference delay must fit the chunk: the old plan has to cover it, and the new
    chunk must still hold the actions that are executed after it arrives."""
    if cfg.execution == "rtc" and not spec.supports_rtc:
        raise VlaforgeError(
            f"--execution rtc needs a checkpoint with a flow or diffusion head; {spec.name} has none"
        )
    d = delay_steps(cfg, sim)
    if not d:
        return
    k = resolve_execute_steps(spec, cfg) if cfg.execution in ("receding", "rtc") else 1
    if cfg.execution != "ensemble" and d >= k:
        raise VlaforgeError(
            f"--inference-delay-ms {cfg.inference_delay_ms:g} is {d} control steps at {sim.fps} Hz; the old "
            f"plan must cover it: execute more than {d} actions per chunk (--execute-steps, now {k})"
        )
    if spec.chunk and d + k > spec.chunk:
        raise VlaforgeError(
            f"--inference-delay-ms {cfg.inference_delay_ms:g} ({d} steps) + {k} executed actions exceed the "
            f"policy's chunk of {spec.chunk}"
        )


def delay_steps(cfg: EvalConfig, sim: SimulatorSpec) -> int:
    """The simulated inference delay in control steps of the simulator (rounded)."""
    return int(round(cfg.inference_delay_ms * sim.fps / 1000.0))
