"""Train LeRobot's own ACT or Diffusion Policy on a vlaforge dataset for a wall-clock budget.

Runs in the LeRobot side venv (benchmarks/peers/setup_venv.sh), never in vlaforge's:

    VENV/bin/python benchmarks/peers/lerobot_train.py --policy act --data DATA --minutes 10 --out RUN

What is LeRobot's: the dataset reader (`LeRobotDataset` with the policy's delta timestamps), the
policy and its config defaults, the pre/post-processors (normalization from the dataset's stats),
the optimizer and scheduler presets, the loss. The loop is `lerobot-train`'s update step (forward,
backward, clip to the config's grad norm, optimizer and scheduler step) with a wall-clock budget in
place of `--steps`, and a DataLoader like its own (shuffled, `--workers` processes).

Deviations from LeRobot's defaults, each forced by this offline CPU setting: ACT's ResNet-18 starts
from random weights (`pretrained_backbone_weights=None`; ImageNet weights cannot be downloaded
here, and vlaforge's conv stem starts from scratch too); inputs are the camera and the 4-d state
only (the datasets also hold the simulator's privileged 39-d state, which LeRobot would otherwise
feed as `observation.environment_state`); the scheduler (Diffusion Policy's cosine with warm-up) is
built after 10 calibration steps with the number of steps the budget then predicts, so those 10
run at the base learning rate. Writes RUN/pretrained_model (policy + processors) and RUN/train.json.

Multi-task data (MT10): neither policy reads language, so `--task-onehot` appends a one-hot of the
frame's task (the dataset's `task_index`, K tasks) to the state after LeRobot's normalization (the
state feature is then 4 + K wide; its statistics stay the 4-d ones). It is the usual stand-in for an
instruction in a fixed task set, and it gives these peers the task identity vlaforge reads from
the instruction; the server (lerobot_serve.py) maps each request's instruction to the same index.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import lerobot_shim  # noqa: E402

CALIBRATION_STEPS = 10


def with_task_onehot(state, task_index, num_tasks: int):
    """`state` [B, S] or [B, T, S] with a one-hot of `task_index` [B] appended: [..., S + num_tasks]."""
    import torch

    onehot = torch.nn.functional.one_hot(task_index.long(), num_tasks).to(state.dtype)  # [B, K]
    if state.ndim == 3:
        onehot = onehot[:, None].expand(-1, state.shape[1], -1)  # [B, T, K]
    return torch.cat([state, onehot], dim=-1)


def policy_config(kind: str, meta, camera: str, overrides: dict, num_tasks: int = 0):
    """LeRobot's config for `kind` with its defaults (and `overrides`), on one camera + the state
    (widened by `num_tasks` one-hot entries), CPU."""
    from lerobot.configs.types import FeatureType, PolicyFeature
    from lerobot.policies.factory import make_policy_config

    feats = meta.features
    image_key = f"observation.images.{camera}"
    if image_key not in feats:
        raise SystemExit(f"--camera {camera}: the dataset has no {image_key} (it has {meta.camera_keys})")
    h, w, c = feats[image_key]["shape"]
    (state_dim,) = feats["observation.state"]["shape"]
    inputs = {
        image_key: PolicyFeature(type=FeatureType.VISUAL, shape=(c, h, w)),
        "observation.state": PolicyFeature(type=FeatureType.STATE, shape=(state_dim + num_tasks,)),
    }
    outputs = {"action": PolicyFeature(type=FeatureType.ACTION, shape=tuple(feats["action"]["shape"]))}
    extra = {"pretrained_backbone_weights": None} if kind == "act" else {}
    extra.update(overrides)
    return make_policy_config(
        kind, input_features=inputs, output_features=outputs, device="cpu", push_to_hub=False, **extra
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--policy", choices=["act", "diffusion"], required=True)
    parser.add_argument("--data", required=True, help="a vlaforge (LeRobot v3.0) dataset")
    parser.add_argument("--minutes", type=float, required=True, help="wall-clock training budget")
    parser.add_argument("--out", required=True)
    parser.add_argument("--camera", default="corner2")
    parser.add_argument("--batch-size", type=int, default=8, help="lerobot-train's default")
    parser.add_argument("--workers", type=int, default=2, help="DataLoader worker processes")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--task-onehot", action="store_true",
        help="append a one-hot of the frame's task to the state (multi-task data; see the docstring)",
    )  # fmt: skip
    parser.add_argument(
        "--config", action="append", default=[], metavar="KEY=JSON",
        help="a policy config field, e.g. num_inference_steps=10 or noise_scheduler_type='\"DDIM\"'",
    )  # fmt: skip
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    out = Path(args.out)
    if (out / "pretrained_model").exists():
        raise SystemExit(f"{out}/pretrained_model exists; choose another --out")
    overrides = {}
    for item in args.config:
        key, sep, value = item.partition("=")
        if not sep:
            raise SystemExit(f"--config {item!r} is not KEY=JSON")
        try:
            overrides[key] = json.loads(value)
        except json.JSONDecodeError:
            overrides[key] = value  # a bare string
    lerobot_shim.install()

    import torch
    from lerobot.datasets.factory import resolve_delta_timestamps
    from lerobot.datasets.lerobot_dataset import LeRobotDataset, LeRobotDatasetMetadata
    from lerobot.policies.factory import make_policy, make_pre_post_processors

    torch.manual_seed(args.seed)
    meta = LeRobotDatasetMetadata("local/vlaforge", root=args.data)
    # The instructions in task_index order (meta.tasks: index = instruction, column task_index).
    tasks = list(meta.tasks.sort_values("task_index").index) if args.task_onehot else []
    cfg = policy_config(args.policy, meta, args.camera, overrides, len(tasks))
    dataset = LeRobotDataset(
        "local/vlaforge",
        root=args.data,
        delta_timestamps=resolve_delta_timestamps(cfg, meta),
        video_backend="pyav",
    )
    policy = make_policy(cfg, ds_meta=meta)
    pre, post = make_pre_post_processors(cfg, dataset_stats=meta.stats)
    optim = cfg.get_optimizer_preset()
    optimizer = optim.build(policy.get_optim_params())
    loader = torch.utils.data.DataLoader(
        dataset, batch_size=args.batch_size, shuffle=True, num_workers=args.workers, drop_last=True,
        persistent_workers=args.workers > 0, generator=torch.Generator().manual_seed(args.seed),
    )  # fmt: skip
    params = sum(p.numel() for p in policy.parameters())
    print(
        f"{args.policy}: {params / 1e6:.1f} M parameters, {len(dataset)} frames, budget {args.minutes} min"
        + (f", task one-hot over {len(tasks)} tasks" if tasks else ""),
        flush=True,
    )

    budget_s, scheduler, log, step = args.minutes * 60, None, [], 0
    start = time.perf_counter()
    policy.train()
    while time.perf_counter() - start < budget_s:
        for batch in loader:
            task_index = batch["task_index"]  # [B]
            batch = pre(batch)
            if tasks:
                batch["observation.state"] = with_task_onehot(
                    batch["observation.state"], task_index, len(tasks)
                )
            loss, _ = policy.forward(batch)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(policy.parameters(), optim.grad_clip_norm)
            optimizer.step()
            optimizer.zero_grad()
            if scheduler is not None:
                scheduler.step()
            step += 1
            elapsed = time.perf_counter() - start
            if step == 1:
                first = elapsed  # includes the DataLoader workers' start
            if step == CALIBRATION_STEPS:
                planned = max(step + 1, step + int((budget_s - elapsed) / ((elapsed - first) / (step - 1))))
                preset = cfg.get_scheduler_preset()
                scheduler = preset.build(optimizer, planned) if preset is not None else None
            if step % 25 == 0 or step == 1:
                log.append({"step": step, "s": round(elapsed, 1), "loss": round(loss.item(), 5)})
                print(f"step {step} {elapsed:.0f} s loss {loss.item():.4f}", flush=True)
            if elapsed >= budget_s:
                break
    train_s = time.perf_counter() - start
    policy.eval()
    tmp = out / "pretrained_model.partial"
    policy.save_pretrained(tmp)
    pre.save_pretrained(tmp)
    post.save_pretrained(tmp)
    tmp.rename(out / "pretrained_model")
    report = {
        "policy": args.policy,
        "lerobot_version": __import__("lerobot").__version__,
        "data": str(Path(args.data).resolve()),
        "camera": args.camera,
        "config_overrides": overrides,
        "task_onehot": tasks,  # instructions in one-hot order; [] = no task input
        "parameters": params,
        "batch_size": args.batch_size,
        "dataloader_workers": args.workers,
        "steps": step,
        "train_minutes": round(train_s / 60, 2),
        "samples_per_s": round(step * args.batch_size / train_s, 1),
        "final_loss": log[-1]["loss"] if log else None,
        "log": log,
        "n_obs_steps": cfg.n_obs_steps,
        "chunk": cfg.chunk_size if args.policy == "act" else cfg.n_action_steps,
        "n_action_steps": cfg.n_action_steps,
        "torch_threads": torch.get_num_threads(),
    }
    (out / "train.json").write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps({k: v for k, v in report.items() if k != "log"}), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
