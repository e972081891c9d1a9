"""Serve a LeRobot ACT or Diffusion Policy checkpoint over openpi's websocket protocol.

Runs in the LeRobot side venv with vlaforge's `src/` on the path for the wire format only
(`vlaforge.control.wire`: msgpack-numpy, needs msgpack and numpy):

    PYTHONPATH=src VENV/bin/python benchmarks/peers/lerobot_serve.py --run RUN --port 8300
    vlaforge eval --policy ws://127.0.0.1:8300 --tasks ... --out EVAL
    PYTHONPATH=src VENV/bin/python benchmarks/peers/lerobot_serve.py --run RUN --latency 30   # then exits

The metadata sent on connect tells vlaforge's eval client everything it needs (cameras and frame
size, state/action widths, chunk, steps executed per chunk, history, the training seeds read from
the dataset's collection record so eval can prove its seeds disjoint, and `reset`). Each
connection keeps its own last `n_obs_steps` frames; at an episode's start the first frame fills
the window, as LeRobot's `populate_queues` does. A reply is the chunk LeRobot's `select_action`
would execute: ACT's first `n_action_steps` (all 100 by default) of its predicted chunk, Diffusion
Policy's `n_action_steps` (8) starting at the current step (`generate_actions`), unnormalized by the
policy's postprocessor. A policy trained with `--task-onehot` gets the one-hot of the request's
instruction (`task`) appended to its normalized state, as in training; an instruction it was not
trained on is an error reply. A bad request is answered `{"error": ...}` and the connection stays up.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import time
from collections import deque
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import lerobot_shim  # noqa: E402
from lerobot_train import with_task_onehot  # noqa: E402


class Peer:
    """A trained LeRobot policy with its processors, answering one observation window at a time."""

    def __init__(self, run: Path) -> None:
        import torch
        from lerobot.policies.factory import get_policy_class, make_pre_post_processors

        self.torch = torch
        self.report = json.loads((run / "train.json").read_text())
        path = run / "pretrained_model"
        self.kind = self.report["policy"]
        self.policy = get_policy_class(self.kind).from_pretrained(str(path)).eval()
        self.cfg = self.policy.config
        self.pre, self.post = make_pre_post_processors(self.cfg, pretrained_path=str(path))
        self.image_keys = list(self.cfg.image_features)
        self.history = int(self.cfg.n_obs_steps)
        self.tasks = list(self.report.get("task_onehot") or [])

    def metadata(self) -> dict:
        data = Path(self.report["data"])
        info = json.loads((data / "meta" / "info.json").read_text())
        record = json.loads((data / "meta" / "vlaforge_collect.json").read_text())
        tasks = record["tasks"] if isinstance(record["tasks"], dict) else {}
        seeds = [{"task": t, "seed": s} for t, v in tasks.items() for s in v.get("seeds", [])]
        obs = {k: {"shape": info["features"][k]["shape"], "dtype": "uint8"} for k in self.image_keys}
        obs["observation.state"] = {
            "shape": info["features"]["observation.state"]["shape"],
            "dtype": "float32",
        }
        return {
            "server": f"lerobot-{self.kind}",
            "reset": True,
            "cameras": [k.removeprefix("observation.images.") for k in self.image_keys],
            "observation": obs,
            "instruction_keys": ["task"],
            "state_dim": info["features"]["observation.state"]["shape"][0],
            "action_dim": info["features"]["action"]["shape"][0],
            "chunk": int(self.cfg.n_action_steps),
            "execute_steps": int(self.cfg.n_action_steps),
            "history": self.history,
            "fps": info["fps"],
            "train_seeds": seeds,
        }

    def actions(self, frames: list[dict]) -> list:
        """Actions [n_action_steps, A] in robot units for the window `frames` (oldest first)."""
        torch = self.torch
        task = frames[-1].get("task", "")
        index = self.task_index(task) if self.tasks else None  # before any work: a bad one is an error reply
        batch = {"task": [task]}
        for key in self.image_keys:
            images = torch.stack([torch.as_tensor(f[key]) for f in frames])  # [T, H, W, C] uint8
            batch[key] = images.permute(0, 3, 1, 2).float().div(255).unsqueeze(0)  # [1, T, C, H, W]
        batch["observation.state"] = torch.stack(
            [torch.as_tensor(f["observation.state"], dtype=torch.float32) for f in frames]
        ).unsqueeze(0)  # [1, T, S]
        if self.history == 1:
            batch = {k: v[:, 0] if isinstance(v, torch.Tensor) else v for k, v in batch.items()}
        batch = self.pre(batch)
        if self.tasks:
            batch["observation.state"] = with_task_onehot(
                batch["observation.state"], torch.tensor([index]), len(self.tasks)
            )
        with torch.no_grad():
            if self.kind == "act":
                chunk = self.policy.predict_action_chunk(batch)[:, : self.cfg.n_action_steps]  # [1, H, A]
            else:
                batch["observation.images"] = torch.stack([batch[k] for k in self.image_keys], dim=-4)
                chunk = self.policy.diffusion.generate_actions(batch)  # [1, n_action_steps, A]
        return self.post(chunk)[0].cpu().numpy()

    def task_index(self, instruction: str) -> int:
        if instruction not in self.tasks:
            raise ValueError(
                f"instruction {instruction!r} is none of the {len(self.tasks)} tasks this policy knows"
            )
        return self.tasks.index(instruction)


def _frames(message: dict) -> list[dict]:
    """A request's frames: one frame, or a window [T, ...] of them (vlaforge's eval client)."""
    state = message.get("observation.state")
    if state is None:
        raise ValueError("the request has no observation.state")
    state = np.asarray(state)
    if state.ndim == 1:
        return [message]
    return [{k: (v if k == "task" else v[t]) for k, v in message.items()} for t in range(state.shape[0])]


async def serve(peer: Peer, host: str, port: int) -> None:
    import websockets

    from vlaforge.control.wire import packb, unpackb

    meta = packb(peer.metadata())

    async def handler(ws) -> None:
        window: deque = deque(maxlen=peer.history)
        await ws.send(meta)
        async for raw in ws:
            try:
                message = unpackb(raw)
                if message.get("reset"):
                    window.clear()
                    await ws.send(packb({"reset": True}))
                    continue
                for frame in _frames(message):
                    if not window:  # episode start: frame 0 fills the window
                        window.extend([frame] * (peer.history - 1))
                    window.append(frame)
                actions = peer.actions(list(window))
                await ws.send(packb({"actions": actions.astype("float32")}))
            except Exception as exc:  # one bad request must not take the server down
                await ws.send(packb({"error": f"{type(exc).__name__}: {exc}"}))

    async with websockets.serve(handler, host, port, max_size=16 * 1024 * 1024):
        print(f"serving {peer.kind} on ws://{host}:{port}", flush=True)
        await asyncio.Future()


def latency(peer: Peer, iters: int) -> dict:
    """p50/p90 ms per chunk, batch 1, on a random frame of the served size (after a warm-up call)."""
    meta = peer.metadata()
    rng = np.random.default_rng(0)
    frame = {
        k: rng.integers(0, 256, v["shape"], dtype=np.uint8)
        for k, v in meta["observation"].items()
        if v["dtype"] == "uint8"
    }
    frame["observation.state"] = np.zeros(meta["state_dim"], np.float32)
    frame["task"] = peer.tasks[0] if peer.tasks else ""
    frames = [frame] * peer.history
    peer.actions(frames)
    times = []
    for _ in range(iters):
        start = time.perf_counter()
        peer.actions(frames)
        times.append(1000 * (time.perf_counter() - start))
    q = statistics.quantiles(times, n=10)
    return {"p50_ms": round(statistics.median(times), 1), "p90_ms": round(q[8], 1), "iters": iters,
            "threads": peer.torch.get_num_threads(), "chunk": meta["chunk"]}  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", required=True, help="a lerobot_train.py output folder")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8300)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    parser.add_argument("--latency", type=int, default=0, help="time N chunks at batch 1, print JSON, exit")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    lerobot_shim.install()
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    peer = Peer(Path(args.run))
    if args.latency:
        print(json.dumps(latency(peer, args.latency)))
        return 0
    asyncio.run(serve(peer, args.host, args.port))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
