"""What the reader refuses or repairs (issue 17 section 4): each case is a real dataset on disk,
written by our writer and then broken the way a hand edit or a buggy converter breaks it."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from vlaforge.data.frame_cache import cache_base, cached_frames
from vlaforge.data.lerobot_v3 import LeRobotV3Dataset
from vlaforge.data.video import read_mp4_ranges
from vlaforge.errors import VlaforgeError

CAM = "observation.images.corner2"
DATA_FILE = "data/chunk-000/file-000.parquet"


@pytest.fixture
def dataset(small_dataset, tmp_path) -> Path:
    """A writable copy of the small dataset (4 episodes, 56 frames, 10 fps, 2 tasks)."""
    root = tmp_path / "copy"
    shutil.copytree(small_dataset[0], root, ignore=shutil.ignore_patterns(".vlaforge_cache"))
    return root


def edit_info(root: Path, **changes) -> None:
    path = root / "meta" / "info.json"
    info = json.loads(path.read_text())
    for key, value in changes.items():
        target = info
        *parents, last = key.split("/")
        for part in parents:
            target = target[part]
        target[last] = value
    path.write_text(json.dumps(info, indent=2))


def edit_column(root: Path, name: str, edit) -> None:
    path = root / DATA_FILE
    table = pq.read_table(path)
    values = table.column(name).to_numpy().copy()
    edit(values)
    table = table.set_column(table.schema.get_field_index(name), name, pa.array(values))
    pq.write_table(table, path)


@pytest.mark.parametrize(
    ("fps", "message"),
    [
        (5, "meta/info.json says fps 5 but its feature 'observation.images.corner2' records video.fps 10"),
        (30, "says fps 30"),
        (0, "fps must be a positive integer, got 0"),
        (-10, "fps must be a positive integer, got -10"),
        ("abc", "fps must be a positive integer, got 'abc'"),
        (True, "fps must be a positive integer, got True"),
        (10.5, "fps must be a positive integer, got 10.5"),
    ],
)
def test_a_wrong_fps_is_refused_when_the_dataset_opens(dataset, fps, message):
    edit_info(dataset, fps=fps)
    with pytest.raises(VlaforgeError, match="corrupt dataset") as err:
        LeRobotV3Dataset(dataset)
    assert message in str(err.value) and "\n" not in str(err.value)


@pytest.mark.parametrize("fps", [5, 20])
def test_a_wrong_fps_everywhere_in_info_json_fails_at_the_frame_cache(dataset, fps):
    """Both `fps` and the feature's `video.fps` edited: the video's own rate (10) gives it away when the
    frame cache is built (formerly: 45-95% black frames, training exit 0); no cache file is left."""
    edit_info(dataset, fps=fps, **{f"features/{CAM}/info/video.fps": fps})
    ds = LeRobotV3Dataset(dataset)
    with pytest.raises(VlaforgeError, match=f"runs at 10 fps but the dataset says fps {fps}"):
        cached_frames(ds, CAM)
    assert not list(cache_base(dataset).rglob("*.npy"))


def test_the_right_fps_caches_every_frame(dataset, small_dataset):
    frames = cached_frames(LeRobotV3Dataset(dataset), CAM)
    expected = np.concatenate([e[CAM] for e in small_dataset[1]])
    assert frames.shape == expected.shape
    assert (frames.reshape(len(frames), -1).max(axis=1) > 0).all()  # no unwritten (black) frame


def test_frames_are_counted_distinct_not_per_write(dataset):
    """A range asking for more frames than the file holds is an error naming the distinct count."""
    video = LeRobotV3Dataset(dataset).video_path(0, CAM)  # episode 0: 12 frames
    assert len(read_mp4_ranges(video, [(0.0, 12)], 10)[0]) == 12
    with pytest.raises(VlaforgeError, match="has 12 distinct frames of the 15 expected"):
        read_mp4_ranges(video, [(0.0, 15)], 10)


def test_a_frame_size_other_than_info_json_is_refused(dataset):
    edit_info(dataset, **{f"features/{CAM}/shape": [16, 16, 3]})
    with pytest.raises(VlaforgeError, match="has 32x32 frames, the dataset says 16x16"):
        cached_frames(LeRobotV3Dataset(dataset), CAM)


def test_a_state_shape_that_disagrees_with_the_data_is_an_error(dataset):
    edit_info(dataset, **{"features/observation.state/shape": [5]})
    with pytest.raises(
        VlaforgeError, match=r"gives 'observation.state' shape \[5\] but the data holds 4 values per frame"
    ):
        LeRobotV3Dataset(dataset)


def test_duplicate_index_values_are_an_error(dataset):
    edit_column(dataset, "index", lambda v: v.__setitem__(3, v[2]))
    with pytest.raises(VlaforgeError, match=r"duplicate `index` values in the data parquet \(1: 2\)"):
        LeRobotV3Dataset(dataset)


def test_an_index_that_is_not_0_to_n_minus_1_is_an_error(dataset):
    edit_column(dataset, "index", lambda v: v.__iadd__(100))
    with pytest.raises(VlaforgeError, match="`index` runs 100..155 over 56 frames, not 0..N-1"):
        LeRobotV3Dataset(dataset)


def test_an_out_of_range_task_index_is_an_error(dataset):
    edit_column(dataset, "task_index", lambda v: v.__setitem__(5, 7))
    with pytest.raises(
        VlaforgeError, match=r"task_index 7 at index 5 \(1 frames\) is out of range: .* 2 tasks"
    ):
        LeRobotV3Dataset(dataset)
    edit_column(dataset, "task_index", lambda v: v.__setitem__(5, -1))
    with pytest.raises(VlaforgeError, match="task_index -1 at index 5"):
        LeRobotV3Dataset(dataset)


def test_episode_rows_that_disagree_with_the_data_are_an_error(dataset):
    edit_column(dataset, "episode_index", lambda v: v.__setitem__(0, 1))
    with pytest.raises(
        VlaforgeError, match="episode 0 claims frames 0..12 .* the data's episode_index disagrees"
    ):
        LeRobotV3Dataset(dataset)


def test_missing_stats_are_recomputed_with_one_warning(dataset, capsys):
    saved = LeRobotV3Dataset(dataset).stats
    (dataset / "meta" / "stats.json").unlink()
    ds = LeRobotV3Dataset(dataset)
    LeRobotV3Dataset(dataset)  # the trainer opens a dataset several times: warned once
    err = capsys.readouterr().err
    assert err.count("meta/stats.json is missing; recomputed from the data") == 1
    assert err.startswith("vlaforge: warning: ")
    assert set(ds.stats) == set(saved)
    for feature, stats in saved.items():
        for key, value in stats.items():
            np.testing.assert_allclose(
                ds.stats[feature][key], value, rtol=1e-6, atol=1e-9, err_msg=f"{feature}/{key}"
            )


def test_a_feature_missing_from_stats_json_is_recomputed(dataset, capsys):
    path = dataset / "meta" / "stats.json"
    stats = json.loads(path.read_text())
    action = stats.pop("action")
    path.write_text(json.dumps(stats))
    ds = LeRobotV3Dataset(dataset)
    assert "meta/stats.json lacks ['action']; recomputed" in capsys.readouterr().err
    np.testing.assert_allclose(ds.stats["action"]["mean"], action["mean"], rtol=1e-6)
    np.testing.assert_allclose(ds.stats["action"]["q99"], action["q99"], rtol=1e-6)


def test_a_file_is_not_a_dataset_directory(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(VlaforgeError, match="is a file, not a dataset directory"):
        LeRobotV3Dataset(tmp_path / "file")
    with pytest.raises(VlaforgeError, match="does not exist"):
        LeRobotV3Dataset(tmp_path / "nowhere")
