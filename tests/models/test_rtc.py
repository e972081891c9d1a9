"""Real-time chunking: the guided chunk continues the committed plan; the rest stays the policy's."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from vlaforge.errors import VlaforgeError
from vlaforge.models.heads.flow import rtc_weights
from vlaforge.models.policy import VLAPolicy
from vlaforge.models.rtc import sample_inpainted


def test_rtc_weights_follow_the_schedule():
    w = rtc_weights(8, delay=2, overlap=6)
    assert w[:2].tolist() == [1.0, 1.0] and w[6:].tolist() == [0.0, 0.0]
    assert all(a > b for a, b in zip(w[1:6], w[2:7], strict=True))  # strictly decaying over the overlap
    lin = rtc_weights(8, delay=2, overlap=6, schedule="linear")
    assert lin[2:6].tolist() == pytest.approx([0.8, 0.6, 0.4, 0.2])
    with pytest.raises(ValueError, match="delay <= overlap"):
        rtc_weights(8, delay=5, overlap=4)


@pytest.mark.parametrize("kind", ["flow", "flow-expert", "diffusion"])
def test_guidance_pulls_the_committed_rows_to_the_plan(kind, tiny_config, fake_batch, make_stats):
    torch.manual_seed(0)
    cfg = tiny_config(kind)
    cfg = dataclasses.replace(
        cfg,
        chunk=8,
        head=dataclasses.replace(cfg.head, flow_steps=10, sample_steps=10, diffusion_train_steps=20),
    )
    policy = VLAPolicy(cfg, [make_stats()]).eval()
    batch = fake_batch(cfg, batch=3)
    committed = torch.rand(3, 6, 4) * 2 - 1  # robot units, rows 0..5 of the new chunk's time
    seed = lambda: torch.Generator().manual_seed(1)  # noqa: E731
    free = policy.sample_actions(batch, generator=seed())
    guided = sample_inpainted(policy, batch, committed, delay=3, max_guidance=5.0, generator=seed())
    free_err = (free[:, :3] - committed[:, :3]).abs().mean()
    guided_err = (guided[:, :3] - committed[:, :3]).abs().mean()
    assert guided_err < 0.1 * free_err  # the rows executed during inference agree with the old plan
    assert (guided[:, 6:] - free[:, 6:]).abs().mean() < 0.5 * free_err  # past the overlap: the policy's own
    with torch.inference_mode():  # the eval runner's mode: RTC must still work inside it
        again = sample_inpainted(policy, batch, committed, delay=3, max_guidance=5.0, generator=seed())
    torch.testing.assert_close(again, guided)


def test_heads_without_flow_refuse(tiny_config, fake_batch):
    policy = VLAPolicy(tiny_config("regression")).eval()
    with pytest.raises(VlaforgeError, match="needs a flow or diffusion head"):
        sample_inpainted(policy, fake_batch(policy.config), torch.zeros(2, 4, 4), delay=1)


def test_training_time_rtc_trains_on_clean_prefixes_and_hard_inpaints(tiny_config, fake_batch, make_stats):
    torch.manual_seed(0)
    cfg = tiny_config("flow")
    cfg = dataclasses.replace(cfg, chunk=8, head=dataclasses.replace(cfg.head, rtc_train_max_delay=3))
    policy = VLAPolicy(cfg, [make_stats()])
    batch = fake_batch(cfg, batch=4)
    loss, _ = policy.compute_loss(batch)
    loss.backward()  # trains: the clean prefix rows are inputs, not targets
    assert torch.isfinite(loss) and policy.head.prefix_max_delay == 3
    policy.eval()
    committed = torch.rand(4, 6, 4) * 2 - 1
    got = sample_inpainted(policy, batch, committed, delay=2)
    torch.testing.assert_close(got[:, :2], committed[:, :2], atol=1e-5, rtol=0)  # hard-inpainted rows
    guided = sample_inpainted(policy, batch, committed, delay=4)  # beyond the trained range: guidance
    assert guided.shape == (4, 8, 4) and torch.isfinite(guided).all()
    with pytest.raises(VlaforgeError, match="rtc_train_max_delay must be in"):
        VLAPolicy(dataclasses.replace(cfg, head=dataclasses.replace(cfg.head, rtc_train_max_delay=8)))
