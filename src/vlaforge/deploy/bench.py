"""Policy latency: per-call p50/p90 of `sample_actions` at batch 1, parameters, GFLOPs per call.

The observation is the serving case: batch 1, one 128 px camera per policy camera (resized by the
policy to its `image_size`), proprio, the policy's full history, and an instruction already in the
text cache (so the frozen text encoder never runs inside the timed calls). One call = one action
chunk (the observation encoded once, then all flow/diffusion steps). GFLOPs are counted by
`torch.utils.flop_counter.FlopCounterMode` over one call (matmuls and convolutions; elementwise
ops are not counted; nor are quantized INT8 linears, so `--int8` reports only the fp32 rest).
`measure_latency` takes any policy-like object with `config` and
`sample_actions`, so a quantized copy (the serve/deploy `--int8` path) can be timed the same way.
"""

from __future__ import annotations

import statistics
import time
from typing import Any

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode

from vlaforge import keys

INSTRUCTION = "pick up the puck and place it at the goal"


def fake_observation(config: Any, camera_size: int = 128, seed: int = 0) -> dict[str, Any]:
    """A batch-1 observation for `config` (a `PolicyConfig`): uint8 frames, proprio, instruction."""
    g = torch.Generator().manual_seed(seed)
    t = config.history
    obs: dict[str, Any] = {
        keys.image_key(cam): torch.randint(
            0, 256, (1, t, camera_size, camera_size, 3), generator=g, dtype=torch.uint8
        )
        for cam in config.cameras
    }
    if config.state_dim > 0:
        obs[keys.STATE] = torch.randn(1, t, config.state_dim, generator=g)
    obs[keys.TASK] = [INSTRUCTION]
    obs[keys.OBS_IS_PAD] = torch.zeros(1, t, dtype=torch.bool)
    return obs


def count_gflops(policy: Any, observation: dict[str, Any]) -> float:
    """GFLOPs of one `sample_actions` call (FlopCounterMode: matmul/conv FLOPs)."""
    counter = FlopCounterMode(display=False)
    with counter:
        policy.sample_actions(observation, generator=torch.Generator().manual_seed(0))
    return counter.get_total_flops() / 1e9


def measure_latency(
    policy: Any,
    *,
    iters: int = 50,
    warmup: int = 5,
    threads: int | None = None,
    camera_size: int = 128,
    flops: bool = True,
) -> dict[str, Any]:
    """Time `policy.sample_actions` on a cached-instruction batch-1 observation; returns a dict:
    p50_ms, p90_ms, mean_ms, min_ms (wall clock), cpu_p50_ms (process CPU time per call, all threads
    summed: a figure that other processes on a busy machine disturb much less), iters, threads,
    gflops (None with flops=False), chunk, ms_per_action (p50 / chunk)."""
    if threads is not None:
        torch.set_num_threads(threads)
    if hasattr(policy, "eval"):
        policy.eval()
    obs = fake_observation(policy.config, camera_size)
    gen = torch.Generator().manual_seed(0)
    with torch.inference_mode():
        for _ in range(max(1, warmup)):  # the first call also fills the instruction cache
            policy.sample_actions(obs, generator=gen)
        times, cpu = [], []
        for _ in range(iters):
            start, start_cpu = time.perf_counter(), time.process_time()
            policy.sample_actions(obs, generator=gen)
            times.append((time.perf_counter() - start) * 1e3)
            cpu.append((time.process_time() - start_cpu) * 1e3)
    gflops = count_gflops(policy, obs) if flops else None
    p50 = statistics.median(times)
    return {
        "p50_ms": round(p50, 3),
        "p90_ms": round(float(np.percentile(times, 90)), 3),
        "mean_ms": round(statistics.fmean(times), 3),
        "min_ms": round(min(times), 3),
        "cpu_p50_ms": round(statistics.median(cpu), 3),
        "iters": iters,
        "threads": torch.get_num_threads(),
        "gflops": None if gflops is None else round(gflops, 4),
        "chunk": policy.config.chunk,
        "ms_per_action": round(p50 / policy.config.chunk, 3),
    }
