"""Training throughput (samples/s) of the default preset, on CPU and (when present) on CUDA.

Self-contained and offline: writes a small synthetic LeRobot v3 dataset (random 128 px frames) into
a temporary directory, builds the run exactly as `vlaforge train` does (frame cache, mixture loader,
augmentation on the device, AdamW, EMA), and times full optimizer steps after a few warm-up steps.
Also times the parts of a step: fetching a batch, augmentation, and forward + backward + update.

    python benchmarks/train_throughput.py                      # CPU (+ CUDA when available)
    python benchmarks/train_throughput.py --steps 20 --batch-size 64 --preset octo-small

Writes benchmarks/results/train_throughput.json. Timings on a shared machine are noisy.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import numpy as np  # noqa: E402
import torch  # noqa: E402

RESULTS = Path(__file__).parent / "results" / "train_throughput.json"


def write_dataset(root: Path, size: int, episodes: int = 4, length: int = 60) -> None:
    """Random frames and random-walk actions: enough to exercise every part of the pipeline."""
    from vlaforge.data.lerobot_v3 import LeRobotWriter

    rng = np.random.default_rng(0)
    features = {
        "observation.images.corner2": {
            "dtype": "video",
            "shape": [size, size, 3],
            "names": ["height", "width", "channels"],
        },
        "observation.state": {"dtype": "float32", "shape": [4], "names": None},
        "action": {"dtype": "float32", "shape": [4], "names": None},
    }
    writer = LeRobotWriter(root, fps=80, robot_type="sawyer", features=features)
    for ep in range(episodes):
        frames = rng.integers(0, 255, (length, size, size, 3), dtype=np.uint8)
        state = np.cumsum(rng.normal(0, 0.01, (length, 4)), 0).astype(np.float32)
        action = np.clip(rng.normal(0, 0.5, (length, 4)), -1, 1).astype(np.float32)
        writer.add_episode(
            {"observation.images.corner2": frames, "observation.state": state, "action": action},
            task="reach the goal",
            metadata={"seed": ep},
        )
    writer.finalize()


def measure(
    data: Path, out: Path, preset: str | None, size: int, batch: int, steps: int, warmup: int, device: str
) -> dict:
    from vlaforge.train.augment import augment_batch
    from vlaforge.train.distributed import Dist
    from vlaforge.train.setup import build_trainer

    spec = {
        "command": "train",
        "preset": preset,
        "data": [str(data)],
        "overrides": [
            f"model.image_size={size}",
            f"train.batch_size={batch}",
            f"train.steps={warmup + steps}",
            "train.val_fraction=0",
            "train.tensorboard=false",
        ],
    }
    trainer = build_trainer(spec, out, False, Dist(device=torch.device(device)))
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    for _ in range(warmup):
        trainer.train_step()
    sync()
    t0 = time.perf_counter()
    for _ in range(steps):
        trainer.train_step()
    sync()
    step_s = (time.perf_counter() - t0) / steps
    batches = iter(trainer.loader)
    fetch_s = _timed(lambda: next(batches), 5, sync)
    raw = {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in next(batches).items()}
    aug_s = _timed(lambda: augment_batch(raw, trainer.cfg.augment, 0, 0), 5, sync)
    params = sum(p.numel() for p in trainer.policy.parameters())
    return {
        "device": device,
        "preset": trainer.policy.metadata.get("preset") or "default",
        "image_size": trainer.policy.config.image_size,
        "batch_size": batch,
        "parameters": params,
        "samples_per_s": batch / step_s,
        "step_ms": 1000 * step_s,
        "fetch_batch_ms": 1000 * fetch_s,
        "augment_ms": 1000 * aug_s,
        "timed_steps": steps,
    }


def _timed(fn, n: int, sync) -> float:
    fn()
    sync()
    t0 = time.perf_counter()
    for _ in range(n):
        fn()
    sync()
    return (time.perf_counter() - t0) / n


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--preset", default=None, help="model preset (default: the CPU default)")
    parser.add_argument("--image-size", type=int, default=128)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--cuda-batch-size", type=int, default=256)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = default)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    results = {
        "machine": {
            "platform": platform.platform(),
            "cpu_count": os.cpu_count(),
            "torch_threads": torch.get_num_threads(),
            "torch": torch.__version__,
            "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        },
        "runs": [],
    }
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "data"
        write_dataset(data, args.image_size)
        devices = [("cpu", args.batch_size)] + (
            [("cuda", args.cuda_batch_size)] if torch.cuda.is_available() else []
        )
        for device, batch in devices:
            run = measure(
                data,
                Path(tmp) / f"run-{device}",
                args.preset,
                args.image_size,
                batch,
                args.steps,
                args.warmup,
                device,
            )
            results["runs"].append(run)
            print(
                f"{device}: {run['samples_per_s']:.1f} samples/s (batch {batch}, {run['step_ms']:.0f} ms/step; "
                f"fetch {run['fetch_batch_ms']:.1f} ms, augment {run['augment_ms']:.1f} ms)",
                file=sys.stderr,
            )
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
