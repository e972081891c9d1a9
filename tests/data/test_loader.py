"""Window loader: history/chunk padding at episode boundaries, the frame cache, splits."""

from __future__ import annotations

import numpy as np
import pytest
from datagen import episode, features

from vlaforge import keys
from vlaforge.data.dataset import WindowConfig, WindowDataset, split_episodes
from vlaforge.data.frame_cache import cache_base
from vlaforge.data.lerobot_v3 import LeRobotV3Dataset, LeRobotWriter
from vlaforge.errors import VlaforgeError

CAM = "observation.images.corner2"


def _reference(ds: LeRobotV3Dataset, frames: np.ndarray, row: int, history: int, chunk: int) -> dict:
    """One sample the slow, obvious way (LeRobot's clamp + is_pad rule)."""
    ep = ds.episodes[int(ds.column("episode_index")[row, 0])]
    lo, hi = ep["dataset_from_index"], ep["dataset_to_index"]
    hist = [row + d for d in range(1 - history, 1)]
    acts = [row + d for d in range(chunk)]
    return {
        "obs_pad": [i < lo for i in hist],
        "act_pad": [i >= hi for i in acts],
        "image": frames[[max(i, lo) for i in hist]],
        "state": ds.column(keys.STATE)[[max(i, lo) for i in hist]],
        "action": ds.column(keys.ACTION)[[min(i, hi - 1) for i in acts]],
    }


def test_history_and_chunk_padding_at_episode_boundaries(small_dataset, tmp_path):
    root, _ = small_dataset
    window = WindowConfig(history=3, chunk=5)
    wd = WindowDataset(root, window, cache_dir=tmp_path)
    src = LeRobotV3Dataset(root)
    frames = np.concatenate([src.episode_frames(i, CAM) for i in range(src.num_episodes)])
    batch = wd.sample_batch(np.arange(len(wd)))
    assert batch[CAM].shape == (56, 3, 32, 32, 3) and batch[keys.ACTION].shape == (56, 5, 4)
    for row in range(len(wd)):
        ref = _reference(src, frames, row, 3, 5)
        assert batch[keys.OBS_IS_PAD][row].tolist() == ref["obs_pad"]
        assert batch[keys.ACTION_IS_PAD][row].tolist() == ref["act_pad"]
        np.testing.assert_array_equal(batch[CAM][row].numpy(), ref["image"])
        np.testing.assert_array_equal(batch[keys.STATE][row].numpy(), ref["state"])
        np.testing.assert_array_equal(batch[keys.ACTION][row].numpy(), ref["action"])
    start_of_ep1 = batch[keys.OBS_IS_PAD][12].tolist()
    assert start_of_ep1 == [True, True, False]
    assert batch[keys.ACTION_IS_PAD][11].tolist() == [False, True, True, True, True]
    assert batch[keys.TASK][12] == "Reach a goal position" and batch[keys.DATASET_INDEX].sum() == 0


def test_episode_subset_and_split(small_dataset, tmp_path):
    root, _ = small_dataset
    train, val = split_episodes(4, 0.25, seed=0)
    assert sorted(train + val) == [0, 1, 2, 3] and len(val) == 1
    assert split_episodes(4, 0.25, seed=0) == (train, val)
    assert split_episodes(10, 0.2, seed=1)[1] != split_episodes(10, 0.2, seed=2)[1]
    wd = WindowDataset(root, WindowConfig(), episodes=val, cache_dir=tmp_path)
    batch = wd.sample_batch(np.arange(len(wd)))
    assert set(batch["episode_index"].tolist()) == set(val)
    assert wd.episode_metadata[0]["episode_index"] == val[0]
    with pytest.raises(VlaforgeError, match="not in dataset"):
        WindowDataset(root, WindowConfig(), episodes=[9], cache_dir=tmp_path)
    with pytest.raises(VlaforgeError, match="unknown camera.*did you mean 'corner2'"):
        WindowDataset(root, WindowConfig(cameras=("corner3",)), cache_dir=tmp_path)


def test_frame_cache_is_built_once_and_invalidated_on_change(tmp_path):
    root = tmp_path / "ds"
    writer = LeRobotWriter(root, fps=10, robot_type=None, features=features(size=16))
    for i in range(2):
        writer.add_episode(episode(6, seed=i, size=16), "t")
    writer.finalize()
    wd = WindowDataset(root, WindowConfig(image_size=8))
    base = cache_base(root)
    assert base == root / ".vlaforge_cache"
    (entry,) = list(base.iterdir())
    npy = entry / f"{CAM}-8x8.npy"
    mtime = npy.stat().st_mtime_ns
    assert wd.image_shape == (8, 8, 3)
    WindowDataset(root, WindowConfig(image_size=8))
    assert npy.stat().st_mtime_ns == mtime  # reused, not decoded again
    writer = LeRobotWriter(root, fps=10, robot_type=None, features=features(size=16), resume=True)
    writer.add_episode(episode(4, seed=5, size=16), "t")
    writer.finalize()
    wd = WindowDataset(root, WindowConfig())
    assert len(wd) == 16 and not entry.exists()
    full = LeRobotV3Dataset(root).episode_frames(2, CAM)
    np.testing.assert_array_equal(np.asarray(wd.frames[CAM][12:16]), full)
    assert not list(base.rglob(".*tmp*"))


def test_read_only_fixture_uses_cache_dir(lerobot_fixture, tmp_path):
    wd = WindowDataset(lerobot_fixture, WindowConfig(history=2, chunk=4), cache_dir=tmp_path / "cache")
    batch = wd.sample_batch([0, 24, 89])
    assert batch[CAM].shape == (3, 2, 64, 64, 3)
    assert batch[keys.OBS_IS_PAD][:, 0].tolist() == [True, True, False]
    assert batch[keys.ACTION_IS_PAD][2].tolist() == [False, True, True, True]
    assert wd.state_dim == 4 and wd.action_dim == 4 and (tmp_path / "cache").is_dir()
