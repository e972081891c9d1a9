"""`vlaforge serve`: serve a checkpoint over websockets with the openpi protocol.

    vlaforge serve --policy RUN/checkpoints/last --port 8000 &
    curl -s localhost:8000/healthz
    python -c "from openpi_client.websocket_client_policy import WebsocketClientPolicy as P; \\
               print(P('127.0.0.1', 8000).get_server_metadata())"

The policy may be an INT8 export from `vlaforge export --int8` (or `--int8` quantizes an fp32
checkpoint on load). The network settings are `ServerConfig`'s (`vlaforge.serve.server`), each an
option of its own; see that module for the protocol. They, and the `--safety` file, are checked
before the policy is loaded: `--port 99999` is a one-line error at once.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from vlaforge.config import from_dict, option
from vlaforge.errors import VlaforgeError
from vlaforge.serve.safety import SafetyConfig
from vlaforge.serve.server import ServerConfig

API_KEY_ENV = "VLAFORGE_API_KEY"
LOOPBACK = ("127.0.0.1", "localhost", "::1")


@dataclass(frozen=True)
class ServeCommand:
    """`vlaforge serve`: one policy behind one `PolicyServer`."""

    policy: str = field(metadata=option(metavar="CKPT"))
    """Checkpoint directory (or an INT8 export directory, or a Hub id in the local cache)."""
    server: ServerConfig = field(
        default_factory=ServerConfig, metadata=option(expose=True, flags={"idle_timeout_s": "idle-timeout"})
    )
    """Network settings (`--set server.<field>=...`)."""
    embodiment: str | None = None
    """Mixture policy: the training dataset (embodiment) to serve, by name or index; none: the first.
    Its statistics unnormalize the actions, which come back in its real action width."""
    max_batch: int = 8
    """Requests from concurrent clients batched into one forward pass, at most."""
    int8: bool = False
    """Quantize the linear layers to INT8 on load."""
    seed: int | None = 0
    """Sampling seed of the server (diffusion/flow heads); none: unseeded."""
    threads: int | None = None
    """Torch threads for inference; none: torch's choice."""
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    """Logging level."""
    safety: str | None = field(default=None, metadata=option(metavar="FILE"))
    """A JSON `SafetyConfig` (vlaforge.serve.safety; keys are its fields, absent ones keep their
    defaults): every reply chunk then passes a per-connection safety supervisor, so the limits hold
    even for clients that run none. None: replies are the policy's actions (still never non-finite)."""


def load_safety(path: str | None) -> SafetyConfig | None:
    """The `--safety` file as a `SafetyConfig`, or None; a missing or malformed file is one line."""
    if path is None:
        return None
    file = Path(path)
    if not file.is_file():
        raise VlaforgeError(f"--safety {path}: no such file")
    try:
        data = json.loads(file.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise VlaforgeError(f"--safety {path}: not a JSON file ({err})") from err
    if not isinstance(data, dict):
        raise VlaforgeError(f"--safety {path}: expected a JSON object of SafetyConfig fields")
    return from_dict(SafetyConfig, data, where="safety")


def server_config(cfg: ServeCommand) -> ServerConfig:
    """The server's settings, checked: the API key falls back to $VLAFORGE_API_KEY, an idle timeout
    of 0 means never."""
    net = cfg.server  # its values were checked when it was built (ServerConfig.__post_init__)
    api_key = net.api_key or os.environ.get(API_KEY_ENV) or None
    return dataclasses.replace(net, api_key=api_key, idle_timeout_s=net.idle_timeout_s or None)


def run(cfg: ServeCommand) -> int:
    """Load the policy and serve it until interrupted; returns the exit status."""
    from vlaforge.serve.runtime import load_runtime
    from vlaforge.serve.server import PolicyServer

    logging.basicConfig(level=cfg.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    net = server_config(cfg)
    safety = load_safety(cfg.safety)  # before the (slow) policy load, as the network settings
    if net.host not in LOOPBACK and not net.api_key:
        logging.getLogger("vlaforge.serve").warning(
            "binding %s without --api-key: anyone who can reach it may drive the robot", net.host
        )
    if cfg.threads:
        import torch

        torch.set_num_threads(cfg.threads)
    embodiment = int(cfg.embodiment) if cfg.embodiment and cfg.embodiment.isdigit() else cfg.embodiment
    runtime = load_runtime(
        cfg.policy, int8=cfg.int8, max_batch=cfg.max_batch, seed=cfg.seed, embodiment=embodiment
    )
    server = PolicyServer(runtime, net, safety)

    def ready(port: int) -> None:
        url = f"{net.host}:{port}"
        print(
            f"vlaforge: serving {runtime.name} on ws://{url} (health: http://{url}/healthz)",
            file=sys.stderr,
            flush=True,
        )

    try:
        server.serve_forever(on_ready=ready)
    except OSError as err:
        raise VlaforgeError(f"cannot listen on {net.host}:{net.port}: {err.strerror or err}") from err
    finally:
        runtime.close()
    return 0
