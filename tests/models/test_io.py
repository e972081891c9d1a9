"""The policy contract (`vlaforge.models.io`): observation windows, the checkpoint record, PolicyIO."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from vlaforge import keys
from vlaforge.errors import VlaforgeError
from vlaforge.image import resize
from vlaforge.models.io import CheckpointRecord, ObservationWindow, PolicyIO, collate
from vlaforge.models.policy import VLAPolicy

CAM = keys.image_key("corner2")


def obs(v: int, size: int = 8, state: int = 4) -> dict:
    return {CAM: np.full((size, size, 3), v % 256, np.uint8), keys.STATE: np.full(state, float(v), np.float32),
            keys.ENV_STATE: np.zeros(39, np.float32), keys.TASK: f"task {v % 2}"}  # fmt: skip


def reference(stream: list[dict], history: int) -> dict:
    """The window by definition: the last `history` steps, the first repeated before the start."""
    steps = [stream[0]] * max(0, history - len(stream)) + stream[-history:]
    return {
        CAM: np.stack([s[CAM] for s in steps])[None],
        keys.STATE: np.stack([s[keys.STATE] for s in steps])[None],
        keys.OBS_IS_PAD: (np.arange(history) < history - min(len(stream), history))[None],
        keys.TASK: [stream[-1][keys.TASK]],
    }


@settings(max_examples=40, deadline=None)
@given(history=st.integers(1, 4), episodes=st.lists(st.integers(1, 7), min_size=1, max_size=4))
def test_window_matches_its_definition_across_resets(history, episodes):
    window, v = ObservationWindow(history, embodiment=1), 0
    for length in episodes:
        window.reset()
        stream = []
        for _ in range(length):
            v += 1
            stream.append(obs(v))
            got = window.push(stream[-1])
            want = reference(stream, history)
            assert set(got) == {*want, keys.DATASET_INDEX}  # the privileged state is never an input
            for key, value in want.items():
                np.testing.assert_array_equal(np.asarray(got[key]), value)
            assert got[keys.DATASET_INDEX].tolist() == [1]


def test_window_pads_state_and_restarts_on_a_new_frame_size():
    window = ObservationWindow(2, cameras=("corner2",), state_width=6)
    first = window.push(obs(1, state=4))
    assert first[keys.STATE].shape == (1, 2, 6) and first[keys.STATE][0, 0, 4:].tolist() == [0, 0]
    assert first[keys.STATE_DIM_MASK].tolist() == [[True] * 4 + [False] * 2]
    assert window.push(obs(2))[keys.OBS_IS_PAD].tolist() == [[False, False]]
    bigger = window.push(obs(3, size=16))  # another frame size: a new stream, not a mixed window
    assert bigger[CAM].shape == (1, 2, 16, 16, 3) and bigger[keys.OBS_IS_PAD].tolist() == [[True, False]]
    with pytest.raises(VlaforgeError, match="lacks 'observation.images.wrist'"):
        ObservationWindow(2, cameras=("wrist",)).push(obs(1))
    with pytest.raises(VlaforgeError, match="has 8 dims but the policy takes 6"):
        ObservationWindow(2, state_width=6).push(obs(1, state=8))


def test_windows_collate_into_a_policy_batch(tiny_config):
    policy = VLAPolicy(tiny_config()).eval()
    a, b = ObservationWindow(2), ObservationWindow(2)
    batch = collate([a.push(obs(1, size=48)), b.push(obs(2, size=48))])
    assert batch[CAM].shape == (2, 2, 48, 48, 3) and batch[keys.TASK] == ["task 1", "task 0"]
    assert policy.sample_actions(batch).shape == (2, 4, 4)


def mixture_policy(tiny_config, make_stats) -> VLAPolicy:
    """Two embodiments: a 4-d arm (dataset 0) and a 2-d one (dataset 1) whose units differ."""
    meta = {"fps": 10, "tasks": ["reach"], "train_seeds": [{"task": "reach", "seed": 3}],
            "datasets": [{"name": "arm4", "action_dim": 4, "state_dim": 4, "fps": 10,
                          "cameras": {"corner2": {"frame_size": [48, 48], "role": "primary"}}},
                         {"name": "arm2", "action_dim": 2, "state_dim": 2, "fps": 20,
                          "cameras": {"corner2": {"frame_size": [64, 64]}}}]}  # fmt: skip
    stats = [make_stats(4, 4), make_stats(2, 2, shift=5.0)]
    torch.manual_seed(0)
    return VLAPolicy(tiny_config(), stats, metadata=meta).eval()


def test_policy_io_serves_each_embodiment_in_its_own_width_and_units(tiny_config, make_stats):
    policy = mixture_policy(tiny_config, make_stats)
    io = PolicyIO(policy, "arm2")
    assert (io.embodiment, io.action_dim, io.state_dim, io.fps) == (1, 2, 2, 20)
    assert io.frame_size("corner2") == (64, 64) and PolicyIO(policy).frame_size("corner2") == (48, 48)
    window = io.window()
    batch = window.push(obs(1, size=64, state=2))
    assert batch[keys.DATASET_INDEX].tolist() == [1] and batch[keys.STATE].shape == (1, 2, 4)
    actions = io.actions(policy.sample_actions(batch))  # [1, H, 2]
    assert actions.shape == (1, 4, 2) and actions.dtype == np.float32
    arm4 = PolicyIO(policy, 0).actions(policy.sample_actions(PolicyIO(policy, 0).window().push(obs(1, 48))))
    assert arm4.shape == (1, 4, 4)
    assert actions.mean() > arm4.mean() + 2  # dataset 1's statistics (shifted by +5) were applied
    with pytest.raises(VlaforgeError, match="unknown embodiment 'arm3'.*choose from: arm2, arm4"):
        PolicyIO(policy, "arm3")
    with pytest.raises(VlaforgeError, match="embodiment 2 does not exist"):
        PolicyIO(policy, 2)


def test_record_round_trips_and_reads_old_metadata(tiny_config, make_stats):
    policy = mixture_policy(tiny_config, make_stats)
    record = policy.record
    assert record.train_seeds == (("reach", 3),) and [e.name for e in record.embodiments] == ["arm4", "arm2"]
    assert CheckpointRecord.from_metadata(record.to_metadata()) == record
    old = CheckpointRecord.from_metadata({"fps": 80, "tasks": ["reach"], "step": 7})  # before the record
    assert old.embodiments == () and old.train_seeds is None and old.extra == {"step": 7}
    io = PolicyIO(VLAPolicy(tiny_config(), metadata={"fps": 80}))
    assert io.frame_size("corner2") == (32, 32) and io.action_dim == 4  # the config's, when unrecorded


def test_the_stem_sees_the_frame_cache_pixels(tiny_config):
    """A policy at 32 px given 48 px frames resizes them with `vlaforge.image.resize` (what the frame
    cache stores for training), not with a resize of its own."""
    policy = VLAPolicy(tiny_config()).eval()
    frames = torch.randint(0, 256, (3, 48, 48, 3), dtype=torch.uint8)
    stem = policy.obs_encoder.stem
    np.testing.assert_array_equal(stem.pixels(frames).numpy(), resize(frames.numpy(), 32))
