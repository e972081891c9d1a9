"""Load a vlaforge-written dataset with LeRobot's own `LeRobotDataset` (v3.0) and compare.

Not a test (CI has no LeRobot): run it with a side environment that has `lerobot` installed, e.g.

    python -m venv /tmp/lerobot-venv && /tmp/lerobot-venv/bin/pip install torch==2.13.0
    /tmp/lerobot-venv/bin/pip install --no-deps lerobot==0.4.4
    /tmp/lerobot-venv/bin/pip install "datasets>=4,<5" "huggingface_hub<0.36" pandas pyarrow "av>=15,<16" \
        jsonlines draccus==0.10.0 packaging einops termcolor deepdiff gymnasium pillow
    HF_HUB_OFFLINE=1 /tmp/lerobot-venv/bin/python benchmarks/lerobot_compat.py --data DATASET

On our CPU machines neither of LeRobot's video backends can be installed (PyPI's torchvision and
torchcodec wheels for torch 2.13 are CUDA builds). With `--shim-torchvision` this script puts a
tiny stand-in `torchvision` on the path whose `torchvision.io.VideoReader` is the PyAV reader of
benchmarks/peers/lerobot_shim.py (the one the peer benchmark gives a real torchvision), which
behaves as torchvision's "pyav" backend did (seek, then iterate frames as `{"data": uint8 CHW, "pts": s}`),
so that LeRobot's own `decode_video_frames_torchvision` code runs on it. Everything else (metadata,
parquet loading through `datasets`, delta-timestamp windows, padding, timestamp -> frame matching
with its tolerance) is LeRobot's real code. Writes benchmarks/results/lerobot_compat.json.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

PEERS = Path(__file__).parent / "peers"
# The stand-in package: LeRobot only needs `torchvision.io.VideoReader` (the one PyAV reader of
# benchmarks/peers/lerobot_shim.py), `set_video_backend` and a `transforms` it never calls here.
SHIM = f"""
import sys
sys.path.insert(0, {str(PEERS)!r})
from lerobot_shim import VideoReader

def set_video_backend(name):
    pass

class _IO:
    VideoReader = VideoReader

io = _IO()

class _Anything:
    def __getattr__(self, name):
        return _Anything()

    def __call__(self, *a, **k):
        return _Anything()

transforms = _Anything()
"""


def install_shim() -> None:
    root = Path(tempfile.mkdtemp(prefix="tv-shim-"))
    (root / "torchvision").mkdir()
    (root / "torchvision" / "__init__.py").write_text(SHIM)
    sys.path.insert(0, str(root))


def _frame_matches(ds, meta, i: int) -> bool:
    """LeRobot's current frame of item i equals frame (from_timestamp * fps + frame_index) of the file."""
    import av
    import numpy as np

    item = ds[i]
    ep = meta.episodes[int(item["episode_index"])]
    for key in meta.camera_keys:
        path = Path(ds.root) / meta.get_video_file_path(int(item["episode_index"]), key)
        slot = round(ep[f"videos/{key}/from_timestamp"] * meta.fps) + int(item["frame_index"])
        with av.open(str(path)) as c:
            frames = [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]
        got = (item[key][-1].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
        if not np.array_equal(got, frames[slot]):
            return False
    return True


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True, help="dataset root (LeRobot v3.0)")
    parser.add_argument(
        "--shim-torchvision", action="store_true", help="stand-in torchvision (see docstring)"
    )
    parser.add_argument("--samples", type=int, default=200, help="items to time with LeRobot's loader")
    parser.add_argument("--out", default="benchmarks/results/lerobot_compat.json")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    if args.shim_torchvision:
        install_shim()
    import numpy as np
    import torch
    from lerobot.datasets.lerobot_dataset import LeRobotDataset, LeRobotDatasetMetadata

    meta = LeRobotDatasetMetadata("local/vlaforge", root=args.data)
    fps = meta.fps
    delta = {key: [-1 / fps, 0.0] for key in [*meta.camera_keys, "observation.state"]}
    delta["action"] = [i / fps for i in range(16)]
    ds = LeRobotDataset("local/vlaforge", root=args.data, video_backend="pyav", delta_timestamps=delta)
    report = {
        "lerobot_version": __import__("lerobot").__version__,
        "episodes": meta.total_episodes,
        "frames": meta.total_frames,
        "cameras": meta.camera_keys,
        "len": len(ds),
    }
    last = ds[len(ds) - 1]
    first = ds[0]
    report["first_item"] = {k: list(v.shape) for k, v in first.items() if isinstance(v, torch.Tensor)}
    report["first_obs_is_pad"] = first["observation.state_is_pad"].tolist()
    report["last_action_is_pad_count"] = int(last["action_is_pad"].sum())
    report["frames_match_pyav"] = all(
        _frame_matches(ds, meta, i) for i in range(0, len(ds), max(1, len(ds) // 25))
    )
    rng = np.random.default_rng(0)
    idx = rng.integers(0, len(ds), size=args.samples)
    start = time.perf_counter()
    for i in idx:
        ds[int(i)]
    elapsed = time.perf_counter() - start
    report["lerobot_samples_per_s"] = args.samples / elapsed
    report["shim_torchvision"] = args.shim_torchvision
    print(json.dumps(report, indent=2))
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
