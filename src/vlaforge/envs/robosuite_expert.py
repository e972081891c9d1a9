"""Scripted experts for robosuite Lift, Stack and PickPlaceCan, in OSC_POSE action space, from privileged poses.

A waypoint state machine per episode (`make_expert(env)` after each reset):

    approach  above the cube (`HOVER` m), gripper open, yaw turned to the cube's nearest face pair
    descend   to the grasp point (the cube's centre), open
    grasp     hold still and close for `GRASP_STEPS`
    lift      straight up to `LIFT` m above the table                       (Lift ends here: success)
    carry     above cubeB (Stack) or the can's bin quarter (PickPlaceCan: `BIN_LIFT` m up), holding
    lower     until cubeA rests `PLACE_CLEARANCE` above cubeB's top, the can `BIN_DROP` above the floor
    release   open for `RELEASE_STEPS`, then rise      (Stack succeeds on release, PickPlaceCan on rising)

An object that falls out of the hand while carrying sends the expert back to `approach`.

Each phase ends on a distance threshold or a step count, never on wall time, so the expert is a
function of the simulator state and the phase history: deterministic per seed. Actions: position
error / 5 cm (OSC_POSE's unit) times a gain plus an integral term (OSC's steady-state error), rotation error as axis-angle / 0.5 rad, both rotated
into the robot base frame and clipped to [-1, 1]. The target orientation is the arm's home
orientation turned about the world z axis, so every arm grasps with its own fingers pointing down.

The rotation gain (`ROT_GAIN`) is 0.5, and 0.1 on the Sawyer: near the grasp poses OSC turns an
orientation command into wrist torques that slow or stall the position motion. On the Sawyer
(measured from an approach state: 10 steps of the expert's action moved the gripper 1.1 cm, the
same position command without rotation 6.2 cm) it stopped 2-4 cm off the cube at gain 1 (lift
6/20, stack 1/20; 20/20 and 19/20 at 0.1). At gain 1 the other arms reached their goals slower and
Kinova3 failed most: seeds 0-19 at gain 1 -> 0.5: Kinova3 lift 18 -> 20/20 (mean 93 -> 54 steps),
stack 17 -> 20/20 (169 -> 104; 40/40 on seeds 20-59 at 0.5), UR5e and IIWA stack 19 -> 20/20,
Panda lift and stack 20/20 (50 -> 42 and 95 -> 92 steps).
"""

from __future__ import annotations

from typing import Any

import numpy as np

HOVER = 0.08  # m above the grasp point for the approach
LIFT = 0.15  # m above the table top for the lift
GRASP_STEPS = 12  # steps the gripper closes before lifting (Robotiq grippers need ~10)
RELEASE_STEPS = 10
PLACE_CLEARANCE = 0.01  # m between cubeA's bottom and cubeB's top when releasing
POS_GAIN = 1.0
POS_KI = 0.15  # integral gain per step: OSC leaves a small steady-state error that P alone keeps
I_LIMIT = 0.06  # m, anti-windup bound of the integrated position error
I_ZONE = 0.05  # m: the error is integrated only within this distance of the goal
ROT_GAIN = {"Sawyer": 0.1}  # per arm; DEFAULT_ROT_GAIN for the others (see the module docstring)
DEFAULT_ROT_GAIN = 0.5
XY_TOL, Z_TOL, ROT_TOL = 0.006, 0.008, 0.15  # m, m, rad (Sawyer keeps ~0.06 rad of pitch error)
DROPPED = 0.01  # m: a held object whose centre is this close to its start height has fallen
HOLD_SPEED = 0.6  # position actions are scaled to at most this while carrying (a Robotiq grasp slips)
CUBE_A_HALF, CUBE_B_HALF = 0.02, 0.025  # robosuite Stack's cube half-sizes (Lift's cube: 0.02)
BIN_LIFT = 0.18  # m above the bins' reference height while carrying (the walls' tops are 0.1 up)
BIN_DROP = 0.03  # m above its resting height the can is let go
BIN_XY_TOL = 0.015  # m: the can's bin quarter is 20 x 25 cm
#: The can is placed this far (x, y; m) from its quarter's centre, toward the robot (the quarter's
#: far side is at the edge of some arms' reach); still 5.8 / 8.2 cm inside the quarter's walls.
BIN_AIM = (-0.04, -0.04, 0.0)
#: ... or, after this many carry steps, anywhere this far (m) inside the quarter's walls.
BIN_CARRY_STEPS, BIN_MARGIN = 60, 0.045


def _yaw_to_face(rot: np.ndarray) -> float:
    """The rotation about z in [-pi/4, pi/4] that aligns axis-aligned fingers with a cube's faces."""
    yaw = float(np.arctan2(rot[1, 0], rot[0, 0]))
    return (yaw + np.pi / 4) % (np.pi / 2) - np.pi / 4


def _rot_z(angle: float) -> np.ndarray:
    c, s = np.cos(angle), np.sin(angle)
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


class PickPlaceExpert:
    """Lift (`place=None`), Stack (`place="cubeB"`) or PickPlaceCan (`place="bin"`) for one episode."""

    def __init__(self, env: Any, obj: str, place: str | None) -> None:
        from vlaforge.envs.robosuite import _axis_angle

        self.env, self.obj, self.place = env, obj, place
        self._axis_angle = _axis_angle
        self.phase = "approach"
        self.count = 0  # steps in the current phase
        self.yaw = _yaw_to_face(env.object_rot(obj))
        self.target_rot = _rot_z(self.yaw) @ env.arm.home_rot
        self.grip_offset = 0.0  # eef z - object z at the grasp
        self.integral = np.zeros(3)  # [3] integrated position error, world frame, m
        self.hold = env.arm.pos  # [3] where the gripper was when the phase began
        self.rest = float(env.object_pos(obj)[2] - env.table_z)  # the object's centre height at rest
        self.lift = BIN_LIFT if place == "bin" else LIFT

    def action(self) -> np.ndarray:
        """float32 [7] for the current state (advances the phase when its goal is reached)."""
        target, close = self._target()
        self.count += 1
        return self._command(target, close)

    def _go(self, phase: str) -> None:
        """Enter `phase`; `hold` keeps where the gripper was (a fixed reference: with the integral
        term, a goal that follows the gripper would drift)."""
        self.phase, self.count = phase, 0
        self.hold = self.env.arm.pos

    def _target(self) -> tuple[np.ndarray, bool]:
        env, arm = self.env, self.env.arm
        obj = env.object_pos(self.obj)
        eef = arm.pos
        if self.phase == "approach":
            goal = obj + [0.0, 0.0, HOVER]
            if (self._reached(eef, goal) and self._rot_err() < ROT_TOL) or self.count > 80:
                self._go("descend")
            return goal, False
        if self.phase == "descend":
            goal = obj.copy()
            if self._reached(eef, goal) or self.count > 40:
                self._go("grasp")
            return goal, False
        if self.phase == "grasp":
            if self.count >= GRASP_STEPS:
                self.grip_offset = float(eef[2] - obj[2])
                self._go("lift")
            return self.hold, True
        if self.phase == "lift":
            goal = np.array([self.hold[0], self.hold[1], env.table_z + self.lift])
            if self.place is not None and abs(eef[2] - goal[2]) < 0.02:
                self._go("carry")
            return goal, True
        return self._place_target(eef, obj)

    def _place_target(self, eef: np.ndarray, obj: np.ndarray) -> tuple[np.ndarray, bool]:
        if self.phase in ("carry", "lower") and obj[2] < self.env.table_z + self.rest + DROPPED:
            self._go("approach")  # the object fell out of the hand: grasp it again
            self.integral[:] = 0.0
            return obj + [0.0, 0.0, HOVER], False
        if self.place == "bin":
            base, tol = self.env.place_target(self.obj) + BIN_AIM, BIN_XY_TOL
            rest_z = base[2] + self.rest + BIN_DROP + self.grip_offset
        else:
            base, tol = self.env.object_pos(self.place), XY_TOL
            rest_z = base[2] + CUBE_B_HALF + CUBE_A_HALF + PLACE_CLEARANCE + self.grip_offset
        above = np.array([base[0], base[1], max(self.hold[2], rest_z + 0.04)])
        # steer the held object (not the gripper) over its goal: it may have slipped sideways in the grasp
        shift = np.clip([eef[0] - obj[0], eef[1] - obj[1], 0.0], -0.03, 0.03)
        if self.phase == "carry":
            if np.linalg.norm((obj - base)[:2]) < tol or (
                self.place == "bin" and self.count > BIN_CARRY_STEPS and self._inside_quarter(obj)
            ):
                self._go("lower")
            return above + shift, True
        if self.phase == "lower":
            goal = np.array([base[0], base[1], rest_z]) + shift
            if abs(eef[2] - rest_z) < 0.004 or self.count > 40:
                self._go("release")
            return goal, True
        if self.phase == "release":
            if self.count >= RELEASE_STEPS:
                self._go("rise")
            return self.hold, False
        return self.hold + [0.0, 0.0, 0.08], False

    def _inside_quarter(self, obj: np.ndarray) -> bool:
        """Whether the object's centre is `BIN_MARGIN` inside the walls of its bin quarter."""
        half = np.asarray(self.env.bin_size[:2]) / 4 - BIN_MARGIN  # a quarter is half the bin per axis
        return bool(np.all(np.abs(obj[:2] - self.env.place_target(self.obj)[:2]) < half))

    def _reached(self, eef: np.ndarray, goal: np.ndarray) -> bool:
        err = goal - eef
        return bool(np.linalg.norm(err[:2]) < XY_TOL and abs(err[2]) < Z_TOL)

    def _rot_err(self) -> float:
        return float(np.linalg.norm(self._axis_angle(self.target_rot @ self.env.arm.rot.T)))

    def _command(self, goal: np.ndarray, close: bool) -> np.ndarray:
        arm = self.env.arm
        to_base = arm.base_rot.T  # world -> base frame
        err = goal - arm.pos  # [3] world
        if np.linalg.norm(err) < I_ZONE:  # integrate near the goal only (no windup in long moves)
            self.integral = np.clip(self.integral + POS_KI * err, -I_LIMIT, I_LIMIT)
        else:
            self.integral *= 0.8
        dpos = to_base @ (err * POS_GAIN + self.integral) / 0.05  # [3]
        gain = ROT_GAIN.get(self.env.arm_name, DEFAULT_ROT_GAIN)
        drot = to_base @ self._axis_angle(self.target_rot @ arm.rot.T) / 0.5 * gain  # [3]
        if self.phase in ("carry", "lower"):
            dpos = np.clip(dpos, -HOLD_SPEED, HOLD_SPEED)
        grip = 1.0 if close else -1.0
        return np.clip(np.concatenate([dpos, drot, [grip]]), -1.0, 1.0).astype(np.float32)


def make_expert(env: Any) -> PickPlaceExpert:
    """The expert of `env`'s task for its current episode (call after reset)."""
    if env.base == "lift":
        return PickPlaceExpert(env, "cube", None)
    if env.base == "stack":
        return PickPlaceExpert(env, "cubeA", "cubeB")
    if env.base == "pick-place-can":
        return PickPlaceExpert(env, "can", "bin")
    raise ValueError(f"no scripted expert for robosuite task {env.base!r}")


def run_expert(env: Any, seed: int) -> tuple[bool, int]:
    """One physics-only expert episode from `seed`: (succeeded, steps run)."""
    env.reset(seed, render=False)
    for t in range(env.max_steps):
        _, success, done, _ = env.step(env.expert_action(), render=False)
        if done:
            return bool(success), t + 1
    return False, env.max_steps
