"""robosuite 1.5 single-arm tasks as a vlaforge `Environment`: OSC_POSE control, fast cameras, experts.

Tasks: `lift`, `stack`, `pick-place-can` (robosuite's PickPlaceCan: the can from the left bin into
its quarter of the right bin; success also needs the gripper 4 cm away from it). Task names carry
the arm: `<task>-<arm>` (`lift-panda`, `stack-ur5e`, `pick-place-can-iiwa`); `--robots Panda,UR5e` on
`vlaforge collect` / `vlaforge eval` picks the arms (see `SimulatorSpec.resolve_tasks`). A bare task
(`lift`) is a suite: that task on every arm (or on the `--robots` arms); an arm's name (`panda`) is
the suite of every task on that arm; `all` is everything.

Control: robosuite's BASIC composite controller with the arm's default OSC_POSE part (the values of
robosuite's `default_<arm>.json`): 7-d actions in [-1, 1] = end-effector position delta (x, y, z;
1 = 5 cm) and axis-angle rotation delta (1 = 0.5 rad), both in the robot base frame, plus the
gripper (-1 open, +1 close). 20 Hz control, 500 Hz physics. Steps go through
`robosuite_step.ControlStep` (robosuite's controller between policy steps without its per-substep
Python bookkeeping: bitwise the same states as robosuite's `env.step`, ~2x faster physics).

Proprio (`observation.state`, 7, float32; the same for every arm):
    [0:3] end-effector (grip site) position, world frame, m
    [3:6] end-effector orientation as the axis-angle (world frame) of R R_home^T, the rotation from
          R_home, the arm's grip-site orientation at its home joints, to the current one R: 0 at home
          for every arm, continuous around it, and +z = turned counter-clockwise seen from above
          (the raw axis-angle of a gripper pointing down sits at |angle| = pi, where it wraps)    [6]   gripper opening in [0, 1] (1 = open, 0 = closed on nothing): the first finger joint between
          its measured open and closed positions (`GRIPPER_QPOS`), clipped
Deviation from robosuite's observables (joint sin/cos, quaternions, a per-gripper qpos width): a
fixed-size, arm-independent vector so one policy can train across arms.

Cameras: `agentview` (role primary), `robot0_eye_in_hand` (wrist), `frontview`, `birdview`,
`sideview` (secondary). We render with our own `mujoco.Renderer` (robosuite's renderer is off:
`has_offscreen_renderer=False`, `use_camera_obs=False`); `mujoco.Renderer` returns images top row
first, so they are upright (robosuite's own renders are bottom row first, i.e. upside down).
Render settings (see `render.py`, measured in docs/robots-robosuite.md): no shadows, no
multisampling, no reflections, no skybox, collision geoms (group 0) hidden, only the asked cameras,
geoms outside a camera's view left out of its scene (`render.update_scene`: the same image), and
the visual meshes decimated to `MESH_KEEP` of their triangles (`MESH_KEEP_NEAR` for the hand the
wrist camera rides on) in a render-only copy of the model (quadric error; the CAD meshes are
~130,000-285,000 triangles per arm, which a software rasterizer pays per camera and frame; the
physics model is untouched). Deviation: robosuite renders the full meshes; the
images differ from those by a few intensity levels at 128 px (the benchmark measures it).

Seeds: robosuite draws object placements and the arm's initial joint noise from `env.rng`; we reseed
that generator in place at every reset (`hard_reset=False`: the model is built once per env), so the
same seed gives the same scene. Success: the task's own `_check_success()` at any step.
"""

from __future__ import annotations

import logging
from typing import Any

import mujoco
import numpy as np

from vlaforge.envs import render as _render
from vlaforge.envs import robosuite_step as _step
from vlaforge.envs.base import RenderedEnv, check_seed
from vlaforge.envs.registry import ActionSpace, Camera, SimulatorSpec, StateSpace, register
from vlaforge.errors import VlaforgeError, did_you_mean, unknown
from vlaforge.keys import STATE, TASK, image_key

#: robosuite's control rate used here (its default): environment steps per second.
FPS = 20
#: Episode step limit (robomimic's horizon for these tasks; robosuite's own default is 1000).
MAX_STEPS = 400
#: Arms, in robosuite's spelling (each with its default gripper).
ARMS = ("Panda", "UR5e", "Kinova3", "IIWA", "Sawyer")
#: Our task name -> robosuite environment class name.
ENVS = {"lift": "Lift", "stack": "Stack", "pick-place-can": "PickPlaceCan"}
INSTRUCTIONS = {
    "lift": "Lift the red cube",
    "stack": "Stack the red cube on the green cube",
    "pick-place-can": "Put the can in its bin",
}
CAMERA_ROLES = {
    "agentview": "primary",
    "robot0_eye_in_hand": "wrist",
    "frontview": "secondary",
    "birdview": "top",
    "sideview": "secondary",
}
CAMERAS = tuple(CAMERA_ROLES)
#: (open, closed) position of each gripper's first finger joint, measured here: 40 steps of -1 / +1
#: with nothing in the hand (joint ranges do not say it: a Robotiq 85 closes to 0.52 of its 0.8).
GRIPPER_QPOS = {
    "PandaGripper": (0.0397, 0.0005),
    "RethinkGripper": (0.0112, -0.0118),
    "Robotiq85Gripper": (-0.0271, 0.514),
    "Robotiq140Gripper": (0.0137, 0.493),
    "JacoThreeFingerGripper": (1.056, 0.756),
}
#: Fraction of its triangles each drawn mesh keeps when rendered (`render.render_copy`; 1 = all).
MESH_KEEP = 0.15
#: Fraction kept by the meshes of the hand a wrist camera rides on (`render.camera_meshes`), seen from a
#: few cm: at 0.15 the Sawyer's eye-in-hand frames differed from full-mesh ones by 11 of 255 levels.
MESH_KEEP_NEAR = 0.5
#: OSC_POSE output scale of a unit action (robosuite's default controller configs, all arms).
POS_SCALE, ROT_SCALE = 0.05, 0.5


def _quiet_import() -> Any:
    """`import robosuite` without its import-time warnings (no private macro file, no robosuite_models,
    no mink): they concern features we do not use."""
    logger = logging.getLogger("robosuite_logs")
    if not any(getattr(f, "_vlaforge", False) for f in logger.filters):
        quiet = logging.Filter()
        quiet.filter = lambda record: record.levelno >= logging.ERROR  # type: ignore[method-assign]
        quiet._vlaforge = True  # type: ignore[attr-defined]
        logger.addFilter(quiet)
    import robosuite

    return robosuite


def arm_name(name: str) -> str:
    """`ur5e` -> `UR5e`; an unknown arm raises with a "did you mean" hint."""
    by_key = {a.lower(): a for a in ARMS}
    arm = by_key.get(name.strip().lower())
    if arm is None:
        raise unknown("robosuite robot", name.strip(), ARMS)
    return arm


def task_name(task: str, arm: str) -> str:
    """(`lift`, `UR5e`) -> `lift-ur5e`."""
    return f"{task}-{arm.lower()}"


#: Arms a task is not registered on: on the Sawyer the PickPlaceCan expert succeeded on 2 of 10
#: seeds (grasps that miss the 5 cm can; carries that stall 3-10 cm short of its bin quarter).
NOT_ON = {"pick-place-can": ("Sawyer",)}
TASKS = tuple(task_name(t, a) for t in ENVS for a in ARMS if a not in NOT_ON.get(t, ()))


def split_task(name: str) -> tuple[str, str]:
    """`lift-ur5e` -> (`lift`, `UR5e`)."""
    base, _, arm = canonical(name).rpartition("-")
    return base, arm_name(arm)


def canonical(name: str) -> str:
    """Case-insensitive `Lift-UR5e` -> `lift-ur5e`; unknown names raise with a hint."""
    key = name.strip().lower().replace("_", "-")
    if key in TASKS:
        return key
    hint = did_you_mean(key, [*TASKS, *SUITES])
    raise VlaforgeError(
        f"unknown robosuite task {name.strip()!r}{hint}; name <task>-<arm> (tasks: {', '.join(ENVS)}; "
        f"arms: {', '.join(ARMS)}) or a suite: {', '.join(SUITES)}"
    )


def robot_of(task: str) -> str:
    """The arm a task runs on (`lift-ur5e` -> `UR5e`)."""
    return split_task(task)[1]


SUITES: dict[str, tuple[str, ...]] = {
    "all": TASKS,
    **{t: tuple(n for n in TASKS if split_task(n)[0] == t) for t in ENVS},
    **{a.lower(): tuple(n for n in TASKS if split_task(n)[1] == a) for a in ARMS},
}


# ------------------------------------------------------------------------------------- proprio
def _axis_angle(rot: np.ndarray) -> np.ndarray:
    """Axis-angle [3] of a rotation matrix [3, 3] (angle in [0, pi])."""
    quat = np.zeros(4)
    mujoco.mju_mat2Quat(quat, np.ascontiguousarray(rot).reshape(9))  # [w, x, y, z]
    if quat[0] < 0:
        quat = -quat
    vec = np.zeros(3)
    mujoco.mju_quat2Vel(vec, quat, 1.0)
    return vec


class _Arm:
    """Reads one robosuite arm's grip site, home orientation and gripper opening from the sim."""

    def __init__(self, env: Any) -> None:
        robot = env.robots[0]
        self.model, self.data = env.sim.model._model, env.sim.data._data
        self.site = robot.eef_site_id["right"]
        gripper = robot.gripper["right"]
        joint = mujoco.mj_name2id(self.model, mujoco.mjtObj.mjOBJ_JOINT, gripper.joints[0])
        self.finger_qpos = self.model.jnt_qposadr[joint]
        self.open_q, self.closed_q = GRIPPER_QPOS[type(gripper).__name__]
        base = mujoco.mj_name2id(self.model, mujoco.mjtObj.mjOBJ_BODY, robot.robot_model.root_body)
        self.base_rot = self.data.xmat[base].reshape(3, 3).copy()  # fixed-base arms: constant
        self.home_rot = self._home_rot(robot)

    def _home_rot(self, robot: Any) -> np.ndarray:
        """Grip-site orientation at the arm's init_qpos (no noise); the sim state is restored after."""
        saved = self.data.qpos.copy()
        self.data.qpos[robot._ref_joint_pos_indexes] = robot.init_qpos
        mujoco.mj_kinematics(self.model, self.data)
        rot = self.data.site_xmat[self.site].reshape(3, 3).copy()
        self.data.qpos[:] = saved
        mujoco.mj_forward(self.model, self.data)
        return rot

    @property
    def pos(self) -> np.ndarray:
        return self.data.site_xpos[self.site].copy()  # [3] world

    @property
    def rot(self) -> np.ndarray:
        return self.data.site_xmat[self.site].reshape(3, 3).copy()  # [3, 3] world

    @property
    def opening(self) -> float:
        q = float(self.data.qpos[self.finger_qpos])
        return float(np.clip((q - self.closed_q) / (self.open_q - self.closed_q), 0.0, 1.0))

    def state(self) -> np.ndarray:
        """float32 [7]: position, orientation relative to home (axis-angle), gripper opening."""
        rel = _axis_angle(self.rot @ self.home_rot.T)  # [3] world frame
        return np.concatenate([self.pos, rel, [self.opening]]).astype(np.float32)


# ------------------------------------------------------------------------------------- the env
def _make_suite_env(base: str, arm: str) -> Any:
    suite = _quiet_import()
    from robosuite.controllers import load_composite_controller_config

    return suite.make(
        ENVS[base],
        robots=arm,
        controller_configs=load_composite_controller_config(controller="BASIC", robot=arm),
        has_renderer=False,
        has_offscreen_renderer=False,
        use_camera_obs=False,
        use_object_obs=True,
        hard_reset=False,  # build the model once; a hard reset would rebuild it (and our renderer)
        control_freq=FPS,
        horizon=10**9,  # we stop episodes ourselves (max_steps)
        ignore_done=True,
        reward_shaping=False,
        seed=0,  # the construction's own reset; episodes reseed env.rng (see RobosuiteEnv.reset)
    )


class RobosuiteEnv(RenderedEnv):
    """One robosuite task on one arm, with fast upright cameras and the scripted expert.

    Args:
        task: `<task>-<arm>`, e.g. `lift-panda`.
        cameras: cameras rendered at every step (see `CAMERAS`).
        image_size: square image side in pixels.
        max_steps: episode step limit (`done` turns True there).
        mesh_keep: fraction of the triangles the visual meshes keep (1 = robosuite's full meshes);
            datasets and evaluation must use the same value, as for every render setting.
        fast_control: step through `robosuite_step.ControlStep` (robosuite's OSC_POSE between
            policy steps without its Python bookkeeping: bitwise the same states, ~2x faster
            physics); False runs robosuite's own `env.step`.
        cull: leave out of each frame the geoms outside the camera's view (`render.update_scene`:
            the same image); False draws every geom (for the benchmarks).
    """

    def __init__(
        self,
        task: str,
        *,
        cameras: tuple[str, ...] = ("agentview",),
        image_size: int = 128,
        max_steps: int = MAX_STEPS,
        mesh_keep: float = MESH_KEEP,
        fast_control: bool = True,
        cull: bool = True,
    ):
        self.task = canonical(task)
        self.base, self.arm_name = split_task(self.task)
        self.instruction = INSTRUCTIONS[self.base]
        self.cameras = SPEC.check_cameras(tuple(cameras))
        self.image_size = int(image_size)
        self.max_steps = int(max_steps)
        self._env = _make_suite_env(self.base, self.arm_name)
        self.model, self.data = self._env.sim.model._model, self._env.sim.data._data
        self.arm = _Arm(self._env)
        self.cull = bool(cull)
        self._control = _step.ControlStep(self._env) if fast_control and _step.supports(self._env) else None
        self._render_model, self.mesh_triangles = _render.render_copy(
            self.model, mesh_keep, keep_near=MESH_KEEP_NEAR
        )
        self._renderer = _render.make_renderer(self._render_model, self.image_size)
        self._vopt = _scene_option()
        self._own_renderer(self._renderer)
        self._expert: Any = None
        self.steps = -1  # no episode yet

    def reset(self, seed: int, *, render: bool = True) -> dict[str, Any]:
        """New episode; the object placement and the arm's start are a function of `seed` alone."""
        seed = check_seed(seed)
        self._env.rng.bit_generator.state = np.random.default_rng(int(seed)).bit_generator.state
        self._env.reset()
        self.steps = 0
        self._expert = None
        return self._observation(render)

    def step(
        self, action: np.ndarray, *, render: bool = True
    ) -> tuple[dict[str, Any], bool, bool, dict[str, Any]]:
        """Apply a 7-d action (clipped to [-1, 1]); return `(obs, success, done, info)`."""
        if self.steps < 0:
            raise RuntimeError("call reset(seed) before step()")
        action = np.clip(np.asarray(action, dtype=np.float64).reshape(7), -1.0, 1.0)
        if self._control is not None:
            reward, info = self._control.step(action)
        else:
            _, reward, _, info = self._env.step(action)
        self.steps += 1
        success = bool(self._env._check_success())
        done = success or self.steps >= self.max_steps
        return self._observation(render), success, done, dict(info, reward=float(reward))

    def expert_action(self) -> np.ndarray:
        """The scripted expert's action for the current state: float32 [7] in [-1, 1]."""
        from vlaforge.envs.robosuite_expert import make_expert

        if self._expert is None:
            self._expert = make_expert(self)
        return self._expert.action()

    def object_pos(self, name: str) -> np.ndarray:
        """World position [3] of a task body (`cube`, `cubeA`, `cubeB`, `can`): privileged, for the expert."""
        return self.data.xpos[self._body_id(name)].copy()

    def object_rot(self, name: str) -> np.ndarray:
        """World orientation [3, 3] of a task body."""
        return self.data.xmat[self._body_id(name)].reshape(3, 3).copy()

    def place_target(self, name: str) -> np.ndarray:
        """[3] the centre of the bin quarter where PickPlace wants object `name`, at the bins' floor height."""
        return np.asarray(self._env.target_bin_placements[self._env.object_to_id[name]], dtype=np.float64)

    @property
    def bin_size(self) -> np.ndarray:
        """PickPlace's bin size [3] (x, y, z; m); each object's quarter is half of it along x and y."""
        return np.asarray(self._env.bin_size, dtype=np.float64)

    def _body_id(self, name: str) -> int:
        env = self._env
        return (
            int(getattr(env, f"{name}_body_id"))
            if hasattr(env, f"{name}_body_id")
            else env.obj_body_id[name.capitalize()]
        )

    @property
    def table_z(self) -> float:
        """Height of the surface the objects start on (the table top; PickPlace: the bins' reference height)."""
        arena = self._env.model.mujoco_arena
        return float(getattr(arena, "table_offset", arena.table_top_abs)[2])

    def render(self, camera: str) -> np.ndarray:
        """An upright uint8 [H, W, 3] image of the current state from `camera`."""
        _render.sync_copy(self.model, self._render_model)
        _render.update_scene(self._renderer, self.data, camera, self._vopt, cull=self.cull)
        return self._renderer.render()  # [H, W, 3] uint8, top row first

    def _observation(self, render: bool = True) -> dict[str, Any]:
        obs: dict[str, Any] = {image_key(cam): self.render(cam) for cam in self.cameras} if render else {}
        obs[STATE] = self.arm.state()  # [7]
        obs[TASK] = self.instruction
        return obs

    def _close_simulator(self) -> None:
        self._env.close()


def _scene_option() -> mujoco.MjvOption:
    """Visual geoms only: robosuite puts collision geoms in group 0 and visual geoms in group 1."""
    opt = mujoco.MjvOption()
    opt.geomgroup[0] = 0
    return opt


def make_env(
    task: str,
    *,
    cameras: tuple[str, ...] = ("agentview",),
    image_size: int = 128,
    max_steps: int = MAX_STEPS,
) -> RobosuiteEnv:
    """The registry's factory (`SimulatorSpec.make_env`)."""
    return RobosuiteEnv(task, cameras=cameras, image_size=image_size, max_steps=max_steps)


def expert_action(env: RobosuiteEnv) -> np.ndarray:
    """The registry's expert hook."""
    return env.expert_action()


SPEC = register(
    SimulatorSpec(
        name="robosuite",
        module=__name__,
        tasks=TASKS,
        suites=dict(SUITES),
        action=ActionSpace(
            dim=7,
            names=("dx", "dy", "dz", "droll", "dpitch", "dyaw", "gripper"),
            low=(-1.0,) * 7,
            high=(1.0,) * 7,
            control_mode="OSC_POSE: delta end-effector position (1 = 5 cm) and axis-angle rotation "
            "(1 = 0.5 rad) in the robot base frame + gripper (-1 open, +1 close)",
        ),
        state=StateSpace(dim=7, names=("x", "y", "z", "rx", "ry", "rz", "gripper")),
        cameras=tuple(Camera(name, role) for name, role in CAMERA_ROLES.items()),
        default_camera="agentview,robot0_eye_in_hand",
        fps=FPS,
        max_steps=MAX_STEPS,
        success_rule="the task's own `_check_success()` at any step (the episode stops there)",
        instructions={t: INSTRUCTIONS[t.rpartition("-")[0]] for t in TASKS},
        make_env=make_env,
        expert_action=expert_action,
        canonical_task=canonical,
        task_group=robot_of,
        robot_type="robosuite",
        title="robosuite",
        robots=ARMS,
        robot_of=robot_of,
    )
)
