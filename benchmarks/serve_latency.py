"""Policy-server round trip on loopback: p50/p99 latency for 1 and 8 concurrent openpi clients.

`vlaforge serve` runs in its own process on 127.0.0.1 (ephemeral port, `--threads` torch threads)
and serves a preset's policy (random init, saved to a temporary checkpoint; latency does not depend
on the weights) or `--policy CKPT`, fp32 and `--int8`. Each client is openpi's
own `WebsocketClientPolicy` sending one camera frame + state + prompt per request, as a robot would;
the round trip is timed on the client. Every run is bounded by `--requests` per client and
`--seconds` of wall time, whichever comes first. Concurrent requests are batched by the server
(`server_timing.batch_size`), so 8 clients cost less than 8x one.

    python benchmarks/serve_latency.py --preset default --clients 1,8
Writes benchmarks/results/serve_latency.json.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results" / "serve_latency.json"


def checkpoint(args, tmp: str) -> str:
    """`--policy`, or the preset's random-init policy saved to `tmp` (the server loads it like any)."""
    from vlaforge.models.policy import VLAPolicy
    from vlaforge.models.presets import get_preset

    if args.policy:
        return args.policy
    torch.manual_seed(0)
    policy = VLAPolicy(get_preset(args.preset), metadata={"fps": 80, "tasks": ["reach the goal"]})
    return str(policy.save_pretrained(Path(tmp) / args.preset))


@contextlib.contextmanager
def serve(path: str, int8: bool, threads: int):
    """`vlaforge serve` in its own process (as deployed); yields (port, metadata)."""
    from openpi_client.websocket_client_policy import WebsocketClientPolicy

    cmd = [
        sys.executable,
        "-m",
        "vlaforge",
        "serve",
        "--policy",
        path,
        "--port",
        "0",
        "--threads",
        str(threads),
    ]
    cmd += ["--log-level", "WARNING"] + (["--int8"] if int8 else [])
    proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    try:
        port = None
        for line in proc.stderr:
            if match := re.search(r"serving .* on ws://127\.0\.0\.1:(\d+)", line):
                port = int(match.group(1))
                break
        if port is None:
            raise SystemExit("the server did not start")
        threading.Thread(target=proc.stderr.read, daemon=True).start()
        probe = WebsocketClientPolicy("127.0.0.1", port)
        yield port, probe.get_server_metadata()
        probe._ws.close()
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def client_loop(port: int, meta: dict, args, deadline: float, out: list, seed: int) -> None:
    from openpi_client.websocket_client_policy import WebsocketClientPolicy

    client = WebsocketClientPolicy("127.0.0.1", port)
    rng = np.random.default_rng(seed)
    obs = {
        k: (
            rng.integers(0, 256, v["shape"]) if v["dtype"] == "uint8" else rng.standard_normal(v["shape"])
        ).astype(v["dtype"])
        for k, v in meta["observation"].items()
    }
    obs["prompt"] = "reach the goal"
    for _ in range(args.requests):
        if time.perf_counter() > deadline:
            break
        start = time.perf_counter()
        reply = client.infer(obs)
        out.append(
            (
                (time.perf_counter() - start) * 1000,
                reply["server_timing"]["infer_ms"],
                reply["server_timing"]["batch_size"],
            )
        )
    client._ws.close()


def run_clients(port: int, meta: dict, n: int, args) -> dict:
    samples: list[tuple[float, float, int]] = []
    deadline = time.perf_counter() + args.seconds
    threads = [
        threading.Thread(target=client_loop, args=(port, meta, args, deadline, samples, i)) for i in range(n)
    ]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - start
    rtt = np.array([s[0] for s in samples])
    return {
        "clients": n,
        "requests": len(samples),
        "wall_s": wall,
        "requests_per_s": len(samples) / wall,
        "p50_ms": float(np.percentile(rtt, 50)),
        "p99_ms": float(np.percentile(rtt, 99)),
        "mean_infer_ms": float(np.mean([s[1] for s in samples])),
        "mean_batch": float(np.mean([s[2] for s in samples])),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--preset", default="default", help="model preset (random init)")
    parser.add_argument("--policy", default=None, help="a checkpoint instead of the preset")
    parser.add_argument("--clients", default="1,8", help="comma list of concurrent client counts")
    parser.add_argument("--variants", default="fp32,int8", help="fp32 and/or int8")
    parser.add_argument("--requests", type=int, default=100, help="requests per client, at most")
    parser.add_argument("--seconds", type=float, default=8.0, help="wall time per run, at most")
    parser.add_argument("--threads", type=int, default=1, help="torch threads of the server process")
    parser.add_argument("--out", default=str(RESULTS), help="JSON output path")
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        path = checkpoint(args, tmp)
        for variant in args.variants.split(","):
            with serve(path, variant == "int8", args.threads) as (port, meta):
                for n in (int(c) for c in args.clients.split(",")):
                    row = {"variant": variant, **run_clients(port, meta, n, args)}
                    rows.append(row)
                    print(
                        f"{variant:>5} {n:2d} clients: p50 {row['p50_ms']:7.2f} ms  p99 {row['p99_ms']:7.2f} ms  "
                        f"{row['requests_per_s']:6.1f} req/s  (server infer {row['mean_infer_ms']:.1f} ms, "
                        f"mean batch {row['mean_batch']:.1f}, {row['requests']} requests)",
                        flush=True,
                    )
    result = {
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "policy": args.policy or args.preset,
        "torch": torch.__version__,
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "threads": args.threads,
        "transport": "websocket loopback, openpi_client",
        "results": rows,
        "note": "measured on a shared, loaded CPU: figures are noisy",
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
