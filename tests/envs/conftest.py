"""Fixtures for the Meta-World env tests: one small env per module (env creation costs ~0.2 s)."""

import pytest

from vlaforge.envs.metaworld import MetaWorldEnv


@pytest.fixture(scope="module")
def reach_env():
    env = MetaWorldEnv("reach-v3", cameras=("corner2", "topview"), image_size=48)
    yield env
    env.close()
