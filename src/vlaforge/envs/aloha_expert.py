"""Scripted ALOHA experts the way ACT made its simulated data: plan with mocap, replay the joints.

1. In the task's end-effector scene (gym-aloha's `bimanual_viperx_end_effector_*.xml`, where each
   gripper is welded to a mocap body), both grippers follow piecewise-linear waypoints in world
   coordinates, placed relative to the objects' seeded initial poses (`aloha_scene.sample_placement`).
2. After every control step we record the 12 arm joint angles the welded arms reached, plus the two
   *commanded* normalized gripper openings (ACT records the gripper command, not the finger position).
3. That [T, 14] trajectory is the expert's action sequence in the joint-space scene, started from the
   same placement. Joint-space physics differs slightly (position servos instead of a weld), so a
   replay can fail; the collector keeps only successful ones (ACT does the same).

Waypoints are ours (times, heights, offsets); the geometry follows ACT's scripted policies: the right
arm grasps the cube with the gripper pitched down and carries it to a meeting point above the table
centre, the left arm comes in with its jaws rolled 90 degrees, closes, and the right gripper lets go;
for insertion each arm grasps its object (peg right, socket left), both lift and meet, and the peg is
pushed into the socket. Two additions of ours use the planner's privileged view of the scene (only
the resulting joints are replayed): at a check step the left grasp of transfer-cube is placed where
the held cube really is, and the insertion's final approach is a feedback servo on the peg's pose
relative to the socket (`Planner._insert`). Quaternions are MuJoCo's (w, x, y, z).

The mocap point. Under MuJoCo 3 the scenes' welds hold each gripper_link 0.135 m *behind* its mocap
body (the weld's relative pose is computed from the model's reference configuration), so a mocap
position is a tool point just beyond the fingertips (~2 cm with the gripper pitched 60 degrees), not the gripper_link origin that ACT's
start-pose constants describe. We therefore compute the start mocap poses from the arms' start
configuration (`start_mocap`) and place every waypoint as a tool-point target in world coordinates;
orientations are world-frame rotations of each mocap's start orientation (identity up to ~3 degrees).

Deviation from ACT: the replay action at step t is the joint position reached *after* planned step t
(ACT replays the one before it and runs one step longer), so the servos track one step ahead.
"""

from __future__ import annotations

from dataclasses import dataclass

import mujoco
import numpy as np

from vlaforge.envs import aloha_scene as scene

#: The expert's plan length in control steps (the env's step limit: 8 s at 50 Hz).
PLAN_STEPS = 400


def _quat(axis: tuple[float, float, float], degrees: float) -> np.ndarray:
    q = np.zeros(4)
    mujoco.mju_axisAngle2Quat(q, np.asarray(axis, dtype=np.float64), np.deg2rad(degrees))
    return q


#: transfer-cube: the right tool point's grasp height relative to the cube's initial centre (z 0.05),
#: and the left tool point's grasp relative to the held cube (success rates: benchmarks/results).
PICK_DOWN, GRASP_X, GRASP_Z = -0.03, 0.08, -0.045
#: Insertion servo: the peg centre's target distance from the socket centre along the socket's
#: axis, from lined up (the peg's end 3 cm outside the entrance) to pushed in (its end 1 cm past the
#: pin's face: peg half-length 0.06, pin half-length 0.04), over SERVO_STEPS; and the gains.
PEG_START, PEG_END, ALIGN_STEPS, SERVO_STEPS = 0.17, 0.09, 60, 70
#: insertion grasps: both grippers point straight down (degrees of pitch), tool-point heights relative
#: to the parts' initial centres, and the peg is held PEG_GRASP m outward of its centre.
PEG_PITCH, PEG_DOWN, PEG_GRASP = 90.0, -0.045, 0.03
SOCKET_PITCH, SOCKET_DOWN = 90.0, -0.04
#: Servo gains per step (position, orientation) and the largest position command change per step (m).
POS_GAIN, ROT_GAIN, MAX_MOVE = 0.1, 0.05, 0.004
IDENTITY = np.array([1.0, 0.0, 0.0, 0.0])
PITCH_DOWN_RIGHT = _quat((0, 1, 0), -60)  # right gripper tilted down toward the table
ROLL_LEFT = _quat((1, 0, 0), 90)  # left jaws vertical, to take the cube from the side
#: The arms' base positions (x, y) on the table: the left arm points along +x, the right along -x.
BASE_LEFT, BASE_RIGHT = np.array([-0.469, 0.5]), np.array([0.469, 0.5])


def _mul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    out = np.zeros(4)
    mujoco.mju_mulQuat(out, a, b)
    return out


def facing(quat: np.ndarray, target: np.ndarray, right: bool) -> np.ndarray:
    """`quat` turned about the world z axis so that the gripper points from its arm's base toward `target`.

    Without it a pitched-down gripper keeps pointing along x whatever the object's y, and the arm
    reaches that pose only with large opposite forearm-roll and wrist-rotate angles, where the weld
    tracks poorly; with it the waist takes the yaw and the wrist only pitches."""
    base = BASE_RIGHT if right else BASE_LEFT
    dx, dy = target[:2] - base
    yaw = np.arctan2(-dy, -dx) if right else np.arctan2(dy, dx)
    return _mul(_quat((0, 0, 1), np.rad2deg(yaw)), quat)


@dataclass(frozen=True)
class Waypoint:
    """Gripper target at control step `t`: world position, orientation (wxyz), normalized opening."""

    t: int
    xyz: np.ndarray
    quat: np.ndarray
    grip: float


def _track(points: list[Waypoint], steps: int) -> np.ndarray:
    """Piecewise-linear interpolation of a waypoint list: [steps, 8] = xyz, quat (renormalized), grip."""
    times = np.array([p.t for p in points], dtype=np.float64)
    table = np.stack([np.concatenate([p.xyz, p.quat, [p.grip]]) for p in points])  # [K, 8]
    t = np.arange(1, steps + 1, dtype=np.float64)  # the target of step i is reached at time i + 1
    out = np.stack([np.interp(t, times, table[:, j]) for j in range(8)], axis=1)  # [steps, 8]
    out[:, 3:7] /= np.linalg.norm(out[:, 3:7], axis=1, keepdims=True)
    return out


Tracks = tuple[list[Waypoint], list[Waypoint]]


def transfer_cube_waypoints(objects: np.ndarray, start: np.ndarray, live: np.ndarray) -> Tracks:
    """(left, right) waypoints handing the cube from the right to the left gripper.

    `objects[:3]` is the cube's initial position, `live[:3]` where it is at `CHECK["transfer-cube"]`
    (held at the meeting point): the left gripper's grasp is placed relative to the latter."""
    cube, held = objects[:3], live[:3]
    meet = np.array([0.0, 0.5, 0.24])
    pick, carry = facing(PITCH_DOWN_RIGHT, cube, right=True), PITCH_DOWN_RIGHT
    up, down = np.array([0, 0, 0.09]), np.array([0, 0, PICK_DOWN])
    grasp = held + [GRASP_X, 0, GRASP_Z]  # left tool point for the cube between its jaws
    right = [
        Waypoint(0, start[1, :3], start[1, 3:], 0.0),
        Waypoint(70, cube + up, pick, 1.0),  # above the cube, open
        Waypoint(90, cube + up, pick, 1.0),
        Waypoint(130, cube + down, pick, 1.0),  # straight down around it
        Waypoint(140, cube + down, pick, 1.0),
        Waypoint(165, cube + down, pick, 0.0),  # close
        Waypoint(175, cube + down, pick, 0.0),
        Waypoint(210, meet + [0.06, 0, 0], carry, 0.0),  # lift and carry
        Waypoint(230, meet, carry, 0.0),
        Waypoint(315, meet, carry, 0.0),
        Waypoint(330, meet, carry, 1.0),  # let go once the left gripper holds it
        Waypoint(370, meet + [0.1, 0, 0], carry, 1.0),
        Waypoint(PLAN_STEPS, meet + [0.1, 0, 0], carry, 1.0),
    ]
    standby = meet + [-0.12, 0, 0.03]
    left = [
        Waypoint(0, start[0, :3], start[0, 3:], 0.0),
        Waypoint(120, standby, ROLL_LEFT, 1.0),  # wait beside the meeting point, open
        Waypoint(CHECK["transfer-cube"], standby, ROLL_LEFT, 1.0),
        Waypoint(265, grasp - [0.05, 0, 0], ROLL_LEFT, 1.0),
        Waypoint(285, grasp, ROLL_LEFT, 1.0),
        Waypoint(305, grasp, ROLL_LEFT, 0.0),  # close on the cube
        Waypoint(335, grasp, ROLL_LEFT, 0.0),
        Waypoint(370, grasp - [0.1, 0, 0], ROLL_LEFT, 0.0),
        Waypoint(PLAN_STEPS, grasp - [0.1, 0, 0], ROLL_LEFT, 0.0),
    ]
    return left, right


def insertion_waypoints(objects: np.ndarray, start: np.ndarray, live: np.ndarray) -> Tracks:
    """(left, right) waypoints: the left gripper takes the socket, the right the peg, both lift and
    hold them up beside the meeting point; from `CHECK["insertion"]` on the right arm is steered by
    `Planner._insert` (the peg is servoed into the socket), so its waypoints end there."""
    peg, socket = objects[:3], objects[7:10]
    meet = np.array([0.0, 0.5, 0.15])
    # One orientation per arm from the grasp on: turning the wrist would turn the part in the hand.
    qleft = facing(_quat((0, 1, 0), SOCKET_PITCH), socket, right=False)
    qright = facing(_quat((0, 1, 0), -PEG_PITCH), peg, right=True)
    up, down, sdown = np.array([0, 0, 0.09]), np.array([0, 0, PEG_DOWN]), np.array([0, 0, SOCKET_DOWN])
    peg = peg + [PEG_GRASP, 0, 0]  # hold the peg by its outer end: its inner end goes in
    hold_left, hold_right = meet + [-0.1, 0, 0], meet + [0.12, 0, 0]
    # above it (open), straight down, close, hold: the same timing for both arms
    grasp = [
        (70, up, 1.0),
        (85, up, 1.0),
        (115, down, 1.0),
        (125, down, 1.0),
        (145, down, 0.0),
        (155, down, 0.0),
    ]
    left = [Waypoint(0, start[0, :3], start[0, 3:], 0.0)]
    left += [Waypoint(t, socket + (sdown if dz is down else dz), qleft, g) for t, dz, g in grasp]
    left += [Waypoint(200, hold_left, qleft, 0.0), Waypoint(PLAN_STEPS, hold_left, qleft, 0.0)]
    right = [Waypoint(0, start[1, :3], start[1, 3:], 0.0)]
    right += [Waypoint(t, peg + dz, qright, g) for t, dz, g in grasp]
    right += [Waypoint(200, hold_right, qright, 0.0), Waypoint(PLAN_STEPS, hold_right, qright, 0.0)]
    return left, right


WAYPOINTS = {"transfer-cube": transfer_cube_waypoints, "insertion": insertion_waypoints}
#: The step at which the planner looks where the objects are (held up) and aims the rest from there.
CHECK = {"transfer-cube": 235, "insertion": 215}
#: The objects' bodies whose positions `live` holds, in the layout of `objects` (7 per object).
BODIES = {"transfer-cube": ("box",), "insertion": ("peg", "socket")}


def start_mocap(model: mujoco.MjModel, data: mujoco.MjData, objects: np.ndarray) -> np.ndarray:
    """[2, 7] (left, right) mocap poses (xyz, wxyz) that the welds hold at the arms' start pose.

    A weld keeps body2 (the gripper_link) at pose `eq_data[3:10]` in body1's (the mocap's) frame, so
    mocap_quat = gripper_quat * relquat^-1 and mocap_pos = gripper_pos - R(mocap_quat) relpos."""
    scene.reset_data(model, data, objects)
    out = np.zeros((2, 7))
    for i in range(2):
        body = model.eq_obj2id[i]
        relpos, relquat = model.eq_data[i, 3:6], model.eq_data[i, 6:10]
        inv, quat, rot = np.zeros(4), np.zeros(4), np.zeros(9)
        mujoco.mju_negQuat(inv, relquat)
        mujoco.mju_mulQuat(quat, data.xquat[body], inv)
        mujoco.mju_quat2Mat(rot, quat)
        out[i, :3] = data.xpos[body] - rot.reshape(3, 3) @ relpos
        out[i, 3:] = quat
    return out


class Planner:
    """Plans one task's expert trajectories in its end-effector scene (the model is loaded once)."""

    def __init__(self, task: str):
        self.task = task
        self.model = scene.load_model(task, end_effector=True)
        self.data = mujoco.MjData(self.model)
        self.reward = scene.ContactReward.for_model(task, self.model)
        self.best_reward = 0  # the highest reward the last plan reached in this scene (diagnostics)
        self.bodies = [mujoco.mj_name2id(self.model, mujoco.mjtObj.mjOBJ_BODY, b) for b in BODIES[task]]
        self.start = start_mocap(self.model, self.data, scene.sample_placement(task, 0))  # [2, 7] left, right

    def plan(self, objects: np.ndarray, steps: int = PLAN_STEPS) -> np.ndarray:
        """The joint-space action sequence [steps, 14] for objects placed at `objects`."""
        m, d = self.model, self.data
        live = objects.copy()
        left, right = self._tracks(objects, live, steps)
        scene.reset_data(m, d, objects)
        d.mocap_pos[:] = self.start[:, :3]
        d.mocap_quat[:] = self.start[:, 3:]
        d.ctrl[:] = self._grip_ctrl(0.0, 0.0)
        mujoco.mj_forward(m, d)
        out = np.empty((steps, 14), dtype=np.float32)
        self.best_reward = 0
        for i in range(steps):
            if i == CHECK[self.task]:  # aim the rest at where the objects are now
                for k, body in enumerate(self.bodies):
                    live[7 * k : 7 * k + 3] = d.xpos[body]
                left, right = self._tracks(objects, live, steps)
            d.mocap_pos[:] = left[i, :3], right[i, :3]
            d.mocap_quat[:] = left[i, 3:7], right[i, 3:7]
            if self.task == "insertion" and i >= CHECK["insertion"]:
                d.mocap_pos[1], d.mocap_quat[1] = self._insert(i - CHECK["insertion"])
            d.ctrl[:] = self._grip_ctrl(left[i, 7], right[i, 7])
            scene.advance(m, d)
            self.best_reward = max(self.best_reward, self.reward(d))
            out[i] = scene.joint_state(d.qpos)
            out[i, 6], out[i, 13] = left[i, 7], right[i, 7]  # the commanded openings
        return out

    def _insert(self, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Step k of the insertion servo: the right mocap pose that moves the peg onto the socket's axis.

        Privileged feedback (the planner sees both parts' poses): the peg's position error to its
        target on the socket's axis, and its orientation error to the socket's, are integrated into
        the mocap command with small gains (the weld is soft, so a proportional command alone would
        leave an offset). Only the resulting joint trajectory is replayed."""
        d, (peg, socket) = self.data, self.bodies
        if k == 0:
            self._cmd_pos, self._cmd_quat = d.mocap_pos[1].copy(), d.mocap_quat[1].copy()
        rot = d.xmat[socket].reshape(3, 3)
        depth = PEG_START + (PEG_END - PEG_START) * np.clip((k - ALIGN_STEPS) / SERVO_STEPS, 0.0, 1.0)
        move = POS_GAIN * (d.xpos[socket] + rot[:, 0] * depth - d.xpos[peg])
        self._cmd_pos = self._cmd_pos + move * min(1.0, MAX_MOVE / max(np.linalg.norm(move), 1e-9))
        err, inv, vel = np.zeros(4), np.zeros(4), np.zeros(3)
        mujoco.mju_negQuat(inv, d.xquat[peg])
        mujoco.mju_mulQuat(err, d.xquat[socket], inv)  # world-frame rotation taking the peg to the socket
        mujoco.mju_quat2Vel(vel, err, 1.0)
        angle = np.linalg.norm(vel)
        if angle > 1e-9:
            self._cmd_quat = _mul(_quat(tuple(vel / angle), np.rad2deg(ROT_GAIN * angle)), self._cmd_quat)
        return self._cmd_pos, self._cmd_quat

    def _tracks(self, objects: np.ndarray, live: np.ndarray, steps: int) -> tuple[np.ndarray, np.ndarray]:
        """(left, right) [steps, 8] targets; waypoints after CHECK depend on `live`, those before do not."""
        left, right = WAYPOINTS[self.task](objects, self.start, live)
        return _track(left, steps), _track(right, steps)

    @staticmethod
    def _grip_ctrl(left: float, right: float) -> np.ndarray:
        gl, gr = scene.finger_position(left), scene.finger_position(right)
        return np.array([gl, -gl, gr, -gr])
