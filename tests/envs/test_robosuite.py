"""robosuite arms: task/robot resolution, seeded scenes, upright cameras, the proprio vector, the
scripted experts, the collect CLI (arm recorded) and its errors, and eval frames equal recorded ones.

Real robosuite and MuJoCo throughout. One env (lift-panda, 48 px, both cameras) is shared by the
module; building one costs ~3-6 s. The per-arm expert sweep is `slow`.
"""

from __future__ import annotations

import importlib.util
import json

import numpy as np
import pytest

if importlib.util.find_spec("robosuite") is None:
    pytest.skip("robosuite is not installed (extra `robosuite`)", allow_module_level=True)

from vlaforge import keys as T  # noqa: E402
from vlaforge.cli import main  # noqa: E402
from vlaforge.data.lerobot_v3 import LeRobotV3Dataset  # noqa: E402
from vlaforge.data.video import read_mp4, write_mp4  # noqa: E402
from vlaforge.envs.registry import get_simulator  # noqa: E402
from vlaforge.envs.robosuite import ARMS, TASKS, RobosuiteEnv  # noqa: E402
from vlaforge.envs.robosuite_expert import run_expert  # noqa: E402
from vlaforge.errors import VlaforgeError  # noqa: E402
from vlaforge.eval.workers import EnvPool, EnvSpec  # noqa: E402

SIZE = 48
CAMS = ("agentview", "robot0_eye_in_hand")
AGENT, WRIST = T.image_key("agentview"), T.image_key("robot0_eye_in_hand")


@pytest.fixture(scope="module")
def env():
    e = RobosuiteEnv("lift-panda", cameras=CAMS, image_size=SIZE)
    yield e
    e.close()


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    """One Lift episode on Panda, collected through the CLI with both cameras."""
    out = tmp_path_factory.mktemp("rs") / "R"
    argv = ["collect", "robosuite", "--robots", "panda", "--tasks", "lift", "--episodes-per-task", "1",
            "--image-size", str(SIZE), "--workers", "0", "--steps-after-success", "2", "--out", str(out)]  # fmt: skip
    assert main(argv) == 0
    return out


# ------------------------------------------------------------------------------------- names
def test_tasks_cross_robots_and_bad_names_raise():
    sim = get_simulator("robosuite")
    assert sim.resolve_tasks("lift", robots="Panda,ur5e") == ["lift-panda", "lift-ur5e"]
    assert sim.resolve_tasks("Lift-UR5e,stack-panda") == ["lift-ur5e", "stack-panda"]
    assert sim.resolve_tasks("panda") == [
        "lift-panda",
        "stack-panda",
        "pick-place-can-panda",
    ]  # an arm is a suite
    assert sim.resolve_tasks("sawyer") == ["lift-sawyer", "stack-sawyer"]  # no PickPlaceCan on the Sawyer
    with pytest.raises(VlaforgeError, match="'pick-place-can' runs on none of --robots Sawyer"):
        sim.resolve_tasks("pick-place-can", robots="Sawyer")
    with pytest.raises(VlaforgeError, match="unknown robosuite task 'pick-place-can-sawyer'"):
        sim.resolve_tasks("pick-place-can-sawyer")
    assert sim.resolve_tasks("lift") == [f"lift-{a.lower()}" for a in ARMS]
    assert sim.dataset_robot_type(["lift-panda", "stack-panda"]) == "robosuite_panda"
    assert sim.dataset_robot_type(["lift-panda", "lift-ur5e"]) == "robosuite"
    with pytest.raises(VlaforgeError, match="unknown robosuite robot 'Pand'.*did you mean 'Panda'"):
        sim.resolve_tasks("lift", robots="Pand")
    with pytest.raises(VlaforgeError, match="unknown robosuite task 'lfit'"):
        sim.resolve_tasks("lfit")
    with pytest.raises(VlaforgeError, match="'lift-ur5e' runs on none of --robots Panda"):
        sim.resolve_tasks("lift-ur5e", robots="Panda")
    with pytest.raises(VlaforgeError, match="--robots does not apply to metaworld"):
        get_simulator("metaworld").resolve_tasks("reach", robots="Panda")
    with pytest.raises(VlaforgeError, match="unknown robosuite camera 'wrist'"):
        sim.check_cameras(("agentview", "wrist"))


# ------------------------------------------------------------------------------------- the env
def test_same_seed_same_scene_other_seed_other_scene(env):
    a = env.reset(3)
    cube = env.object_pos("cube")
    b = env.reset(4)
    assert not np.allclose(env.object_pos("cube"), cube)
    c = env.reset(3)
    np.testing.assert_array_equal(env.object_pos("cube"), cube)
    for key in (AGENT, WRIST, T.STATE):
        np.testing.assert_array_equal(a[key], c[key])
    assert not np.array_equal(a[AGENT], b[AGENT])
    assert a[AGENT].dtype == np.uint8 and a[AGENT].shape == (SIZE, SIZE, 3)
    assert a[T.TASK] == "Lift the red cube"


def test_state_is_position_home_relative_rotation_and_gripper_opening(env):
    obs = env.reset(0)
    state = obs[T.STATE]
    assert state.shape == (7,) and state.dtype == np.float32
    np.testing.assert_allclose(state[:3], env.arm.pos, atol=1e-6)
    assert np.linalg.norm(state[3:6]) < 0.1  # near home (only robosuite's small joint noise)
    assert 0.3 < state[6] < 0.7  # robosuite starts the Panda gripper half open
    opened = np.array([0, 0, 0, 0, 0, 0, -1.0])
    for _ in range(15):
        obs, *_ = env.step(opened, render=False)
    assert obs[T.STATE][6] > 0.9
    close = np.array([0, 0, 0, 0, 0, 0, 1.0])
    for _ in range(15):
        obs, *_ = env.step(close, render=False)
    assert obs[T.STATE][6] < 0.1  # closed on nothing
    turn = np.array([0, 0, 0, 0, 0, 1.0, -1.0])  # +yaw in the base frame
    for _ in range(6):
        obs, *_ = env.step(turn, render=False)
    assert obs[T.STATE][5] > 0.3  # the rotation shows up about z, continuously from 0


def test_images_are_upright_where_robosuite_renders_them_upside_down(env):
    from robosuite.utils.binding_utils import MjRenderContextOffscreen

    env.reset(0)
    ours = env.render("agentview").astype(np.float64)
    MjRenderContextOffscreen(env._env.sim, device_id=-1)  # robosuite's own renderer, as its envs use it
    theirs = env._env.sim.render(camera_name="agentview", width=SIZE, height=SIZE).astype(np.float64)

    def corr(a, b):
        return float(np.corrcoef(a.mean(-1).ravel(), b.mean(-1).ravel())[0, 1])

    assert corr(ours, theirs[::-1]) > corr(ours, theirs) + 0.2  # robosuite's frame is flipped vertically
    up = env.data.cam("agentview").xmat.reshape(3, 3)[:, 1]  # image-up axis in the world
    assert up[2] > 0


def test_decimated_meshes_change_the_pixels_a_little_and_the_physics_not_at_all(env):
    from vlaforge.envs import render as R
    from vlaforge.envs.robosuite import MESH_KEEP, MESH_KEEP_NEAR

    full = RobosuiteEnv("lift-panda", cameras=CAMS, image_size=SIZE, mesh_keep=1.0)
    try:
        before, after = env.mesh_triangles
        assert full.mesh_triangles == (before, before) and after < 0.3 * before  # ~180k -> ~40k
        assert env._render_model is not env.model and full._render_model is full.model
        for field in ("mesh_vert", "mesh_face", "mesh_facenum", "mesh_normal", "geom_size", "body_mass"):
            np.testing.assert_array_equal(getattr(env.model, field), getattr(full.model, field))  # physics
        thin = env._render_model
        assert sum(thin.mesh_facenum[m] for m in R.drawn_meshes(thin)) == after
        # the hand the wrist camera rides on keeps more of its faces than the rest of the arm
        near, faces = R.camera_meshes(full.model), full.model.mesh_facenum
        big = [m for m in R.drawn_meshes(full.model) if faces[m] >= R.MIN_FACES]
        hand = {full.model.geom_dataid[full.model.geom("gripper0_right_hand_visual").id]}
        assert hand <= near and not near & {full.model.geom_dataid[full.model.geom("robot0_g0_vis").id]}
        for m in big:  # a near mesh may keep all its faces (when its decimation does not fit its slots)
            ratio = thin.mesh_facenum[m] / faces[m]
            ok = ratio > MESH_KEEP_NEAR - 0.05 if m in near else abs(ratio - MESH_KEEP) < 0.05
            assert ok, (m, thin.mesh_facenum[m], faces[m])
        obs_thin, obs_full = env.reset(3), full.reset(3)
        diffs = []
        for _ in range(30):  # same actions -> bitwise the same states; frames close, not equal
            diffs += [
                np.abs(obs_thin[k].astype(int) - obs_full[k].astype(int)).mean() for k in (AGENT, WRIST)
            ]
            np.testing.assert_array_equal(env.data.qpos, full.data.qpos)
            action = env.expert_action()
            obs_thin, obs_full = env.step(action)[0], full.step(action)[0]
        assert 0 < np.mean(diffs) < 6 and max(diffs) < 12, diffs  # of 255 levels
        # robosuite recolours geoms at run time (visualize()): the render copy follows the sim's model
        saved = env.model.geom_rgba[0].copy()
        env.model.geom_rgba[0] = (0.1, 0.9, 0.2, 1.0)
        env.render("agentview")
        np.testing.assert_array_equal(thin.geom_rgba, env.model.geom_rgba)
        env.model.geom_rgba[0] = saved
        # deterministic: decimating again from scratch (no cache) writes the same meshes
        R._SIMPLIFIED.clear()
        again, counts = R.render_copy(full.model, MESH_KEEP, keep_near=MESH_KEEP_NEAR)
        assert counts == env.mesh_triangles
        np.testing.assert_array_equal(again.mesh_face, thin.mesh_face)
        np.testing.assert_array_equal(again.mesh_normal, thin.mesh_normal)
        with pytest.raises(ValueError, match="keep must be > 0"):
            R.render_copy(full.model, 0.0)
    finally:
        full.close()


def _same_states_as_robosuite_step(task: str, seeds: tuple[int, ...], steps: int) -> int:
    """Drive a ControlStep env and a robosuite-`env.step` env with the same expert actions."""
    fast, slow = RobosuiteEnv(task, image_size=16), RobosuiteEnv(task, image_size=16, fast_control=False)
    try:
        assert fast._control is not None and slow._control is None
        compared = 0
        for seed in seeds:  # reset() makes new robosuite controllers: the second seed checks that
            fast.reset(seed, render=False), slow.reset(seed, render=False)
            for _ in range(steps):
                action = slow.expert_action()
                _, ok_fast, done, info_fast = fast.step(action, render=False)
                _, ok_slow, _, info_slow = slow.step(action, render=False)
                for field in ("qpos", "qvel", "ctrl", "qacc_warmstart"):
                    np.testing.assert_array_equal(getattr(fast.data, field), getattr(slow.data, field))
                assert ok_fast == ok_slow and info_fast == info_slow
                assert fast._env.timestep == slow._env.timestep and fast._env.cur_time == slow._env.cur_time
                compared += 1
                if done:
                    break
        return compared
    finally:
        fast.close(), slow.close()


@pytest.mark.parametrize("task", ["lift-panda", "stack-ur5e"])
def test_fast_control_step_gives_bitwise_the_states_of_robosuites_step(task):
    assert _same_states_as_robosuite_step(task, (0, 1), 60) > 60


@pytest.mark.slow
@pytest.mark.parametrize("task", TASKS)
def test_fast_control_step_is_bitwise_robosuites_on_every_arm_and_task(task):
    assert _same_states_as_robosuite_step(task, (2,), 150) > 30


def test_fast_control_step_stands_aside_for_controllers_it_does_not_cover(env):
    from vlaforge.envs.robosuite_step import ControlStep, supports

    osc = env._env.robots[0].composite_controller.part_controllers["right"]
    assert supports(env._env)
    for attr, value in (("input_ref_frame", "world"), ("impedance_mode", "variable"), ("uncoupling", False)):
        saved = getattr(osc, attr)
        setattr(osc, attr, value)
        try:
            assert not supports(env._env)
            with pytest.raises(ValueError, match="not plain single-arm OSC_POSE"):
                ControlStep(env._env)
        finally:
            setattr(osc, attr, saved)
    assert supports(env._env)


def test_frames_are_the_same_with_the_geoms_outside_the_view_left_out(env):
    from vlaforge.envs import render as R

    env.reset(4)
    culled = {cam: 0 for cam in CAMS}
    for _ in range(6):
        for cam in CAMS:
            env.cull = False
            full = env.render(cam)
            env.cull = True
            np.testing.assert_array_equal(env.render(cam), full)
            culled[cam] += int((~R.in_view(env._render_model, env.data, env.model.camera(cam).id)).sum())
        for _ in range(5):
            env.step(env.expert_action(), render=False)
    assert all(culled.values()), culled  # both views leave some geoms out


def test_lift_expert_succeeds_and_actions_stay_in_the_box(env):
    env.reset(1, render=False)
    for _step in range(env.max_steps):
        action = env.expert_action()
        assert action.shape == (7,) and np.abs(action).max() <= 1.0
        _, success, done, info = env.step(action, render=False)
        if done:
            break
    assert success and _step < 150 and info["reward"] > 0


def test_pick_place_can_expert_puts_the_can_in_its_bin_quarter():
    e = RobosuiteEnv("pick-place-can-panda", image_size=16)
    try:
        ok, steps = run_expert(e, 0)
        can, goal = e.object_pos("can"), e.place_target("can")
        assert ok and steps < 300, steps
        assert np.all(np.abs(can[:2] - goal[:2]) < e.bin_size[:2] / 4)  # inside its quarter of bin 2
        assert can[2] < goal[2] + 0.1 and np.linalg.norm(e.arm.pos - can) > 0.04  # down, and let go
    finally:
        e.close()


@pytest.mark.slow
@pytest.mark.parametrize("task", TASKS)
def test_expert_succeeds_per_arm_and_task(task):
    e = RobosuiteEnv(task, image_size=16)
    try:
        wins = sum(run_expert(e, seed)[0] for seed in range(3))
    finally:
        e.close()
    assert wins >= 2, f"{task}: {wins}/3"


# ------------------------------------------------------------------------------------- collect
def test_collect_cli_writes_a_dataset_with_the_arm_recorded(dataset):
    ds = LeRobotV3Dataset(dataset)
    info = json.loads((dataset / "meta" / "info.json").read_text())
    assert info["robot_type"] == "robosuite_panda" and info["fps"] == 20
    assert info["features"][T.STATE]["shape"] == [7] and info["features"][T.ACTION]["shape"] == [7]
    assert {AGENT, WRIST} <= set(info["features"])
    ep = ds.episodes[0]
    assert ep["robot"] == "Panda" and ep["robosuite_task"] == "lift-panda"
    rows = ds.column("episode_index").reshape(-1) == 0
    assert ds.column(T.SUCCESS)[rows].any()
    side = json.loads((dataset / "meta" / "vlaforge_collect.json").read_text())
    assert side["camera_roles"] == {"agentview": "primary", "robot0_eye_in_hand": "wrist"}


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--robots", "Pandaa"], "unknown robosuite robot 'Pandaa'"),
        (["--tasks", "lfit"], "unknown robosuite task 'lfit'"),
        (["--cameras", "agentview,wristcam"], "unknown robosuite camera 'wristcam'"),
    ],
)
def test_collect_cli_errors_name_the_problem_and_write_nothing(tmp_path, capsys, args, message):
    out = tmp_path / "R"
    base = {"--tasks": "lift", "--robots": "Panda", "--out": str(out), "--episodes-per-task": "1"}
    base.update(dict(zip(args[::2], args[1::2], strict=True)))
    argv = ["collect", "robosuite", *[x for kv in base.items() for x in kv]]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0]
    assert not out.exists()


# ------------------------------------------------------------------------------------- eval frames
def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float("inf") if mse == 0 else 10 * np.log10(255.0**2 / mse)


def test_eval_frames_equal_the_recorded_frames_for_the_same_seed_and_state(dataset, tmp_path):
    """As tests/eval/test_eval_frames.py for Meta-World: exact states, codec-level raw frames, and
    identical pixels once the eval frames go through the same encoder."""
    ds = LeRobotV3Dataset(dataset)
    ep = ds.episodes[0]
    rows = ds.column("episode_index").reshape(-1) == 0
    actions = ds.column(T.ACTION)[rows]
    frames, states = [], []
    with EnvPool(1, EnvSpec(simulator="robosuite", cameras=CAMS, image_size=SIZE, max_steps=400)) as pool:
        obs = pool.reset([(0, "lift-panda", int(ep["seed"]), True)])[0][0]
        for action in actions:
            frames.append(obs[WRIST])
            states.append(obs[T.STATE])
            obs = pool.step({0: action})[0][0][0]
    frames = np.stack(frames)  # [T, H, W, 3]
    recorded = ds.episode_frames(0, WRIST)  # [T, H, W, 3]
    np.testing.assert_array_equal(np.stack(states), ds.column(T.STATE)[rows])
    assert min(_psnr(f, r) for f, r in zip(frames, recorded, strict=True)) >= 35.0
    write_mp4(tmp_path / "eval.mp4", frames, fps=ds.fps)
    np.testing.assert_array_equal(read_mp4(tmp_path / "eval.mp4"), recorded)
    moved = [np.any(recorded[t] != recorded[t + 1]) for t in range(len(recorded) - 1)]
    assert np.mean(moved) >= 0.9  # not a frozen video (the hand holds still a few steps to grasp)
