"""Fixtures for the export tests: tiny real checkpoints (regression and token heads; keypoints; FiLM)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "serve"))
from serve_helpers import make_checkpoint  # noqa: E402


@pytest.fixture(scope="session")
def regression_ckpt(tmp_path_factory):
    return make_checkpoint(tmp_path_factory.mktemp("deploy") / "regression", "regression", seed=1)


@pytest.fixture(scope="session")
def tokens_ckpt(tmp_path_factory):
    return make_checkpoint(tmp_path_factory.mktemp("deploy") / "tokens", "tokens", seed=2)


@pytest.fixture(scope="session")
def keypoints_ckpt(tmp_path_factory):
    return make_checkpoint(tmp_path_factory.mktemp("deploy") / "keypoints", "regression", seed=3, keypoints=4)


@pytest.fixture(scope="session")
def film_ckpt(tmp_path_factory):
    return make_checkpoint(tmp_path_factory.mktemp("deploy") / "film", "regression", seed=4, film=True)
