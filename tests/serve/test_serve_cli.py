"""`vlaforge serve` as a user runs it: a subprocess on an ephemeral port, spoken to by openpi's client."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
import urllib.request

import numpy as np
from openpi_client.websocket_client_policy import WebsocketClientPolicy

from vlaforge.cli import main


def test_serve_command_end_to_end(checkpoint):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "vlaforge",
            "serve",
            "--policy",
            str(checkpoint),
            "--port",
            "0",
            "--api-key",
            "k",
        ],
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        port = None
        for line in proc.stderr:  # wait for the log line naming the bound port
            if match := re.search(r"serving .* on ws://127\.0\.0\.1:(\d+)", line):
                port = int(match.group(1))
                break
        assert port, "the server never said where it listens"
        threading.Thread(target=proc.stderr.read, daemon=True).start()  # keep draining its log
        client = WebsocketClientPolicy("127.0.0.1", port, api_key="k")
        meta = client.get_server_metadata()
        reply = client.infer(
            {
                "observation.images.corner2": np.zeros((32, 32, 3), np.uint8),
                "observation.state": np.zeros(4, np.float32),
                "prompt": "reach the goal",
            }
        )
        assert reply["actions"].shape == tuple(meta["action"]["shape"]) == (8, 4)
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5) as health:
            assert health.status == 200
        client._ws.close()
    finally:
        proc.terminate()
        proc.wait(timeout=20)


def test_serve_command_user_errors(tmp_path, capsys):
    assert main(["serve", "--policy", str(tmp_path / "missing")]) == 2
    assert "is not a checkpoint directory" in capsys.readouterr().err
    assert main(["serve", "--policy", str(tmp_path), "--max-message-bytes", "10"]) == 2
    assert "too small" in capsys.readouterr().err
