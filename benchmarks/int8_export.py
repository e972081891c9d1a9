"""INT8 and ONNX export: latency speed-up over fp32 torch and action error, per preset (batch 1, CPU).

For each preset (random init unless `--policy CKPT`): the fp32 policy, its dynamic-INT8 copy
(`vlaforge.deploy.quantize`), and for regression/token heads the ONNX graph under onnxruntime
(`vlaforge.deploy.export`). Latency = median (and p90) of `--iters` calls of `sample_actions` on one
observation with a cached instruction embedding; action error = |int8 - fp32| and |onnx - fp32| in
robot units over `--samples` random observations. A random-init policy's outputs have the scale of
its stats, not of a trained policy's: use `--policy` for the figures that matter.

`--policy CKPT --eval-tasks reach-v3,drawer-close-v3` also evaluates fp32 and INT8 success on
Meta-World with the eval runner (same seeds for both).

    python benchmarks/int8_export.py --presets default,oft,openvla --threads 2
Writes benchmarks/results/int8_export.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results" / "int8_export.json"


def _stats(action_dim: int, state_dim: int) -> list[dict]:
    def feature(dim: int) -> dict:
        return {
            "mean": [0.0] * dim,
            "std": [0.5] * dim,
            "min": [-1.0] * dim,
            "max": [1.0] * dim,
            "q01": [-1.0] * dim,
            "q99": [1.0] * dim,
        }

    return [{"action": feature(action_dim), "observation.state": feature(state_dim)}]


def build(preset: str | None, checkpoint: str | None):
    from vlaforge.deploy.quantize import load_policy
    from vlaforge.models.policy import VLAPolicy
    from vlaforge.models.presets import get_preset

    if checkpoint:
        return load_policy(checkpoint)
    torch.manual_seed(0)
    cfg = get_preset(preset)
    return VLAPolicy(
        cfg, stats=_stats(cfg.action_dim, cfg.state_dim), metadata={"tasks": ["reach the goal"]}
    ).eval()


def observation(policy, seed: int) -> dict:
    from vlaforge.deploy.export import example_inputs

    inputs = example_inputs(policy, 1, seed=seed)
    inputs["observation.state"] = (
        torch.rand_like(inputs["observation.state"]) * 2 - 1 if "observation.state" in inputs else None
    )
    inputs = {k: v for k, v in inputs.items() if v is not None}
    inputs["text_embedding"] = policy.task_encoder.text(["reach the goal"])  # [1, E]
    return inputs


def _torch_call(policy, inputs: dict):
    batch = {k: v for k, v in inputs.items() if k != "text_embedding"}
    batch["task"] = ["reach the goal"]
    # the same noise for every variant (diffusion/flow heads), so the error is the quantization's
    return lambda: policy.sample_actions(batch, generator=torch.Generator().manual_seed(0)).numpy()


def timed(calls: dict, iters: int, warmup: int = 3) -> dict[str, dict]:
    """Median / p90 ms per variant, the variants interleaved call by call so that the load of a
    shared machine hits them alike (the ratios are steadier than the absolute times)."""
    for fn in calls.values():
        for _ in range(warmup):
            fn()
    times: dict[str, list[float]] = {name: [] for name in calls}
    for _ in range(iters):
        for name, fn in calls.items():
            start = time.perf_counter()
            fn()
            times[name].append((time.perf_counter() - start) * 1000)
    out = {}
    for name, ts in times.items():
        ts.sort()
        out[name] = {"median_ms": statistics.median(ts), "p90_ms": ts[int(0.9 * (len(ts) - 1))]}
    return out


def _error(run_on, samples: list, reference: list) -> dict:
    """|variant - fp32| in robot units over all samples."""
    err = np.concatenate([np.abs(run_on(s) - r).ravel() for s, r in zip(samples, reference, strict=True)])
    return {"max_abs_err": float(err.max()), "mean_abs_err": float(err.mean())}


def measure(policy, args) -> dict:
    from vlaforge.deploy.export import EXPORTABLE_HEADS, OnnxPolicy, export_onnx, quantize_onnx
    from vlaforge.deploy.quantize import quantize_dynamic_int8

    samples = [observation(policy, seed) for seed in range(args.samples)]
    int8 = quantize_dynamic_int8(policy).eval()
    runners = {"fp32": lambda s: _torch_call(policy, s)(), "int8": lambda s: _torch_call(int8, s)()}
    with tempfile.TemporaryDirectory() as tmp:
        if policy.config.head.kind in EXPORTABLE_HEADS:
            graph = export_onnx(policy, Path(tmp) / "p.onnx")
            runners["onnx"] = OnnxPolicy(graph, threads=args.threads).sample_actions
            int8_graph = quantize_onnx(graph, Path(tmp) / "p.int8.onnx")
            runners["onnx_int8"] = OnnxPolicy(int8_graph, threads=args.threads).sample_actions
        calls = {name: (lambda run=run: run(samples[0])) for name, run in runners.items()}
        row = {"head": policy.config.head.kind, "params": sum(p.numel() for p in policy.parameters())}
        row.update(timed(calls, args.iters))
        ref = [runners["fp32"](s) for s in samples]
        for name, run in runners.items():
            if name != "fp32":
                row[name].update(
                    _error(run, samples, ref), speedup=row["fp32"]["median_ms"] / row[name]["median_ms"]
                )
    return row


def success(policy, args) -> dict:
    from vlaforge.deploy.quantize import quantize_dynamic_int8
    from vlaforge.envs.tasks import resolve_tasks
    from vlaforge.eval.config import EvalConfig
    from vlaforge.eval.runner import evaluate

    tasks = resolve_tasks(args.eval_tasks)
    cfg = EvalConfig(
        policy=str(args.policy),
        suite=",".join(tasks),
        out=tempfile.mkdtemp(prefix="vlaforge-int8-eval-"),
        episodes_per_task=args.episodes,
        workers=args.workers,
        videos_per_task=0,
        max_steps=args.max_steps,
        envs_per_worker=args.envs_per_worker,
    )
    out = {}
    for name, model in (("fp32", policy), ("int8", quantize_dynamic_int8(policy).eval())):
        run = evaluate(model, tasks, cfg)
        wins = [bool(r.success) for r in run["results"]]
        out[name] = {
            "success_rate": float(np.mean(wins)),
            "episodes": len(wins),
            "wall_s": run["wall_time_s"],
        }
    out["tasks"] = tasks
    return out


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--presets", default="default,oft,openvla", help="comma list of presets")
    parser.add_argument("--policy", default=None, help="a trained checkpoint instead of random-init presets")
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch and onnxruntime threads (1: stable figures on a shared machine)",
    )
    parser.add_argument("--iters", type=int, default=30, help="timed calls per variant")
    parser.add_argument("--samples", type=int, default=8, help="observations for the action error")
    parser.add_argument(
        "--eval-tasks", default=None, help="with --policy: Meta-World tasks for fp32 vs INT8 success"
    )
    parser.add_argument("--episodes", type=int, default=10, help="episodes per task for --eval-tasks")
    parser.add_argument("--workers", type=int, default=2, help="env workers for --eval-tasks")
    parser.add_argument(
        "--envs-per-worker", type=int, default=4, help="env slots per worker for --eval-tasks"
    )
    parser.add_argument("--max-steps", type=int, default=500, help="episode step limit for --eval-tasks")
    parser.add_argument("--out", default=str(RESULTS), help="JSON output path")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    names = [args.policy] if args.policy else args.presets.split(",")
    rows = {}
    for name in names:
        policy = build(None if args.policy else name, args.policy)
        rows[name] = measure(policy, args)
        r = rows[name]
        line = (
            f"{name:>12} {r['head']:>10}  fp32 {r['fp32']['median_ms']:7.2f} ms  int8 {r['int8']['median_ms']:7.2f} ms "
            f"(x{r['int8']['speedup']:.2f}, max err {r['int8']['max_abs_err']:.4f})"
        )
        for key in ("onnx", "onnx_int8"):
            if key in r:
                line += f"  {key} {r[key]['median_ms']:6.2f} ms (x{r[key]['speedup']:.2f}, err {r[key]['max_abs_err']:.1e})"
        print(line, flush=True)
    result = {
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "torch": torch.__version__,
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "threads": args.threads,
        "batch": 1,
        "quantized_engine": torch.backends.quantized.engine,
        "results": rows,
        "note": "random-init weights unless `policy` is a checkpoint; shared, noisy CPU when measured",
    }
    if args.eval_tasks:
        if not args.policy:
            raise SystemExit("--eval-tasks needs --policy (a trained checkpoint)")
        result["success"] = success(build(None, args.policy), args)
        print(json.dumps(result["success"], indent=2))
    else:
        result["success"] = "not measured: pass --policy CKPT --eval-tasks TASKS with a trained checkpoint"
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
