"""LeRobot v3.0 writer/reader: round trip, layout vs LeRobot's own fixture, stats, resume, errors."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from datagen import TASKS, episode, features, write_dataset

from vlaforge.data.lerobot_v3 import LeRobotV3Dataset, LeRobotWriter
from vlaforge.data.video import psnr, read_mp4, write_mp4
from vlaforge.errors import VlaforgeError

CAM = "observation.images.corner2"
NUMERIC = ("observation.state", "action", "next.reward", "next.success")


def test_round_trip_numeric_exact_and_video_psnr(small_dataset):
    root, episodes = small_dataset
    ds = LeRobotV3Dataset(root)
    assert (ds.num_episodes, ds.num_frames, ds.fps) == (4, 56, 10)
    assert ds.tasks == list(TASKS)
    for key in NUMERIC:
        expected = np.concatenate([e[key] for e in episodes]).reshape(56, -1)
        np.testing.assert_array_equal(ds.column(key), expected.astype(ds.column(key).dtype))
    lengths = [len(e["action"]) for e in episodes]
    np.testing.assert_array_equal(ds.column("index")[:, 0], np.arange(56))
    np.testing.assert_array_equal(ds.column("episode_index")[:, 0], np.repeat(np.arange(4), lengths))
    np.testing.assert_array_equal(ds.column("task_index")[:, 0], np.repeat([0, 1, 0, 1], lengths))
    frame_index = np.concatenate([np.arange(n) for n in lengths])
    np.testing.assert_array_equal(ds.column("frame_index")[:, 0], frame_index)
    np.testing.assert_allclose(ds.column("timestamp")[:, 0], frame_index / 10, rtol=1e-6)
    for i, e in enumerate(episodes):
        assert ds.episodes[i]["seed"] == 100 + i and ds.episodes[i]["tasks"] == [TASKS[i % 2]]
        decoded = ds.episode_frames(i, CAM)
        assert decoded.shape == e[CAM].shape
        assert psnr(decoded, e[CAM]) >= 35.0


def test_layout_matches_lerobot_fixture(small_dataset, lerobot_fixture):
    root, _ = small_dataset
    ours, theirs = (
        json.loads((root / "meta/info.json").read_text()),
        json.loads((lerobot_fixture / "meta/info.json").read_text()),
    )
    assert set(ours) == set(theirs) and ours["codebase_version"] == "v3.0"
    for key in ("data_path", "video_path", "chunks_size"):
        assert ours[key] == theirs[key]
    assert set(ours["features"][CAM]["info"]) == set(theirs["features"][CAM]["info"])
    assert ours["features"][CAM]["info"]["video.codec"] == "h264"
    for key in ("timestamp", "frame_index", "episode_index", "index", "task_index", "action", "next.success"):
        assert ours["features"][key]["dtype"] == theirs["features"][key]["dtype"]
    ep_ours = pq.read_table(root / "meta/episodes/chunk-000/file-000.parquet").schema
    ep_theirs = pq.read_table(lerobot_fixture / "meta/episodes/chunk-000/file-000.parquet").schema
    shared = [f for f in ep_theirs if "environment_state" not in f.name]
    for field in shared:
        assert field.name in ep_ours.names, field.name
        assert ep_ours.field(field.name).type == field.type, field.name
    data_ours = pq.read_schema(root / "data/chunk-000/file-000.parquet")
    data_theirs = pq.read_schema(lerobot_fixture / "data/chunk-000/file-000.parquet")
    for field in data_theirs:
        if "environment_state" not in field.name:
            assert data_ours.field(field.name).type == field.type, field.name
    tasks = pq.read_table(root / "meta/tasks.parquet")
    assert tasks.schema.names == pq.read_table(lerobot_fixture / "meta/tasks.parquet").schema.names


def test_stats_match_numpy(small_dataset):
    root, episodes = small_dataset
    ds = LeRobotV3Dataset(root)
    actions = np.concatenate([e["action"] for e in episodes]).astype(np.float64)
    s = ds.stats["action"]
    np.testing.assert_allclose(s["mean"], actions.mean(0), rtol=1e-6)
    np.testing.assert_allclose(s["std"], actions.std(0), rtol=1e-6)
    np.testing.assert_allclose(s["min"], actions.min(0))
    np.testing.assert_allclose(s["q01"], np.quantile(actions, 0.01, axis=0), rtol=1e-6)
    np.testing.assert_allclose(s["q99"], np.quantile(actions, 0.99, axis=0), rtol=1e-6)
    assert s["count"].tolist() == [56]
    first = ds.episode_stats[2]["action"]
    np.testing.assert_allclose(
        first["q50"], np.median(episodes[2]["action"].astype(np.float64), 0), rtol=1e-6
    )
    pixels = np.concatenate([e[CAM] for e in episodes]).reshape(-1, 3) / 255.0
    img = ds.stats[CAM]
    assert img["mean"].shape == (3, 1, 1)
    np.testing.assert_allclose(img["mean"].ravel(), pixels.mean(0), rtol=1e-9)
    np.testing.assert_allclose(img["std"].ravel(), pixels.std(0), rtol=1e-6)
    np.testing.assert_allclose(img["max"].ravel(), pixels.max(0))
    ep0 = episodes[0][CAM].reshape(-1, 3) / 255.0
    np.testing.assert_allclose(
        ds.episode_stats[0][CAM]["q10"].ravel(), np.quantile(ep0, 0.10, axis=0), atol=1e-12
    )
    np.testing.assert_allclose(ds.episode_stats[1]["index"]["min"], [12])


def test_reads_lerobot_written_fixture(lerobot_fixture):
    ds = LeRobotV3Dataset(lerobot_fixture)
    assert (ds.num_episodes, ds.num_frames, ds.fps) == (3, 90, 80)
    assert ds.tasks == ["Open a drawer", "Reach a goal position"]
    assert ds.column("observation.environment_state").shape == (90, 39)
    assert ds.stats[CAM]["mean"].shape == (3, 1, 1)
    whole = read_mp4(lerobot_fixture / "videos" / CAM / "chunk-000/file-000.mp4")  # AV1
    middle = ds.episode_frames(1, CAM)
    assert middle.shape == (30, 64, 64, 3)
    np.testing.assert_array_equal(middle, whole[24:54])


def _crash_leftovers(root: Path) -> None:
    """What a kill inside add_episode(2) can leave behind."""
    (root / ".staging" / "episode-000002.parquet").write_bytes(b"half")
    (root / ".staging" / ".episode-000002.json.tmp-1").write_text("{")
    write_mp4(root / "videos" / CAM / "chunk-000" / "file-002.mp4", episode(4, 9)[CAM], 10)


def test_resume_ignores_half_written_episode(tmp_path):
    root = tmp_path / "ds"
    writer = LeRobotWriter(root, fps=10, robot_type="sawyer", features=features())
    for i in range(2):
        writer.add_episode(episode(6 + i, seed=i), TASKS[0], {"seed": i})
    _crash_leftovers(root)
    resumed = LeRobotWriter(root, fps=10, robot_type="sawyer", features=features(), resume=True)
    assert resumed.num_episodes == 2
    assert [m["seed"] for m in resumed.episode_metadata()] == [0, 1]
    assert sorted(p.name for p in (root / ".staging").iterdir()) == [
        "config.json",
        "episode-000000.json",
        "episode-000000.parquet",
        "episode-000001.json",
        "episode-000001.parquet",
    ]
    assert not (root / "videos" / CAM / "chunk-000" / "file-002.mp4").exists()
    with pytest.raises(VlaforgeError, match="incomplete dataset .*rerun collect"):
        LeRobotV3Dataset(root)
    resumed.add_episode(episode(5, seed=2), TASKS[1], {"seed": 2})
    resumed.finalize()
    ds = LeRobotV3Dataset(root)
    assert [e["length"] for e in ds.episodes] == [6, 7, 5] and not (root / ".staging").exists()
    np.testing.assert_array_equal(ds.column("action")[13:], episode(5, seed=2)["action"])


KILL_SCRIPT = """
import sys, time
sys.path.insert(0, {tests!r})
from datagen import episode, features
from vlaforge.data.lerobot_v3 import LeRobotWriter
w = LeRobotWriter({root!r}, fps=10, robot_type="sawyer", features=features(), resume=True)
i = w.num_episodes
while True:
    w.add_episode(episode(8, seed=i), "Open a drawer", {{"seed": i}})
    i += 1
"""


def test_resume_after_sigkill(tmp_path):
    root = tmp_path / "ds"
    script = KILL_SCRIPT.format(tests=str(Path(__file__).parent), root=str(root))
    proc = subprocess.Popen([sys.executable, "-c", script])
    deadline = time.time() + 60
    while len(list((root / ".staging").glob("episode-*.json"))) < 3 and time.time() < deadline:
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    writer = LeRobotWriter(root, fps=10, robot_type="sawyer", features=features(), resume=True)
    n = writer.num_episodes
    assert n >= 3
    writer.add_episode(episode(8, seed=n), TASKS[0], {"seed": n})
    writer.finalize()
    ds = LeRobotV3Dataset(root)
    assert ds.num_episodes == n + 1 and [e["seed"] for e in ds.episodes] == list(range(n + 1))
    expected = np.concatenate([episode(8, seed=i)["action"] for i in range(n + 1)])
    np.testing.assert_array_equal(ds.column("action"), expected)
    assert ds.episode_frames(n, CAM).shape == (8, 32, 32, 3)


def test_resume_a_finalized_dataset_and_overwrite(tmp_path):
    root = tmp_path / "ds"
    write_dataset(root, lengths=(5, 6))
    with pytest.raises(VlaforgeError, match="already exists.*--overwrite"):
        LeRobotWriter(root, fps=10, robot_type="sawyer", features=features())
    with pytest.raises(VlaforgeError, match="fps differs"):
        LeRobotWriter(root, fps=20, robot_type="sawyer", features=features(), resume=True)
    writer = LeRobotWriter(root, fps=10, robot_type="sawyer", features=features(), resume=True)
    assert writer.num_episodes == 2 and writer.episode_metadata()[1]["seed"] == 101
    writer.add_episode(episode(4, seed=7), "A new task", {"seed": 7})
    writer.finalize()
    ds = LeRobotV3Dataset(root)
    assert [e["seed"] for e in ds.episodes] == [100, 101, 7] and ds.tasks == [*TASKS, "A new task"]
    LeRobotWriter(root, fps=10, robot_type="sawyer", features=features(), overwrite=True)
    with pytest.raises(VlaforgeError, match="incomplete"):
        LeRobotV3Dataset(root)


def test_clear_errors(tmp_path):
    with pytest.raises(VlaforgeError, match="does not exist"):
        LeRobotV3Dataset(tmp_path / "missing")
    with pytest.raises(VlaforgeError, match="not a LeRobot dataset"):
        LeRobotV3Dataset(tmp_path)
    (tmp_path / "meta").mkdir()
    (tmp_path / "meta/info.json").write_text("{not json")
    with pytest.raises(VlaforgeError, match="corrupt dataset"):
        LeRobotV3Dataset(tmp_path)
    (tmp_path / "meta/info.json").write_text(json.dumps({"codebase_version": "v2.1"}))
    with pytest.raises(VlaforgeError, match="v2.1"):
        LeRobotV3Dataset(tmp_path)
    writer = LeRobotWriter(tmp_path / "w", fps=10, robot_type=None, features=features())
    frames = episode(4, seed=0)
    with pytest.raises(VlaforgeError, match="missing \\['action'\\]"):
        writer.add_episode({k: v for k, v in frames.items() if k != "action"}, "t")
    with pytest.raises(VlaforgeError, match="action"):
        writer.add_episode({**frames, "action": frames["action"][:, :3]}, "t")
    with pytest.raises(VlaforgeError, match="no episodes"):
        writer.finalize()
    with pytest.raises(VlaforgeError, match="not empty and does not look like a dataset"):
        LeRobotWriter(tmp_path / "meta", fps=10, robot_type=None, features=features(), overwrite=True)


def test_video_round_trip_is_atomic(tmp_path):
    frames = episode(10, seed=3, size=64)[CAM]
    path = write_mp4(tmp_path / "v.mp4", frames, fps=30)
    assert [p.name for p in tmp_path.iterdir()] == ["v.mp4"]
    assert psnr(read_mp4(path), frames) >= 35.0
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 3])
    with pytest.raises(VlaforgeError):
        read_mp4(path)


LEROBOT_PYTHON = os.environ.get("VLAFORGE_LEROBOT_PYTHON", "/tmp/lerobot-venv/bin/python")


@pytest.mark.slow
@pytest.mark.skipif(
    not Path(LEROBOT_PYTHON).is_file(), reason="needs a side env with lerobot (VLAFORGE_LEROBOT_PYTHON)"
)
def test_real_lerobot_loads_our_dataset(small_dataset, tmp_path):
    """LeRobot's own LeRobotDataset (v3.0) loads our dataset; see benchmarks/lerobot_compat.py."""
    root, _ = small_dataset
    script = Path(__file__).parents[2] / "benchmarks" / "lerobot_compat.py"
    out = tmp_path / "compat.json"
    cmd = [
        LEROBOT_PYTHON,
        str(script),
        "--data",
        str(root),
        "--shim-torchvision",
        "--samples",
        "10",
        "--out",
        str(out),
    ]
    subprocess.run(cmd, check=True, env={**os.environ, "HF_HUB_OFFLINE": "1"}, timeout=300)
    report = json.loads(out.read_text())
    assert report["episodes"] == 4 and report["frames"] == 56 and report["frames_match_pyav"]
    assert report["first_obs_is_pad"] == [True, False]
