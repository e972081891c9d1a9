"""`vlaforge serve` as a user runs it: a subprocess on an ephemeral port, spoken to by openpi's client."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
import urllib.request

import numpy as np
import pytest
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


@pytest.mark.parametrize(
    "args, message",
    [
        (["--port", "99999"], "port 99999 is not in 0..65535"),
        (["--port", "-1"], "port -1"),
        (["--set", "server.max_frame_scale=0.5"], "max_frame_scale 0.5 must be >= 1"),
        (["--set", "server.decode_timeout_s=0"], "decode_timeout_s 0"),
        (["--set", "server.open_timeout_s=-1"], "open_timeout_s"),
    ],
)
def test_bad_server_settings_fail_before_loading(checkpoint, capsys, args, message):
    """Checked when the config is built: one line, exit 2, no policy loaded (the runtime's warm-up
    would log; nothing is printed but the error)."""
    assert main(["serve", "--policy", str(checkpoint), *args]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1 and "Traceback" not in err


def test_bad_safety_files_are_one_line(checkpoint, tmp_path, capsys):
    cases = {
        "missing.json": "no such file",
        "garbage.json": "not a JSON file",
        "list.json": "expected a JSON object",
        "typo.json": "unknown key safety.max_stepp",
        "inconsistent.json": "initial_position needs 3 values",
    }
    (tmp_path / "garbage.json").write_text("{nope")
    (tmp_path / "list.json").write_text("[1, 2]")
    (tmp_path / "typo.json").write_text('{"max_stepp": 0.01}')
    (tmp_path / "inconsistent.json").write_text('{"initial_position": [0.1]}')
    for name, message in cases.items():
        assert main(["serve", "--policy", str(checkpoint), "--safety", str(tmp_path / name)]) == 2
        err = capsys.readouterr().err
        assert message in err and err.count("\n") == 1, err
