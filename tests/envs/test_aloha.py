"""ALOHA (gym-aloha's scenes): the spec, seeded placement, observations, the replayed expert, the CLI.

Real MuJoCo with gym-aloha's own asset files throughout; the frame-equality test mirrors
tests/eval/test_eval_frames.py (Meta-World) for this simulator.
"""

from __future__ import annotations

import numpy as np
import pytest

from vlaforge import keys as T
from vlaforge.cli import main
from vlaforge.data.collect import CollectConfig, collect
from vlaforge.data.lerobot_v3 import LeRobotV3Dataset
from vlaforge.data.video import read_mp4, write_mp4
from vlaforge.envs import aloha_scene
from vlaforge.envs.aloha import AlohaEnv
from vlaforge.envs.base import Environment
from vlaforge.envs.registry import get_simulator
from vlaforge.envs.rollout import probe_attempt
from vlaforge.errors import VlaforgeError
from vlaforge.eval.workers import EnvPool, EnvSpec

pytest.importorskip("gym_aloha")

SIZE = 32
TOP = T.image_key("top")
#: Seeds on which the expert's replay succeeds (its rate over 20 seeds is in benchmarks/results).
GOOD_SEEDS = {"transfer-cube": (0, 1), "insertion": (1, 3)}


@pytest.fixture(scope="module")
def cube_env():
    env = AlohaEnv("transfer-cube", cameras=("top", "left_wrist"), image_size=SIZE)
    yield env
    env.close()


def test_spec_describes_the_bimanual_joint_space():
    sim = get_simulator("aloha")
    assert sim.resolve_tasks("aloha") == ["transfer-cube", "insertion"]
    assert sim.resolve_tasks("transfer_cube") == ["transfer-cube"]
    assert sim.action.dim == sim.state.dim == 14 and sim.fps == 50 and sim.max_steps == 400
    assert sim.action.names[6] == "left_arm_gripper" and sim.action.names[13] == "right_arm_gripper"
    assert sim.camera_role("top") == "primary" and sim.default_camera == "top"
    assert {"top", "angle", "left_wrist", "right_wrist"} <= set(sim.camera_names)


def test_placement_is_gym_alohas_for_the_same_seed():
    from gym_aloha.utils import sample_box_pose, sample_insertion_pose

    for seed in (0, 7, 12345):
        np.testing.assert_array_equal(
            aloha_scene.sample_placement("transfer-cube", seed), sample_box_pose(seed)
        )
        peg, socket = sample_insertion_pose(seed)
        np.testing.assert_array_equal(
            aloha_scene.sample_placement("insertion", seed), np.concatenate([peg, socket])
        )


def test_observation_contract_and_seeded_scene(cube_env):
    assert isinstance(cube_env, Environment)
    obs = cube_env.reset(3)
    assert obs[TOP].shape == (SIZE, SIZE, 3) and obs[TOP].dtype == np.uint8
    assert obs[T.image_key("left_wrist")].shape == (SIZE, SIZE, 3)
    assert obs[T.STATE].shape == (14,) and obs[T.STATE].dtype == np.float32
    assert T.ENV_STATE not in obs and obs[T.TASK] == cube_env.instruction
    again = cube_env.reset(3)
    np.testing.assert_array_equal(again[TOP], obs[TOP])
    other = cube_env.reset(4)
    assert np.any(other[TOP] != obs[TOP])  # the cube moved
    np.testing.assert_array_equal(other[T.STATE], obs[T.STATE])  # the arms always start at rest


def test_top_view_is_upright_and_shows_the_red_cube(cube_env):
    image = AlohaEnv("transfer-cube", image_size=64).reset(0)[TOP].astype(int)
    red = (image[..., 0] > 150) & (image[..., 1] < 80) & (image[..., 2] < 80)
    assert red.sum() >= 3
    # The cube is on the right arm's side (x in [0, 0.2]): the right half of the image.
    assert np.nonzero(red)[1].mean() > 32


def test_step_clips_to_the_actuator_ranges_and_reports_reward(cube_env):
    cube_env.reset(0)
    obs, success, done, info = cube_env.step(np.full(14, 100.0), render=False)
    assert set(info) >= {"reward"} and not success and not done
    assert T.image_key("top") not in obs
    with pytest.raises(ValueError):
        cube_env.step(np.zeros(13))


@pytest.mark.parametrize("task", ["transfer-cube", "insertion"])
def test_expert_replay_succeeds_on_known_seeds(task):
    env = AlohaEnv(task, image_size=SIZE)
    sim = get_simulator("aloha")
    for seed in GOOD_SEEDS[task]:
        first, _ = probe_attempt(env, sim.expert_action, seed, sim.max_steps)
        assert first is not None, f"{task} seed {seed}: the replayed expert did not reach reward 4"
    env.close()


def test_insertion_planner_corrects_its_replay_and_falls_back_to_other_variants():
    """Collection seed 5 failed with joint-tracking ILC alone (the peg sat ~3 cm off in the joint
    scene); seed 33 fails in the mocap scene itself with the first two variants (the peg slips out
    of the gripper) and succeeds with the slow wrist turn. The returned float32 rows replay to
    success in a plain env, so the correction lives in the actions, not in the planner's scene."""
    from vlaforge.data.collect import episode_seed
    from vlaforge.envs.aloha_expert import INSERTION_VARIANTS

    env = AlohaEnv("insertion", image_size=SIZE)
    sim = get_simulator("aloha")
    for index, variant in ((5, 0), (33, 2)):
        seed = episode_seed(0, "insertion", index)
        first, _ = probe_attempt(env, sim.expert_action, seed, sim.max_steps)
        assert first is not None, (
            f"insertion collection seed {index}: the replayed expert did not reach reward 4"
        )
        assert env._planner.variant == INSERTION_VARIANTS[variant], index
    env.close()


def test_expert_plan_is_a_function_of_the_seed(cube_env):
    def actions(seed: int) -> np.ndarray:
        cube_env.reset(seed, render=False)
        out = []
        for _ in range(100):
            out.append(cube_env.expert_action())
            cube_env.step(out[-1], render=False)
        return np.stack(out)  # [100, 14]

    first, other, again = actions(5), actions(6), actions(5)
    np.testing.assert_array_equal(again, first)
    assert first.dtype == np.float32 and np.abs(first - other).max() > 1e-3  # another cube, another reach


def _replay(seed: int, actions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    frames, states = [], []
    with EnvPool(1, EnvSpec(simulator="aloha", cameras=("top",), image_size=SIZE, max_steps=400)) as pool:
        obs, crashed = pool.reset([(0, "transfer-cube", seed, True)])
        assert not crashed
        obs = obs[0]
        for action in actions:
            frames.append(obs[TOP])
            states.append(obs[T.STATE])
            obs = pool.step({0: action})[0][0][0]
    return np.stack(frames), np.stack(states)  # [T, H, W, 3], [T, 14]


def test_eval_frames_equal_the_recorded_frames_for_the_same_seed_and_state(tmp_path):
    cfg = CollectConfig(
        tasks="transfer-cube", out=str(tmp_path / "A"), simulator="aloha", episodes_per_task=1, image_size=SIZE,
        steps_after_success=2, workers=0, progress=False,
    )  # fmt: skip
    summary = collect(cfg)
    assert summary.episodes == 1
    ds = LeRobotV3Dataset(tmp_path / "A")
    ep = ds.episodes[0]
    rows = ds.column("episode_index").reshape(-1) == 0
    recorded = ds.episode_frames(0, TOP)  # [T, H, W, 3] decoded from the dataset's mp4
    frames, states = _replay(int(ep["seed"]), ds.column(T.ACTION)[rows])
    assert frames.shape == recorded.shape == (ep["length"], SIZE, SIZE, 3)
    np.testing.assert_array_equal(states, ds.column(T.STATE)[rows])  # same seed, same physics
    write_mp4(tmp_path / "eval.mp4", frames, fps=ds.fps)
    np.testing.assert_array_equal(read_mp4(tmp_path / "eval.mp4"), recorded)  # same pixels, same encoder
    assert bool(ds.column(T.SUCCESS)[rows][-3]) and ds.fps == 50
    moved = [t for t in range(len(recorded) - 1) if np.any(recorded[t] != recorded[t + 1])]
    assert len(moved) > len(recorded) // 2  # control: the frames do change along the episode


def test_collect_cli_writes_a_dataset(tmp_path, capsys):
    out = tmp_path / "A"
    argv = ["collect", "aloha", "--tasks", "transfer-cube", "--episodes-per-task", "1", "--out", str(out),
            "--image-size", "32", "--workers", "0", "--steps-after-success", "0"]  # fmt: skip
    assert main(argv) == 0
    assert "transfer-cube  1/1" in capsys.readouterr().out
    ds = LeRobotV3Dataset(out)
    assert ds.num_episodes == 1 and ds.fps == 50
    assert ds.column(T.ACTION).shape[1] == 14 and ds.info["robot_type"] == "aloha"


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--tasks", "transfer-cub"], "unknown aloha task 'transfer-cub' (did you mean 'transfer-cube'?)"),
        (["--tasks", "insertion", "--cameras", "wrist"], "unknown aloha camera 'wrist'"),
    ],
)
def test_collect_cli_errors_exit_2_and_write_nothing(tmp_path, capsys, flags, message):
    out = tmp_path / "A"
    assert main(["collect", "aloha", *flags, "--out", str(out), "--workers", "0"]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1
    assert not out.exists()


def test_env_refuses_unknown_task_and_camera():
    with pytest.raises(VlaforgeError, match="unknown aloha task"):
        AlohaEnv("transfer")
    with pytest.raises(VlaforgeError, match="unknown aloha camera 'corner2'"):
        AlohaEnv("insertion", cameras=("corner2",))
