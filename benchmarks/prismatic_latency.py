"""CPU latency and peak memory of the `openvla-prismatic-tiny` policy (OpenVLA's architecture, tiny).

    PYTHONPATH=src python benchmarks/prismatic_latency.py [--iters 20] [--threads 1]

Measures at batch 1 with one 64 px camera (resized to the towers' 32 px), in one process:
- `sample_actions` per chunk (prefix embeddings + the LM's prefill + greedy decoding of
  chunk x action_dim = 4 x 4 = 16 action tokens with the LM's KV cache), p50/p90 ms;
- the prefix alone (SigLIP + DINOv2 + projector + prompt embeddings) and one cached decode step, p50 ms;
- the process's peak resident memory (ru_maxrss) after the runs.
The full-size `openvla-prismatic` (7.5 B parameters, ~30 GB in float32) is not timed here.
Published beside it (not measured here): OpenVLA ~6 Hz on an RTX 4090 (users measure 4.4 Hz;
REFERENCE.md). Writes benchmarks/results/prismatic_latency.json.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from vlaforge.models.policy import VLAPolicy
from vlaforge.models.presets import get_preset
from vlm_timing import chunk_figures, observation, timed_ms, write_result


def measure(name: str, iters: int) -> dict:
    cfg = get_preset(name)
    torch.manual_seed(0)
    policy = VLAPolicy(cfg).eval()
    obs = observation(cfg.image_size, cfg.state_dim)
    head = policy.head
    with torch.inference_mode():
        out = policy.encode(obs)
        prefix, real = head._prefix(out)
        token = torch.zeros(1, dtype=torch.long)

        def one_step() -> None:
            _, cache = head.prefill(prefix, real)  # a fresh cache each time (the step itself is timed below)
            t = time.perf_counter()
            head.extend(token, 1, cache, real)
            steps.append(1000 * (time.perf_counter() - t))

        steps: list[float] = []
        chunk = timed_ms(lambda: policy.sample_actions(obs), iters)
        encode = timed_ms(lambda: policy.encode(obs), iters)
        prefill = timed_ms(lambda: head.prefill(prefix, real), iters)
        for _ in range(iters):
            one_step()
    return {
        "preset": name,
        "params_total": sum(p.numel() for p in policy.parameters()),
        "prefix_tokens": int(prefix.shape[1]),
        "chunk": cfg.chunk,
        "action_tokens_per_chunk": cfg.chunk * cfg.action_dim,
        **chunk_figures(chunk),
        "chunks_per_s": round(1000 / statistics.median(chunk), 1),
        "prefix_embed_p50_ms": round(statistics.median(encode), 2),
        "lm_prefill_p50_ms": round(statistics.median(prefill), 2),
        "decode_step_p50_ms": round(statistics.median(steps), 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--iters", type=int, default=20)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    rows = [measure("openvla-prismatic-tiny", args.iters)]
    published = "OpenVLA (7B) ~6 Hz on an RTX 4090 (users measure 4.4 Hz), one 7-d action per call"
    write_result("prismatic_latency", rows, args.threads, published=published)


if __name__ == "__main__":
    main()
