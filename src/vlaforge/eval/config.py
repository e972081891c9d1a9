"""`EvalConfig`: the one flat config of an evaluation (the `vlaforge eval` options, the runner's settings).

Each field is documented where it is declared; the CLI generates one option per field from it.
`validate(cfg)` holds every check that needs no policy and no simulator process.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from vlaforge.errors import VlaforgeError

SCRIPTED = ("expert", "random")


@dataclass(frozen=True)
class EvalConfig:
    """Settings of one evaluation run."""

    policy: str
    """A checkpoint directory or hub id, 'expert' / 'random', or a policy server ws://HOST:PORT."""
    suite: str
    """Tasks: a suite (Meta-World: mt10, mt50, easy, medium, hard, very_hard, ml45-train, ml45-test)
    and/or task names, comma-separated."""
    out: str
    """Output directory: eval_info.json, report.html, videos/<task>/episode_NNN.mp4."""
    simulator: str = "metaworld"
    """The registered simulator to evaluate on (vlaforge.envs.registry); one defined outside vlaforge
    as "package.module:name"."""
    robots: str = ""
    """Robots, comma-separated, for simulators with a choice of arm (robosuite): keep the tasks on
    these arms (default: every arm the tasks name); the report has one row per task and arm."""
    episodes_per_task: int = 10
    """Episodes (distinct seeds) per task."""
    workers: int = 2
    """Environment worker processes."""
    envs_per_worker: int = 4
    """Environment slots per worker; the policy batch is up to workers x this."""
    seed: int = 0
    """Eval seed block (disjoint from collection seeds); also seeds the policy's sampling noise."""
    allow_train_seeds: bool = False
    """Evaluate even on (task, seed) pairs that were used to collect the training data."""
    execution: Literal["receding", "ensemble", "single", "rtc"] = "receding"
    """How chunks are executed: receding horizon, temporal ensembling (ACT), one step per call, or
    real-time chunking (receding horizon whose next chunk is guided toward the committed plan; flow
    and diffusion heads, meaningful with --inference-delay-ms)."""
    inference_delay_ms: float = 0.0
    """Simulated inference latency: a chunk arrives this many ms of control steps after its request
    (the robot executes the old plan meanwhile; 0 = the robot waits, as before)."""
    rtc_max_guidance: float = 5.0
    """Real-time chunking: the cap on the guidance weight (the paper's beta)."""
    execute_steps: int | None = None
    """Receding horizon: actions executed per chunk (default: the policy's or the server's)."""
    ensemble_coeff: float = 0.01
    """Temporal ensembling m in w_i = exp(-m * i), i = 0 the oldest prediction (ACT's 0.01)."""
    videos_per_task: int = 2
    """Videos kept per task: the first K successful and the first K failed episodes."""
    max_steps: int | None = None
    """Step limit per episode (default: the simulator's, Meta-World's 500)."""
    image_size: int | None = None
    """Render size in px for expert/random and for servers whose metadata does not say (default 128);
    a checkpoint renders at its recorded frame size."""
    protocol: str = ""
    """How episodes are placed, for simulators with a choice (Meta-World: heldout, published;
    docs/meta-world-protocols.md); default: the protocol the policy's training data was collected
    with, else the simulator's default."""
    cameras: str = ""
    """Cameras for expert/random or a server without metadata, comma-separated (default: the
    simulator's default camera)."""
    device: str = "cpu"
    """Policy device: cpu, cuda, cuda:N or auto."""
    embodiment: str = ""
    """Mixture policy: which of its training datasets (embodiments) this simulator is, by name (the
    robot type, e.g. sawyer) or index (default: the one collected on this simulator, if just one)."""
    overwrite: bool = False
    """Replace an existing evaluation in the output directory."""
    key_map: str = ""
    """Remote policy: env key=server key pairs, comma-separated, for servers whose metadata does not
    describe their keys, e.g. 'observation.images.corner2=observation/image,observation.state=
    observation/state,task=prompt'."""
    action_dim: int | None = None
    """Remote policy without metadata: the server's action width (default: the simulator's)."""
    timeout_s: float = 60.0
    """Remote policy: seconds to wait for connecting and for each reply; a timeout fails that episode."""
    torch_threads: int | None = None
    """Torch threads of the policy while the workers render (default: the cores the workers leave,
    at least 1; more threads than free cores makes torch spin against the renderers)."""
    progress: bool = True
    """Print progress: a bar on a terminal, else one line every few episodes."""


def is_remote(policy: str) -> bool:
    return policy.startswith(("ws://", "wss://"))


def validate(cfg: EvalConfig) -> None:
    """The checks that need neither the policy nor a simulator (bounds, output directory)."""
    for name in ("episodes_per_task", "workers", "envs_per_worker"):
        _at_least(cfg, name, 1)
    for name in ("max_steps", "image_size", "execute_steps", "action_dim", "torch_threads"):
        if getattr(cfg, name) is not None:
            _at_least(cfg, name, 1)
    _at_least(cfg, "videos_per_task", 0)
    _at_least(cfg, "seed", 0)
    if cfg.timeout_s <= 0:
        raise VlaforgeError(f"timeout_s must be > 0, got {cfg.timeout_s}")
    if cfg.execution not in ("receding", "ensemble", "single", "rtc"):
        raise VlaforgeError(
            f"unknown execution {cfg.execution!r}; choose from receding, ensemble, single, rtc"
        )
    if not cfg.inference_delay_ms >= 0:
        raise VlaforgeError(f"--inference-delay-ms must be >= 0, got {cfg.inference_delay_ms}")
    if not cfg.rtc_max_guidance > 0:
        raise VlaforgeError(f"--rtc-max-guidance must be > 0, got {cfg.rtc_max_guidance}")
    if cfg.key_map and not is_remote(cfg.policy):
        raise VlaforgeError("key_map applies to a remote policy (policy ws://HOST:PORT) only")
    if Path(cfg.out).exists() and not Path(cfg.out).is_dir():
        raise VlaforgeError(f"--out {cfg.out}: is a file, not a directory")
    if (Path(cfg.out) / "eval_info.json").exists() and not cfg.overwrite:
        raise VlaforgeError(
            f"{cfg.out} already holds an evaluation (eval_info.json); pass --overwrite or pick another --out"
        )


def _at_least(cfg: EvalConfig, name: str, low: int) -> None:
    value = getattr(cfg, name)
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise VlaforgeError(f"--{name.replace('_', '-')} must be an integer >= {low}, got {value!r}")


def cameras_of(cfg: Any) -> tuple[str, ...]:
    """The `cameras` field of a config (EvalConfig, QuickstartConfig) as a tuple (empty: not given)."""
    return tuple(dict.fromkeys(c.strip() for c in cfg.cameras.split(",") if c.strip()))
