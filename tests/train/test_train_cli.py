"""`vlaforge train` end to end on a real (tiny) LeRobot v3 dataset and a real VLAPolicy."""

from __future__ import annotations

import json

import numpy as np
import pytest
from train_helpers import FAST_TRAIN, TINY_MODEL

from vlaforge.cli import main
from vlaforge.models.policy import VLAPolicy
from vlaforge.train.setup import execute


def train_args(data, out, steps=4, extra=()):
    sets = [a for s in TINY_MODEL + FAST_TRAIN + list(extra) for a in ("--set", s)]
    return [
        "train",
        "--data",
        str(data),
        "--steps",
        str(steps),
        "--batch-size",
        "4",
        "--out",
        str(out),
        "--device",
        "cpu",
        *sets,
    ]


def test_train_writes_a_servable_checkpoint_with_data_metadata(pretrain_data, tmp_path):
    out = tmp_path / "run"
    assert main(train_args(pretrain_data, out, extra=["train.save_every=2", "train.tensorboard=true"])) == 0
    policy = VLAPolicy.from_pretrained(out / "checkpoints" / "last")
    assert (policy.config.action_dim, policy.config.state_dim) == (4, 4)
    meta = policy.metadata
    assert meta["fps"] == 10 and meta["tasks"] == ["reach the goal"]
    (ds,) = meta["datasets"]
    assert (
        ds["root"] == str(pretrain_data.resolve())
        and len(ds["train_episodes"]) + len(ds["val_episodes"]) == 4
    )
    assert sorted(s["seed"] for s in meta["train_seeds"]) == [100, 101, 102, 103]
    assert len(policy.stats) == 1
    records = [json.loads(x) for x in (out / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records if "loss" in r] == [1, 2, 3, 4]
    assert any("val_loss" in r for r in records)
    assert (out / "checkpoints" / "best").exists() and (out / "checkpoints" / "step-000002").is_dir()
    assert json.loads((out / "run.json").read_text())["command"] == "train"
    assert list((out / "tensorboard").glob("events.out.tfevents.*"))
    assert main(train_args(pretrain_data, out)) == 2  # never overwrites a run with checkpoints


@pytest.mark.parametrize("head", ["regression", "diffusion"])
def test_kill_and_resume_reproduces_the_losses(pretrain_data, tmp_path, head):
    """A run killed after step 4 (checkpoint at 3) and resumed logs the losses of an unbroken run
    (diffusion: its noise and timesteps come from the restored RNG state)."""
    settings = ["train.steps=6", "train.batch_size=4", "train.save_every=3", "train.seed=5", "train.lr=3e-3"]
    spec = {
        "command": "train",
        "preset": None,
        "data": [str(pretrain_data)],
        "overrides": TINY_MODEL + FAST_TRAIN + settings + [f"model.head.kind={head}"],
    }
    assert execute(spec, tmp_path / "full", False, device="cpu") == 0

    def kill(trainer):
        if trainer.step == 4:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        execute(spec, tmp_path / "cut", False, device="cpu", on_step=kill)
    assert main(["train", "--resume", str(tmp_path / "cut"), "--device", "cpu"]) == 0

    def losses(run):
        lines = (tmp_path / run / "log.jsonl").read_text().splitlines()
        return [(r["step"], r["loss"]) for r in map(json.loads, lines) if "loss" in r]

    full, cut = losses("full"), losses("cut")
    assert [s for s, _ in cut] == [1, 2, 3, 4, 5, 6]
    assert [s for s, _ in full] == [s for s, _ in cut]
    assert all(abs(a - b) <= 1e-6 for (_, a), (_, b) in zip(full, cut, strict=True)), (full, cut)


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["model.cameras=topview"], "maps to the policy's camera slots ('topview',)"),
        (["model.trunk.dpth=2"], "did you mean 'depth'"),
        (["modle.trunk.depth=2"], "did you mean 'model'"),
        (["train.lrr=1"], "did you mean 'lr'"),
    ],
)
def test_bad_input_fails_before_the_first_step(pretrain_data, tmp_path, capsys, extra, message):
    out = tmp_path / "run"
    assert main(train_args(pretrain_data, out, extra=extra)) == 2
    assert message in capsys.readouterr().err
    assert not (out / "log.jsonl").exists() and not (out / "checkpoints").exists()


def test_missing_dataset_is_a_one_line_error(tmp_path, capsys):
    assert main(train_args(tmp_path / "nowhere", tmp_path / "run")) == 2
    err = capsys.readouterr().err
    assert f"--data {tmp_path / 'nowhere'}:" in err and "does not exist" in err
    (tmp_path / "half" / "data").mkdir(parents=True)  # an interrupted collection
    assert main(train_args(tmp_path / "half", tmp_path / "run")) == 2
    assert "incomplete dataset" in capsys.readouterr().err


def test_unknown_preset_suggests_a_name(pretrain_data, tmp_path, capsys):
    from vlaforge.models.presets import DEFAULT_PRESET

    args = train_args(pretrain_data, tmp_path / "run")
    assert main(args[:1] + ["--preset", DEFAULT_PRESET[:-1] + "x"] + args[1:]) == 2
    assert f"did you mean {DEFAULT_PRESET!r}" in capsys.readouterr().err


def test_grad_accumulation_matches_the_large_batch(pretrain_data, tmp_path):
    """2 micro-batches of 4 take the same samples and the same step as one batch of 8 (chunk 1: no
    padding, so the two half-batch means average to the full mean; augmentation off)."""
    base = (
        TINY_MODEL
        + FAST_TRAIN
        + [
            "model.chunk=1",
            "model.execute_steps=1",
            "train.steps=3",
            "train.lr=1e-3",
            "train.val_fraction=0",
            "train.augment.enabled=false",
            "train.ema_decay=0",
        ]
    )
    runs = {"big": ["train.batch_size=8"], "accum": ["train.batch_size=4", "train.grad_accum=2"]}
    for name, extra in runs.items():
        spec = {"command": "train", "preset": None, "data": [str(pretrain_data)], "overrides": base + extra}
        assert execute(spec, tmp_path / name, False, device="cpu") == 0
    big, accum = (
        [json.loads(x)["loss"] for x in (tmp_path / n / "log.jsonl").read_text().splitlines()] for n in runs
    )
    assert big == pytest.approx(accum, abs=1e-5)


def test_max_minutes_stops_early_with_a_final_checkpoint(pretrain_data, tmp_path, capsys):
    out = tmp_path / "run"
    # A 0.6 ms allowance: the first step already exceeds it.
    assert main(train_args(pretrain_data, out, steps=50, extra=["train.max_minutes=0.00001"])) == 0
    assert "stopped at step 1 of 50" in capsys.readouterr().out
    assert (out / "checkpoints" / "step-000001").is_dir()
    assert VLAPolicy.from_pretrained(out / "checkpoints" / "last").config.action_dim == 4


def test_one_policy_across_robots_with_different_cameras_and_rates(tmp_path, capsys):
    """A one-camera 4-d robot at 10 fps and a two-camera 7-d robot at 20 fps train one policy with
    camera slots (primary, wrist); the checkpoint records which camera feeds which slot."""
    from train_helpers import write_dataset

    from vlaforge.models.io import PolicyIO

    write_dataset(
        tmp_path / "mw", episodes=3, length=16, action_dim=4, state_dim=4, seed=1, robot_type="sawyer"
    )
    write_dataset(tmp_path / "rs", episodes=3, length=16, action_dim=7, state_dim=8, seed=2, fps=20,
                  camera="agentview,robot0_eye_in_hand", robot_type="panda")  # fmt: skip
    base = ["train", "--data", str(tmp_path / "mw"), "--data", str(tmp_path / "rs"), "--steps", "3",
            "--batch-size", "8", "--device", "cpu"]  # fmt: skip
    sets = [a for s in [*TINY_MODEL, *FAST_TRAIN, "model.cameras=[primary,wrist]"] for a in ("--set", s)]
    refused = tmp_path / "refused"
    assert main([*base, "--out", str(refused), *sets]) == 2
    assert "10 fps" in capsys.readouterr().err and not (refused / "checkpoints").exists()
    out = tmp_path / "run"
    assert main([*base, "--out", str(out), *sets, "--set", "train.mixed_fps=true"]) == 0
    policy = VLAPolicy.from_pretrained(out / "checkpoints" / "last")
    sawyer, panda = PolicyIO(policy, "sawyer"), PolicyIO(policy, "panda")
    assert sawyer.slots == (("primary", "corner2"), ("wrist", None)) and sawyer.fps == 10
    assert panda.cameras == ("agentview", "robot0_eye_in_hand") and panda.action_dim == 7 and panda.fps == 20
    frame = np.zeros((32, 32, 3), np.uint8)
    window = sawyer.window().push(
        {"observation.images.corner2": frame, "observation.state": [0.0] * 4, "task": "x"}
    )
    assert sawyer.actions(policy.sample_actions(window)).shape == (1, 4, 4)
