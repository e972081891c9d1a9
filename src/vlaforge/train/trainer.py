"""The one training loop, for every head and preset (nanoGPT-style: no per-head workspaces).

Per optimizer step: `grad_accum` global batches from the mixture loader -> this process's rows ->
the training device (uint8 frames go over once) -> augmentation there -> `policy.compute_loss` under
bf16 autocast on CUDA -> backward (DDP averages gradients across processes) -> NaN check -> gradient
clip -> AdamW -> schedule -> EMA. Validation (EMA weights, held-out episodes, fixed noise), JSONL +
TensorBoard logs, a tqdm bar and atomic checkpoints happen on rank 0.

Exact resume: everything that decides the next step lives in the training state (weights, optimizer,
scheduler, EMA, torch/numpy/python RNG, loader position); augmentation is seeded by (seed, step) and
validation runs under a forked RNG, so a resumed run reproduces the losses of an uninterrupted one.
"""

from __future__ import annotations

import contextlib
import json
import math
import random
import sys
import time
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np
import torch
from safetensors import SafetensorError
from torch import nn
from tqdm import tqdm

from vlaforge.errors import VlaforgeError
from vlaforge.models.checkpointing import set_grad_checkpointing
from vlaforge.train import checkpoint as ckpt
from vlaforge.train import fsdp
from vlaforge.train.augment import augment_batch
from vlaforge.train.config import TrainConfig, validate
from vlaforge.train.distributed import Dist, wrap_ddp
from vlaforge.train.ema import EMA
from vlaforge.train.fsdp import wrap_fsdp
from vlaforge.train.optim import build_optimizer, build_scheduler

SAVE_ERRORS = (OSError, RuntimeError, SafetensorError)
"""What a failed checkpoint write raises: OSError (our files), RuntimeError (torch.save's writer),
SafetensorError (the weights)."""


class TrainingDiverged(VlaforgeError):
    """The loss (or gradient norm) became NaN/inf; training stopped before applying the update."""


class LossModule(nn.Module):
    """`forward(batch) = policy.compute_loss(batch)`, so DDP and torch.compile see a forward call."""

    def __init__(self, policy: nn.Module) -> None:
        super().__init__()
        self.policy = policy

    def forward(self, batch: dict) -> tuple[torch.Tensor, dict[str, float]]:
        return self.policy.compute_loss(batch)


class Trainer:
    """Owns the optimizer, schedule, EMA, logs and checkpoints of one run directory."""

    def __init__(
        self,
        policy: nn.Module,
        cfg: TrainConfig,
        loader,
        out: Path,
        *,
        val_batches: Callable[[], Iterable[dict]] | None = None,
        dist: Dist | None = None,
        export: Callable[[nn.Module], nn.Module] | None = None,
        info: dict | None = None,
    ) -> None:
        self.cfg, self.loader, self.out = validate(cfg), loader, Path(out)
        self.dist = dist or Dist()
        self.policy = policy.to(self.dist.device)
        self.val_batches = val_batches
        self.export = export or (lambda m: m)
        self.info = info or {}
        self.ema = EMA(self.policy, cfg.ema_decay) if cfg.ema_decay > 0 else None  # before compiling
        if cfg.grad_checkpointing:
            set_grad_checkpointing(self.policy)
        if cfg.compile:
            compile_modules(self.policy)
        self.sharded = cfg.fsdp and self.dist.enabled
        self.model = (wrap_fsdp if self.sharded else wrap_ddp)(LossModule(self.policy), self.dist)
        self._full: tuple[nn.Module, dict] | None = None  # FSDP: the gathered policy and optimizer state
        self.optimizer = build_optimizer(self.policy, cfg)
        self.elapsed_s = 0.0  # training wall time before this fit() (saved: the cap spans resumes)
        self._fit_start: float | None = None
        self._clock = 0.0  # budget fraction used when the last step ended, the same on every process
        clocked = cfg.lr_follows_clock and cfg.max_minutes > 0
        self.scheduler = build_scheduler(self.optimizer, cfg, (lambda: self._clock) if clocked else None)
        self.step, self.best = 0, math.inf
        self.last_val: float | None = None
        self._recent: list[float] = []
        self._data = None
        self._tb = None

    # ----------------------------------------------------------------- state
    @property
    def ckpt_root(self) -> Path:
        return self.out / "checkpoints"

    @property
    def eval_module(self) -> nn.Module:
        """The weights validated and saved: the EMA copy when EMA is on, the gathered copy under FSDP."""
        if self._full is not None:
            return self._full[0]
        return self.ema.module if self.ema else self.policy

    def state_dict(self) -> dict:
        state = {
            "step": self.step,
            "best": self.best,
            "elapsed_s": self._elapsed(),
            "model": (self._full[0] if self._full else self.policy).state_dict(),
            "optimizer": self._full[1] if self._full else self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "ema": self.ema.state_dict() if self.ema else None,
            "loader": self.loader.state_dict(),
            "rng": _rng_state(),
        }
        return state

    def load_state_dict(self, state: dict) -> None:
        if self.sharded:  # full state dicts (`fsdp.full_state`), sharded on every process
            model = {f"policy.{k}": v for k, v in state["model"].items()}
            fsdp.load_full_state(self.model, self.optimizer, model, state["optimizer"])
        else:
            self.policy.load_state_dict(state["model"])
            self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        if self.ema and state["ema"] is not None:
            self.ema.load_state_dict(state["ema"])
        self.loader.load_state_dict(state["loader"])
        _set_rng_state(state["rng"])
        self.step, self.best = state["step"], state["best"]
        self.elapsed_s = float(state.get("elapsed_s", 0.0))  # older checkpoints: none recorded
        self._clock = self._budget_used()
        self._data = None

    def resume(self, ckpt_dir: Path) -> None:
        """Continue from a checkpoint: restore the state and drop log records past its step."""
        self.load_state_dict(ckpt.load_training_state(ckpt_dir, map_location=self.dist.device))
        if self.dist.is_main:
            _truncate_log(self.out / "log.jsonl", self.step)

    # ------------------------------------------------------------------ loop
    def fit(self, on_step: Callable[[Trainer], None] | None = None) -> dict:
        """Train to `cfg.steps`; returns the final record. `on_step` runs after each step (tests)."""
        cfg, main = self.cfg, self.dist.is_main
        # a log file (not a terminal) gets a bar line every 30 s, not one per update
        every = 0.1 if sys.stderr.isatty() else 30.0
        bar = tqdm(total=cfg.steps, initial=self.step, disable=not main, dynamic_ncols=True, desc="train",
                   mininterval=every)  # fmt: skip
        window_start, window_samples = time.perf_counter(), 0
        self._fit_start = time.perf_counter()
        record: dict = {}
        try:
            while self.step < cfg.steps:
                loss, metrics = self.train_step()
                window_samples += cfg.batch_size * cfg.grad_accum
                self._recent = (self._recent + [loss])[-50:]
                bar.update(1)
                if self.step % cfg.log_every == 0 or self.step == 1 or self.step == cfg.steps:
                    rate = window_samples / max(1e-9, time.perf_counter() - window_start)
                    record = {
                        **metrics,
                        "step": self.step,
                        "loss": loss,
                        "lr": self.scheduler.get_last_lr()[0],
                        "samples_per_s": rate,
                    }
                    self._log(record)
                    bar.set_postfix(loss=f"{loss:.4f}", samples_s=f"{rate:.0f}")
                    window_start, window_samples = time.perf_counter(), 0
                self._clock = self._shared_budget_used()  # the stop now, and the next step's lr
                out_of_time = self._clock >= 1.0
                self._maybe_validate_and_save(final=out_of_time)
                if on_step:
                    on_step(self)
                if out_of_time and self.step < cfg.steps:
                    if main:
                        print(
                            f"stopped at step {self.step} of {cfg.steps}: train.max_minutes={cfg.max_minutes} reached"
                        )
                    break
        finally:
            self.elapsed_s, self._fit_start = self._elapsed(), None
            bar.close()
            self._close_logs()
        return record

    def _elapsed(self) -> float:
        """Training wall time in seconds, this fit() included."""
        running = time.perf_counter() - self._fit_start if self._fit_start is not None else 0.0
        return self.elapsed_s + running

    def _budget_used(self) -> float:
        """Fraction of `train.max_minutes` used by this process's clock (0 when there is no cap)."""
        return self._elapsed() / (self.cfg.max_minutes * 60) if self.cfg.max_minutes > 0 else 0.0

    def _shared_budget_used(self) -> float:
        """The budget fraction averaged over processes, so that every process sets the same lr and
        stops at the same step (one scalar all-reduce per step, only under a time cap)."""
        if self.cfg.max_minutes <= 0 or not self.dist.enabled:
            return self._budget_used()
        return float(self.dist.mean(torch.tensor(self._budget_used(), device=self.dist.device)))

    def train_step(self) -> tuple[float, dict[str, float]]:
        """One optimizer step; returns the (process-averaged) loss and the last micro-batch metrics."""
        cfg = self.cfg
        self.model.train()
        self.optimizer.zero_grad(set_to_none=True)
        total = torch.zeros((), device=self.dist.device)
        metrics: dict[str, float] = {}
        for micro in range(cfg.grad_accum):
            batch = self._next_batch(self.step * cfg.grad_accum + micro)
            sync = micro == cfg.grad_accum - 1 or not self.dist.enabled
            no_sync = sync or self.sharded  # FSDP reduce-scatters every micro-batch
            with self._autocast(), contextlib.nullcontext() if no_sync else self.model.no_sync():
                loss, metrics = self.model(batch)
                (loss / cfg.grad_accum).backward()
            total += loss.detach().float()
        loss_value = float(self.dist.mean(total / cfg.grad_accum))
        step = self.step + 1
        if not math.isfinite(loss_value):
            raise self._diverged("loss", loss_value, step)
        metrics = self._mean_metrics(metrics)
        if cfg.grad_clip > 0:
            norm = float(torch.nn.utils.clip_grad_norm_(self.optimizer_params(), cfg.grad_clip))
            if not math.isfinite(norm):
                raise self._diverged("gradient norm", norm, step)
            metrics["grad_norm"] = norm
        self.optimizer.step()
        self.scheduler.step()
        if self.ema:
            self.ema.update(self.policy)
        self.step = step
        return loss_value, {k: float(v) for k, v in metrics.items()}

    def _mean_metrics(self, metrics: dict) -> dict[str, float]:
        """The head's metrics (of the last micro-batch) averaged over processes."""
        if not self.dist.enabled or not metrics:
            return {k: float(v) for k, v in metrics.items()}
        keys = sorted(metrics)
        values = self.dist.mean(torch.tensor([float(metrics[k]) for k in keys], device=self.dist.device))
        return dict(zip(keys, values.tolist(), strict=True))

    def optimizer_params(self) -> list[torch.nn.Parameter]:
        return [p for g in self.optimizer.param_groups for p in g["params"]]

    def _next_batch(self, micro_step: int) -> dict:
        """The global batch -> this process's rows -> device -> augmentation."""
        if self._data is None:
            self._data = iter(self.loader)
        batch = next(self._data)
        global_batch = len(batch["task"]) if "task" in batch else self.cfg.batch_size
        rows = self.dist.rows(global_batch) if self.dist.enabled else None
        batch = to_device(shard(batch, rows), self.dist.device)
        return augment_batch(batch, self.cfg.augment, self.cfg.seed, micro_step, rows, global_batch)

    def _autocast(self):
        on_cuda = self.dist.device.type == "cuda" and self.cfg.bf16
        return torch.autocast("cuda", dtype=torch.bfloat16) if on_cuda else contextlib.nullcontext()

    def _diverged(self, what: str, value: float, step: int) -> TrainingDiverged:
        last = ckpt.latest_checkpoint(self.ckpt_root)
        where = f"the last good checkpoint is {last}" if last else "no checkpoint was written yet"
        return TrainingDiverged(f"{what} is {value} at step {step}; stopped before applying it ({where})")

    # ------------------------------------------------------- validate / save
    def _maybe_validate_and_save(self, final: bool = False) -> None:
        cfg, final = self.cfg, final or self.step == self.cfg.steps
        save = self.step % cfg.save_every == 0 or final
        val = self.val_batches and (self.step % cfg.val_every == 0 or save)
        if self.sharded and (val or save):  # every process gathers; rank 0 validates and saves a full copy
            model, optim = fsdp.full_state(self.model, self.optimizer)
            state = {k.removeprefix("policy."): v for k, v in model.items()}
            self._full = (fsdp.full_copy(self.policy, state), optim) if self.dist.is_main else None
        try:
            self._validate_and_save(val, save)
        finally:
            self._full = None

    def _validate_and_save(self, val: bool, save: bool) -> None:
        if val:
            self.last_val = self.validate() if self.dist.is_main else None
            if self.dist.is_main:
                self._log({"step": self.step, "val_loss": self.last_val})
        if save:
            if self.dist.is_main:
                self.save()
            self.dist.barrier()

    @torch.no_grad()
    def validate(self) -> float:
        """Mean loss of the EMA weights on the held-out batches, with a fixed seed for the heads' noise."""
        module = self.eval_module
        was_training = module.training
        module.eval()
        losses = []
        devices = [torch.cuda.current_device()] if self.dist.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(self.cfg.seed + 1)
            for batch in self.val_batches():
                with self._autocast():
                    loss, _ = module.compute_loss(
                        to_device(batch, getattr(module, "device", self.dist.device))
                    )
                losses.append(float(loss))
        module.train(was_training)
        return sum(losses) / max(1, len(losses))

    def save(self) -> Path:
        """An atomic checkpoint of this step; `best` follows the validation (else training) loss."""
        metric = self.last_val if self.last_val is not None else _mean(self._recent)
        info = {"metric": metric, "val_loss": self.last_val, **self.info}
        is_best = metric < self.best
        if is_best:
            self.best = metric
        try:
            path = ckpt.save_checkpoint(
                self.ckpt_root,
                self.step,
                lambda d: self.export(self.eval_module).save_pretrained(d),
                self.state_dict(),
                info,
            )
        except SAVE_ERRORS as err:  # a full or read-only disk; torch and safetensors raise their own types
            last = ckpt.latest_checkpoint(self.ckpt_root)
            kept = f"the previous checkpoint {last} is intact" if last else "no earlier checkpoint exists"
            reason = (getattr(err, "strerror", None) or str(err)).splitlines()[0]
            raise VlaforgeError(
                f"could not save the checkpoint of step {self.step} ({reason}); {kept}"
            ) from err
        if is_best:
            ckpt.point_link(self.ckpt_root, "best", path)
        ckpt.prune(self.ckpt_root, self.cfg.keep_last)
        return path

    # ------------------------------------------------------------------ logs
    def _log(self, record: dict) -> None:
        if not self.dist.is_main:
            return
        try:
            self.out.mkdir(parents=True, exist_ok=True)
            with open(self.out / "log.jsonl", "a") as f:
                f.write(json.dumps({**record, "time": time.time()}) + "\n")
        except OSError as err:
            raise VlaforgeError(
                f"could not write {self.out / 'log.jsonl'} at step {self.step}: {err.strerror or err}"
            ) from err
        tb = self._tensorboard() if self.cfg.tensorboard else None
        if tb is not None:
            for key, value in record.items():
                if key != "step" and isinstance(value, (int, float)):
                    tb.add_scalar(key.replace("val_loss", "val/loss"), value, record["step"])

    def _tensorboard(self):
        """The SummaryWriter, or None when tensorboard is not installed (said once; log.jsonl has it all)."""
        if self._tb is None:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:
                tqdm.write(
                    "tensorboard is not installed (pip install tensorboard): logging to log.jsonl only"
                )
                self._tb = False
            else:
                self._tb = SummaryWriter(str(self.out / "tensorboard"), purge_step=self.step or None)
        return self._tb or None

    def _close_logs(self) -> None:
        if self._tb:
            self._tb.close()
        self._tb = None


COMPILED = ("obs_encoder", "trunk")
"""Submodules `--compile` compiles in place (names and state_dict keys unchanged). The text encoder
(tokenizer, transformers) and the heads' loss methods stay eager: dynamo cannot trace the former."""


def compile_modules(policy: nn.Module) -> None:
    for name in COMPILED:
        module = getattr(policy, name, None)
        if isinstance(module, nn.Module):
            module.compile()


def shard(batch: dict, rows: slice | None) -> dict:
    """This process's rows of every per-sample entry (tensors and the task list)."""
    if rows is None:
        return batch
    return {k: v[rows] if isinstance(v, (torch.Tensor, list)) else v for k, v in batch.items()}


def to_device(batch: dict, device: torch.device) -> dict:
    """Tensors to `device` (pinned, asynchronous copies to CUDA); other entries as they are."""
    if device.type == "cpu":
        return batch
    return {
        k: v.pin_memory().to(device, non_blocking=True) if isinstance(v, torch.Tensor) else v
        for k, v in batch.items()
    }


def _mean(values: list[float]) -> float:
    return sum(values) / len(values) if values else math.inf


def _rng_state() -> dict:
    state = {"torch": torch.get_rng_state(), "python": random.getstate(), "numpy": np.random.get_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"].cpu())
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([s.cpu() for s in state["cuda"]])


def _truncate_log(path: Path, step: int) -> None:
    """Drop records written after `step` by a run that was killed later than its last checkpoint."""
    if not path.exists():
        return
    keep = [line for line in path.read_text().splitlines() if _record_step(line) <= step]
    tmp = path.with_suffix(".tmp")
    tmp.write_text("".join(line + "\n" for line in keep))
    tmp.replace(path)


def _record_step(line: str) -> float:
    """The step of a JSONL record; a line cut short by a kill counts as past any checkpoint."""
    try:
        return json.loads(line)["step"]
    except (json.JSONDecodeError, KeyError, TypeError):
        return math.inf
