"""`vlaforge train` faults (issue 17 section 4): each is one line on stderr and exit 2, nothing written,
and a checkpoint save that fails on a read-only or full disk leaves the previous checkpoint intact."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from test_train_cli import train_args

from vlaforge.cli import main
from vlaforge.errors import VlaforgeError
from vlaforge.models.policy import VLAPolicy
from vlaforge.train.config import FINETUNE_TRAIN, AugmentConfig, TrainConfig, validate


def one_line_error(capsys) -> str:
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("vlaforge: error: "), err
    return err


@pytest.mark.parametrize(
    ("extra_args", "message"),
    [
        (["--lr", "-1"], "train.lr must be a finite number > 0, got -1.0"),
        (["--steps", "0"], "train.steps must be an integer >= 1, got 0"),
        (["--steps", "-5"], "train.steps must be an integer >= 1, got -5"),
        (["--batch-size", "0"], "train.batch_size must be an integer >= 1, got 0"),
        (["--set", "train.ema_decay=1.5"], "train.ema_decay must be a finite number in [0, 1), got 1.5"),
        (["--set", "train.lr=nan"], "train.lr: expected a number, got 'nan'"),
        (["--set", "train.keep_last=0"], "train.keep_last must be an integer >= 1, got 0"),
    ],
)
def test_impossible_train_values_are_refused_before_any_data(tmp_path, capsys, extra_args, message):
    out = tmp_path / "run"
    # the dataset does not even exist: the config is checked first
    assert main(train_args(tmp_path / "nowhere", out) + extra_args) == 2
    assert message in one_line_error(capsys)
    assert not out.exists()


def test_validate_is_the_one_place():
    assert validate(TrainConfig()) == TrainConfig() and validate(FINETUNE_TRAIN) == FINETUNE_TRAIN
    for change in ({"betas": (0.9, 1.0)}, {"warmup_steps": -1}, {"val_fraction": 1.0}, {"max_minutes": -1.0},
                   {"augment": AugmentConfig(shift=-1)}, {"augment": AugmentConfig(brightness=2.0)}):  # fmt: skip
        with pytest.raises(VlaforgeError, match="^train[.]"):
            validate(dataclasses.replace(TrainConfig(), **change))


def test_steps_0_does_not_claim_a_checkpoint(pretrain_data, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(train_args(pretrain_data, out, steps=0)) == 2
    err = one_line_error(capsys)
    assert "done:" not in err and not out.exists()


def test_out_that_is_a_file_is_a_one_line_error(pretrain_data, tmp_path, capsys):
    (tmp_path / "file").write_text("x")
    assert main(train_args(pretrain_data, tmp_path / "file")) == 2
    assert "--out " + str(tmp_path / "file") + ": is a file, not a directory" in one_line_error(capsys)
    assert main(train_args(pretrain_data, "/proc/vlaforge-run")) == 2
    assert "--out /proc/vlaforge-run: cannot write there" in one_line_error(capsys)


def test_data_that_is_a_file_says_so(tmp_path, capsys):
    (tmp_path / "file").write_text("x")
    assert main(train_args(tmp_path / "file", tmp_path / "run")) == 2
    assert "is a file, not a dataset directory" in one_line_error(capsys)


def test_a_dataset_with_a_wrong_fps_does_not_train(pretrain_data, tmp_path, capsys):
    data = tmp_path / "data"
    shutil.copytree(pretrain_data, data, ignore=shutil.ignore_patterns(".vlaforge_cache"))
    info = json.loads((data / "meta" / "info.json").read_text())
    info["fps"] = 0
    (data / "meta" / "info.json").write_text(json.dumps(info))
    assert main(train_args(data, tmp_path / "run")) == 2
    assert "fps must be a positive integer, got 0" in one_line_error(capsys)
    info["fps"] = 5
    info["features"]["observation.images.corner2"]["info"]["video.fps"] = 5
    (data / "meta" / "info.json").write_text(json.dumps(info))
    assert main(train_args(data, tmp_path / "run")) == 2
    assert "runs at 10 fps but the dataset says fps 5" in one_line_error(capsys)
    assert not (tmp_path / "run" / "checkpoints").exists()


# ----------------------------------------------------------------- checkpoint save on a bad disk
FSIZE_RUNNER = textwrap.dedent(
    """
    import resource, signal, sys
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # writes past the limit fail with EFBIG instead
    resource.setrlimit(resource.RLIMIT_FSIZE, (int(sys.argv[1]), resource.RLIM_INFINITY))
    from vlaforge.cli import main
    sys.exit(main(sys.argv[2:]))
    """
)


@pytest.fixture
def trained_run(pretrain_data, tmp_path):
    """A run with one checkpoint (step 2) and a fingerprint of its files."""
    out = tmp_path / "run"
    assert main(train_args(pretrain_data, out, steps=2)) == 0
    ckpts = out / "checkpoints"
    return out, {p.relative_to(ckpts): p.read_bytes() for p in ckpts.rglob("*") if p.is_file()}


def resume(out: Path, prefix: list[str], fsize: int | None = None) -> subprocess.CompletedProcess:
    argv = ["train", "--resume", str(out), "--steps", "4", "--device", "cpu"]
    cmd = [sys.executable, "-c", FSIZE_RUNNER, str(fsize), *argv] if fsize else [
        sys.executable, "-m", "vlaforge.cli", *argv]  # fmt: skip
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    return subprocess.run(prefix + cmd, capture_output=True, text=True, timeout=600, env=env)


def assert_failed_cleanly(proc: subprocess.CompletedProcess, out: Path, before: dict, reason: str) -> None:
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("vlaforge: error: could not save the checkpoint of step 4"), last
    assert reason in last and "the previous checkpoint" in last and "step-000002 is intact" in last
    ckpts = out / "checkpoints"
    after = {p.relative_to(ckpts): p.read_bytes() for p in ckpts.rglob("*") if p.is_file()}
    assert after == before  # nothing added, nothing half-written, nothing changed
    assert (ckpts / "last").resolve().name == "step-000002"
    VLAPolicy.from_pretrained(ckpts / "last")


def test_a_full_disk_at_save_keeps_the_previous_checkpoint(trained_run):
    out, before = trained_run
    proc = resume(out, [], fsize=64 * 1024)  # the weights (~200 KB) no longer fit
    assert_failed_cleanly(proc, out, before, "File too large")


def _read_only_prefix(path: Path) -> list[str]:
    """chmod for a normal user; root ignores modes, so it gets a read-only bind mount instead."""
    if os.geteuid() != 0:
        path.chmod(0o555)
        return []
    if not shutil.which("unshare"):
        pytest.skip("running as root without unshare: no way to make a directory read-only")
    probe = subprocess.run(["unshare", "-rm", "true"], capture_output=True)
    if probe.returncode != 0:
        pytest.skip("running as root and user namespaces are not available")
    p = str(path)
    return ["unshare", "-rm", "sh", "-c", f'mount --bind "{p}" "{p}" && mount -o remount,bind,ro "{p}" "{p}" && exec "$@"', "sh"]  # fmt: skip


def test_a_read_only_checkpoint_directory_keeps_the_previous_checkpoint(trained_run):
    out, before = trained_run
    ckpts = out / "checkpoints"
    try:
        proc = resume(out, _read_only_prefix(ckpts))
    finally:
        ckpts.chmod(0o755)
    assert_failed_cleanly(proc, out, before, "ermission denied" if os.geteuid() else "Read-only file system")


def test_resume_to_a_step_already_passed_is_refused(trained_run, capsys):
    out, before = trained_run
    spec = (out / "run.json").read_text()
    assert main(["train", "--resume", str(out), "--steps", "1", "--device", "cpu"]) == 2
    assert "the run is already at step 2; --steps 1 would train nothing" in one_line_error(capsys)
    assert (out / "run.json").read_text() == spec  # the schedule is not shortened
