"""`vlaforge collect metaworld` (`run(CollectConfig)`): a real tiny collection read back, resume after
kill -9, input errors."""

import dataclasses
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from vlaforge.data.collect import SIDECAR, CollectConfig, episode_seed, run
from vlaforge.data.lerobot_v3 import LeRobotV3Dataset
from vlaforge.envs.tasks import TASK_DESCRIPTIONS
from vlaforge.errors import VlaforgeError
from vlaforge.keys import ACTION, ENV_STATE, REWARD, STATE, SUCCESS

CAM = "observation.images.corner2"


def tiny_config(out, **kw) -> CollectConfig:
    base = dict(tasks="reach,handle-press-v3", episodes_per_task=2, image_size=32, workers=0, progress=False)
    return CollectConfig(out=str(out), **{**base, **kw})


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    out = tmp_path_factory.mktemp("collect") / "tiny"
    assert run(tiny_config(out)) == 0
    return out


def test_tiny_collection_reads_back(tiny, capsys):
    ds = LeRobotV3Dataset(tiny)
    assert ds.num_episodes == 4 and ds.fps == 80
    assert ds.camera_keys == [CAM]
    assert ds.features[CAM]["shape"] == [32, 32, 3]
    for key, dim in ((STATE, 4), (ENV_STATE, 39), (ACTION, 4), (REWARD, 1), (SUCCESS, 1)):
        assert ds.features[key]["shape"] == [dim]
    assert ds.tasks == [TASK_DESCRIPTIONS["reach-v3"], TASK_DESCRIPTIONS["handle-press-v3"]]
    tasks = [ep["metaworld_task"] for ep in ds.episodes]
    assert tasks == ["reach-v3", "reach-v3", "handle-press-v3", "handle-press-v3"]
    for ep in ds.episodes:
        assert ep["seed"] == episode_seed(0, ep["metaworld_task"], ep["attempt"])
        assert ep["length"] == ep["success_step"] + 1 + 10  # a short tail after the first success
    success = ds.column(SUCCESS).reshape(-1)
    for ep in ds.episodes:
        assert success[ep["dataset_from_index"] + ep["success_step"]]
    frames = ds.episode_frames(0, CAM)
    assert frames.shape == (ds.episodes[0]["length"], 32, 32, 3) and frames.dtype == np.uint8


def test_sidecar_records_seeds_and_success_rates(tiny):
    side = json.loads((tiny / SIDECAR).read_text())
    assert side["complete"] is True
    assert set(side["expert_success_rate"]) == {"reach-v3", "handle-press-v3"}
    ds = LeRobotV3Dataset(tiny)
    seeds = {t: [ep["seed"] for ep in ds.episodes if ep["metaworld_task"] == t] for t in side["tasks"]}
    assert seeds == {t: s["seeds"] for t, s in side["tasks"].items()}


def test_recorded_frames_match_a_fresh_rollout(tiny):
    """The dataset holds exactly what the env + expert produce for the recorded seed."""
    from vlaforge.envs.rollout import AttemptSpec, run_attempt

    ds = LeRobotV3Dataset(tiny)
    ep = ds.episodes[2]
    rollout = run_attempt(AttemptSpec(ep["metaworld_task"], ep["seed"], image_size=32))
    rows = slice(ep["dataset_from_index"], ep["dataset_to_index"])
    for key in (STATE, ENV_STATE, ACTION):
        np.testing.assert_array_equal(ds.column(key)[rows], rollout.frames[key])


def test_sidecar_names_the_simulator_control_mode_and_camera_roles(tiny):
    side = json.loads((tiny / SIDECAR).read_text())
    assert side["simulator"] == "metaworld" and side["camera_roles"] == {"corner2": "primary"}
    assert "gripper" in side["control_mode"]


def test_finished_dataset_is_refused_without_overwrite(tiny):
    before = sorted(p.name for p in tiny.rglob("*"))
    with pytest.raises(VlaforgeError, match="already holds a finished dataset") as err:
        run(tiny_config(tiny))
    assert "--overwrite" in str(err.value) and "\n" not in str(err.value)
    assert sorted(p.name for p in tiny.rglob("*")) == before


def test_other_options_do_not_resume(tmp_path, capsys):
    out = tmp_path / "d"
    out.mkdir()
    (out / "meta").mkdir()
    config = {
        "tasks": ["reach-v3"],
        "episodes_per_task": 1,
        "cameras": ["corner2"],
        "image_size": 64,
        "seed": 0,
    }
    (out / SIDECAR).write_text(json.dumps({"complete": False, "config": config}))
    with pytest.raises(VlaforgeError, match="other options"):
        run(tiny_config(out, tasks="reach", episodes_per_task=1))


def test_overwrite_replaces_a_dataset(tmp_path):
    cfg = tiny_config(tmp_path / "d", tasks="reach", episodes_per_task=1, image_size=16)
    assert run(cfg) == 0
    assert run(dataclasses.replace(cfg, seed=3, overwrite=True)) == 0
    out = tmp_path / "d"
    ds = LeRobotV3Dataset(out)
    assert ds.num_episodes == 1 and ds.episodes[0]["seed"] == episode_seed(3, "reach-v3", 0)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"tasks": "reech"}, "did you mean 'reach-v3'"),
        ({"image_size": 15}, "--image-size must be"),
        ({"image_size": 2000}, "--image-size must be between 16 and 1024"),
        ({"cameras": "corner-2"}, "did you mean 'corner2'"),
        ({"episodes_per_task": 0}, "--episodes-per-task must be"),
        ({"simulator": "metaworl"}, "did you mean 'metaworld'"),
    ],
)
def test_bad_input_is_one_line_and_writes_nothing(tmp_path, change, message):
    out = tmp_path / "never"
    with pytest.raises(VlaforgeError, match=message) as err:
        run(tiny_config(out, **change))
    assert "\n" not in str(err.value)
    assert not out.exists()


def test_foreign_directory_is_never_touched(tmp_path):
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep me")
    with pytest.raises(VlaforgeError, match="already exists"):
        run(tiny_config(foreign, tasks="reach"))
    with pytest.raises(VlaforgeError, match="does not look like a dataset"):
        run(tiny_config(foreign, tasks="reach", overwrite=True))
    assert (foreign / "notes.txt").read_text() == "keep me"


def _children(pid: int) -> list[int]:
    """Child process ids of `pid` (Linux /proc)."""
    kids = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            kids.append(int(stat.parent.name))
    return kids


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def _committed(out: Path) -> list[Path]:
    return sorted((out / ".staging").glob("episode-*.json")) if (out / ".staging").is_dir() else []


def test_resume_after_kill(tmp_path):
    """kill -9 after the first commit, rerun: complete, earlier episodes untouched, no orphan workers.

    The rerun uses another worker count (in-process): workers never change the dataset.
    """
    out = tmp_path / "d"
    cfg = tiny_config(out, tasks="reach,handle-press")
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    code = (
        "import sys; from vlaforge.data.collect import CollectConfig, run; "
        f"sys.exit(run(CollectConfig(tasks={cfg.tasks!r}, out={cfg.out!r}, episodes_per_task=2, "
        "image_size=32, workers=1, progress=False)))"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", code],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 120
        while not _committed(out) and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)
        assert _committed(out), (
            proc.stderr.read().decode() if proc.poll() is not None else "no commit in time"
        )
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait()
    assert not (out / "meta/info.json").exists(), "the run finished before the kill"
    first_video = out / "videos" / CAM / "chunk-000" / "file-000.mp4"
    video_bytes = first_video.read_bytes()
    done_before = len(_committed(out))
    assert run(cfg) == 0
    ds = LeRobotV3Dataset(out)
    assert ds.num_episodes == 4 and done_before < 4
    assert [ep["attempt"] for ep in ds.episodes] == [0, 1, 0, 1]
    assert [ep["seed"] for ep in ds.episodes] == [
        episode_seed(0, t, a) for t in ("reach-v3", "handle-press-v3") for a in (0, 1)
    ]
    assert first_video.read_bytes() == video_bytes
    assert json.loads((out / SIDECAR).read_text())["complete"] is True


def test_failed_attempts_are_skipped_and_the_cap_is_reported(tmp_path, capsys):
    """A 45-step limit makes some reach attempts fail: they are skipped in order, then the cap stops."""
    from vlaforge.data.collect import collect
    from vlaforge.envs.metaworld import MetaWorldEnv, expert_action
    from vlaforge.envs.rollout import probe_attempt

    cfg = tiny_config(tmp_path / "d", tasks="reach-v3", episodes_per_task=3, image_size=16, max_steps=45,
                      max_attempts=2)  # fmt: skip
    env = MetaWorldEnv("reach-v3", image_size=16, max_steps=45)
    seeds = [episode_seed(0, "reach-v3", a) for a in range(6)]
    outcomes = [probe_attempt(env, expert_action, seed, 45)[0] is not None for seed in seeds]
    env.close()
    assert not all(outcomes), "pick a tighter step limit: every attempt succeeds"
    summary = collect(cfg)
    kept = [a for a, ok in enumerate(outcomes) if ok][:3]
    ds = LeRobotV3Dataset(tmp_path / "d")
    assert [ep["attempt"] for ep in ds.episodes] == kept
    stats = summary.per_task["reach-v3"]
    assert stats["attempts"] == (kept[-1] + 1 if len(kept) == 3 else 6)
    assert stats["success_rate"] == round(len(kept) / stats["attempts"], 4)
    if len(kept) < 3:
        assert "only" in capsys.readouterr().err
