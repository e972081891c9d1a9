"""`vlaforge pretrain`: recipes checked before collecting, collect -> train -> publish, `--from NAME`,
and fine-tuning onto known and unseen embodiments."""

from __future__ import annotations

import json

import pytest
import torch
from train_helpers import FAST_TRAIN, TINY_MODEL

from vlaforge.cli import main
from vlaforge.models.policy import VLAPolicy, read_weights

TINY = [*TINY_MODEL, *FAST_TRAIN]


def _recipe(path, sources, steps=2):
    tier = {"episodes_per_task": 1, "image_size": 32, "steps": steps, "batch_size": 4, "max_minutes": 0}
    path.write_text(json.dumps({"name": "tiny", "sources": sources, "tiers": {"cpu": tier}}))
    return path


def _sets(items):
    return [a for s in items if not s.startswith("model.image_size") for a in ("--set", s)]


@pytest.mark.parametrize(
    ("source", "message"),
    [
        (
            {"name": "a", "simulator": "metaworld", "tasks": "reach,pik-place"},
            "unknown Meta-World task 'pik-place'",
        ),
        (
            {"name": "a", "simulator": "robosuite", "tasks": "lift", "robots": "Pandaa"},
            "unknown robosuite robot 'Pandaa'",
        ),
        ({"name": "a", "simulator": "mujoco-soccer", "tasks": "kick"}, "mujoco-soccer"),
    ],
)
def test_a_recipe_with_an_unknown_task_or_robot_fails_before_collecting(tmp_path, capsys, source, message):
    recipe = _recipe(
        tmp_path / "r.json", [{"name": "ok", "simulator": "metaworld", "tasks": "reach"}, source]
    )
    home = tmp_path / "home"
    assert main(["pretrain", "--recipe", str(recipe), "--home", str(home)]) == 2
    err = capsys.readouterr().err
    assert message in err and "source 'a'" in err
    assert not home.exists()  # nothing collected, not even the valid first source


def test_unknown_recipe_and_tier_are_named(capsys):
    assert main(["pretrain", "--recipe", "bsae", "--plan"]) == 2
    assert "did you mean 'base'" in capsys.readouterr().err
    assert main(["pretrain", "--recipe", "base", "--tier", "tpu", "--plan"]) == 2
    assert "no tier 'tpu'" in capsys.readouterr().err


def test_base_recipe_plan_holds_out_the_transfer_targets(tmp_path, capsys):
    assert main(["pretrain", "--recipe", "base", "--home", str(tmp_path), "--plan"]) == 0
    err = capsys.readouterr().err
    assert "collect metaworld --tasks ml45-train" in err and "robosuite" in err and "aloha" in err
    assert "UR5e" not in err.split("held out")[0]  # the held-out arm is not collected
    assert not any(tmp_path.iterdir())


@pytest.fixture(scope="module")
def published(tmp_path_factory):
    """`vlaforge pretrain` on a one-task Meta-World recipe: (home, recipe path, data dir)."""
    tmp = tmp_path_factory.mktemp("pretrain")
    recipe = _recipe(tmp / "tiny.json", [{"name": "mw", "simulator": "metaworld", "tasks": "reach"}])
    home = tmp / "home"
    args = ["pretrain", "--recipe", str(recipe), "--home", str(home), "--workers", "0", "--device", "cpu"]
    assert main([*args, *_sets(TINY)]) == 0
    return home, recipe, home / "data" / "tiny-cpu" / "mw"


def test_pretrain_collects_trains_and_publishes_then_reuses(published, capsys):
    home, recipe, data = published
    ckpt = home / "pretrained" / "tiny"
    info = json.loads((ckpt / "recipe.json").read_text())
    assert info["step"] == 2 and info["tier"] == "cpu" and info["recipe"]["sources"][0]["tasks"] == "reach"
    policy = VLAPolicy.from_pretrained(ckpt)
    assert policy.config.cameras == ("primary", "wrist")
    assert policy.record.embodiments[0].simulator == "metaworld"
    # a rerun reuses the dataset and the finished run, and publishes again
    args = ["pretrain", "--recipe", str(recipe), "--home", str(home), "--workers", "0", "--device", "cpu"]
    assert main([*args, *_sets(TINY)]) == 0
    err = capsys.readouterr().err
    assert f"reusing {data}" in err and "already at step 2" in err


def test_finetune_from_a_published_name_on_a_known_embodiment_loads_every_tensor(
    published, tmp_path, monkeypatch, capsys
):
    home, _, data = published
    monkeypatch.setenv("VLAFORGE_HOME", str(home))
    out = tmp_path / "ft"
    args = ["finetune", "--from", "tiny", "--data", str(data), "--steps", "1", "--batch-size", "4"]
    assert main([*args, "--out", str(out), "--device", "cpu", *_sets(FAST_TRAIN)]) == 0
    assert "every pretrained tensor loaded" in capsys.readouterr().err
    run = json.loads((out / "run.json").read_text())
    assert run["from"] == str((home / "pretrained" / "tiny").resolve())


def test_finetune_onto_an_unseen_space_starts_embodiment_layers_fresh(
    published, tmp_path, monkeypatch, capsys
):
    """A same-width robot the generalist never saw (synthetic data of the same widths with other names;
    another seed, so a fresh init differs from the pretrained weights):
    the state input and action output start fresh although their shapes would fit."""
    from train_helpers import write_dataset

    home, _, _ = published
    monkeypatch.setenv("VLAFORGE_HOME", str(home))
    base = VLAPolicy.from_pretrained(home / "pretrained" / "tiny")
    other = tmp_path / "other"
    a, s = base.config.action_dim, base.config.state_dim
    write_dataset(other, episodes=3, length=20, action_dim=a, state_dim=s, seed=3, task="push the block")
    out = tmp_path / "ft"
    args = [
        "finetune",
        "--from",
        "tiny",
        "--data",
        str(other),
        "--steps",
        "1",
        "--batch-size",
        "4",
        "--lr",
        "1e-9",
        "--seed",
        "7",
    ]
    assert main([*args, "--out", str(out), "--device", "cpu", *_sets(FAST_TRAIN)]) == 0
    err = capsys.readouterr().err
    assert "new embodiment test" in err and "fresh layers: " in err
    fresh = err.split("fresh layers: ")[1].split("\n")[0]
    assert "obs_encoder.state.weight" in fresh and "head." in fresh and "trunk." not in fresh
    before, after = read_weights(home / "pretrained" / "tiny"), read_weights(out / "checkpoints" / "last")
    assert not torch.allclose(
        before["obs_encoder.state.weight"], after["obs_encoder.state.weight"], atol=1e-3
    )
    trunk = [k for k in before if k.startswith("trunk.") and k.endswith("qkv.weight")]
    assert trunk and all(torch.allclose(before[k], after[k], atol=1e-4) for k in trunk)  # lr 1e-9: loaded


def test_finetune_from_an_unknown_name_lists_what_is_published(published, tmp_path, monkeypatch, capsys):
    home, _, data = published
    monkeypatch.setenv("VLAFORGE_HOME", str(home))
    args = ["finetune", "--from", "bass", "--data", str(data), "--out", str(tmp_path / "ft")]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "'bass'" in err and "have: tiny" in err and "vlaforge pretrain --recipe bass" in err


def test_a_generalist_finetuned_onto_a_new_action_space_serves(published, tmp_path, monkeypatch):
    """A 6-d / 5-d robot the generalist never saw: trains, then answers an openpi client."""
    import numpy as np
    from openpi_client.websocket_client_policy import WebsocketClientPolicy
    from train_helpers import write_dataset

    from vlaforge.serve.runtime import load_runtime
    from vlaforge.serve.server import PolicyServer, ServerConfig

    home, _, _ = published
    monkeypatch.setenv("VLAFORGE_HOME", str(home))
    other = tmp_path / "six"
    write_dataset(other, episodes=3, length=20, action_dim=6, state_dim=5, seed=4, task="wave")
    out = tmp_path / "ft"
    args = ["finetune", "--from", "tiny", "--data", str(other), "--steps", "2", "--batch-size", "4"]
    assert main([*args, "--out", str(out), "--device", "cpu", *_sets(FAST_TRAIN)]) == 0
    runtime = load_runtime(out / "checkpoints" / "last", max_batch=1)
    server = PolicyServer(runtime, ServerConfig(port=0, idle_timeout_s=30.0))
    server.start_in_thread()
    try:
        client = WebsocketClientPolicy("127.0.0.1", server.port)
        meta = client.get_server_metadata()
        size = meta["image_size"]
        obs = {f"observation.images.{c}": np.zeros((size, size, 3), np.uint8) for c in meta["cameras"]}
        obs |= {"observation.state": np.zeros(5, np.float32), "prompt": "wave"}
        reply = client.infer(obs)
        assert reply["actions"].shape == tuple(meta["action"]["shape"]) == (runtime.io.chunk, 6)
        assert np.isfinite(reply["actions"]).all()
        client._ws.close()
    finally:
        server.stop()


def test_finetune_on_one_robot_of_a_mixture_keeps_the_padded_widths(
    pretrain_data, new_robot_data, tmp_path, capsys
):
    """A generalist of a 4-d and a 6-d robot, fine-tuned on the 4-d one: widths stay 6/5 (padded
    with masks), every tensor loads, it trains, and it serves 4-d actions for that robot."""
    from vlaforge.models.io import PolicyIO
    from vlaforge.train.config import FINETUNE_DEFAULTS
    from vlaforge.train.setup import execute

    pre = tmp_path / "pre"
    spec = {"command": "train", "preset": None, "data": [str(pretrain_data), str(new_robot_data)],
            "overrides": TINY + ["train.steps=2", "train.batch_size=4"]}  # fmt: skip
    assert execute(spec, pre, False, device="cpu") == 0
    capsys.readouterr()
    ft = {"command": "finetune", "from": str(pre / "checkpoints" / "last"), "freeze": [], "lora_rank": 0,
          "data": [str(pretrain_data)], "overrides": [*FINETUNE_DEFAULTS, *FAST_TRAIN, "train.steps=2",
          "train.batch_size=4"]}  # fmt: skip
    assert execute(ft, tmp_path / "ft", False, device="cpu") == 0
    assert "every pretrained tensor loaded" in capsys.readouterr().err
    tuned = VLAPolicy.from_pretrained(tmp_path / "ft" / "checkpoints" / "last")
    assert (tuned.config.action_dim, tuned.config.state_dim) == (6, 5)
    assert PolicyIO(tuned).action_dim == 4
