"""The simulator registry: lookups with hints, the Meta-World entry, and a second simulator (one module
plus one registry entry, `toy_sim.py`) collected and evaluated through the same code as Meta-World."""

from __future__ import annotations

import json

import numpy as np
import pytest
import toy_sim  # noqa: F401  (registers "pointmass")

from vlaforge.data.collect import SIDECAR, CollectConfig, collect
from vlaforge.data.lerobot_v3 import LeRobotV3Dataset
from vlaforge.envs.base import Environment
from vlaforge.envs.registry import get_simulator, simulator_names
from vlaforge.envs.tasks import MT10
from vlaforge.errors import VlaforgeError
from vlaforge.eval.command import run
from vlaforge.eval.config import EvalConfig
from vlaforge.keys import ACTION, ENV_STATE, STATE


def test_unknown_simulator_suggests_the_closest():
    with pytest.raises(VlaforgeError, match="did you mean 'metaworld'"):
        get_simulator("metaworl")
    assert {"metaworld", "pointmass"} <= set(simulator_names())
    assert get_simulator("toy_sim:pointmass") is get_simulator("pointmass")  # module:name form
    with pytest.raises(VlaforgeError, match="cannot import its module 'no_such_module'"):
        get_simulator("no_such_module:thing")


def test_metaworld_spec_declares_spaces_cameras_and_suites():
    sim = get_simulator("metaworld")
    assert (sim.action.dim, sim.state.dim, sim.fps, sim.max_steps) == (4, 4, 80, 500)
    assert sim.action.names == ("dx", "dy", "dz", "gripper") and sim.default_camera == "corner2"
    assert sim.camera_role("corner2") == "primary" and sim.camera_role("gripperPOV") == "wrist"
    assert sim.resolve_tasks("mt10") == MT10 and sim.resolve_tasks("reach,mt10")[1] == "push-v3"
    assert len(sim.resolve_tasks("ml45-train")) == 45 and sim.group("push-v3") == "hard"
    with pytest.raises(VlaforgeError, match="did you mean 'corner2'"):
        sim.check_cameras(("corner-2",))
    np.testing.assert_array_equal(sim.action.clip(np.array([2.0, -3.0, 0.5, 0.0])), [1.0, -1.0, 0.5, 0.0])


def test_a_registered_simulator_builds_environments():
    sim = get_simulator("pointmass")
    env = sim.make_env("reach-dot", cameras=("top",), image_size=16, max_steps=5)
    assert isinstance(env, Environment)
    obs = env.reset(3)
    assert obs["observation.images.top"].shape == (16, 16, 3) and obs[STATE].shape == (2,)
    with pytest.raises(VlaforgeError, match="did you mean 'reach-dot'"):
        sim.resolve_tasks("reach-dott")


def test_a_second_simulator_collects_through_the_registry(tmp_path):
    cfg = CollectConfig(tasks="all", out=str(tmp_path / "D"), simulator="pointmass", episodes_per_task=2,
                        image_size=16, steps_after_success=1, workers=1, progress=False)  # fmt: skip
    summary = collect(cfg)
    assert summary.episodes == 4
    ds = LeRobotV3Dataset(tmp_path / "D")
    assert ds.fps == 10 and ds.camera_keys == ["observation.images.top"]
    assert ds.features[ACTION]["shape"] == [2] and ENV_STATE not in ds.features
    assert [ep["pointmass_task"] for ep in ds.episodes] == ["reach-dot"] * 2 + ["reach-corner"] * 2
    side = json.loads((tmp_path / "D" / SIDECAR).read_text())
    assert side["simulator"] == "pointmass" and side["control_mode"] == "delta position (x, y)"


def test_a_second_simulator_evaluates_in_worker_processes(tmp_path):
    cfg = EvalConfig(policy="expert", suite="all", out=str(tmp_path / "E"), simulator="pointmass",
                     episodes_per_task=3, workers=2, envs_per_worker=2, image_size=16, videos_per_task=1,
                     progress=False)  # fmt: skip
    assert run(cfg) == 0
    info = json.loads((tmp_path / "E" / "eval_info.json").read_text())
    assert info["simulator"] == "pointmass" and info["env"]["cameras"] == ["top"]
    assert info["overall"]["success_rate"] == 1.0 and info["per_group"] == {
        "other": {"success_rate": 1.0, "tasks": 2}
    }
    assert info["per_task"]["reach-dot"]["instruction"] == "Move the blue dot onto the red goal"
    random = EvalConfig(policy="random", suite="reach-corner", out=str(tmp_path / "R"), simulator="pointmass",
                        episodes_per_task=2, workers=1, image_size=16, videos_per_task=0, progress=False)  # fmt: skip
    assert run(random) == 0
