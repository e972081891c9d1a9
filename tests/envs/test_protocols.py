"""Meta-World's placement protocols: `heldout` (a fresh placement per seed) and `published` (the
benchmark's 50 fixed placements per task), through the env, collection and the eval record."""

from __future__ import annotations

import json

import numpy as np
import pytest

from vlaforge.cli import main
from vlaforge.data.collect import SIDECAR, CollectConfig, run
from vlaforge.envs.metaworld import FIXED_PLACEMENTS, MetaWorldEnv, fixed_placements
from vlaforge.envs.registry import get_simulator
from vlaforge.errors import VlaforgeError
from vlaforge.keys import ENV_STATE


def goal(env: MetaWorldEnv, seed: int) -> np.ndarray:
    return env.reset(seed, render=False)[ENV_STATE][36:39]  # the goal position


def test_published_draws_among_the_benchmarks_fixed_placements():
    import pickle

    import metaworld

    env = MetaWorldEnv("reach", protocol="published", image_size=32)
    placements = fixed_placements("reach-v3")
    assert len(placements) == FIXED_PLACEMENTS
    tasks = metaworld.MT1("reach-v3", seed=42).train_tasks  # the benchmark's own draw, independently
    for seed in (3, 7):
        rand_vec = pickle.loads(tasks[seed].data)["rand_vec"]
        np.testing.assert_allclose(goal(env, seed), rand_vec[3:6], atol=1e-6)  # reach's goal = rand_vec[3:6]
    np.testing.assert_allclose(goal(env, 3), goal(env, 3 + FIXED_PLACEMENTS))  # seed mod 50
    heldout = MetaWorldEnv("reach", image_size=32)
    assert not np.allclose(goal(heldout, 3), goal(heldout, 3 + FIXED_PLACEMENTS))  # a fresh one each seed
    env.close()
    heldout.close()


def test_protocol_names_are_checked():
    sim = get_simulator("metaworld")
    assert sim.check_protocol("") == "heldout" and sim.check_protocol("published") == "published"
    with pytest.raises(VlaforgeError, match="unknown Meta-World protocol 'publshed'.*published"):
        MetaWorldEnv("reach", protocol="publshed")
    with pytest.raises(VlaforgeError, match="unknown metaworld protocol 'fixed'"):
        sim.check_protocol("fixed")


def test_collection_records_its_protocol_and_refuses_an_unknown_one(tmp_path, capsys):
    out = tmp_path / "pub"
    cfg = CollectConfig(tasks="reach", out=str(out), episodes_per_task=1, image_size=32, workers=0,
                        progress=False, protocol="published")  # fmt: skip
    assert run(cfg) == 0
    assert json.loads((out / SIDECAR).read_text())["protocol"] == "published"
    bad = tmp_path / "bad"
    assert main(["collect", "metaworld", "--tasks", "reach", "--out", str(bad), "--protocol", "fixed"]) == 2
    assert "unknown metaworld protocol 'fixed'" in capsys.readouterr().err and not bad.exists()
