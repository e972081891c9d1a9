"""Fixtures for the data tests: small real datasets written with our writer, LeRobot's fixture."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from datagen import write_dataset


def _find_fixture() -> Path:
    """The dataset LeRobot wrote: $VLAFORGE_LEROBOT_FIXTURE, else shared/ beside the checkout (as CI
    lays it out), else the developers' /work/shared."""
    if "VLAFORGE_LEROBOT_FIXTURE" in os.environ:
        return Path(os.environ["VLAFORGE_LEROBOT_FIXTURE"])
    repo = Path(__file__).resolve().parents[2]
    candidates = [
        repo.parent / "shared" / "fixtures" / "lerobot-v3.0-tiny",
        Path("/work/shared/fixtures/lerobot-v3.0-tiny"),
    ]
    return next((c for c in candidates if c.is_dir()), candidates[-1])


FIXTURE = _find_fixture()


@pytest.fixture(scope="session")
def small_dataset(tmp_path_factory) -> tuple[Path, list[dict]]:
    root = tmp_path_factory.mktemp("ds") / "small"
    return root, write_dataset(root)


@pytest.fixture
def lerobot_fixture(tmp_path) -> Path:
    """A writable copy of the dataset LeRobot 0.4.4 wrote (AV1 video, 3 episodes, 2 tasks)."""
    if not FIXTURE.is_dir():
        pytest.skip(f"LeRobot fixture not found at {FIXTURE}")
    dst = tmp_path / "fixture"
    shutil.copytree(FIXTURE, dst)
    for path in [dst, *dst.rglob("*")]:
        path.chmod(0o755 if path.is_dir() else 0o644)
    return dst
