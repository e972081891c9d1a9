"""FAST tokenizer and autoregressive decoding: tokens per chunk, reconstruction error, fit time, latency.

    vlaforge collect metaworld --tasks button-press-topdown,drawer-close,reach --episodes-per-task 10 \\
        --image-size 64 --out /tmp/e_fast/mw3
    python benchmarks/fast_tokenizer.py --data /tmp/e_fast/mw3 [--iters 30] [--threads 1,2]

1. Tokenizer (per scale, and for chunks of 10 = pi0-fast and 50 = pi0): fitted on the training
   split of the episodes exactly as `vlaforge train` does (the policy's q01/q99 normalization),
   measured on the held-out episodes' chunks: FAST tokens per chunk (mean / p50 / max) against the
   H x A tokens of naive per-entry bins, reconstruction error in robot units (Meta-World: one action
   unit = 1 cm of hand motion per step) as mean / max absolute error per entry and the largest hand
   drift over a chunk (|sum over the chunk of the xyz errors|), decode failures, and the fit time.
   The 256-bin tokenizer's error is the row `bins`.
2. Latency per chunk at batch 1 (`vlaforge.deploy.bench.measure_latency`, 1 and 2 threads) of the
   autoregressive presets against one-pass regression and flow at the same trunk size. An untrained
   decoder would run to its maximum length, so each AR policy decodes exactly the number of steps a
   trained one takes on this data: FAST's mean tokens per chunk + EOS, bins H x A (EOS masked off,
   the tokenizer fitted on the data). Weights are untrained; the cost does not depend on them.

Writes benchmarks/results/fast_tokenizer.json.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import time
from pathlib import Path

import numpy as np
import torch

from vlaforge.data.dataset import WindowConfig, WindowDataset, split_episodes
from vlaforge.models.policy import VLAPolicy
from vlaforge.models.presets import get_preset, with_head
from vlaforge.models.tokenizers.bins import BinTokenizer
from vlaforge.models.tokenizers.fast import FastTokenizer
from vlaforge.train.tokenizer_command import normalized_chunks

RESULTS = Path(__file__).resolve().parent / "results" / "fast_tokenizer.json"


def splits(root: Path, cfg, seed: int = 0, val_fraction: float = 0.2) -> tuple[WindowDataset, WindowDataset]:
    """The training and held-out episodes' windows at the policy's chunk (no frames needed)."""
    window = WindowConfig(
        history=cfg.history, chunk=cfg.chunk, cameras=tuple(cfg.cameras), image_size=cfg.image_size
    )
    probe = WindowDataset(root, window)
    train, val = split_episodes(len(probe.episode_metadata), val_fraction, seed)
    return WindowDataset(root, window, episodes=list(train)), WindowDataset(root, window, episodes=list(val))


def robot_errors(policy, normalized: np.ndarray, decoded: torch.Tensor) -> dict:
    """Errors of decoded vs true chunks, both unnormalized with the policy's own statistics."""
    true = policy.action_norm.unnormalize(torch.from_numpy(normalized).float())  # [N, H, A]
    err = (policy.action_norm.unnormalize(decoded.float()) - true).abs()  # [N, H, A]
    drift = (policy.action_norm.unnormalize(decoded.float()) - true)[..., :3].sum(1).norm(dim=-1)  # [N]
    return {"mean_abs_err": round(float(err.mean()), 5), "max_abs_err": round(float(err.max()), 5),
            "mean_abs_err_per_dim": [round(float(v), 5) for v in err.mean((0, 1))],
            "max_chunk_xyz_drift": round(float(drift.max()), 5)}  # fmt: skip


def tokenizer_rows(root: Path, scales: list[float], chunks: list[int]) -> list[dict]:
    rows = []
    for horizon in chunks:
        cfg = dataclasses.replace(
            get_preset("pi0-fast"), chunk=horizon, execute_steps=min(5, horizon), image_size=64
        )
        train, val = splits(root, cfg)
        policy = VLAPolicy(cfg, stats=[train.stats])
        fit_chunks, test_chunks = normalized_chunks(policy, [train]), normalized_chunks(policy, [val])
        n = horizon * cfg.action_dim
        bins = BinTokenizer(horizon, cfg.action_dim)
        decoded = bins.decode(bins.encode(torch.from_numpy(test_chunks)))
        rows.append({"tokenizer": "bins", "chunk": horizon, "tokens_mean": n, "tokens_max": n, "naive_tokens": n,
                     "decode_failures": decoded.failures, **robot_errors(policy, test_chunks, decoded.actions)})  # fmt: skip
        for scale in scales if horizon == chunks[0] else [10.0]:
            start = time.perf_counter()
            tok = FastTokenizer.fit(fit_chunks, scale=scale, vocab_size=1024)
            fit_s = time.perf_counter() - start
            ids = tok.encode(torch.from_numpy(test_chunks))
            lengths = np.array([len(s) for s in ids])
            decoded = tok.decode(ids)
            rows.append({"tokenizer": "fast", "chunk": horizon, "scale": scale, "vocab": tok.vocab_size,
                         "tokens_mean": round(float(lengths.mean()), 2), "tokens_p50": float(np.median(lengths)),
                         "tokens_max": int(lengths.max()), "naive_tokens": n,
                         "compression": round(n / float(lengths.mean()), 2), "decode_failures": decoded.failures,
                         "fit_s": round(fit_s, 3), "fit_chunks": len(fit_chunks), "test_chunks": len(test_chunks),
                         **robot_errors(policy, test_chunks, decoded.actions)})  # fmt: skip
            print(json.dumps(rows[-1]))
    return rows


def latency_cases(root: Path) -> list[tuple[str, VLAPolicy]]:
    cases = []
    for preset, kind in [("pi0-fast", None), ("openvla", None), ("oft", None), ("pi0", None),
                         ("default", "ar-fast"), ("default", "ar-bins"), ("default", "regression"),
                         ("default", "flow")]:  # fmt: skip
        cfg = get_preset(preset) if kind is None else with_head(get_preset(preset), kind)
        torch.manual_seed(0)
        train, _ = splits(root, cfg)
        policy = VLAPolicy(cfg, stats=[train.stats]).eval()
        head = policy.head
        if cfg.head.kind in ("ar-fast", "ar-bins"):
            steps = cfg.chunk * cfg.action_dim
            if cfg.head.kind == "ar-fast":
                chunks = normalized_chunks(policy, [train])
                policy.set_action_tokenizer(FastTokenizer.fit(chunks, scale=cfg.head.fast_scale))
                lengths = [len(s) for s in policy.head.tokenizer.encode(torch.from_numpy(chunks))]
                steps = math.ceil(float(np.mean(lengths))) + 1  # the tokens and EOS
            head.max_tokens = steps
            with torch.no_grad():
                head.out.bias[head.eos] = -1e9  # decode exactly `steps` tokens
        cases.append((f"{preset}" + (f" --head {kind}" if kind else ""), policy))
    return cases


def main() -> None:
    from vlaforge.deploy.bench import measure_latency

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True, type=Path)
    parser.add_argument("--scales", default="2,5,10,20,50")
    parser.add_argument("--chunks", default="10,50")
    parser.add_argument("--iters", type=int, default=30)
    parser.add_argument("--threads", default="1,2")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    rows = tokenizer_rows(
        args.data, [float(s) for s in args.scales.split(",")], [int(c) for c in args.chunks.split(",")]
    )
    latency = []
    for name, policy in latency_cases(args.data):
        for threads in [int(t) for t in args.threads.split(",")]:
            r = measure_latency(policy, iters=args.iters, warmup=3, threads=threads, flops=False)
            row = {"policy": name, "head": policy.config.head.kind, "chunk": policy.config.chunk,
                   "decode_steps": getattr(policy.head, "max_tokens", None), "threads": threads,
                   "p50_ms": r["p50_ms"], "p90_ms": r["p90_ms"], "cpu_p50_ms": r["cpu_p50_ms"],
                   "params_M": round(policy.num_parameters()["trainable"] / 1e6, 2)}  # fmt: skip
            latency.append(row)
            print(json.dumps(row))
    result = {"data": str(args.data), "tokenizer": rows, "latency": latency,
              "machine": "2 shared CPU cores, no GPU", "torch": torch.__version__}  # fmt: skip
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
