"""The trainer's stand-alone parts: schedule, EMA, augmentation, atomic checkpoints, LoRA merge."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from vlaforge.errors import VlaforgeError
from vlaforge.train import checkpoint as ckpt
from vlaforge.train.augment import augment_batch
from vlaforge.train.config import AugmentConfig, TrainConfig, split_overrides
from vlaforge.train.ema import EMA
from vlaforge.train.optim import build_optimizer, lr_factor


def test_schedule_warms_up_then_decays_to_min():
    f = [lr_factor(s, 100, 10, 0.1) for s in range(100)]
    assert f[0] == pytest.approx(0.1) and f[9] == pytest.approx(1.0)
    assert all(a >= b for a, b in zip(f[9:], f[10:], strict=False))
    assert f[-1] == pytest.approx(0.1)
    # a warmup longer than the run is capped at steps // 5 = 2 steps
    assert [lr_factor(s, 10, 200, 0.0) for s in (0, 1)] == pytest.approx([0.5, 1.0])


def test_optimizer_skips_frozen_and_decays_matrices_only():
    model = nn.Sequential(nn.Linear(3, 4), nn.LayerNorm(4), nn.Linear(4, 2))
    model[2].requires_grad_(False)
    opt = build_optimizer(model, TrainConfig(weight_decay=0.5))
    decay, no_decay = opt.param_groups
    assert [p.shape for p in decay["params"]] == [torch.Size([4, 3])]
    assert decay["weight_decay"] == 0.5 and no_decay["weight_decay"] == 0.0
    assert sum(p.numel() for g in opt.param_groups for p in g["params"]) == 12 + 4 + 4 + 4


def test_ema_tracks_weights_with_warmup_decay():
    model = nn.Linear(2, 2)
    ema = EMA(model, 0.9)
    start = ema.module.weight.detach().clone()
    with torch.no_grad():
        model.weight.fill_(1.0)
    ema.update(model)  # decay min(0.9, 1/10) = 0.1
    assert torch.allclose(ema.module.weight, 0.1 * start + 0.9, atol=1e-6)
    for _ in range(200):
        ema.update(model)
    assert torch.allclose(ema.module.weight, torch.ones(2, 2), atol=1e-6)
    other = EMA(nn.Linear(2, 2), 0.9)
    other.load_state_dict(ema.state_dict())
    assert other.updates == 201 and torch.equal(other.module.weight, ema.module.weight)
    assert not any(p.requires_grad for p in ema.module.parameters())


def test_augmentation_is_seeded_sharded_and_keeps_dtype():
    images = torch.randint(0, 256, (6, 2, 16, 16, 3), dtype=torch.uint8)
    batch = {"observation.images.a": images, "action": torch.zeros(6, 4, 2)}
    cfg = AugmentConfig()
    full = augment_batch(batch, cfg, seed=3, step=7)["observation.images.a"]
    assert full.dtype == torch.uint8 and full.shape == images.shape
    assert not torch.equal(full, images)
    assert torch.equal(full, augment_batch(batch, cfg, seed=3, step=7)["observation.images.a"])
    assert not torch.equal(full, augment_batch(batch, cfg, seed=3, step=8)["observation.images.a"])
    half = augment_batch({"observation.images.a": images[3:]}, cfg, 3, 7, rows=slice(3, 6), global_batch=6)
    assert torch.equal(half["observation.images.a"], full[3:])  # a process's rows match the global draw
    off = AugmentConfig(enabled=False)
    assert augment_batch(batch, off, 3, 7)["observation.images.a"] is images


def test_shift_moves_content_and_identity_jitter_is_exact():
    img = torch.zeros(1, 1, 8, 8, 3, dtype=torch.uint8)
    img[0, 0, 4, 4] = 200
    cfg = AugmentConfig(shift=2, brightness=0, contrast=0, saturation=0)
    outs = {
        tuple(
            torch.nonzero(
                augment_batch({"observation.images.a": img}, cfg, 0, s)["observation.images.a"][0, 0, :, :, 0]
            )
            .flatten()
            .tolist()
        )
        for s in range(20)
    }
    assert len(outs) > 3  # the bright pixel lands in several places
    assert all(len(o) == 2 and abs(o[0] - 4) <= 2 and abs(o[1] - 4) <= 2 for o in outs)
    none = AugmentConfig(shift=0, brightness=0, contrast=0, saturation=0)
    assert torch.equal(augment_batch({"observation.images.a": img}, none, 0, 0)["observation.images.a"], img)


class _Saver:
    def __init__(self, fail: bool = False):
        self.fail = fail

    def __call__(self, d: Path) -> None:
        (d / "model.safetensors").write_bytes(b"x" * 10)
        if self.fail:
            raise OSError(28, "No space left on device")
        (d / "config.json").write_text("{}")


def test_checkpoint_atomic_keep_last_and_best(tmp_path):
    root = tmp_path / "checkpoints"
    for step in (1, 2, 3, 4):
        path = ckpt.save_checkpoint(root, step, _Saver(), {"step": step}, {})
        if step == 2:
            ckpt.point_link(root, "best", path)
        ckpt.prune(root, keep_last=2)
    names = sorted(p.name for p in root.iterdir())
    assert names == ["best", "last", "step-000002", "step-000003", "step-000004"]
    assert (root / "last").resolve().name == "step-000004"
    assert ckpt.load_training_state(root / "last")["step"] == 4
    with pytest.raises(OSError):
        ckpt.save_checkpoint(root, 5, _Saver(fail=True), {"step": 5}, {})
    assert sorted(p.name for p in root.iterdir()) == names  # no temp dir left, nothing replaced
    assert (root / "last").resolve().name == "step-000004"


def test_overrides_need_a_namespace_and_suggest_one():
    assert split_overrides(["model.head.kind=flow", "train.lr=1e-3"]) == (["head.kind=flow"], ["lr=1e-3"])
    with pytest.raises(VlaforgeError, match="did you mean 'train'"):
        split_overrides(["trian.lr=1"])
    with pytest.raises(VlaforgeError, match="did you mean 'train.lr'"):
        split_overrides(["lr=1"])


def test_fused_jitter_equals_brightness_then_contrast_then_saturation():
    from vlaforge.train.augment import _jitter

    x = torch.randint(0, 256, (4, 2, 6, 5, 3)).float()
    b, c, s = (
        torch.tensor([0.8, 1.2, 1.0, 0.9]),
        torch.tensor([1.1, 0.8, 1.0, 1.2]),
        torch.tensor([0.7, 1.3, 1.0, 1.0]),
    )
    w = torch.tensor([0.299, 0.587, 0.114])
    ref = x * b.view(-1, 1, 1, 1, 1)
    mean = (ref @ w).mean((2, 3))[..., None, None, None]
    ref = (ref - mean) * c.view(-1, 1, 1, 1, 1) + mean
    grey = (ref @ w)[..., None]
    ref = (ref - grey) * s.view(-1, 1, 1, 1, 1) + grey
    out = _jitter(x, b, c, s)
    assert (out.float() - ref.clamp(0, 255).round()).abs().max() <= 1
    assert torch.equal(out[2], x[2].to(torch.uint8))  # factors of 1: unchanged
