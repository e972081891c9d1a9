"""Policy latency per action chunk at batch 1 (`vlaforge bench latency`) for the heads and presets.

Each case runs `vlaforge bench latency --json` in a fresh process (so one case's threads and caches
do not colour the next) and the rows are written to benchmarks/results/policy_latency.json.

    python benchmarks/policy_latency.py [--iters 200] [--threads 1,2]

Targets (issue 3, fp32 on 2 CPU cores): the default preset at p50 <= 10 ms with the regression or
token head, <= 25 ms with 10 flow or 10 DDIM steps.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

CASES = [  # (preset, head or None, int8)
    ("default", "regression", False),
    ("default", "tokens", False),
    ("default", "flow", False),
    ("default", "diffusion", False),
    ("default", "regression", True),
    ("pi0", None, False),
    ("octo-small", None, False),
]


def run_case(preset: str, head: str | None, int8: bool, threads: int, iters: int) -> dict:
    cmd = [sys.executable, "-m", "vlaforge.cli", "bench", "latency", "--preset", preset, "--json"]
    cmd += ["--threads", str(threads), "--iters", str(iters)] + (["--head", head] if head else [])
    cmd += ["--int8"] if int8 else []
    out = subprocess.run(
        cmd, check=True, capture_output=True, text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"}
    )
    return {"threads": threads, **json.loads(out.stdout.strip().splitlines()[-1])}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iters", type=int, default=200)
    parser.add_argument("--threads", default="1,2")
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "policy_latency.json"))
    args = parser.parse_args()
    rows = []
    for threads in (int(t) for t in args.threads.split(",")):
        for preset, head, int8 in CASES:
            row = run_case(preset, head, int8, threads, args.iters)
            rows.append(row)
            print(
                f"{preset:<11} {row['head']:<12} int8={int8!s:<5} threads={threads}  "
                f"p50 {row['p50_ms']:7.2f} ms  p90 {row['p90_ms']:7.2f} ms  {row['gflops']:.3f} GFLOPs",
                flush=True,
            )
    result = {
        "command": "python benchmarks/policy_latency.py " + " ".join(sys.argv[1:]),
        "load_avg_1m": os.getloadavg()[0],
        "rows": rows,
    }
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
