"""Mixtures: padding masks for different robots, weights, exact resume, feature mismatches."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from datagen import write_dataset

from vlaforge import keys
from vlaforge.data.dataset import WindowConfig, WindowDataset
from vlaforge.data.mixture import MixtureLoader
from vlaforge.errors import VlaforgeError


@pytest.fixture(scope="module")
def robots(tmp_path_factory):
    """Two embodiments: 4-d action / 4-d state and 6-d action / 7-d state, same camera."""
    base = tmp_path_factory.mktemp("mix")
    write_dataset(base / "a", lengths=(10, 8), size=16)
    write_dataset(base / "b", lengths=(7, 9, 6), size=16, action_dim=6, state_dim=7)
    window = WindowConfig(history=2, chunk=4)
    return [WindowDataset(base / n, window, cache_dir=base / "cache") for n in ("a", "b")]


def test_padding_masks_and_dataset_index(robots):
    loader = MixtureLoader(robots, weights=[0.5, 0.5], batch_size=32, seed=0)
    batch = next(loader)
    assert batch[keys.ACTION].shape == (32, 4, 6) and batch[keys.STATE].shape == (32, 2, 7)
    ids = batch[keys.DATASET_INDEX]
    assert set(ids.tolist()) == {0, 1}
    assert batch[keys.ACTION_DIM_MASK][ids == 0].tolist() == [[True] * 4 + [False] * 2] * int(
        (ids == 0).sum()
    )
    assert batch[keys.ACTION_DIM_MASK][ids == 1].all() and batch[keys.STATE_DIM_MASK][ids == 1].all()
    assert batch[keys.STATE_DIM_MASK][ids == 0][:, 4:].any().item() is False
    assert torch.all(batch[keys.ACTION][ids == 0][..., 4:] == 0)
    assert torch.all(batch[keys.STATE][ids == 0][..., 4:] == 0)
    rows = torch.nonzero(ids == 0).ravel()
    own = robots[0].sample_batch(np.arange(len(robots[0])))
    for r in rows.tolist():  # each padded row is a real sample of dataset 0
        key = (int(batch["episode_index"][r]), int(batch["frame_index"][r]))
        j = [(int(e), int(f)) for e, f in zip(own["episode_index"], own["frame_index"], strict=True)].index(
            key
        )
        torch.testing.assert_close(batch[keys.ACTION][r, :, :4], own[keys.ACTION][j])
    assert loader.stats[1]["action"]["mean"].shape == (6,)


def test_weights_and_epoch_coverage(robots):
    loader = MixtureLoader(robots, weights=[0.8, 0.2], batch_size=50, seed=3)
    ids = torch.cat([next(loader)[keys.DATASET_INDEX] for _ in range(40)])
    assert abs((ids == 0).float().mean().item() - 0.8) < 0.03
    single = MixtureLoader([robots[1]], batch_size=11, seed=1)
    batches = [next(single) for _ in range(2)]
    seen = [
        (int(e), int(f)) for b in batches for e, f in zip(b["episode_index"], b["frame_index"], strict=True)
    ]
    assert len(set(seen)) == len(robots[1]) == 22  # one epoch = every sample exactly once


def test_state_dict_resumes_exactly(robots):
    loader = MixtureLoader(robots, weights=[0.6, 0.4], batch_size=16, seed=7)
    for _ in range(5):
        next(loader)
    state = json.loads(json.dumps(loader.state_dict()))
    expected = [next(loader) for _ in range(4)]
    fresh = MixtureLoader(robots, weights=[0.6, 0.4], batch_size=16, seed=7)
    fresh.load_state_dict(state)
    for want in expected:
        got = next(fresh)
        assert got[keys.TASK] == want[keys.TASK]
        for key in (keys.ACTION, CAM_KEY, keys.DATASET_INDEX, "frame_index"):
            assert torch.equal(got[key], want[key])
    with pytest.raises(VlaforgeError, match="does not match"):
        MixtureLoader(robots, batch_size=16, seed=8).load_state_dict(state)


CAM_KEY = "observation.images.corner2"


def test_mismatched_features_are_clear_errors(robots, tmp_path):
    write_dataset(tmp_path / "cam", lengths=(5,), size=16, camera="top")
    write_dataset(tmp_path / "fps", lengths=(5,), size=16, fps=20)
    window = robots[0].window
    other_cam = WindowDataset(tmp_path / "cam", window, cache_dir=tmp_path / "c")
    with pytest.raises(VlaforgeError, match="disagree on cameras"):
        MixtureLoader([robots[0], other_cam], batch_size=4)
    other_fps = WindowDataset(tmp_path / "fps", window, cache_dir=tmp_path / "c")
    with pytest.raises(VlaforgeError, match=r"different control rates.* 10 fps.* 20 fps.*mixed_fps"):
        MixtureLoader([robots[0], other_fps], batch_size=4)
    mixed = MixtureLoader([robots[0], other_fps], batch_size=4, mixed_fps=True)  # each at its own rate
    assert next(mixed)[keys.ACTION].shape == (4, 4, 4)
    with pytest.raises(VlaforgeError, match="weights"):
        MixtureLoader(robots, weights=[1.0], batch_size=4)


def test_camera_slots_mask_missing_cameras(tmp_path):
    """Three robots with different cameras meet in the slots (primary, wrist): a slot a robot lacks
    is masked in camera_mask, and each slot carries the mapped camera's own frames."""
    from vlaforge.data.slots import map_slots

    write_dataset(tmp_path / "mw", lengths=(6, 5), size=16, camera="corner2")
    write_dataset(tmp_path / "rs", lengths=(7,), size=16, camera="agentview,robot0_eye_in_hand", action_dim=7)
    slots = ("primary", "wrist")
    roles = {"corner2": "primary", "agentview": "primary", "robot0_eye_in_hand": "wrist"}
    maps = {
        "mw": map_slots(slots, ["corner2"], roles),
        "rs": map_slots(slots, ["agentview", "robot0_eye_in_hand"], roles),
    }
    assert maps["mw"] == (("primary", "corner2"), ("wrist", None))
    assert maps["rs"] == (("primary", "agentview"), ("wrist", "robot0_eye_in_hand"))
    sets = [
        WindowDataset(tmp_path / n, WindowConfig(history=2, chunk=3, slots=maps[n]), cache_dir=tmp_path / "c")
        for n in ("mw", "rs")
    ]
    batch = next(MixtureLoader(sets, batch_size=24, seed=1))
    ids, mask = batch[keys.DATASET_INDEX], batch[keys.CAMERA_MASK]
    assert set(ids.tolist()) == {0, 1} and mask.shape == (24, 2)
    assert mask[ids == 0].tolist() == [[True, False]] * int((ids == 0).sum())
    assert mask[ids == 1].all()
    primary, wrist = batch["observation.images.primary"], batch["observation.images.wrist"]
    assert primary.shape == wrist.shape == (24, 2, 16, 16, 3)
    assert not torch.equal(primary[ids == 1], wrist[ids == 1])  # two real, different cameras
    plain = WindowDataset(tmp_path / "rs", WindowConfig(history=2, chunk=3), cache_dir=tmp_path / "c")
    rows = np.arange(len(plain))
    assert np.array_equal(
        sets[1].gather(rows)["observation.images.wrist"],
        plain.gather(rows)["observation.images.robot0_eye_in_hand"],
    )
    assert "observation.images.corner2" not in batch


def test_camera_slot_mapping_rules_and_errors():
    from vlaforge.data.slots import map_slots, parse_camera_map

    # exact name first, then the explicit map, then the role; a camera feeds one slot
    assert map_slots(("corner2",), ["corner2", "topview"], {"topview": "primary"}) == (
        ("corner2", "corner2"),
    )
    assert map_slots(("primary",), ["top", "left"], {}, parse_camera_map("left=primary")) == (
        ("primary", "left"),
    )
    assert map_slots(("primary", "secondary"), ["a", "b"], {"a": "primary", "b": "primary"}) == (
        ("primary", "a"),
        ("secondary", None),
    )
    with pytest.raises(
        VlaforgeError, match=r"none of its cameras \[top \(top\)\] maps to the policy's camera slots"
    ):
        map_slots(("primary", "wrist"), ["top"], {"top": "top"}, where="dataset A")
    with pytest.raises(VlaforgeError, match="must be CAMERA=SLOT"):
        parse_camera_map("top")


@pytest.fixture(scope="module")
def two_tasks(tmp_path_factory):
    """Four episodes of two tasks (datagen alternates them), the simulator's names in the metadata."""
    from datagen import TASKS, episode, features

    from vlaforge.data.lerobot_v3 import LeRobotWriter

    root = tmp_path_factory.mktemp("tasks") / "d"
    writer = LeRobotWriter(root, fps=10, robot_type="sawyer", features=features(16))
    for i, n in enumerate((10, 10, 10, 10)):
        name = ("drawer-open-v3", "reach-v3")[i % 2]
        writer.add_episode(episode(n, seed=i, size=16), TASKS[i % 2], {"seed": i, "metaworld_task": name})
    writer.finalize()
    return WindowDataset(root, WindowConfig(history=1, chunk=2))


def test_task_weights_reweight_each_epoch(two_tasks):
    from datagen import TASKS

    from vlaforge.data.mixture import task_sample_weights

    (weights,) = task_sample_weights([two_tasks], {"reach-v3": 3.0})  # by the simulator's name
    by_instruction = task_sample_weights([two_tasks], {TASKS[1]: 3.0})[0]
    np.testing.assert_array_equal(weights, by_instruction)
    assert sorted(set(weights.tolist())) == [1.0, 3.0] and (weights == 3).sum() == 20

    loader = MixtureLoader([two_tasks], batch_size=80, seed=0, sample_weights=[weights])
    first = next(loader)  # one whole epoch: 20 drawer windows once, 20 reach windows thrice
    reach = first[keys.TASK].count(TASKS[1])
    assert reach == 60 and len(first[keys.TASK]) - reach == 20
    pairs = [(int(e), int(f)) for e, f in zip(first["episode_index"], first["frame_index"], strict=True)]
    assert len(set(pairs)) == 40  # every window, none left out

    half = MixtureLoader(
        [two_tasks], batch_size=400, seed=1, sample_weights=[np.where(weights == 3, 1.0, 0.5)]
    )
    share = next(half)[keys.TASK].count(TASKS[0]) / 400  # drawer at 0.5 against reach at 1
    assert 0.25 < share < 0.42

    state = json.loads(json.dumps(loader.state_dict()))
    want = next(loader)
    again = MixtureLoader([two_tasks], batch_size=80, seed=0, sample_weights=[weights])
    again.load_state_dict(state)
    assert torch.equal(next(again)["frame_index"], want["frame_index"])  # resume stays exact


def test_task_weights_errors_name_the_problem(two_tasks):
    from vlaforge.data.mixture import task_sample_weights
    from vlaforge.train.config import parse_task_weights

    assert parse_task_weights(" push-v3=3, Reach a goal=0.5 ") == {"push-v3": 3.0, "Reach a goal": 0.5}
    for bad in ("push-v3", "push-v3=0", "push-v3=x", "=2", "a=1,a=2"):
        with pytest.raises(VlaforgeError, match="task_weights"):
            parse_task_weights(bad)
    with pytest.raises(VlaforgeError, match="reach-v9.*reach-v3"):  # names it and lists the tasks there are
        task_sample_weights([two_tasks], {"reach-v9": 2.0})
