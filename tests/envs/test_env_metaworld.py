"""MetaWorldEnv: observations, seeded reproducibility, camera orientation, the scripted expert."""

import mujoco
import numpy as np
import pytest

from vlaforge.envs import render
from vlaforge.envs.base import Environment
from vlaforge.envs.metaworld import MetaWorldEnv
from vlaforge.envs.rollout import AttemptSpec, expert_rollout, run_attempt
from vlaforge.errors import VlaforgeError
from vlaforge.keys import ACTION, ENV_STATE, REWARD, STATE, SUCCESS, TASK

CORNER2 = "observation.images.corner2"


def test_observation_contract(reach_env):
    assert isinstance(reach_env, Environment)
    obs = reach_env.reset(0)
    assert set(obs) == {CORNER2, "observation.images.topview", STATE, ENV_STATE, TASK}
    assert obs[CORNER2].shape == (48, 48, 3) and obs[CORNER2].dtype == np.uint8
    assert obs[STATE].dtype == np.float32 and obs[STATE].shape == (4,)
    assert obs[ENV_STATE].dtype == np.float32 and obs[ENV_STATE].shape == (39,)
    np.testing.assert_array_equal(obs[STATE], obs[ENV_STATE][:4])
    assert obs[TASK] == reach_env.instruction == "Reach a goal position"
    obs, success, done, info = reach_env.step(np.zeros(4, np.float32))
    assert isinstance(success, bool) and isinstance(done, bool) and "reward" in info


def test_same_seed_same_frames_other_seed_other_scene(reach_env):
    first = reach_env.reset(11)
    for _ in range(30):  # history must not leak into the next episode
        reach_env.step(reach_env.expert_action())
    again = reach_env.reset(11)
    for key in (CORNER2, STATE, ENV_STATE):
        np.testing.assert_array_equal(first[key], again[key])
    other = reach_env.reset(12)
    assert not np.allclose(other[ENV_STATE][36:39], first[ENV_STATE][36:39])  # another goal
    assert not np.array_equal(other[CORNER2], first[CORNER2])


@pytest.mark.parametrize("task", ["reach-v3", "drawer-open-v3"])
def test_first_frame_shows_this_episodes_scene_not_the_last_ones(task):
    """Meta-World moves the goal site (reach) and the object's body (drawer) after its last
    mj_forward; frame 0 and the reset observation must still show them where they now are."""
    env = MetaWorldEnv(task, image_size=96)
    m, d = env._env.model, env._env.data
    goal = mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_SITE, "goal")
    try:
        env.reset(3)
        obs = env.reset(4)  # the previous episode's placement was elsewhere
        np.testing.assert_allclose(d.site_xpos[goal], obs[ENV_STATE][36:39], atol=1e-6)
        mujoco.mj_forward(m, d)  # every derived position up to date: frame and state must not change
        np.testing.assert_array_equal(env.render("corner2"), obs[CORNER2])
        np.testing.assert_allclose(env._env._get_curr_obs_combined_no_goal(), obs[ENV_STATE][:18], atol=1e-6)
        fresh = MetaWorldEnv(task, image_size=96)
        try:  # and frame 0 is a function of the seed alone
            again = fresh.reset(4)
            np.testing.assert_array_equal(again[CORNER2], obs[CORNER2])
            np.testing.assert_array_equal(again[ENV_STATE], obs[ENV_STATE])
        finally:
            fresh.close()
    finally:
        env.close()


def test_trajectories_repeat_exactly(reach_env):
    def run():
        obs = reach_env.reset(5)
        states = [obs[ENV_STATE]]
        for _ in range(20):
            obs, *_ = reach_env.step(reach_env.expert_action())
            states.append(obs[ENV_STATE])
        return np.stack(states), obs[CORNER2]

    (s1, i1), (s2, i2) = run(), run()
    np.testing.assert_array_equal(s1, s2)
    np.testing.assert_array_equal(i1, i2)


def test_corner2_moved_and_flipped_like_lerobot(reach_env):
    env = reach_env._env
    cam = mujoco.mj_name2id(env.model, mujoco.mjtObj.mjOBJ_CAMERA, "corner2")
    np.testing.assert_allclose(env.model.cam_pos[cam], render.CORNER2_POS)
    reach_env.reset(3)
    raw = mujoco.Renderer(env.model, 48, 48)
    try:
        for flag in (
            mujoco.mjtRndFlag.mjRND_SHADOW,
            mujoco.mjtRndFlag.mjRND_REFLECTION,
            mujoco.mjtRndFlag.mjRND_SKYBOX,
        ):
            raw.scene.flags[flag] = 0
        raw.update_scene(env.data, camera="corner2")
        raw_image = raw.render()
        raw.update_scene(env.data, camera="topview")
        raw_top = raw.render()
    finally:
        raw.close()
    ours = reach_env.render("corner2")
    assert not np.array_equal(ours, raw_image)
    np.testing.assert_array_equal(ours, raw_image[::-1, ::-1])  # LeRobot: np.flip(image, (0, 1))
    np.testing.assert_array_equal(reach_env.render("topview"), raw_top)  # not flipped


def test_flipped_cameras_are_the_upside_down_ones(reach_env):
    """A camera's raw render is upside down when its image-up axis points down in the world."""
    env = reach_env._env
    mujoco.mj_forward(env.model, env.data)
    for name in ("corner", "corner2", "corner3", "corner4"):
        up = env.data.cam(name).xmat.reshape(3, 3)[:, 1]  # camera y axis (image up) in world frame
        assert up[2] < 0, name
        assert name in render.FLIPPED_CAMERAS


def test_upright_image_has_the_table_at_the_bottom(reach_env):
    """In the upright corner2 view the wooden (warm) table fills the lower half, grey walls the upper."""
    image = reach_env.reset(0)[CORNER2].astype(np.int16)
    warmth = (image[..., 0] - image[..., 2]).mean(axis=1)  # [H] red minus blue per row
    half = len(warmth) // 2
    assert warmth[half:].mean() > warmth[:half].mean() + 8


def test_expert_succeeds_on_reach_and_keeps_a_short_tail():
    env = MetaWorldEnv("reach", image_size=32)
    spec = AttemptSpec("reach-v3", seed=1, image_size=32, steps_after_success=10)
    try:
        result = expert_rollout(env, spec, probe=True)
        one_pass = expert_rollout(env, spec, probe=False)
    finally:
        env.close()
    assert result.success and result.success_step < 150
    assert one_pass.success_step == result.success_step
    for key in result.frames:  # probing first changes nothing in what is recorded
        np.testing.assert_array_equal(one_pass.frames[key], result.frames[key])
    frames = result.frames
    length = result.success_step + 1 + 10
    assert {k: len(v) for k, v in frames.items()} == dict.fromkeys(frames, length)
    assert frames[SUCCESS].shape == (length, 1) and frames[SUCCESS][result.success_step, 0]
    assert not frames[SUCCESS][: result.success_step].any()
    assert frames[REWARD].dtype == np.float32 and frames[ACTION].dtype == np.float32
    assert np.abs(frames[ACTION]).max() <= 1.0
    es = frames[ENV_STATE]
    np.testing.assert_allclose(es[1:, 18:36], es[:-1, 0:18], atol=1e-6)  # frame t+1 follows action t


def test_run_attempt_reuses_envs_and_matches_direct_rollout():
    spec = AttemptSpec("reach-v3", seed=4, image_size=32, steps_after_success=2)
    a, b = run_attempt(spec), run_attempt(spec)
    for key in a.frames:
        np.testing.assert_array_equal(a.frames[key], b.frames[key])


def test_bad_camera_and_seed():
    with pytest.raises(VlaforgeError, match="did you mean 'corner2'"):
        MetaWorldEnv("reach-v3", cameras=("corner-2",))
    with pytest.raises(VlaforgeError, match="did you mean"):
        MetaWorldEnv("reech-v3")


@pytest.mark.parametrize(
    "view", [render.CropView("corner2", (0.2, 0.05), 0.6), render.CropView("topview", (-0.25, 0.5), 0.5)]
)
def test_crop_view_is_bitwise_the_crop_of_its_camera_rendered_larger(view):
    """A flipped (corner2) and an upright (topview) camera: the view drawn at 48 px through the camera's
    intrinsics is the matching 48 px window of the camera's own image at 48 / half px."""
    size = 48
    big_size = round(size / view.half)
    big, small = MetaWorldEnv("reach-v3", image_size=big_size), MetaWorldEnv("reach-v3", image_size=size)
    try:
        big.reset(3), small.reset(3)
        before = small.render(view.camera)
        full = big.render(view.camera)  # [big, big, 3] upright
        col0, row0 = (round((c - view.half + 1) / 2 * big_size) for c in view.center)
        crop = full[row0 : row0 + size, col0 : col0 + size]
        np.testing.assert_array_equal(render.render(small._renderer, small._env.data, view), crop)
        np.testing.assert_array_equal(small.render(view.camera), before)  # the camera is itself again
    finally:
        big.close(), small.close()


def test_workspace_view_shows_the_reach_goal_larger_than_corner2():
    """Pixels that change when the goal site is hidden, over four placements: the workspace view
    (corner2 through a 1 / 0.62 longer lens) gives the goal more than twice corner2's."""
    env = MetaWorldEnv("reach-v3", cameras=("corner2", "workspace"), image_size=96)
    goal = mujoco.mj_name2id(env._env.model, mujoco.mjtObj.mjOBJ_SITE, "goal")
    rgba = env._env.model.site_rgba[goal].copy()
    pixels = {"corner2": 0, "workspace": 0}
    try:
        for seed in range(4):
            obs = env.reset(seed)
            assert obs["observation.images.workspace"].shape == (96, 96, 3)
            env._env.model.site_rgba[goal, 3] = 0.0
            for cam in pixels:
                hidden = env.render(cam)
                pixels[cam] += int(np.any(hidden != obs[f"observation.images.{cam}"], axis=-1).sum())
            env._env.model.site_rgba[goal] = rgba
    finally:
        env.close()
    assert pixels["corner2"] > 0 and pixels["workspace"] > 2 * pixels["corner2"], pixels


def test_crop_view_outside_the_image_is_refused():
    with pytest.raises(ValueError, match="inside"):
        render.CropView("corner2", (0.5, 0.0), 0.6)
