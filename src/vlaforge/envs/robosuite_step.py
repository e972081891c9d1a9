"""robosuite's 20 Hz control step without its per-substep Python bookkeeping; the same states.

robosuite runs its whole controller stack at every physics substep (25 per control step at 500 Hz):
the composite controller, the OSC_POSE arm part (which re-reads the grip site's pose, Jacobians and
mass matrix through several layers of Python wrappers) and the gripper part (whose command only
changes at a policy step), then its observables. On these CPUs that bookkeeping is most of a step's
physics time: MuJoCo's own `mj_step1` + `mj_step2` are ~1.7 ms of a Lift step's ~8-10 ms
(`python benchmarks/render_cost_robosuite.py` measures both paths).

`ControlStep.step(action)` runs robosuite's own code for the first substep of a control step (goal
setting from the action, the robot's histories, the gripper command) and, for the other substeps,
only the OSC_POSE equations of `OperationalSpaceController.run_controller`, written over the same
arrays in the same order and with robosuite's own kernels (`opspace_matrices`, `nullspace_torques`,
`orientation_error`, numba-compiled), so every `qpos`, `qvel` and `ctrl` is bitwise the one
`env.step` gives (tested on every arm). The gripper's control is left as the first substep wrote it
(robosuite recomputes the same value 24 more times). Deviation: robosuite's observables are not
updated between substeps and no observation dict is built: vlaforge reads the simulator's state, not
robosuite's observations. Controller settings this does not cover (an interpolator, variable
impedance, a world input frame, coupled position/orientation, more parts than one arm and its
gripper, full physics instead of `lite_physics`) make `supports(env)` False and `RobosuiteEnv` keeps
robosuite's `env.step`.
"""

from __future__ import annotations

from typing import Any

import mujoco
import numpy as np


def _arm_controller(env: Any) -> Any:
    """The OSC_POSE controller this module can stand in for, or None."""
    from robosuite.controllers.parts.arm.osc import OperationalSpaceController

    if len(env.robots) != 1 or not getattr(env, "lite_physics", False):
        return None
    robot = env.robots[0]
    parts = robot.composite_controller.part_controllers
    if set(parts) != {"right", "right_gripper"} or not all(robot._enabled_parts.get(p) for p in parts):
        return None
    osc = parts["right"]
    plain = (
        type(osc) is OperationalSpaceController
        and osc.name == "OSC_POSE"
        and osc.interpolator_pos is None
        and osc.interpolator_ori is None
        and osc.impedance_mode == "fixed"
        and osc.input_ref_frame == "base"
        and osc.uncoupling
        and osc.num_ref_sites == 1
    )
    return osc if plain else None


def supports(env: Any) -> bool:
    """True when `ControlStep` reproduces `env.step` for this robosuite env."""
    return _arm_controller(env) is not None


class ControlStep:
    """`step(action)` = robosuite's `env.step(action)` minus observables; see the module docstring."""

    def __init__(self, env: Any):
        osc = _arm_controller(env)
        if osc is None:
            raise ValueError("this robosuite env's controller is not plain single-arm OSC_POSE")
        from robosuite.utils.control_utils import nullspace_torques, opspace_matrices, orientation_error

        self._kernels = (opspace_matrices, nullspace_torques, orientation_error)
        self.env = env
        robot = env.robots[0]
        self.model, self.data = env.sim.model._model, env.sim.data._data
        self.substeps = int(env.control_timestep / env.model_timestep)  # as robosuite's step counts
        self.site = env.sim.model.site_name2id(osc.ref_name)
        self.base_site = env.sim.model.site_name2id(f"{osc.naming_prefix}{osc.part_name}_center")
        self.qpos_index = np.asarray(osc.qpos_index, dtype=np.intp)  # [n_arm]
        self.qvel_index = np.asarray(osc.qvel_index, dtype=np.intp)  # [n_arm]
        self.actuators = np.asarray(robot._ref_actuators_indexes_dict["right"], dtype=np.intp)  # [n_arm]
        self.ctrl_low = self.model.actuator_ctrlrange[self.actuators, 0].copy()  # [n_arm]
        self.ctrl_high = self.model.actuator_ctrlrange[self.actuators, 1].copy()  # [n_arm]
        nv = self.model.nv
        self._jacp, self._jacr = np.zeros((3, nv)), np.zeros((3, nv))  # grip site, world frame
        self._base_jacp, self._base_jacr = np.zeros((3, nv)), np.zeros((3, nv))  # arm's base site
        self._mass = np.zeros((nv, nv))

    def step(self, action: np.ndarray) -> tuple[float, dict[str, Any]]:
        """One control step; returns robosuite's `(reward, info)`."""
        env, m, d = self.env, self.model, self.data
        if env.done:
            raise ValueError("executing action in terminated episode")
        env.timestep += 1
        env.sim.step1()
        env._pre_action(action, True)  # robosuite's own: goals, histories, arm and gripper ctrl
        env.sim.step2()
        env._update_observables()
        osc = env.robots[0].composite_controller.part_controllers["right"]  # reset() makes new ones
        gains = (np.array(osc.kp[0:3]), osc.kd[0:3], np.array(osc.kp[3:6]), osc.kd[3:6])  # fixed impedance
        for _ in range(self.substeps - 1):
            mujoco.mj_step1(m, d)
            d.ctrl[self.actuators] = self._arm_ctrl(osc, gains)  # [n_arm]
            mujoco.mj_step2(m, d)
        env.cur_time += env.control_timestep
        reward, _, info = env._post_action(action)
        return float(reward), info

    def _arm_ctrl(self, osc: Any, gains: tuple[np.ndarray, ...]) -> np.ndarray:
        """`OperationalSpaceController.run_controller` for the current state, clipped to ctrlrange;
        `gains` = (kp, kd) of position, then of orientation, as robosuite slices them."""
        opspace_matrices, nullspace_torques, orientation_error = self._kernels
        m, d, qv = self.model, self.data, self.qvel_index
        origin_pos = np.array(d.site_xpos[self.base_site])  # [3] world
        origin_ori = np.array(d.site_xmat[self.base_site].reshape([3, 3]))  # [3, 3]
        ref_pos = np.array(d.site_xpos[self.site])  # [3]
        ref_ori = np.array(d.site_xmat[self.site].reshape([3, 3]))  # [3, 3]
        mujoco.mj_jacSite(m, d, self._jacp, self._jacr, self.site)
        mujoco.mj_jacSite(m, d, self._base_jacp, self._base_jacr, self.base_site)
        ref_pos_vel = np.dot(self._jacp, d.qvel)  # [3]
        ref_ori_vel = np.dot(self._jacr, d.qvel)  # [3]
        j_pos = np.ascontiguousarray(self._jacp[:, qv])  # [3, n_arm]; C order as robosuite's (the
        j_ori = np.ascontiguousarray(self._jacr[:, qv])  # [3, n_arm]; products round by layout)
        j_full = np.concatenate((j_pos, j_ori))  # [6, n_arm]
        joint_pos = np.array(d.qpos[self.qpos_index])  # [n_arm]
        joint_vel = np.array(d.qvel[qv])  # [n_arm]
        mujoco.mj_fullM(m, self._mass, d.qM)
        mass = self._mass[qv, :][:, qv]  # [n_arm, n_arm]

        desired_pos = origin_pos + np.dot(origin_ori, osc.goal_pos)  # [3]
        desired_ori = np.dot(origin_ori, osc.goal_ori)  # [3, 3]
        ori_error = orientation_error(desired_ori, ref_ori)  # [3]
        position_error = desired_pos - ref_pos  # [3]
        vel_pos_error = -(ref_pos_vel - np.dot(self._base_jacp, d.qvel))  # [3]
        kp_pos, kd_pos, kp_ori, kd_ori = gains
        force = np.multiply(position_error, kp_pos) + np.multiply(vel_pos_error, kd_pos)
        vel_ori_error = -(ref_ori_vel - np.dot(self._base_jacr, d.qvel))  # [3]
        torque = np.multiply(ori_error, kp_ori) + np.multiply(vel_ori_error, kd_ori)

        _, lambda_pos, lambda_ori, nullspace = opspace_matrices(mass, j_full, j_pos, j_ori)
        wrench = np.concatenate([np.dot(lambda_pos, force), np.dot(lambda_ori, torque)])  # [6]
        torques = np.dot(j_full.T, wrench) + d.qfrc_bias[qv]  # [n_arm]
        torques += nullspace_torques(mass, nullspace, osc.initial_joint, joint_pos, joint_vel)
        return np.clip(torques, self.ctrl_low, self.ctrl_high)
