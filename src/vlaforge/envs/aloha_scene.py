"""The ALOHA bimanual scenes of gym-aloha, driven with raw MuJoCo: loading, placement, stepping, reward.

Facts taken from gym-aloha 0.1.5 (the simulator LeRobot's ACT results use; its assets are ACT's):

- Two ViperX 300s arms. qpos[0:8] = left arm (waist, shoulder, elbow, forearm_roll, wrist_angle,
  wrist_rotate, left_finger, right_finger), qpos[8:16] = right arm, then the objects' free joints.
- Control at 50 Hz: one step = 10 physics steps of 2 ms (gym-aloha's `DT = 0.02`).
- Grippers are commanded and observed *normalized*: 0 = closed, 1 = open, mapped linearly onto the
  finger slide position [0.01844, 0.058] m (the mirror finger gets the negated value).
- Placement: transfer-cube draws the cube's (x, y) uniformly in [0, 0.2] x [0.4, 0.6] at z = 0.05;
  insertion draws the peg in [0.1, 0.2] x [0.4, 0.6] and then the socket in [-0.2, -0.1] x [0.4, 0.6],
  both from `np.random.RandomState(seed).uniform`, as gym-aloha does, so seed N is gym-aloha's seed N.
- Reward 0..4 from contacts (transfer-cube: right finger touches the cube 1, lifted 2, left finger
  touches 3, left touches and the cube is off the table 4; insertion: both grippers touch 1, both
  lifted 2, peg touches the socket in the air 3, peg touches the socket's pin 4).

Deviations, both deliberate: a contact pair counts in either geom order (gym-aloha tests one order),
and we drive MuJoCo directly instead of through dm-control (same model, same 10 sub-steps, and like
dm-control's default stepping the positions and contacts are brought up to date after each step, so
reward and images describe the state after the action; no 640x480 renders on every step).
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path

import mujoco
import numpy as np

from vlaforge.errors import VlaforgeError

#: Physics steps per control step (50 Hz control over MuJoCo's 2 ms default timestep).
SUBSTEPS = 10
#: Both arms' 16 joint positions at the start of every episode (gym-aloha's START_ARM_POSE).
START_POSE = np.array([0, -0.96, 1.16, 0, -0.3, 0, 0.02239, -0.02239] * 2)
#: Finger slide position of a normalized gripper command 0 (closed) and 1 (open).
FINGER_CLOSED, FINGER_OPEN = 0.01844, 0.05800
#: The joint-space scene and the end-effector (mocap) scene of each task, in gym-aloha's assets.
SCENES = {
    "transfer-cube": ("bimanual_viperx_transfer_cube.xml", "bimanual_viperx_end_effector_transfer_cube.xml"),
    "insertion": ("bimanual_viperx_insertion.xml", "bimanual_viperx_end_effector_insertion.xml"),
}
#: Uniform placement ranges (x, y) per object, drawn in this order; z is 0.05, orientation upright.
PLACEMENT = {
    "transfer-cube": (((0.0, 0.2), (0.4, 0.6)),),
    "insertion": (((0.1, 0.2), (0.4, 0.6)), ((-0.2, -0.1), (0.4, 0.6))),
}
MAX_REWARD = 4
_SOCKET = ("socket-1", "socket-2", "socket-3", "socket-4")
_LEFT_FINGER, _RIGHT_FINGER = "vx300s_left/10_left_gripper_finger", "vx300s_right/10_right_gripper_finger"


def assets_dir() -> Path:
    """gym-aloha's asset folder (found without importing the package, which pulls in gymnasium)."""
    spec = importlib.util.find_spec("gym_aloha")
    if spec is None or not spec.submodule_search_locations:
        raise VlaforgeError("ALOHA needs gym-aloha: pip install 'vlaforge[aloha]' (or bash scripts/setup.sh)")
    return Path(next(iter(spec.submodule_search_locations))) / "assets"


def load_model(task: str, end_effector: bool = False) -> mujoco.MjModel:
    """The joint-space (or end-effector) scene of `task`."""
    return mujoco.MjModel.from_xml_path(str(assets_dir() / SCENES[task][int(end_effector)]))


def sample_placement(task: str, seed: int) -> np.ndarray:
    """The objects' free-joint poses [7 * n] (xyz + quaternion wxyz each) for `seed`."""
    rng = np.random.RandomState(seed)
    poses = []
    for x, y in PLACEMENT[task]:
        low, high = np.array([x[0], y[0], 0.05]), np.array([x[1], y[1], 0.05])
        poses.append(np.concatenate([rng.uniform(low, high), [1.0, 0.0, 0.0, 0.0]]))
    return np.concatenate(poses)


def normalize_gripper(finger: np.ndarray | float) -> np.ndarray:
    """Finger slide position (m) -> normalized opening (0 closed, 1 open)."""
    return (np.asarray(finger) - FINGER_CLOSED) / (FINGER_OPEN - FINGER_CLOSED)


def finger_position(gripper: np.ndarray | float) -> np.ndarray:
    """Normalized opening -> finger slide position (m)."""
    return np.asarray(gripper) * (FINGER_OPEN - FINGER_CLOSED) + FINGER_CLOSED


def joint_state(qpos: np.ndarray) -> np.ndarray:
    """The 14-d proprio [left 6 joints, left gripper, right 6 joints, right gripper] of a qpos."""
    left, right = qpos[0:8], qpos[8:16]
    return np.concatenate([left[:6], normalize_gripper(left[6:7]), right[:6], normalize_gripper(right[6:7])])


def joint_ctrl(action: np.ndarray) -> np.ndarray:
    """A 14-d joint action -> the joint scene's 16 position-actuator targets (mirror fingers)."""
    gl, gr = finger_position(action[6]), finger_position(action[13])
    return np.concatenate([action[0:6], [gl, -gl], action[7:13], [gr, -gr]])


def reset_data(model: mujoco.MjModel, data: mujoco.MjData, objects: np.ndarray) -> None:
    """Arms at START_POSE (targets too), objects at `objects`, derived quantities up to date."""
    mujoco.mj_resetData(model, data)
    data.qpos[:16] = START_POSE
    data.qpos[16 : 16 + objects.size] = objects
    if model.nu == 16:
        data.ctrl[:] = START_POSE
    mujoco.mj_forward(model, data)


def advance(model: mujoco.MjModel, data: mujoco.MjData) -> None:
    """One control step with the current `ctrl`/mocap targets; positions and contacts end up to date.

    Equivalent to `SUBSTEPS` mj_step calls followed by mj_step1 (dm-control's default stepping): the
    first mj_step2 uses the derived quantities that the previous call (or reset's mj_forward) left."""
    mujoco.mj_step2(model, data)
    mujoco.mj_step(model, data, nstep=SUBSTEPS - 1)
    mujoco.mj_step1(model, data)


@dataclass(frozen=True)
class ContactReward:
    """The task's 0..4 reward from the current contacts (geom ids resolved once per model)."""

    task: str
    ids: dict[str, int]

    @classmethod
    def for_model(cls, task: str, model: mujoco.MjModel) -> ContactReward:
        names = ("red_box",) if task == "transfer-cube" else ("red_peg", "pin", *_SOCKET)
        names = (*names, "table", _LEFT_FINGER, _RIGHT_FINGER)
        return cls(task, {n: mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_GEOM, n) for n in names})

    def __call__(self, data: mujoco.MjData) -> int:
        geoms = data.contact.geom[: data.ncon]  # [ncon, 2]
        pairs = {frozenset(map(int, g)) for g in geoms}
        return self._cube(pairs) if self.task == "transfer-cube" else self._insertion(pairs)

    def _touch(self, pairs: set, a: str, *others: str) -> bool:
        return any(frozenset((self.ids[a], self.ids[b])) in pairs for b in others)

    def _cube(self, pairs: set) -> int:
        left, right = (
            self._touch(pairs, "red_box", _LEFT_FINGER),
            self._touch(pairs, "red_box", _RIGHT_FINGER),
        )
        on_table = self._touch(pairs, "red_box", "table")
        if left:
            return 3 if on_table else 4
        return 0 if not right else (1 if on_table else 2)

    def _insertion(self, pairs: set) -> int:
        if self._touch(pairs, "red_peg", "pin"):
            return 4
        on_table = self._touch(pairs, "red_peg", "table") or any(
            self._touch(pairs, s, "table") for s in _SOCKET
        )
        if self._touch(pairs, "red_peg", *_SOCKET) and not on_table:
            return 3
        both = self._touch(pairs, "red_peg", _RIGHT_FINGER) and any(
            self._touch(pairs, s, _LEFT_FINGER) for s in _SOCKET
        )
        return 0 if not both else (1 if on_table else 2)
