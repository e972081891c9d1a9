"""What the VLM latency benchmarks (`smolvla_latency.py`, `prismatic_latency.py`) share: timing a
call, a batch-1 observation, and the result file with the machine's load and peak memory."""

from __future__ import annotations

import json
import os
import resource
import statistics
import time
from pathlib import Path

import torch

RESULTS = Path(__file__).parent / "results"


def timed_ms(fn, iters: int) -> list[float]:
    """Milliseconds of `iters` calls of `fn` after one warm-up call."""
    fn()
    out = []
    for _ in range(iters):
        t = time.perf_counter()
        fn()
        out.append(1000 * (time.perf_counter() - t))
    return out


def observation(side: int, state_dim: int) -> dict:
    """One random `corner2` frame of side x side px, a random state and an instruction (batch 1)."""
    return {
        "observation.images.corner2": torch.randint(0, 256, (1, 1, side, side, 3), dtype=torch.uint8),
        "observation.state": torch.randn(1, 1, state_dim),
        "task": "reach the goal",
    }


def chunk_figures(chunk_ms: list[float]) -> dict:
    """p50 and p90 of the per-chunk times."""
    return {
        "chunk_p50_ms": round(statistics.median(chunk_ms), 2),
        "chunk_p90_ms": round(statistics.quantiles(chunk_ms, n=10)[8], 2),
    }


def write_result(name: str, rows: list[dict], threads: int, **extra) -> None:
    """Print and write benchmarks/results/NAME.json with this process's peak RSS and the load."""
    result = {
        "rows": rows,
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "torch_threads": threads,
        "load_average": os.getloadavg()[0],
        "cpu_count": os.cpu_count(),
        **extra,
    }
    print(json.dumps(result, indent=2))
    (RESULTS / f"{name}.json").write_text(json.dumps(result, indent=2) + "\n")
