"""Training-loader throughput: samples/s at batch 64, history 2, chunk 16, 128 px.

Without `--data`, writes a synthetic-but-real dataset with our `LeRobotWriter` (20 episodes x 100
frames, one 128 px camera, real mp4 files) into a temporary directory. Measures: the one-off frame
cache build (video decode, frames/s), then `MixtureLoader` batches/s over the cached frames (the
path the trainer uses). With `--lerobot-python` (a side environment with `lerobot`, see
`benchmarks/lerobot_compat.py`) it also times LeRobot's own `LeRobotDataset.__getitem__` with the
same window on the same data and reports the speed-up. Prints and writes
benchmarks/results/loader_throughput.json.

    python benchmarks/loader_throughput.py [--data DIR] [--seconds 5] [--lerobot-python /tmp/lerobot-venv/bin/python]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from vlaforge.data.dataset import WindowConfig, WindowDataset
from vlaforge.data.lerobot_v3 import LeRobotWriter
from vlaforge.data.mixture import MixtureLoader

HERE = Path(__file__).resolve().parent


def synthetic_frames(length: int, size: int, rng: np.random.Generator) -> np.ndarray:
    """A shaded table and three moving flat blocks: compresses like a sim render."""
    yy, xx = np.mgrid[0:size, 0:size] / size
    background = np.stack([0.55 + 0.2 * xx, 0.5 + 0.15 * yy, 0.45 + 0.1 * xx * yy], -1) * 255
    frames = np.repeat(background[None], length, axis=0)
    block = size // 6
    for color in rng.uniform(30, 230, size=(3, 3)):
        start, velocity = rng.uniform(0, size - block, 2), rng.uniform(-0.5, 0.5, 2)
        for t in range(length):
            y, x = (np.abs(start + velocity * t) % (size - block)).astype(int)
            frames[t, y : y + block, x : x + block] = color
    return frames.astype(np.uint8)


def build_dataset(root: Path, episodes: int, length: int, size: int) -> float:
    """Write the synthetic dataset; returns seconds spent."""
    features = {
        "observation.images.corner2": {"dtype": "video", "shape": [size, size, 3], "names": None},
        "observation.state": {"dtype": "float32", "shape": [4], "names": None},
        "observation.environment_state": {"dtype": "float32", "shape": [39], "names": None},
        "action": {"dtype": "float32", "shape": [4], "names": None},
    }
    rng = np.random.default_rng(0)
    start = time.perf_counter()
    writer = LeRobotWriter(root, fps=80, robot_type="sawyer", features=features)
    for i in range(episodes):
        writer.add_episode(
            {
                "observation.images.corner2": synthetic_frames(length, size, rng),
                "observation.state": rng.normal(size=(length, 4)).astype(np.float32),
                "observation.environment_state": rng.normal(size=(length, 39)).astype(np.float32),
                "action": rng.uniform(-1, 1, size=(length, 4)).astype(np.float32),
            },
            f"task {i % 4}",
            {"seed": i},
        )
    writer.finalize()
    return time.perf_counter() - start


def measure(loader: MixtureLoader, seconds: float) -> float:
    next(loader)  # warm the page cache
    count, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        count += len(next(loader)["task"])
    return count / (time.perf_counter() - start)


def lerobot_samples_per_s(python: str, data: Path, samples: int) -> float | None:
    out = Path(tempfile.mkdtemp()) / "compat.json"
    cmd = [python, str(HERE / "lerobot_compat.py"), "--data", str(data), "--shim-torchvision"]
    cmd += ["--samples", str(samples), "--out", str(out)]
    result = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    if result.returncode != 0:
        print(result.stderr[-2000:], file=sys.stderr)
        return None
    return json.loads(out.read_text())["lerobot_samples_per_s"]


def main() -> int:
    parser = argparse.ArgumentParser(description="loader throughput benchmark")
    parser.add_argument("--data", type=Path, help="an existing dataset (default: build a synthetic one)")
    parser.add_argument("--episodes", type=int, default=20)
    parser.add_argument("--length", type=int, default=100)
    parser.add_argument("--image-size", type=int, default=128)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--lerobot-python", help="python of a side env with lerobot installed")
    parser.add_argument("--lerobot-samples", type=int, default=300)
    parser.add_argument("--out", type=Path, default=HERE / "results" / "loader_throughput.json")
    args = parser.parse_args()
    tmp = tempfile.TemporaryDirectory()
    result: dict = {"machine": platform.processor() or platform.machine(), "cpus": os.cpu_count()}
    data = args.data
    if data is None:
        data = Path(tmp.name) / "synthetic"
        result["write_s"] = build_dataset(data, args.episodes, args.length, args.image_size)
    start = time.perf_counter()
    window = WindowConfig(history=2, chunk=16, image_size=args.image_size)
    dataset = WindowDataset(data, window, cache_dir=Path(tmp.name) / "cache")
    result["cache_build_s"] = time.perf_counter() - start
    result["cache_decode_frames_per_s"] = dataset.source.num_frames / result["cache_build_s"]
    loader = MixtureLoader([dataset], batch_size=args.batch_size, seed=0)
    result.update(frames=dataset.source.num_frames, batch_size=args.batch_size, history=2, chunk=16)
    result["image_size"] = args.image_size
    result["samples_per_s"] = measure(loader, args.seconds)
    mix = MixtureLoader([dataset, dataset], weights=[0.5, 0.5], batch_size=args.batch_size, seed=0)
    result["mixture_of_two_samples_per_s"] = measure(mix, args.seconds)
    if args.lerobot_python:
        theirs = lerobot_samples_per_s(args.lerobot_python, data, args.lerobot_samples)
        result["lerobot_samples_per_s"] = theirs
        result["speedup_vs_lerobot"] = result["samples_per_s"] / theirs if theirs else None
    print(json.dumps(result, indent=2))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
