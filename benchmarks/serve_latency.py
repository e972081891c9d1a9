"""Policy-server round trip on loopback: p50/p99 latency for 1 and 8 concurrent openpi clients.

`vlaforge serve` runs in its own process on 127.0.0.1 (ephemeral port, `--threads` torch threads)
and serves a preset's policy (random init, saved to a temporary checkpoint; latency does not depend
on the weights) or `--policy CKPT`, fp32 and `--int8`. Each client is openpi's
own `WebsocketClientPolicy` sending one camera frame + state + prompt per request, as a robot would;
the round trip is timed on the client. Every run is bounded by `--requests` per client and
`--seconds` of wall time, whichever comes first. Concurrent requests are batched by the server
(`server_timing.batch_size`), so 8 clients cost less than 8x one.

    python benchmarks/serve_latency.py --preset default --clients 1,8
    python benchmarks/serve_latency.py --clients 1 --variants fp32 --seconds 4 --hostile   # quick

`--hostile` repeats each run with one more connection sending issue 17's hostile frames back to back
(a 16 MiB frame of 16 M empty msgpack maps, and a 2200x2200 image): the valid clients' p50 with and
without it, and how many hostile frames the server refused meanwhile.
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

import struct  # noqa: E402

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


def hostile_frames(meta: dict) -> list[bytes]:
    """Issue 17's frames: 16 M empty maps in one 16 MiB array, and an oversized image request."""
    from openpi_client import msgpack_numpy

    n = 16 * 1024 * 1024 - 5  # the whole frame fits the default --max-message-bytes (16 MiB)
    bomb = b"\xdd" + struct.pack(">I", n) + b"\x80" * n
    cam = next(k for k in meta["observation"] if k.startswith("observation.images."))
    big = {cam: np.zeros((2200, 2200, 3), np.uint8), "prompt": "reach the goal"}
    if "observation.state" in meta["observation"]:
        big["observation.state"] = np.zeros(meta["observation"]["observation.state"]["shape"], np.float32)
    return [bomb, msgpack_numpy.packb(big)]


def attack(port: int, seconds: float) -> None:
    """The hostile client (its own process, as another machine would be): sends `hostile_frames`
    back to back for `seconds`, then prints {"sent": n, "refused": k} as JSON."""
    from openpi_client import msgpack_numpy
    from websockets.sync.client import connect

    sent = refused = 0
    with connect(f"ws://127.0.0.1:{port}", max_size=None) as ws:
        frames = hostile_frames(msgpack_numpy.unpackb(ws.recv()))
        deadline = time.perf_counter() + seconds
        while time.perf_counter() < deadline:
            for frame in frames:
                ws.send(frame)
                reply = ws.recv(timeout=120)
                sent, refused = (
                    sent + 1,
                    refused + (isinstance(reply, str) and reply.startswith("bad request")),
                )
    print(json.dumps({"sent": sent, "refused": refused}), flush=True)


def run_clients(port: int, meta: dict, n: int, args, hostile: bool = False) -> dict:
    samples: list[tuple[float, float, int]] = []
    deadline = time.perf_counter() + args.seconds
    threads = [
        threading.Thread(target=client_loop, args=(port, meta, args, deadline, samples, i)) for i in range(n)
    ]
    attacker = None
    if hostile:
        cmd = [sys.executable, __file__, "--attack", str(port), "--seconds", str(args.seconds + 1)]
        attacker = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
        time.sleep(2.0)  # the attack is under way before the valid clients start
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - start
    counts = {"sent": 0, "refused": 0}
    if attacker is not None:
        out, _ = attacker.communicate(timeout=180)
        counts = json.loads(out.strip().splitlines()[-1])
    rtt = np.array([s[0] for s in samples])
    return {
        "clients": n,
        "hostile_client": attacker is not None,
        "hostile_frames_sent": counts["sent"],
        "hostile_frames_refused": counts["refused"],
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
    parser.add_argument("--hostile", action="store_true", help="also run each with a hostile client")
    parser.add_argument("--out", default=str(RESULTS), help="JSON output path")
    parser.add_argument("--attack", type=int, default=None, help=argparse.SUPPRESS)  # the hostile process
    args = parser.parse_args()
    if args.attack is not None:
        return attack(args.attack, args.seconds)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        path = checkpoint(args, tmp)
        for variant in args.variants.split(","):
            with serve(path, variant == "int8", args.threads) as (port, meta):
                attacks = [False, True] if args.hostile else [False]
                for n, hostile in ((int(c), a) for c in args.clients.split(",") for a in attacks):
                    row = {"variant": variant, **run_clients(port, meta, n, args, hostile)}
                    rows.append(row)
                    tag = f" + hostile ({row['hostile_frames_refused']}/{row['hostile_frames_sent']} refused)"
                    print(
                        f"{variant:>5} {n:2d} clients{tag if hostile else ''}: p50 {row['p50_ms']:7.2f} ms  p99 {row['p99_ms']:7.2f} ms  "
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
