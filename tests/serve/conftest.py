"""Fixtures for the server tests: one tiny real checkpoint and one real server per session."""

from __future__ import annotations

import pytest
from serve_helpers import make_checkpoint

from vlaforge.serve.runtime import load_runtime
from vlaforge.serve.server import PolicyServer, ServerConfig


@pytest.fixture(scope="session")
def checkpoint(tmp_path_factory):
    return make_checkpoint(tmp_path_factory.mktemp("serve") / "ckpt")


@pytest.fixture(scope="session")
def runtime(checkpoint):
    return load_runtime(checkpoint, max_batch=8)


@pytest.fixture(scope="session")
def server(runtime):
    """A real websocket server on 127.0.0.1 and an ephemeral port, small size limit, short idle timeout."""
    srv = PolicyServer(runtime, ServerConfig(port=0, max_message_bytes=64 * 1024, idle_timeout_s=30.0))
    srv.start_in_thread()
    yield srv
    srv.stop()
