"""Conv stem vs ImageNet EfficientNet-Lite0 (frozen / partly / fully trained) in the default preset.

For each image size and encoder, side by side in one process (rounds interleave the variants so
a change of machine load hits them alike; the median of the rounds is reported):
- latency per chunk: `sample_actions` at batch 1 (one observation window, cached instruction
  embedding), with torch at 1 and at 2 threads: the fastest of `--calls` calls per round (other
  processes only ever add time), the median over rounds; frozen, partly and fully trained
  EfficientNet-Lite0 run the same network at inference, so it is timed once per size (`effnet`);
- training samples/s: forward + backward + AdamW step on random batches (no data loader: the
  encoder's cost alone), at `--train-threads` (default 1: on a shared 2-core machine two threads
  mostly measure contention);
- parameters: trainable / total (the frozen text encoder excluded, as in `vlaforge presets`).

    python benchmarks/vision_encoder.py                  # 96 and 128 px, ~6 min on 2 loaded cores
    python benchmarks/vision_encoder.py --sizes 96 --rounds 2

Writes benchmarks/results/vision_encoder.json. Timings on a shared machine are noisy: compare the
ratios within one run, not across runs.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import torch  # noqa: E402

RESULTS = Path(__file__).parent / "results" / "vision_encoder.json"
VARIANTS = {  # name -> ImageEncoderConfig fields over the default preset's
    "conv-stem": {},
    "effnet-frozen": {"encoder": "efficientnet-lite0", "trainable_blocks": 0},
    "effnet-last3": {"encoder": "efficientnet-lite0", "trainable_blocks": 3},
    "effnet-full": {"encoder": "efficientnet-lite0", "trainable_blocks": -1},
}


def build(variant: str, size: int):
    from vlaforge.models.policy import VLAPolicy
    from vlaforge.models.presets import get_preset

    base = get_preset("default")
    cfg = dataclasses.replace(
        base, image_size=size, image=dataclasses.replace(base.image, **VARIANTS[variant])
    )
    stats = {k: {"mean": [0.0] * 4, "std": [1.0] * 4} for k in ("action", "observation.state")}
    return VLAPolicy(cfg, stats=[stats])


def batch(cfg, b: int, seed: int = 0) -> dict:
    g = torch.Generator().manual_seed(seed)
    t, s = cfg.history, cfg.image_size
    return {
        "observation.images.corner2": torch.randint(0, 256, (b, t, s, s, 3), generator=g, dtype=torch.uint8),
        "observation.state": torch.randn(b, t, 4, generator=g),
        "observation_is_pad": torch.zeros(b, t, dtype=torch.bool),
        "action": torch.rand(b, cfg.chunk, 4, generator=g) * 2 - 1,
        "action_is_pad": torch.zeros(b, cfg.chunk, dtype=torch.bool),
        "task": ["open the drawer"] * b,
    }


@torch.no_grad()
def latency_ms(policy, threads: int, calls: int) -> float:
    torch.set_num_threads(threads)
    policy.eval()
    obs = {k: v for k, v in batch(policy.config, 1).items() if not k.startswith("action")}
    for _ in range(3):
        policy.sample_actions(obs)
    times = []
    for _ in range(calls):
        start = time.perf_counter()
        policy.sample_actions(obs)
        times.append(time.perf_counter() - start)
    return 1000 * min(times)


def train_samples_per_s(policy, b: int, steps: int) -> float:
    policy.train()
    opt = torch.optim.AdamW([p for p in policy.parameters() if p.requires_grad], lr=1e-4)
    data = batch(policy.config, b, seed=1)
    times = []
    for i in range(steps + 1):
        start = time.perf_counter()
        loss, _ = policy.compute_loss(data)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if i:  # the first step warms up
            times.append(time.perf_counter() - start)
    return b / statistics.median(times)


def params(policy) -> dict:
    ps = list(policy.parameters())
    return {"trainable": sum(p.numel() for p in ps if p.requires_grad), "total": sum(p.numel() for p in ps)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="96,128")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--calls", type=int, default=10, help="latency calls per round and thread count")
    parser.add_argument("--steps", type=int, default=2, help="training steps per round (after one warm-up)")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--train-threads", type=int, default=1, help="torch threads while training")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",")]
    load_before = os.getloadavg()
    policies = {(v, s): build(v, s) for s in sizes for v in VARIANTS}
    samples: dict = {key: {"lat1": [], "lat2": [], "train": []} for key in policies}
    for r in range(args.rounds):
        for key, policy in policies.items():
            if key[0] in ("conv-stem", "effnet-frozen"):  # inference is the same for every effnet variant
                samples[key]["lat1"].append(latency_ms(policy, 1, args.calls))
                samples[key]["lat2"].append(latency_ms(policy, 2, args.calls))
            torch.set_num_threads(args.train_threads)
            samples[key]["train"].append(train_samples_per_s(policy, args.batch_size, args.steps))
            print(
                f"round {r + 1}/{args.rounds} {key}: {samples[key]['train'][-1]:.1f} samples/s",
                file=sys.stderr,
            )
    rows = []
    for (variant, size), policy in policies.items():
        got = samples[(variant, size)]
        lat = samples[("conv-stem" if variant == "conv-stem" else "effnet-frozen", size)]
        rows.append({
            "encoder": variant, "image_size": size, "tokens_per_frame": policy.obs_encoder.stem.num_patches,
            "latency_ms_1_thread": round(statistics.median(lat["lat1"]), 2),
            "latency_ms_2_threads": round(statistics.median(lat["lat2"]), 2),
            "train_samples_per_s": round(statistics.median(got["train"]), 1),
            "params": params(policy),
        })  # fmt: skip
    result = {
        "benchmark": "vision_encoder",
        "what": "default preset (4x128 trunk, L1 chunk regression, history 2, chunk 16) with each image encoder",
        "settings": {k: v for k, v in vars(args).items() if k != "out"},
        "machine": {
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "loadavg_1_5_15_before": load_before,
            "loadavg_1_5_15_after": os.getloadavg(),
        },
        "torch": torch.__version__,
        "rows": rows,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    for row in rows:
        print(json.dumps(row))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
