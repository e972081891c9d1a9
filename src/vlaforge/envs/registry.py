"""The simulator registry: one frozen `SimulatorSpec` per simulator, looked up by name.

Collection, evaluation and the environment worker processes build environments only through a spec
(`get_simulator(name).new_env(task, cameras=..., image_size=..., max_steps=..., protocol=...)`), so adding a simulator is one
module that defines a spec plus one entry in `BUILTIN` (or a `register(spec)` call at import time of
that module); see docs/adding-a-robot-or-simulator.md.

Worker processes receive the simulator's *name* (picklable) and look the spec up again; a spec that
is not built in names its `module`, which the worker imports (it registers the spec at import).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from vlaforge.envs.base import Environment
from vlaforge.errors import VlaforgeError, did_you_mean, unknown

#: Simulators that ship with vlaforge: name -> the module defining `SPEC` (imported on first use).
BUILTIN: dict[str, str] = {
    "metaworld": "vlaforge.envs.metaworld",
    "aloha": "vlaforge.envs.aloha",
    "robosuite": "vlaforge.envs.robosuite",
}
_REGISTERED: dict[str, SimulatorSpec] = {}


@dataclass(frozen=True)
class ActionSpace:
    """A simulator's action vector: one float per named dimension, in [low, high]."""

    dim: int
    """Number of action dimensions."""
    names: tuple[str, ...]
    """One name per dimension (recorded as the dataset's action names)."""
    low: tuple[float, ...]
    """Lower bound per dimension; the runner clips actions to [low, high]."""
    high: tuple[float, ...]
    """Upper bound per dimension."""
    control_mode: str
    """What an action means, e.g. "delta end-effector position + gripper" (recorded per embodiment)."""

    def clip(self, action: np.ndarray) -> np.ndarray:
        """`action` [A] clipped to the box."""
        return np.clip(action, self.low, self.high)


@dataclass(frozen=True)
class StateSpace:
    """A simulator's proprio vector (`observation.state`)."""

    dim: int
    """Number of proprio dimensions."""
    names: tuple[str, ...]
    """One name per dimension."""


@dataclass(frozen=True)
class Camera:
    """One camera a simulator can render."""

    name: str
    """Camera name; its frames go under `observation.images.<name>`."""
    role: str
    """What it sees, for mixtures: `primary` (third person), `wrist`, `top`, `secondary`, ..."""


@dataclass(frozen=True)
class SimulatorSpec:
    """Everything vlaforge needs to know about a simulator to collect, evaluate and serve on it."""

    name: str
    """Registry name (`vlaforge collect NAME`, `EvalConfig.simulator`)."""
    module: str
    """The module that defines this spec; worker processes import it to find the spec by name."""
    tasks: tuple[str, ...]
    """Every task name, canonical spelling."""
    suites: dict[str, tuple[str, ...] | Callable[[], list[str]]]
    """Named task lists (e.g. mt10 -> 10 tasks), or functions returning one (read lazily, e.g. from
    the simulator package); `resolve_tasks` expands them."""
    action: ActionSpace
    """The action vector the environments take."""
    state: StateSpace
    """The proprio vector the environments return."""
    cameras: tuple[Camera, ...]
    """Renderable cameras with their roles."""
    default_camera: str
    """The camera used when none is asked for; several comma-separated (robosuite:
    "agentview,robot0_eye_in_hand")."""
    fps: int
    """Control rate: environment steps per second (the dataset fps, the video fps)."""
    max_steps: int
    """The simulator's own episode step limit."""
    success_rule: str
    """How success is decided, in words (shown in reports and docs)."""
    instructions: dict[str, str]
    """The natural-language instruction of every task."""
    make_env: Callable[..., Environment]
    """`make_env(task, *, cameras, image_size, max_steps) -> Environment`; called in worker processes."""
    expert_action: Callable[[Environment], np.ndarray] | None = None
    """The scripted expert: the action [A] for an environment's current state (None: no expert)."""
    canonical_task: Callable[[str], str] | None = None
    """Task name normalisation (e.g. `reach` -> `reach-v3`), or None for exact names."""
    task_group: Callable[[str], str | None] | None = None
    """A task's difficulty group for the report's group means (None: one group, "other")."""
    robot_type: str = ""
    """The robot, as LeRobot's `robot_type` of a collected dataset."""
    env_state_dim: int = 0
    """Dims of the privileged simulator state `observation.environment_state` (0: none is returned)."""
    protocols: dict[str, str] = field(default_factory=dict)
    """Named ways to place the scene per episode (name -> what it means; the first is the default),
    for simulators that have a choice (Meta-World: heldout, published); `make_env` then takes
    `protocol=NAME`. Empty: one way, and `make_env` takes no protocol."""
    title: str = ""
    """The simulator's name as people write it (e.g. "Meta-World"), for messages and reports."""
    robots: tuple[str, ...] = ()
    """The robots a task can run on, when there is a choice (robosuite's arms; empty: one robot).
    Each task name then names its robot (`lift-panda`) and `robot_of` reads it back."""
    robot_of: Callable[[str], str] | None = None
    """The robot a (canonical) task runs on, for simulators with `robots`."""

    @property
    def display_name(self) -> str:
        return self.title or self.name

    @property
    def camera_names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.cameras)

    @property
    def default_cameras(self) -> tuple[str, ...]:
        """`default_camera` as a tuple of names."""
        return tuple(c.strip() for c in self.default_camera.split(",") if c.strip())

    def camera_role(self, name: str) -> str:
        return next(c.role for c in self.cameras if c.name == name)

    def check_cameras(self, names: tuple[str, ...]) -> tuple[str, ...]:
        """`names` (deduplicated, in order) if this simulator has them all; else a VlaforgeError."""
        names = tuple(dict.fromkeys(names))
        if not names:
            raise VlaforgeError(f"no camera given; {self.name} has: {', '.join(self.camera_names)}")
        for cam in names:
            if cam not in self.camera_names:
                raise unknown(f"{self.name} camera", cam, self.camera_names)
        return names

    def check_protocol(self, name: str | None) -> str | None:
        """The protocol `name` (None or "": the default) or None for a simulator without a choice."""
        if not self.protocols:
            if name:
                raise VlaforgeError(
                    f"--protocol does not apply to {self.name}: it has one placement protocol"
                )
            return None
        if not name:
            return next(iter(self.protocols))
        if name not in self.protocols:
            raise unknown(f"{self.name} protocol", name, self.protocols)
        return name

    def new_env(
        self,
        task: str,
        *,
        cameras: tuple[str, ...],
        image_size: int,
        max_steps: int,
        protocol: str | None = None,
    ) -> Environment:
        """`make_env`, with the protocol passed only to simulators that have protocols."""
        extra = {"protocol": self.check_protocol(protocol)} if self.protocols else {}
        return self.make_env(task, cameras=cameras, image_size=image_size, max_steps=max_steps, **extra)

    def task(self, name: str) -> str:
        """The canonical name of one task; an unknown name raises with a "did you mean" hint."""
        full = self.canonical_task(name) if self.canonical_task else name.strip()
        if full not in self.instructions:
            hint = did_you_mean(name.strip(), [*self.tasks, *self.suites])
            raise VlaforgeError(
                f"unknown {self.name} task {name.strip()!r}{hint}; name tasks or a suite: {', '.join(self.suites)}"
            )
        return full

    def resolve_tasks(self, spec: str, robots: str = "") -> list[str]:
        """Expand "suite,task,..." into unique canonical task names, in order (first occurrence kept).

        `robots` ("Panda,UR5e"; simulators with `robots` only) keeps the tasks on those robots; every
        item of `spec` must keep at least one."""
        items = [s for s in (part.strip() for part in spec.split(",")) if s]
        if not items:
            raise VlaforgeError(
                f"no tasks given in {spec!r}; name {self.name} tasks or a suite: {', '.join(self.suites)}"
            )
        keep = self.check_robots(robots)
        out: list[str] = []
        for item in items:
            names = self._suite(item) or [self.task(item)]
            if keep:
                names = [n for n in names if self.robot_of(n) in keep]  # type: ignore[misc]
                if not names:
                    raise VlaforgeError(f"{self.name} task {item!r} runs on none of --robots {robots}")
            for name in names:
                if name not in out:
                    out.append(name)
        return out

    def check_robots(self, robots: str) -> tuple[str, ...]:
        """Canonical robot names of "Panda,ur5e" (empty: no choice made); unknown ones raise."""
        names = [r.strip() for r in robots.split(",") if r.strip()]
        if names and not self.robots:
            raise VlaforgeError(f"--robots does not apply to {self.name}: it has one robot")
        by_key = {r.lower(): r for r in self.robots}
        for name in names:
            if name.lower() not in by_key:
                raise unknown(f"{self.name} robot", name, self.robots)
        return tuple(dict.fromkeys(by_key[n.lower()] for n in names))

    def dataset_robot_type(self, tasks: tuple[str, ...] | list[str]) -> str:
        """LeRobot's `robot_type` of a dataset of `tasks`: `<simulator>_<robot>` when they all run on
        one robot of a simulator with a choice (`robosuite_panda`), else `robot_type` (or the name)."""
        if self.robot_of is not None:
            arms = {self.robot_of(t) for t in tasks}
            if len(arms) == 1:
                return f"{self.name}_{arms.pop().lower()}"
        return self.robot_type or self.name

    def _suite(self, item: str) -> list[str] | None:
        key = item.lower().replace("_", "-")
        for name, tasks in self.suites.items():
            if name.lower().replace("_", "-") == key:
                return list(tasks() if callable(tasks) else tasks)
        return None

    def instruction(self, task: str) -> str:
        return self.instructions[self.task(task)]

    def group(self, task: str) -> str | None:
        return self.task_group(task) if self.task_group else None


def register(spec: SimulatorSpec) -> SimulatorSpec:
    """Add (or replace) a simulator; returns it, so a module can write `SPEC = register(SimulatorSpec(...))`."""
    _REGISTERED[spec.name] = spec
    return spec


def simulator_names() -> list[str]:
    return sorted({*BUILTIN, *_REGISTERED})


def get_simulator(name: str, module: str | None = None) -> SimulatorSpec:
    """The spec registered as `name` (importing its module first: a built-in one, or `module`).

    `name` may also be "package.module:name", for a simulator defined outside vlaforge."""
    if ":" in name:
        module, name = name.rsplit(":", 1)
    if name not in _REGISTERED:
        path = BUILTIN.get(name) or module
        if path is None:
            raise unknown("simulator", name, simulator_names())
        try:
            importlib.import_module(path)  # its import registers the spec
        except ModuleNotFoundError as err:
            raise VlaforgeError(f"simulator {name!r}: cannot import its module {path!r} ({err})") from None
    if name not in _REGISTERED:
        raise VlaforgeError(f"module {BUILTIN.get(name) or module!r} did not register simulator {name!r}")
    return _REGISTERED[name]
