"""The policy contract end to end: a policy trained on a real two-robot mixture, its training data
deleted, then served and exported for each robot from the checkpoint alone.

Dataset 0: a 4-d arm recorded at 48 px (the policy sees 32 px, so every frame is resized).
Dataset 1: a 2-d arm at 32 px whose actions sit around +5 (its own units).
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent / "train"))
from train_helpers import FAST_TRAIN, TINY_MODEL, write_dataset  # noqa: E402

from vlaforge import keys  # noqa: E402
from vlaforge.control.client import PolicyClient  # noqa: E402
from vlaforge.data.frame_cache import cached_frames  # noqa: E402
from vlaforge.data.reader import LeRobotV3Dataset  # noqa: E402
from vlaforge.deploy.export import OnnxPolicy, save_onnx_export  # noqa: E402
from vlaforge.deploy.quantize import load_policy, save_int8  # noqa: E402
from vlaforge.models.io import PolicyIO  # noqa: E402
from vlaforge.serve.protocol import validate_observation  # noqa: E402
from vlaforge.serve.runtime import PolicyRuntime, load_runtime  # noqa: E402
from vlaforge.serve.server import PolicyServer, ServerConfig  # noqa: E402

CAM = keys.image_key("corner2")


@pytest.fixture(scope="module")
def mixture(tmp_path_factory):
    """(checkpoint, the decoded 48 px frames of dataset 0, the 32 px cache training read) after the
    datasets were deleted."""
    from vlaforge.train.setup import execute

    base = tmp_path_factory.mktemp("mixture")
    arm4, arm2 = base / "arm4", base / "arm2"
    write_dataset(arm4, episodes=3, length=12, action_dim=4, state_dim=4, seed=1, size=48)
    write_dataset(arm2, episodes=3, length=12, action_dim=2, state_dim=2, seed=2, action_offset=5.0,
                  task="push the block")  # fmt: skip
    source = LeRobotV3Dataset(arm4)
    decoded = source.episode_frames(0, CAM)  # [T, 48, 48, 3]
    cache = np.array(cached_frames(source, CAM, size=(32, 32))[: len(decoded)])  # what training read
    spec = {"command": "train", "preset": None, "data": [str(arm4), str(arm2)],
            "overrides": TINY_MODEL + FAST_TRAIN + ["train.steps=30", "train.batch_size=8", "train.lr=3e-3",
                                                    "train.val_fraction=0", "train.ema_decay=0"]}  # fmt: skip
    assert execute(spec, base / "run", False, device="cpu") == 0
    shutil.rmtree(arm4)
    shutil.rmtree(arm2)
    return base / "run" / "checkpoints" / "last", decoded, cache


def _request(frame: np.ndarray, state_dim: int, task: str = "push the block") -> dict:
    return {CAM: frame, keys.STATE: np.zeros(state_dim, np.float32), "prompt": task}


def test_the_record_holds_what_eval_and_serving_need(mixture):
    ckpt, _, _ = mixture
    policy = load_policy(ckpt)
    e0, e1 = policy.record.embodiments
    assert (e0.action_dim, e0.state_dim, e1.action_dim, e1.state_dim) == (4, 4, 2, 2)
    assert e0.camera("corner2").frame_size == (48, 48) and e1.camera("corner2").frame_size == (32, 32)
    assert e0.camera("corner2").role == "primary" and e0.fps == 10 and e0.name == "test"
    assert len(e0.train_episodes) == 3 and e0.val_episodes == ()
    assert {s for _, s in policy.record.train_seeds} == {100, 101, 102, 200, 201, 202}
    assert PolicyIO(policy, 0).frame_size("corner2") == (48, 48)  # the dataset is gone; the record is not


def test_served_for_dataset_1_in_its_width_and_units(mixture):
    ckpt, _, _ = mixture
    frame = np.zeros((32, 32, 3), np.uint8)
    with PolicyServer(load_runtime(ckpt, embodiment=1), ServerConfig(port=0)) as srv:
        client = PolicyClient("127.0.0.1", srv.port)
        meta = client.metadata
        assert meta["action_dim"] == 2 and meta["state_dim"] == 2 and meta["embodiment"]["index"] == 1
        assert meta["observation"][CAM]["shape"] == [32, 32, 3]
        actions = client.infer(_request(frame, 2))["actions"]
        client.close()
    assert actions.shape == (4, 2)
    assert 3.0 < actions.mean() < 7.0  # dataset 1's units (its actions lie around +5)
    with PolicyServer(load_runtime(ckpt, embodiment=0), ServerConfig(port=0)) as srv:
        client = PolicyClient("127.0.0.1", srv.port)
        assert client.metadata["observation"][CAM]["shape"] == [48, 48, 3]  # the recorded frames' size
        arm4 = client.infer(_request(np.zeros((48, 48, 3), np.uint8), 4, "reach the goal"))["actions"]
        client.close()
    assert arm4.shape == (4, 4) and abs(arm4.mean()) < 2.0


def test_exported_for_dataset_1_in_its_width_and_units(mixture, tmp_path):
    ckpt, _, _ = mixture
    policy = load_policy(ckpt)
    onnx = OnnxPolicy(save_onnx_export(policy, tmp_path / "onnx", embodiment=1))
    window = PolicyIO(policy, 1).window()
    batch = window.push({CAM: np.zeros((32, 32, 3), np.uint8), keys.STATE: np.zeros(2, np.float32),
                         keys.TASK: "push the block"})  # fmt: skip
    text = policy.task_encoder.text(["push the block"])  # [1, E]
    inputs = {CAM: batch[CAM], keys.STATE: batch[keys.STATE][..., :2], keys.OBS_IS_PAD: batch[keys.OBS_IS_PAD],
              "text_embedding": text}  # fmt: skip
    got = onnx.sample_actions(inputs)  # [1, H, 2]
    want = PolicyIO(policy, 1).actions(policy.sample_actions(batch))
    assert got.shape == want.shape == (1, 4, 2)
    np.testing.assert_allclose(got, want, atol=1e-4)
    save_int8(policy, ckpt, tmp_path / "int8")  # the INT8 copy carries the record along
    assert load_policy(tmp_path / "int8").record == policy.record


def test_serving_sees_the_pixels_training_saw(mixture):
    """A 48 px camera and a 32 px policy: the server resizes each frame exactly as the frame cache did."""
    ckpt, decoded, cache = mixture
    runtime = PolicyRuntime(load_policy(ckpt), embodiment=0, warmup=False)
    stem = runtime.policy.obs_encoder.stem
    seen: list[np.ndarray] = []
    real_pixels = stem.pixels
    stem.pixels = lambda frames: seen.append(real_pixels(frames).numpy()) or real_pixels(frames)
    connection = runtime.connection()
    for t in range(3):
        request = validate_observation(_request(decoded[t], 4, "reach the goal"), runtime.spec)
        runtime.infer(connection.window(request))
    runtime.close()
    # each call sees the window [t-1, t] (t = 0 padded with itself), flattened over [B*T]
    np.testing.assert_array_equal(seen[0], cache[[0, 0]])
    np.testing.assert_array_equal(seen[2], cache[[1, 2]])
