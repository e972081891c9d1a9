"""The training loop on a real (tiny) VLAPolicy with an in-memory loader: EMA checkpoints, NaN stop,
failed save. (Exact resume with the real data loader is in test_train_cli.py.)"""

from __future__ import annotations

import json
import math

import pytest
import torch
from train_helpers import ListLoader, tiny_policy

from vlaforge.errors import VlaforgeError
from vlaforge.models.policy import VLAPolicy
from vlaforge.train import checkpoint as ckpt
from vlaforge.train.config import TrainConfig
from vlaforge.train.trainer import Trainer, TrainingDiverged

CFG = TrainConfig(
    steps=6,
    batch_size=4,
    lr=1e-3,
    warmup_steps=1,
    log_every=1,
    save_every=3,
    keep_last=2,
    val_every=3,
    tensorboard=False,
    ema_decay=0.9,
)


def make_trainer(out, cfg=CFG, seed=0):
    """A trainer over a fixed stream of random batches, validating on one fixed batch."""
    torch.manual_seed(seed)
    val = ListLoader(4, seed=99)
    val_batches = [val.batch(0)]
    return Trainer(tiny_policy(seed), cfg, ListLoader(cfg.batch_size), out, val_batches=lambda: val_batches)


def test_short_run_writes_loadable_ema_checkpoint(tmp_path):
    trainer = make_trainer(tmp_path)
    trainer.fit()
    root = tmp_path / "checkpoints"
    assert sorted(p.name for p in root.iterdir()) == ["best", "last", "step-000003", "step-000006"]
    assert (root / "last").resolve().name == "step-000006"
    assert (root / "best").resolve().name in ("step-000003", "step-000006")
    loaded = VLAPolicy.from_pretrained(root / "last")
    ema_state = trainer.ema.module.state_dict()
    assert all(torch.equal(v, ema_state[k]) for k, v in loaded.state_dict().items())  # EMA weights saved
    raw = trainer.policy.state_dict()
    assert any(not torch.equal(v, raw[k]) for k, v in loaded.state_dict().items())
    records = [json.loads(x) for x in (tmp_path / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records if "val_loss" in r] == [3, 6]
    assert all(math.isfinite(r["loss"]) and r["samples_per_s"] > 0 for r in records if "loss" in r)


def test_nan_loss_stops_naming_the_step_and_keeps_last_checkpoint(tmp_path):
    def poison_after_3(trainer):
        if trainer.step == 3:
            with torch.no_grad():
                next(trainer.policy.head.parameters()).fill_(float("nan"))

    with pytest.raises(TrainingDiverged, match="at step 4") as info:
        make_trainer(tmp_path).fit(on_step=poison_after_3)
    assert "step-000003" in str(info.value)
    loaded = VLAPolicy.from_pretrained(tmp_path / "checkpoints" / "last")
    assert all(torch.isfinite(v).all() for v in loaded.state_dict().values() if v.is_floating_point())


def test_failed_save_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    real_save = torch.save

    def disk_full(obj, path, *args, **kwargs):
        if "step-000006" in str(path):
            real_save(obj, path, *args, **kwargs)  # the file half-written ...
            raise OSError(28, "No space left on device")  # ... then the disk fills up
        return real_save(obj, path, *args, **kwargs)

    monkeypatch.setattr(ckpt.torch, "save", disk_full)
    with pytest.raises(VlaforgeError, match="step 6.*step-000003 is intact"):
        make_trainer(tmp_path).fit()
    root = tmp_path / "checkpoints"
    assert sorted(p.name for p in root.iterdir()) == ["best", "last", "step-000003"]
    assert ckpt.load_training_state(root / "last")["step"] == 3
    VLAPolicy.from_pretrained(root / "last")
