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
pushed into the socket. Additions of ours use the planner's privileged view of the scene (only
the resulting joints are replayed): at a check step the left grasp of transfer-cube is placed where
the held cube really is; the insertion's final approach is a feedback servo on the peg's pose
relative to the socket (`Planner._insert`), and insertion plans are refined in a private joint-scene
replay (`Planner.plan`: a Jacobian servo onto the plan's relative pose, joint-error learning, and
fallback variants), which took the insertion expert from 49 to 59 successes in 60 seeds.
Quaternions are MuJoCo's (w, x, y, z).

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
#: Insertion servo (`Planner._insert`): the peg's inner end starts ENTRY_START m outside the
#: socket's open end, on its axis, for ALIGN_STEPS, then moves in PUSH_RATE m per step while within
#: ENTRY_TOLERANCE m of the axis, to ENTRY_END (the pin's face is 0.02 m inside: peg half-length
#: 0.06, socket 0.06, pin 0.04; the socket's opening leaves 8 mm around the peg).
ENTRY_START, ENTRY_END, ENTRY_TOLERANCE, PUSH_RATE, ALIGN_STEPS = 0.03, -0.03, 0.004, 0.001, 40
PEG_HALF, SOCKET_HALF = 0.06, 0.06
#: Insertion: check replays per plan at most, and the learning gain on their joint tracking errors.
REPLAYS, ILC_GAIN = 4, 1.0
#: Insertion replay servo (`Planner._servo_replay`): per-step gains on the peg's position (m) and
#: axis (rad) error relative to the socket, the damping of the least-squares joint step, and the
#: largest accumulated correction per right-arm joint (rad).
REPLAY_POS_GAIN, REPLAY_ROT_GAIN, REPLAY_DAMPING, REPLAY_MAX_CORRECTION = 0.1, 0.05, 0.02, 0.3
#: insertion grasps: gripper pitch (degrees, ACT's 60: steeper targets are out of the arms' reach and
#: the soft weld then lands the fingers centimetres off), pinch-point heights above the table, and
#: the peg is held PEG_GRASP m outward of its centre (its inner end goes in).
PEG_PITCH, PEG_Z, PEG_GRASP = 60.0, 0.028, 0.0
SOCKET_PITCH, SOCKET_Z, SOCKET_GRASP = 60.0, 0.016, -0.01
#: Pinch servo (insertion grasps): gain per step on the pinch point's position error, and its
#: largest accumulated correction (m).
PINCH_GAIN, MAX_CORRECTION = 0.15, 0.1
#: The pinch point sits this far (m) short of the fingertips, so that the pads close on the part.
PINCH_BACK = 0.012
#: ... and holds its correction while closing and lifting, until the target is CARRY_Z (m) up.
CARRY_Z = 0.08
#: The servo keeps the lowest finger point this high (m) above the table: fingers dragging on it jam.
FINGER_CLEARANCE = 0.004
#: Servo gains per step (position, orientation) and the largest position command change per step (m).
POS_GAIN, ROT_GAIN, MAX_MOVE = 0.1, 0.02, 0.004


@dataclass(frozen=True)
class InsertionVariant:
    """One way to plan insertion: the peg's pinch height and the servo's wrist gain (`Planner._insert`)."""

    peg_z: float = PEG_Z
    rot_gain: float = ROT_GAIN


#: `Planner.plan` tries these in order until a replay succeeds. The first is the plan; the others are
#: fallbacks for placements where it fails even in the mocap scene (seeds 0-59: 5 of 60, the peg
#: slips out of the right gripper while the wrists turn the parts toward each other): a lower pinch
#: holds it deeper between the fingers, a slower turn wrenches it less.
INSERTION_VARIANTS = (InsertionVariant(), InsertionVariant(peg_z=0.022), InsertionVariant(rot_gain=0.01))
IDENTITY = np.array([1.0, 0.0, 0.0, 0.0])
PITCH_DOWN_RIGHT = _quat((0, 1, 0), -60)  # right gripper tilted down toward the table
ROLL_LEFT = _quat((1, 0, 0), 90)  # left jaws vertical, to take the cube from the side
#: The arms' base positions (x, y) on the table: the left arm points along +x, the right along -x.
BASE_LEFT, BASE_RIGHT = np.array([-0.469, 0.5]), np.array([0.469, 0.5])


def _turn(quat: np.ndarray, axis: np.ndarray, target: np.ndarray, gain: float | None = None) -> np.ndarray:
    """`quat` pre-rotated (world frame) by `gain` of the smallest rotation taking `axis` onto `target`."""
    gain = ROT_GAIN if gain is None else gain
    cross = np.cross(axis, target)
    norm = np.linalg.norm(cross)
    if norm < 1e-9:
        return quat
    angle = np.arctan2(norm, axis @ target)
    return _mul(_quat(tuple(cross / norm), np.rad2deg(gain * angle)), quat)


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


def insertion_waypoints(
    objects: np.ndarray, start: np.ndarray, live: np.ndarray, peg_z: float = PEG_Z
) -> Tracks:
    """(left, right) *pinch-point* waypoints: the left gripper takes the socket, the right the peg, both
    lift and hold them up beside the meeting point; from `CHECK["insertion"]` on the right arm is
    steered by `Planner._insert` (the peg is servoed into the socket), so its waypoints end there.

    Unlike transfer-cube's, these positions are for the point between the fingertips
    (`Planner.pinch`), which `Planner` servoes onto them; `start[:, :3]` are the pinch points at rest."""
    peg, socket = objects[:3], objects[7:10]
    meet = np.array([0.0, 0.5, 0.15])
    # One orientation per arm from the grasp on: turning the wrist would turn the part in the hand.
    qleft = facing(_quat((0, 1, 0), SOCKET_PITCH), socket, right=False)
    qright = facing(_quat((0, 1, 0), -PEG_PITCH), peg, right=True)
    peg = np.array([peg[0] + PEG_GRASP, peg[1], peg_z])  # by its outer end: the inner end goes in
    socket = np.array([socket[0] + SOCKET_GRASP, socket[1], SOCKET_Z])
    up = np.array([0, 0, 0.08])
    hold_left, hold_right = meet + [-0.1, 0, 0], meet + [0.12, 0, 0]
    # above it (open), straight down, close, hold: the same timing for both arms
    grasp = [(70, up, 1.0), (85, up, 1.0), (115, 0, 1.0), (125, 0, 1.0), (145, 0, 0.0), (155, 0, 0.0)]
    left = [Waypoint(0, start[0, :3], start[0, 3:], 0.0)]
    left += [Waypoint(t, socket + dz, qleft, g) for t, dz, g in grasp]
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


def entry_offset(data: mujoco.MjData, peg: int, socket: int) -> np.ndarray:
    """[3] the peg's inner end relative to the middle of the socket's open end, in the socket's frame
    (x along its axis, outward: negative is inside)."""
    rs, rp = data.xmat[socket].reshape(3, 3), data.xmat[peg].reshape(3, 3)
    tip = data.xpos[peg] - rp[:, 0] * PEG_HALF
    return rs.T @ (tip - data.xpos[socket] - rs[:, 0] * SOCKET_HALF)


def finger_geometry(
    model: mujoco.MjModel, data: mujoco.MjData, back: float = PINCH_BACK
) -> tuple[np.ndarray, np.ndarray]:
    """The pinch point [3] and the fingers' mesh vertices [V, 3], in the left gripper_link's frame.

    The pinch point lies between the fingers, `back` m short of their tips (the vertices farthest
    along the link's x axis, its pointing direction). Both arms' grippers are the same mesh, so one
    geometry serves both; the vertices are those of the start pose's finger opening."""
    mujoco.mj_forward(model, data)
    body = int(model.eq_obj2id[0])
    rot, origin, tips, verts_all = data.xmat[body].reshape(3, 3), data.xpos[body], [], []
    for geom in np.flatnonzero(model.geom_bodyid >= 0):
        if (
            model.geom_type[geom] != mujoco.mjtGeom.mjGEOM_MESH
            or model.body_parentid[model.geom_bodyid[geom]] != body
        ):
            continue
        name = mujoco.mj_id2name(model, mujoco.mjtObj.mjOBJ_GEOM, int(geom)) or ""
        if not name.endswith("_gripper_finger"):
            continue
        mesh = model.geom_dataid[geom]
        verts = model.mesh_vert[
            model.mesh_vertadr[mesh] : model.mesh_vertadr[mesh] + model.mesh_vertnum[mesh]
        ]
        world = verts @ data.geom_xmat[geom].reshape(3, 3).T + data.geom_xpos[geom]  # [V, 3]
        local = (world - origin) @ rot  # [V, 3] in the gripper_link's frame
        tips.append(local[local[:, 0] > local[:, 0].max() - 0.01].mean(axis=0))
        verts_all.append(local)
    if len(tips) != 2:
        raise RuntimeError(f"expected two finger meshes on the left gripper, found {len(tips)}")
    out = np.mean(tips, axis=0)
    out[0] -= back
    return out, np.concatenate(verts_all)


class Planner:
    """Plans one task's expert trajectories in its end-effector scene (the model is loaded once)."""

    def __init__(self, task: str, low: np.ndarray | None = None, high: np.ndarray | None = None):
        """`low`/`high`: the joint env's action bounds (its `step` clips to them), for the check replays."""
        self.task = task
        self.low = np.full(14, -np.inf) if low is None else np.asarray(low, dtype=np.float64)
        self.high = np.full(14, np.inf) if high is None else np.asarray(high, dtype=np.float64)
        self.model = scene.load_model(task, end_effector=True)
        self.data = mujoco.MjData(self.model)
        self.reward = scene.ContactReward.for_model(task, self.model)
        self.best_reward = 0  # the highest reward the last plan reached in this scene (diagnostics)
        self.bodies = [mujoco.mj_name2id(self.model, mujoco.mjtObj.mjOBJ_BODY, b) for b in BODIES[task]]
        self.start = start_mocap(self.model, self.data, scene.sample_placement(task, 0))  # [2, 7] left, right
        self.grippers = [int(b) for b in self.model.eq_obj2id[:2]]  # (left, right) gripper_link bodies
        self.pinch_offset, self.finger_verts = finger_geometry(
            self.model, self.data
        )  # [3], [V, 3] link frame
        self.servo = task == "insertion"  # grasp waypoints are pinch-point targets (see insertion_waypoints)
        self.start_pinch = self.start.copy()
        self.start_pinch[:, :3] = [self.pinch(i) for i in range(2)]
        self.replays = 0  # the check replays the last plan took (insertion; diagnostics)
        self.variant = INSERTION_VARIANTS[0]  # the insertion variant being planned (diagnostics after `plan`)
        if self.servo:
            jm = self.joint_model = scene.load_model(task)
            self.joint_data = mujoco.MjData(jm)
            self.joint_reward = scene.ContactReward.for_model(task, jm)
            self.joint_bodies = [mujoco.mj_name2id(jm, mujoco.mjtObj.mjOBJ_BODY, b) for b in BODIES[task]]
            right = mujoco.mj_id2name(self.model, mujoco.mjtObj.mjOBJ_BODY, self.grippers[1])
            self.joint_right_gripper = mujoco.mj_name2id(jm, mujoco.mjtObj.mjOBJ_BODY, right)
            # per planned step: the peg's entry offset and axis in the socket's frame (`_servo_replay`)
            self.reference = np.zeros((PLAN_STEPS, 6))  # [steps, 6], rewritten by every plan

    def plan(self, objects: np.ndarray, steps: int = PLAN_STEPS) -> np.ndarray:
        """The joint-space action sequence [steps, 14] (float32) for objects placed at `objects`.

        Insertion: the joint scene's position servos (weak at the wrist: kp 10-50) lag and sag where
        the welds do not, and the parts sit a little differently in the hands, so a replayed peg
        meets the socket up to ~3 cm off the planned line (the opening leaves 8 mm). The planner
        therefore replays each plan in its own copy of the joint scene (deterministic, the same steps
        as `AlohaEnv.step`), with two corrections: from `CHECK` on, a servo on the peg's pose
        relative to the socket (`_servo_replay`), and while a replay fails, each step's arm-joint
        tracking error (planned minus replayed) added to that step's action before the next replay
        (iterative learning control; the right arm's after `CHECK` is left to the servo), up to
        `REPLAYS` replays per plan, for each of `INSERTION_VARIANTS` in turn. It returns the first
        action sequence whose replay succeeds, else the last. The gripper commands stay as planned."""
        if not self.servo:
            return self._plan_once(objects, steps)
        arm = np.r_[0:6, 7:13]
        learn = np.ones((steps, 12))  # [T, 12] which arm joints' tracking errors the ILC learns from
        learn[CHECK[self.task] :, 6:] = 0.0
        for self.variant in INSERTION_VARIANTS:
            out = self._plan_once(objects, steps)
            actions = out.copy()
            for self.replays in range(1, REPLAYS + 1):
                success, joints, sent = self._servo_replay(objects, actions)
                if success:
                    return sent
                n = len(joints)
                actions[:n, arm] += ILC_GAIN * (out[:n, arm] - joints[:, arm]) * learn[:n]
        return sent

    def _servo_replay(self, objects: np.ndarray, actions: np.ndarray) -> tuple[bool, np.ndarray, np.ndarray]:
        """Replays `actions` in the joint scene with the insertion servo on from `CHECK` on.

        The servo keeps the peg's inner end and axis, relative to the socket, on where the mocap plan
        had them at the same step (`self.reference`): each step the error (position in m, axis as a
        small rotation vector) goes through the damped least-squares inverse of the right gripper's
        6x6 Jacobian (at the peg's inner end, right-arm joints) into an accumulated joint correction,
        added to the planned right-arm targets. The actions it sends are rounded to float32, as the
        env receives them, so a plain replay of the returned rows repeats this one exactly.
        Returns (reached the maximum reward, joint states [T', 14], the actions sent [steps, 14];
        after a success, the remaining rows keep the last correction)."""
        m, d, (peg, socket) = self.joint_model, self.joint_data, self.joint_bodies
        scene.reset_data(m, d, objects)
        jacp, jacr = np.zeros((3, m.nv)), np.zeros((3, m.nv))
        dofs = m.jnt_dofadr[m.actuator_trnid[8:14, 0]]  # the right arm's 6 joints (actuators 8..13)
        sent, correction, joints = actions.copy(), np.zeros(6), []
        for i in range(len(actions)):
            if i >= CHECK[self.task]:
                rs, rp = d.xmat[socket].reshape(3, 3), d.xmat[peg].reshape(3, 3)
                offset, axis = self.reference[i - 1, :3], self.reference[i - 1, 3:]
                error = rs @ (offset - entry_offset(d, peg, socket))  # [3] world
                turn = np.cross(rp[:, 0], rs @ axis)  # [3] world, small-angle rotation vector
                mujoco.mj_jac(m, d, jacp, jacr, d.xpos[peg] - rp[:, 0] * PEG_HALF, self.joint_right_gripper)
                jac = np.vstack([jacp[:, dofs], jacr[:, dofs]])  # [6, 6]
                twist = np.concatenate([REPLAY_POS_GAIN * error, REPLAY_ROT_GAIN * turn])  # [6]
                step = jac.T @ np.linalg.solve(jac @ jac.T + REPLAY_DAMPING**2 * np.eye(6), twist)
                correction = np.clip(correction + step, -REPLAY_MAX_CORRECTION, REPLAY_MAX_CORRECTION)
                sent[i, 7:13] = actions[i, 7:13] + correction
            d.ctrl[:] = scene.joint_ctrl(np.clip(sent[i].astype(np.float64), self.low, self.high))
            scene.advance(m, d)
            joints.append(scene.joint_state(d.qpos))
            if self.joint_reward(d) == scene.MAX_REWARD:
                sent[i + 1 :, 7:13] = actions[i + 1 :, 7:13] + correction
                return True, np.array(joints), sent
        return False, np.array(joints), sent

    def replay(self, objects: np.ndarray, actions: np.ndarray) -> tuple[bool, np.ndarray]:
        """Replays `actions` in the joint scene: (reached the maximum reward, joint states [T, 14])."""
        m, d = self.joint_model, self.joint_data
        scene.reset_data(m, d, objects)
        joints = []
        for action in actions:
            d.ctrl[:] = scene.joint_ctrl(np.clip(action.astype(np.float64), self.low, self.high))
            scene.advance(m, d)
            joints.append(scene.joint_state(d.qpos))
            if self.joint_reward(d) == scene.MAX_REWARD:
                return True, np.array(joints)
        return False, np.array(joints)

    def _plan_once(self, objects: np.ndarray, steps: int) -> np.ndarray:
        """One plan in the end-effector scene: the joint-space action sequence [steps, 14]."""
        m, d = self.model, self.data
        live = objects.copy()
        left, right = self._tracks(objects, live, steps)
        scene.reset_data(m, d, objects)
        d.mocap_pos[:] = self.start[:, :3]
        d.mocap_quat[:] = self.start[:, 3:]
        d.ctrl[:] = self._grip_ctrl(0.0, 0.0)
        mujoco.mj_forward(m, d)
        out = np.empty((steps, 14), dtype=np.float32)
        if self.servo:
            self.reference = np.zeros((steps, 6))
        self.best_reward = 0
        correction = np.zeros((2, 3))  # the pinch servo's accumulated mocap offsets (left, right)
        for i in range(steps):
            if i == CHECK[self.task]:  # aim the rest at where the objects are now
                for k, body in enumerate(self.bodies):
                    live[7 * k : 7 * k + 3] = d.xpos[body]
                left, right = self._tracks(objects, live, steps)
            d.mocap_pos[:] = left[i, :3] + correction[0], right[i, :3] + correction[1]
            d.mocap_quat[:] = left[i, 3:7], right[i, 3:7]
            if self.task == "insertion" and i >= CHECK["insertion"]:
                self._insert(i - CHECK["insertion"])
            d.ctrl[:] = self._grip_ctrl(left[i, 7], right[i, 7])
            scene.advance(m, d)
            if self.servo:
                for arm, track in enumerate((left, right)):
                    if track[i, 7] > 0.5 or track[i, 2] > CARRY_Z:  # reaching open, or carrying high
                        pinch = self.pinch(arm)
                        error = track[i, :3] - pinch
                        # no lower than keeps the fingers off the table (dragging on it, they jam)
                        error[2] = max(error[2], FINGER_CLEARANCE - self.lowest_finger(arm))
                        correction[arm] += PINCH_GAIN * error
                        norm = np.linalg.norm(correction[arm])
                        correction[arm] *= min(1.0, MAX_CORRECTION / max(norm, 1e-9))
            self.best_reward = max(self.best_reward, self.reward(d))
            if self.servo:
                rs, rp = d.xmat[self.bodies[1]].reshape(3, 3), d.xmat[self.bodies[0]].reshape(3, 3)
                self.reference[i] = np.concatenate([entry_offset(d, *self.bodies), rs.T @ rp[:, 0]])
            out[i] = scene.joint_state(d.qpos)
            out[i, 6], out[i, 13] = left[i, 7], right[i, 7]  # the commanded openings
        return out

    def pinch(self, arm: int) -> np.ndarray:
        """World position [3] of the point between `arm`'s fingertips (0 left, 1 right)."""
        body = self.grippers[arm]
        return self.data.xpos[body] + self.data.xmat[body].reshape(3, 3) @ self.pinch_offset

    def lowest_finger(self, arm: int) -> float:
        """World height of `arm`'s lowest finger point (the table top is z = 0)."""
        body = self.grippers[arm]
        return float(
            (self.finger_verts @ self.data.xmat[body].reshape(3, 3)[2] + self.data.xpos[body][2]).min()
        )

    def _insert(self, k: int) -> None:
        """Step k of the insertion servo: sets both mocap orientations and the right mocap position.

        Privileged feedback (the planner sees both parts' poses), integrated into the mocap commands
        with small gains (the weld is soft, so a proportional command alone would leave an offset):
        the left wrist turns the socket's axis onto the world x axis and the right wrist the peg's onto
        the socket's (each arm does half the turning); the right arm moves the peg's inner end onto
        the socket's axis, `ENTRY_START` m outside the entrance, and then pushes it in at
        `PUSH_RATE` m per step, but only while that end is within `ENTRY_TOLERANCE` of the axis (a
        slow, gated final approach), to `ENTRY_END` m inside (the pin's face is 0.02 m in). Only the
        resulting joint trajectory is replayed."""
        d, (peg, socket) = self.data, self.bodies
        if k == 0:
            self._cmd_pos = d.mocap_pos[1].copy()
            self._cmd_quat = d.mocap_quat.copy()  # [2, 4]
            self._entry = ENTRY_START
        rs, rp = d.xmat[socket].reshape(3, 3), d.xmat[peg].reshape(3, 3)
        gain = self.variant.rot_gain
        self._cmd_quat[0] = _turn(self._cmd_quat[0], rs[:, 0], np.array([1.0, 0.0, 0.0]), gain)
        self._cmd_quat[1] = _turn(self._cmd_quat[1], rp[:, 0], rs[:, 0], gain)
        error = np.array([self._entry, 0.0, 0.0]) - entry_offset(d, peg, socket)  # [3] socket frame
        if k >= ALIGN_STEPS and np.linalg.norm(error[1:]) < ENTRY_TOLERANCE:
            self._entry = max(self._entry - PUSH_RATE, ENTRY_END)
        move = POS_GAIN * (rs @ error)
        self._cmd_pos = self._cmd_pos + move * min(1.0, MAX_MOVE / max(np.linalg.norm(move), 1e-9))
        d.mocap_pos[1] = self._cmd_pos
        d.mocap_quat[:] = self._cmd_quat

    def _tracks(self, objects: np.ndarray, live: np.ndarray, steps: int) -> tuple[np.ndarray, np.ndarray]:
        """(left, right) [steps, 8] targets; waypoints after CHECK depend on `live`, those before do not."""
        if self.servo:
            left, right = insertion_waypoints(objects, self.start_pinch, live, self.variant.peg_z)
        else:
            left, right = WAYPOINTS[self.task](objects, self.start, live)
        return _track(left, steps), _track(right, steps)

    @staticmethod
    def _grip_ctrl(left: float, right: float) -> np.ndarray:
        gl, gr = scene.finger_position(left), scene.finger_position(right)
        return np.array([gl, -gl, gr, -gr])
