"""`vlaforge serve --policy CKPT [--host 127.0.0.1] [--port 8000] [--api-key K]`.

Serves a checkpoint (or an INT8 export from `vlaforge export --int8`; `--int8` quantizes an fp32
checkpoint on load) over websockets with the openpi protocol; see `vlaforge.serve.server`. Try it:

    vlaforge serve --policy RUN/checkpoints/last --port 8000 &
    curl -s localhost:8000/healthz
    python -c "from openpi_client.websocket_client_policy import WebsocketClientPolicy as P; \\
               print(P('127.0.0.1', 8000).get_server_metadata())"
"""

from __future__ import annotations

import argparse
import logging
import os
import sys

from vlaforge.errors import VlaforgeError

HELP = "serve a policy over websockets (openpi protocol)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--policy", required=True, help="checkpoint directory (or an INT8 export directory)")
    parser.add_argument("--host", default="127.0.0.1", help="interface to bind (default: loopback only)")
    parser.add_argument("--port", type=int, default=8000, help="TCP port (0 = pick a free one)")
    parser.add_argument(
        "--api-key",
        default=os.environ.get("VLAFORGE_API_KEY"),
        help="require 'Authorization: Api-Key K' (default: $VLAFORGE_API_KEY, else none)",
    )
    parser.add_argument(
        "--max-message-bytes",
        type=int,
        default=16 * 1024 * 1024,
        help="largest accepted request frame; bigger ones close the connection (1009)",
    )
    parser.add_argument(
        "--idle-timeout",
        type=float,
        default=300.0,
        help="close a connection silent for this many seconds (0 = never)",
    )
    parser.add_argument(
        "--max-batch",
        type=int,
        default=8,
        help="requests from concurrent clients batched into one forward pass, at most",
    )
    parser.add_argument("--int8", action="store_true", help="quantize the linear layers to INT8 on load")
    parser.add_argument(
        "--seed", type=int, default=0, help="sampling seed of the server (diffusion/flow heads)"
    )
    parser.add_argument(
        "--threads", type=int, default=None, help="torch threads for inference (default: torch's)"
    )
    parser.add_argument(
        "--log-level",
        default="INFO",
        type=str.upper,
        choices=["DEBUG", "INFO", "WARNING", "ERROR"],
        help="logging level",
    )


def run(args: argparse.Namespace) -> int:
    from vlaforge.deploy.quantize import load_policy
    from vlaforge.serve.runtime import PolicyRuntime, checkpoint_name
    from vlaforge.serve.server import PolicyServer, ServerConfig

    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    if args.max_message_bytes < 1024:
        raise VlaforgeError(f"--max-message-bytes {args.max_message_bytes} is too small (at least 1024)")
    if args.host not in ("127.0.0.1", "localhost", "::1") and not args.api_key:
        logging.getLogger("vlaforge.serve").warning(
            "binding %s without --api-key: anyone who can reach it may drive the robot", args.host
        )
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    policy = load_policy(args.policy, int8=args.int8)
    runtime = PolicyRuntime(
        policy, name=checkpoint_name(args.policy), max_batch=args.max_batch, seed=args.seed
    )
    config = ServerConfig(
        host=args.host,
        port=args.port,
        api_key=args.api_key or None,
        max_message_bytes=args.max_message_bytes,
        idle_timeout_s=args.idle_timeout or None,
    )
    server = PolicyServer(runtime, config)

    def ready(port: int) -> None:
        url = f"{args.host}:{port}"
        print(
            f"vlaforge: serving {runtime.name} on ws://{url} (health: http://{url}/healthz)",
            file=sys.stderr,
            flush=True,
        )

    try:
        server.serve_forever(on_ready=ready)
    except OSError as err:
        raise VlaforgeError(f"cannot listen on {args.host}:{args.port}: {err.strerror or err}") from err
    finally:
        runtime.close()
    return 0
