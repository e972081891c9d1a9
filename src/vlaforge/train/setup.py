"""From a run spec (CLI arguments or RUN/run.json) to a running `Trainer`: configs, data, policy.

Shared by `vlaforge train` and `vlaforge finetune`. The spec is a JSON dict:
`{"command": "train"|"finetune", "data": ["DIR[:WEIGHT]", ...], "overrides": ["train.lr=...", ...],
"preset": name}` (train) or `{"from": CKPT, "freeze": [...], "lora_rank": R}` (finetune).
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import math
import sys
from dataclasses import dataclass
from pathlib import Path

import torch

from vlaforge import keys
from vlaforge.config import apply_overrides
from vlaforge.data.slots import is_identity, map_slots, parse_camera_map
from vlaforge.errors import VlaforgeError
from vlaforge.train import checkpoint as ckpt
from vlaforge.train.config import TrainConfig, parse_task_weights, split_overrides
from vlaforge.train.distributed import Dist, init_distributed, shutdown
from vlaforge.train.trainer import Trainer


@dataclass(frozen=True)
class DataSource:
    """One `--data DIR[:WEIGHT]`."""

    root: Path
    weight: float = 1.0


def parse_data(spec: str) -> DataSource:
    """`DIR` or `DIR:WEIGHT`; a directory that exists wins over a weight-looking suffix."""
    root, _, weight = spec.rpartition(":")
    if not root or Path(spec).exists():
        return DataSource(Path(spec))
    try:
        value = float(weight)
    except ValueError:
        return DataSource(Path(spec))
    if not (value > 0 and math.isfinite(value)):
        raise VlaforgeError(f"--data {spec}: the weight must be a positive number")
    return DataSource(Path(root), value)


@dataclass
class TrainData:
    """The mixture loader, validation batches and what the policy must know about the data."""

    loader: object
    val_batches: list[dict] | None
    stats: list[dict]
    metadata: dict
    action_dim: int
    state_dim: int


def build_data(sources: list[DataSource], policy_cfg, train_cfg: TrainConfig, dist: Dist) -> TrainData:
    """Check every dataset fits the policy config, split episodes, and build the loaders."""
    from vlaforge.data.dataset import WindowConfig, WindowDataset, split_episodes
    from vlaforge.data.lerobot_v3 import LeRobotV3Dataset
    from vlaforge.data.mixture import MixtureLoader, task_sample_weights

    metas = [open_dataset(s.root, LeRobotV3Dataset) for s in sources]
    slot_maps = [
        check_fits(source.root, meta, policy_cfg, train_cfg.camera_map)
        for source, meta in zip(sources, metas, strict=True)
    ]
    # Frames are resized to the policy's size once, in the frame cache, not every step. Datasets
    # whose cameras all carry the slots' names keep the plain per-camera batches (no camera_mask).
    use_slots = not all(is_identity(m) for m in slot_maps)
    windows = [
        WindowConfig(
            history=policy_cfg.history,
            chunk=policy_cfg.chunk,
            cameras=tuple(policy_cfg.cameras),
            image_size=policy_cfg.image_size,
            slots=slot_map if use_slots else None,
        )
        for slot_map in slot_maps
    ]
    splits = [split_episodes(m.num_episodes, train_cfg.val_fraction, train_cfg.seed) for m in metas]
    train_sets = [
        WindowDataset(s.root, w, episodes=list(tr))
        for s, w, (tr, _) in zip(sources, windows, splits, strict=True)
    ]
    weights = [s.weight for s in sources]
    mixed = train_cfg.mixed_fps
    per_window = task_sample_weights(train_sets, parse_task_weights(train_cfg.task_weights))
    loader = MixtureLoader(
        train_sets, weights, train_cfg.batch_size, train_cfg.seed, mixed_fps=mixed, sample_weights=per_window
    )
    action_dim = max(d.action_dim for d in train_sets)
    state_dim = max(d.state_dim for d in train_sets)
    val = None
    if all(len(va) for _, va in splits) and train_cfg.val_batches > 0:
        val_sets = [
            WindowDataset(s.root, w, episodes=list(va))
            for s, w, (_, va) in zip(sources, windows, splits, strict=True)
        ]
        val_loader = MixtureLoader(
            val_sets, weights, train_cfg.batch_size, train_cfg.seed + 1, mixed_fps=mixed
        )
        val = [
            pad_dims(b, action_dim, state_dim) for b in itertools.islice(val_loader, train_cfg.val_batches)
        ]
    metadata = run_metadata(sources, metas, splits, train_sets, slot_maps)
    return TrainData(loader, val, list(loader.stats), metadata, action_dim, state_dim)


def open_dataset(root: Path, cls):
    """The reader names what is wrong (missing, incomplete, corrupt); prefix it with the flag."""
    try:
        return cls(root)
    except VlaforgeError as err:
        raise VlaforgeError(f"--data {root}: {err}") from err


def check_fits(root: Path, meta, policy_cfg, camera_map: str = ""):
    """Before the first step: the dataset feeds the policy's camera slots (returns its slot map,
    `vlaforge.data.slots`) and has actions and (if used) state."""
    cams = [k[len(keys.IMAGE_PREFIX) :] if k.startswith(keys.IMAGE_PREFIX) else k for k in meta.camera_keys]
    from vlaforge.models.io import camera_role

    recorded = meta.collection.get("camera_roles") or {}
    roles = {c: recorded.get(c) or camera_role(c, j) for j, c in enumerate(cams)}
    slot_map = map_slots(
        policy_cfg.cameras, cams, roles, parse_camera_map(camera_map), where=f"dataset {root}"
    )
    if keys.ACTION not in meta.features:
        raise VlaforgeError(f"dataset {root} has no {keys.ACTION!r} feature")
    if policy_cfg.state_dim > 0 and keys.STATE not in meta.features:
        raise VlaforgeError(
            f"dataset {root} has no {keys.STATE!r}; train without proprio with --set model.state_dim=0"
        )
    return slot_map


def pad_dims(batch: dict, action_dim: int, state_dim: int) -> dict:
    """Pad action/state (and their dim masks) of a batch to the policy's widths."""
    out = dict(batch)
    for key, mask_key, width in (
        (keys.ACTION, keys.ACTION_DIM_MASK, action_dim),
        (keys.STATE, keys.STATE_DIM_MASK, state_dim),
    ):
        if key not in out or out[key].shape[-1] >= width:
            continue
        real = out[key].shape[-1]
        out[key] = torch.nn.functional.pad(out[key], (0, width - real))
        mask = out.get(mask_key, torch.ones(out[key].shape[0], real, dtype=torch.bool))
        out[mask_key] = torch.nn.functional.pad(mask.bool(), (0, width - real), value=False)
    return out


def run_metadata(sources, metas, splits, train_sets, slot_maps) -> dict:
    """The checkpoint record (`vlaforge.models.io.CheckpointRecord`) of this training data, as
    metadata.json holds it: per dataset its dims, names, control mode, simulator, the frame size,
    role and slot of each camera that feeds the policy, fps, episode split and origin; the episodes'
    (task, seed) pairs."""
    from vlaforge.models.io import (
        CameraRecord,
        CheckpointRecord,
        EmbodimentRecord,
        camera_role,
        feature_names,
    )

    embodiments, seeds, tasks = [], [], set()
    for i, (source, meta, (tr, va), ds) in enumerate(zip(sources, metas, splits, train_sets, strict=True)):
        tasks |= set(meta.tasks)
        collection = meta.collection
        roles = collection.get("camera_roles") or {}
        cams = tuple(
            CameraRecord(cam, tuple(meta.video_shape[keys.image_key(cam)][:2]), roles.get(cam) or camera_role(cam, j), slot)
            for j, (slot, cam) in enumerate(slot_maps[i]) if cam is not None
        )  # fmt: skip
        embodiments.append(
            EmbodimentRecord(
                index=i,
                name=str(meta.info.get("robot_type") or source.root.resolve().name),
                action_dim=ds.action_dim,
                state_dim=ds.state_dim,
                action_names=feature_names(meta.features[keys.ACTION].get("names")),
                state_names=feature_names((meta.features.get(keys.STATE) or {}).get("names")),
                control_mode=collection.get("control_mode"),
                simulator=collection.get("simulator") or collection.get("source"),
                protocol=collection.get("protocol"),
                fps=meta.fps,
                cameras=cams,
                tasks=tuple(meta.tasks),
                root=str(source.root.resolve()),
                weight=source.weight,
                num_episodes=meta.num_episodes,
                train_episodes=tuple(int(e) for e in tr),
                val_episodes=tuple(int(e) for e in va),
            )
        )
        for ep in meta.episodes:
            if ep.get("seed") is not None:
                for task in ep.get("tasks") or [ep.get("task")]:
                    seeds.append((task, int(ep["seed"])))
    record = CheckpointRecord(
        embodiments=tuple(embodiments), train_seeds=tuple(seeds), tasks=tuple(sorted(tasks)), fps=metas[0].fps
    )
    return record.to_metadata()


def execute(spec: dict, out: Path, resuming: bool, device: str = "auto", on_step=None) -> int:
    """Build everything from `spec` and train; returns the exit status (0)."""
    d = init_distributed(None if device == "auto" else device)
    try:
        trainer = build_trainer(spec, out, resuming, d)
        trainer.fit(on_step=on_step)
        if d.is_main:
            print(f"done: {out / 'checkpoints' / 'last'} (best: {out / 'checkpoints' / 'best'})")
        return 0
    finally:
        shutdown(d)


def build_trainer(spec: dict, out: Path, resuming: bool, d: Dist) -> Trainer:
    """Configs -> data -> policy (-> fine-tuning surgery) -> Trainer (restored when resuming)."""
    from vlaforge.models.policy import VLAPolicy

    model_over, train_over = split_overrides(spec["overrides"])
    train_cfg = apply_overrides(TrainConfig(), train_over)
    finetune = spec["command"] == "finetune"
    if finetune:
        from vlaforge.train import finetune as ft

        policy_cfg = ft.base_config(spec, model_over)
    else:
        policy_cfg = preset_config(spec.get("preset"), model_over)
    sources = [parse_data(s) for s in spec["data"]]
    if d.rank > 0:
        d.barrier()  # rank 0 decodes the frame caches first
    data = build_data(sources, policy_cfg, train_cfg, d)
    if d.rank == 0:
        d.barrier()
    if finetune:  # known embodiments keep the checkpoint's padded widths; a new one gets its own
        policy_cfg, unseen, rows = ft.fit_embodiments(
            spec, data.metadata, policy_cfg, data.action_dim, data.state_dim
        )
        spec = {**spec, "new_embodiments": unseen, "embodiment_rows": rows}
    else:
        policy_cfg = dataclasses.replace(
            policy_cfg,
            action_dim=data.action_dim,
            state_dim=data.state_dim,
            num_embodiments=len(data.stats),
        )
    metadata = {
        **data.metadata,
        "preset": spec.get("preset"),
        "finetuned_from": spec.get("from"),
        "train_seed": train_cfg.seed,
    }
    torch.manual_seed(train_cfg.seed)  # identical init on every process
    policy = VLAPolicy(policy_cfg, stats=data.stats, metadata=metadata)
    if policy.needs_tokenizer:  # ar-fast without model.head.tokenizer: fit it before the first step
        attach_tokenizer(policy, data, spec, out, resuming, train_cfg.seed, d.is_main)
    export = ft.prepare(policy, spec, d.is_main) if finetune else None
    val = data.val_batches
    trainer = Trainer(
        policy,
        train_cfg,
        data.loader,
        out,
        val_batches=(lambda: val) if val else None,
        dist=d,
        export=export,
        info={"command": spec["command"]},
    )
    if resuming:
        last = ckpt.latest_checkpoint(out / "checkpoints")
        if last is None:
            raise VlaforgeError(f"--resume {out}: no checkpoint to resume from")
        trainer.resume(last)
    if d.is_main:
        out.mkdir(parents=True, exist_ok=True)
        tmp = out / "run.json.tmp"
        tmp.write_text(json.dumps(spec, indent=2) + "\n")  # with --resume --steps: the new length
        tmp.replace(out / "run.json")
        if not resuming:
            (out / "log.jsonl").unlink(missing_ok=True)  # left by an earlier attempt that saved nothing
    if d.rank:  # distinct head noise per process (rank 0 keeps the single-process stream)
        torch.manual_seed(train_cfg.seed * 7919 + d.rank + trainer.step)
    if d.is_main:
        _summary(trainer, data, d, resuming)
    return trainer


def attach_tokenizer(
    policy, data: TrainData, spec: dict, out: Path, resuming: bool, seed: int, verbose: bool
) -> None:
    """The FAST tokenizer of an ar-fast policy: a resumed run's own (its last checkpoint), a
    fine-tuned checkpoint's, else fitted on this run's training split (`tokenizer_command`)."""
    import time

    from vlaforge.models.policy import METADATA_FILE, read_json, resolve_checkpoint
    from vlaforge.models.tokenizers import TOKENIZER_KEY, tokenizer_from_dict
    from vlaforge.train.tokenizer_command import describe, fit_action_tokenizer

    source = ckpt.latest_checkpoint(out / "checkpoints") if resuming else None
    if source is None and spec.get("from"):
        source = resolve_checkpoint(spec["from"])
    saved = read_json(source / METADATA_FILE).get(TOKENIZER_KEY) if source is not None else None
    if saved is not None:
        policy.set_action_tokenizer(tokenizer_from_dict(saved, where=f"{source}/{METADATA_FILE}"))
        return
    start = time.perf_counter()
    policy.set_action_tokenizer(fit_action_tokenizer(policy, data.loader, seed=seed))
    if verbose:
        print(describe(policy.head.tokenizer, time.perf_counter() - start), file=sys.stderr)


def preset_config(name: str | None, model_over: list[str]):
    from vlaforge.models.presets import DEFAULT_PRESET, get_preset

    return apply_overrides(get_preset(name or DEFAULT_PRESET), model_over)


def _summary(trainer: Trainer, data: TrainData, d: Dist, resuming: bool) -> None:
    total = sum(p.numel() for p in trainer.policy.parameters())
    trainable = sum(p.numel() for p in trainer.policy.parameters() if p.requires_grad)
    sets = ", ".join(
        f"{x['root']} ({len(x['train_episodes'])}+{len(x['val_episodes'])} val episodes)"
        for x in data.metadata["datasets"]
    )
    start = f"resuming at step {trainer.step}" if resuming else "starting"
    print(
        f"{start}: trainable parameters {trainable:,} of {total:,}; device {d.device} x{d.world_size}; "
        f"data {sets}",
        file=sys.stderr,
    )
