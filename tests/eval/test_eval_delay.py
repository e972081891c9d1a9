"""Evaluation under a simulated inference delay: naive async, ensembling, real-time chunking."""

from __future__ import annotations

import numpy as np
import pytest

from vlaforge.envs.registry import get_simulator
from vlaforge.errors import VlaforgeError
from vlaforge.eval.config import EvalConfig
from vlaforge.eval.metrics import smoothness
from vlaforge.eval.runner import run_evaluation

SMALL = 64
METAWORLD = get_simulator("metaworld")


def _checkpoint(path, kind: str):
    import torch

    from vlaforge.models.config import ImageEncoderConfig, PolicyConfig, TrunkConfig
    from vlaforge.models.heads import HeadConfig
    from vlaforge.models.policy import VLAPolicy

    torch.manual_seed(0)
    cfg = PolicyConfig(image_size=SMALL, chunk=8, execute_steps=4, image=ImageEncoderConfig(stem_channels=(8, 8)),
                       trunk=TrunkConfig(width=32, depth=1, heads=2),
                       head=HeadConfig(kind=kind, hidden_dim=32, num_blocks=1, flow_steps=4))  # fmt: skip
    return VLAPolicy(cfg, metadata={"fps": 80}).save_pretrained(path)


@pytest.fixture(scope="module")
def flow_ckpt(tmp_path_factory):
    return _checkpoint(tmp_path_factory.mktemp("delay") / "flow", "flow")


def _evaluate(ckpt, out, **kw) -> dict:
    from vlaforge.models.policy import VLAPolicy

    cfg = EvalConfig(policy=str(ckpt), suite="reach-v3", out=str(out), episodes_per_task=1, workers=1,
                     max_steps=24, videos_per_task=0, progress=False, allow_train_seeds=True, **kw)  # fmt: skip
    return run_evaluation(VLAPolicy.from_pretrained(ckpt), ["reach-v3"], cfg)


@pytest.mark.parametrize("execution", ["receding", "rtc"])
def test_a_delayed_chunk_is_requested_early_enough(flow_ckpt, tmp_path, execution):
    info = _evaluate(flow_ckpt, tmp_path / execution, execution=execution, inference_delay_ms=25.0)
    assert info["execution"]["delay_steps"] == 2  # 25 ms at Meta-World's 80 Hz
    # the first chunk at step 0, then one whenever 2 planned actions remain: steps 2, 6, 10, 14, 18, 22
    assert info["timing"]["policy_calls"] == 7
    (episode,) = info["episodes"]
    assert episode["length"] == 24 and episode["jerk"] is not None and np.isfinite(episode["jerk"])


def test_rtc_and_delays_that_cannot_work_are_refused_first(flow_ckpt, tmp_path):
    regression = _checkpoint(tmp_path / "reg", "regression")
    with pytest.raises(VlaforgeError, match="needs a checkpoint with a flow or diffusion head"):
        _evaluate(regression, tmp_path / "a", execution="rtc")
    with pytest.raises(VlaforgeError, match="is 4 control steps at 80 Hz.*more than 4"):
        _evaluate(flow_ckpt, tmp_path / "b", inference_delay_ms=50.0)
    with pytest.raises(VlaforgeError, match="exceed the policy's chunk of 8"):
        _evaluate(flow_ckpt, tmp_path / "c", inference_delay_ms=50.0, execute_steps=6)
    assert not any((tmp_path / d).exists() for d in "abc")


def test_smoothness_sees_a_jump_at_a_chunk_switch():
    steady = [np.array([0.1, 0.0, 0.0, 1.0])] * 10  # constant velocity: no jerk, gripper ignored
    assert smoothness(steady, [0], METAWORLD) == pytest.approx((0.0, 0.0), abs=1e-12)
    jump = steady[:5] + [np.array([-0.1, 0.0, 0.0, -1.0])] * 5
    overall, boundary = smoothness(jump, [0, 5], METAWORLD)
    assert boundary > overall > 0
    assert smoothness(steady[:3], [0], METAWORLD) == (None, None)
