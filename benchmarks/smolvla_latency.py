"""CPU latency and peak memory of the `smolvla-tiny` policy (and optionally full-size `smolvla`).

    PYTHONPATH=src python benchmarks/smolvla_latency.py [--iters 20] [--full]

Measures, at batch 1 with one 64 px camera, side by side in one process:
- `sample_actions` per chunk (prefix once + 10 Euler steps of the expert), p50/p90 ms;
- the prefix alone (vision tower + connector + kept text layers) and one expert step, p50 ms;
- the process's peak resident memory (ru_maxrss) after the runs.
`--full` also times the full-size `smolvla` architecture at random initialisation (450 M parameters,
no weights needed; ~2 GB of memory) at its 512 px input. Writes benchmarks/results/smolvla_latency.json.
Published beside it (not measured here): pi0 ~73-86 ms per 50-action chunk on an RTX 4090;
SmolVLA's expert ~1 s per chunk on a laptop CPU (REFERENCE.md).
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics

import torch

from vlaforge.models.policy import VLAPolicy
from vlaforge.models.presets import get_preset
from vlm_timing import chunk_figures, observation, timed_ms, write_result


def measure(name: str, iters: int) -> dict:
    cfg = get_preset(name)
    if cfg.backbone.id:  # no weights needed to time the architecture
        cfg = dataclasses.replace(cfg, backbone=dataclasses.replace(cfg.backbone, id=""))
    torch.manual_seed(0)
    policy = VLAPolicy(cfg).eval()
    obs = observation(cfg.backbone.vision_image_size, cfg.state_dim)
    with torch.inference_mode():
        out = policy.encode(obs)
        ctx = policy.head.context(out, 1)
        x, t = torch.randn(1, cfg.chunk, cfg.action_dim), torch.ones(1)
        chunk = timed_ms(lambda: policy.sample_actions(obs), iters)
        prefix = timed_ms(lambda: policy.encode(obs), iters)
        step = timed_ms(lambda: policy.head.velocity(x, t, ctx), iters)
    return {
        "preset": name,
        "params_total": sum(p.numel() for p in policy.parameters()),
        "prefix_tokens": int(out.tokens.shape[1]),
        "chunk": cfg.chunk,
        "flow_steps": cfg.head.flow_steps,
        **chunk_figures(chunk),
        "prefix_p50_ms": round(statistics.median(prefix), 2),
        "expert_step_p50_ms": round(statistics.median(step), 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--iters", type=int, default=20)
    parser.add_argument("--full", action="store_true")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    rows = [measure("smolvla-tiny", args.iters)]
    if args.full:
        rows.append(measure("smolvla", max(3, args.iters // 5)))
    write_result("smolvla_latency", rows, args.threads)


if __name__ == "__main__":
    main()
