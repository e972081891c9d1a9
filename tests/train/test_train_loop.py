"""The loop's guarantees on a real dataset and a real (tiny) VLAPolicy: EMA weights in checkpoints,
a NaN stops training with the last good checkpoint intact, a failed save keeps the previous one."""

from __future__ import annotations

import json
import sys

import pytest
import torch
from train_helpers import FAST_TRAIN, TINY_MODEL

from vlaforge.cli import main
from vlaforge.models.policy import VLAPolicy
from vlaforge.train import checkpoint as ckpt
from vlaforge.train.setup import execute
from vlaforge.train.trainer import TrainingDiverged

SETTINGS = (
    TINY_MODEL
    + FAST_TRAIN
    + [
        "train.steps=6",
        "train.batch_size=4",
        "train.lr=1e-3",
        "train.save_every=3",
        "train.keep_last=1",
        "train.ema_decay=0.9",
    ]
)


def spec(data, extra=()):
    return {"command": "train", "preset": None, "data": [str(data)], "overrides": SETTINGS + list(extra)}


def test_checkpoints_hold_ema_weights_and_the_raw_ones_for_resuming(pretrain_data, tmp_path):
    assert execute(spec(pretrain_data), tmp_path, False, device="cpu") == 0
    root = tmp_path / "checkpoints"
    names = sorted(p.name for p in root.iterdir())
    assert names in (
        ["best", "last", "step-000003", "step-000006"],
        ["best", "last", "step-000006"],
    )  # keep 1 + best
    saved = VLAPolicy.from_pretrained(root / "last").state_dict()
    state = ckpt.load_training_state(root / "last")
    assert state["step"] == 6 and state["ema"]["updates"] == 6
    assert all(torch.equal(v, state["ema"]["module"][k]) for k, v in saved.items())  # EMA weights served
    assert any(not torch.equal(v, state["model"][k]) for k, v in saved.items())  # raw weights differ
    records = [json.loads(x) for x in (tmp_path / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records if "val_loss" in r] == [3, 6]
    assert all(r["samples_per_s"] > 0 and "lr" in r for r in records if "loss" in r)


def test_nan_loss_stops_naming_the_step_and_keeps_last_checkpoint(pretrain_data, tmp_path):
    def poison_after_3(trainer):
        if trainer.step == 3:
            with torch.no_grad():
                next(trainer.policy.head.parameters()).fill_(float("nan"))

    with pytest.raises(TrainingDiverged, match="at step 4") as info:
        execute(spec(pretrain_data), tmp_path, False, device="cpu", on_step=poison_after_3)
    assert "step-000003" in str(info.value)
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == ["best", "last", "step-000003"]
    loaded = VLAPolicy.from_pretrained(tmp_path / "checkpoints" / "last")
    assert all(torch.isfinite(v).all() for v in loaded.state_dict().values() if v.is_floating_point())


def test_failed_save_exits_nonzero_and_keeps_the_previous_checkpoint(
    pretrain_data, tmp_path, monkeypatch, capsys
):
    real_save = torch.save

    def disk_full(obj, path, *args, **kwargs):
        if "step-000006" in str(path):
            real_save(obj, path, *args, **kwargs)  # the file half-written ...
            raise OSError(28, "No space left on device")  # ... then the disk fills up
        return real_save(obj, path, *args, **kwargs)

    monkeypatch.setattr(ckpt.torch, "save", disk_full)
    out = tmp_path / "run"
    args = ["train", "--data", str(pretrain_data), "--out", str(out), "--device", "cpu"]
    assert main(args + [a for s in SETTINGS for a in ("--set", s)]) == 2
    assert "step 6" in (err := capsys.readouterr().err) and "step-000003 is intact" in err
    root = out / "checkpoints"
    assert sorted(p.name for p in root.iterdir()) == ["best", "last", "step-000003"]  # no temp dir left
    assert ckpt.load_training_state(root / "last")["step"] == 3
    VLAPolicy.from_pretrained(root / "last")


@pytest.mark.parametrize("head", ["tokens", "diffusion", "flow", "flow-expert"])
def test_the_same_loop_trains_every_head(pretrain_data, tmp_path, head):
    extra = [
        f"model.head.kind={head}",
        "train.steps=2",
        "train.save_every=2",
        "model.head.expert_width=16",
        "model.head.expert_depth=1",
        "model.head.expert_heads=2",
    ]
    if head == "tokens":
        extra.append("model.normalization=bounds")
    assert execute(spec(pretrain_data, extra), tmp_path, False, device="cpu") == 0
    policy = VLAPolicy.from_pretrained(tmp_path / "checkpoints" / "last")
    assert policy.config.head.kind == head
    records = [json.loads(x) for x in (tmp_path / "log.jsonl").read_text().splitlines()]
    assert all(torch.isfinite(torch.tensor(r["loss"])) for r in records if "loss" in r)


def test_missing_tensorboard_is_said_once_and_training_goes_on(pretrain_data, tmp_path, monkeypatch, capsys):
    # tensorboard is a dev extra: a core install must still train with the default tensorboard=true.
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # import -> ImportError
    assert execute(spec(pretrain_data, ["train.tensorboard=true"]), tmp_path, False, device="cpu") == 0
    err = capsys.readouterr()
    assert (err.out + err.err).count("tensorboard is not installed") == 1
    assert not (tmp_path / "tensorboard").exists()
    records = [json.loads(x) for x in (tmp_path / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records if "val_loss" in r] == [3, 6]


def test_a_clocked_schedule_anneals_by_the_time_budget_and_the_budget_spans_resumes(
    pretrain_data, tmp_path, monkeypatch, capsys
):
    """train.lr_follows_clock: each step takes 10 s of a (controlled) clock against a 1-minute budget
    and 1,000 planned steps: the cosine follows the clock (the budget used when a step ends sets the
    next step's lr), not the steps, and the run stops when the minute is spent; the elapsed time is
    saved, so a resume gets no fresh minute and its one step runs at the floor."""
    import types

    from vlaforge.train import trainer as trainer_module
    from vlaforge.train.optim import lr_factor

    now = [0.0]
    fake = types.SimpleNamespace(perf_counter=lambda: now[0], time=trainer_module.time.time)
    monkeypatch.setattr(trainer_module, "time", fake)

    def tick(trainer):
        now[0] += 10.0

    budget = ["train.steps=1000", "train.max_minutes=1", "train.warmup_steps=0", "train.min_lr_ratio=0.1",
              "train.save_every=1000", "train.log_every=1", "train.ema_decay=0"]  # fmt: skip
    clocked = tmp_path / "clocked"
    assert execute(spec(pretrain_data, budget + ["train.lr_follows_clock=true"]), clocked, False,
                   device="cpu", on_step=tick) == 0  # fmt: skip
    assert "stopped at step 7 of 1000" in capsys.readouterr().out
    lrs = [json.loads(x)["lr"] for x in (clocked / "log.jsonl").read_text().splitlines() if '"lr"' in x]
    # step k - 1 ended with (k - 2) * 10 s of the 60 s used (its own 10 s tick comes after)
    assert lrs == pytest.approx([1e-3 * lr_factor(k, 1000, 0, 0.1, (k - 2) / 6) for k in range(1, 8)])
    assert (
        lrs[-1] < 0.2e-3 and ckpt.load_training_state(clocked / "checkpoints" / "last")["elapsed_s"] == 60.0
    )
    steps_only = tmp_path / "steps"  # the same budget without the clock: the lr stays near its peak
    assert execute(spec(pretrain_data, budget), steps_only, False, device="cpu", on_step=tick) == 0
    last = [json.loads(x) for x in (steps_only / "log.jsonl").read_text().splitlines() if '"lr"' in x][-1]
    assert last["step"] == 7 and last["lr"] > 0.99e-3
    capsys.readouterr()
    assert main(["train", "--resume", str(clocked), "--steps", "1000"]) == 0  # the minute is spent
    assert "stopped at step 8 of 1000" in capsys.readouterr().out
    resumed = [json.loads(x) for x in (clocked / "log.jsonl").read_text().splitlines() if '"lr"' in x][-1]
    assert resumed["step"] == 8 and resumed["lr"] == pytest.approx(1e-4)


def test_a_clocked_schedule_needs_a_time_budget(pretrain_data, tmp_path):
    from vlaforge.errors import VlaforgeError

    with pytest.raises(VlaforgeError, match="lr_follows_clock=true needs a time budget"):
        execute(spec(pretrain_data, ["train.lr_follows_clock=true"]), tmp_path, False, device="cpu")
