"""Training configuration: one frozen dataclass for the loop, one for image augmentation.

Overrides of a run (`vlaforge train --set ...`, RUN/run.json) use two namespaces (see `split_overrides`):

    model.<PolicyConfig field>   e.g. model.head.kind=flow, model.trunk.depth=2, model.image_size=64
    train.<TrainConfig field>    e.g. train.lr=3e-4, train.ema_decay=0, train.augment.shift=0

An override is a `key=text` string or a `{key: typed value}` dict (`vlaforge.config.apply_overrides`).
`--steps`, `--batch-size`, `--seed`, ... are the matching `TrainConfig` fields as options.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from vlaforge.config import key_value_pairs
from vlaforge.errors import VlaforgeError, did_you_mean

NAMESPACES = ("model", "train")


@dataclass(frozen=True)
class AugmentConfig:
    """Image augmentation applied on the training device; never at validation or evaluation."""

    enabled: bool = True
    """Master switch."""
    shift: int = 4
    """Random shift in pixels (DrQ-style: replicate-pad by `shift`, crop back at a random offset);
    one offset per sample, shared by its history frames and cameras so motion stays consistent."""
    brightness: float = 0.2
    """Multiplicative brightness jitter: factor uniform in [1 - b, 1 + b]."""
    contrast: float = 0.2
    """Contrast jitter around the image's mean grey level: factor uniform in [1 - c, 1 + c]."""
    saturation: float = 0.2
    """Saturation jitter (blend with the greyscale image): factor uniform in [1 - s, 1 + s]."""


@dataclass(frozen=True)
class TrainConfig:
    """The one training loop's settings (every head and preset uses the same loop)."""

    steps: int = 10_000
    """Optimizer steps in total (the cosine schedule spans exactly these)."""
    batch_size: int = 64
    """Global batch per micro-step, summed over data-parallel processes (each takes its slice)."""
    grad_accum: int = 1
    """Micro-batches accumulated per optimizer step; samples per step = batch_size * grad_accum."""
    lr: float = 3e-4
    """Peak learning rate of AdamW."""
    weight_decay: float = 0.01
    """AdamW decoupled weight decay; applied to matrices only (not to biases, norms, embeddings)."""
    betas: tuple[float, float] = (0.9, 0.95)
    """AdamW betas."""
    warmup_steps: int = 200
    """Linear warmup from 0 to `lr`; capped at steps // 5 for short runs."""
    min_lr_ratio: float = 0.1
    """The cosine decays to lr * min_lr_ratio at the last step."""
    grad_clip: float = 1.0
    """Global gradient-norm clip (0 = off)."""
    ema_decay: float = 0.999
    """EMA of the weights used for validation and saved in checkpoints (0 = off). The effective decay
    is min(ema_decay, (1 + step) / (10 + step)) so early checkpoints are not dominated by init."""
    bf16: bool = True
    """bf16 autocast on CUDA (ignored on CPU, where float32 is faster on most laptops)."""
    grad_checkpointing: bool = False
    """Activation checkpointing of the transformer layers (our trunk's blocks; PaliGemma's SigLIP and
    Gemma layers and pi0's expert layers): the same loss and gradients for less activation memory,
    at about one more forward pass per step (`vlaforge.models.checkpointing`)."""
    fsdp: bool = False
    """Fully sharded data parallel under torchrun / accelerate launch (`vlaforge.train.fsdp`, torch's
    FSDP2): parameters, gradients and optimizer state sharded over processes instead of replicated
    (DDP); needs ema_decay=0. A no-op in one process."""
    compile: bool = False
    """torch.compile the image encoder and the trunk (`trainer.COMPILED`); the first steps compile."""
    val_fraction: float = 0.1
    """Fraction of each dataset's episodes held out for the validation loss (0 = no validation)."""
    val_every: int = 500
    """Validation loss every this many steps (and at the end)."""
    val_batches: int = 4
    """Validation batches per evaluation (fixed windows, fixed noise: comparable across steps)."""
    log_every: int = 10
    """Steps between JSONL / TensorBoard records."""
    save_every: int = 1000
    """Steps between checkpoints (one is always written at the end)."""
    keep_last: int = 3
    """Step checkpoints kept (the best one is kept in addition)."""
    seed: int = 0
    """Seed of the model init, the data order, the augmentation and the heads' noise."""
    tensorboard: bool = True
    """Also write TensorBoard event files under RUN/tensorboard (when tensorboard is installed;
    without it training says so once and logs to RUN/log.jsonl only)."""
    max_minutes: float = 0.0
    """Stop after this much training wall time with a final checkpoint at that step (0 = off). The
    time is counted across resumes (it is saved with the training state). A safety net for
    time-boxed runs such as the quickstart: unless `lr_follows_clock`, the lr schedule spans `steps`,
    so a run cut short ends above its minimum lr."""
    lr_follows_clock: bool = False
    """With `max_minutes`: the cosine schedule's progress is the larger of steps done / `steps` and
    minutes used / `max_minutes`, so a time-boxed run reaches its minimum lr when its time runs out,
    however fast the machine is (set `steps` above what fits and the clock decides). The lr then
    depends on the machine's speed: such a run is not bit-reproducible."""
    camera_map: str = ""
    """Explicit camera -> slot mapping for the datasets, "CAMERA=SLOT,..." (e.g. "top=primary");
    otherwise a slot of `model.cameras` takes the camera of that name, else the first camera whose
    collected role is the slot's name (`vlaforge.data.slots`)."""
    task_weights: str = ""
    """Sampling weights of tasks, "TASK=WEIGHT,..." (e.g. "push-v3=3"): a task's windows are drawn
    WEIGHT times as often as at 1 (`vlaforge.data.mixture`); TASK is the simulator's task name in the
    episode metadata or the instruction; tasks not named weigh 1. Validation batches stay unweighted."""
    mixed_fps: bool = False
    """Accept a mixture of datasets with different fps, each kept at its own control rate (a chunk is
    H steps of that robot's clock; Octo's practice). Off: such a mixture is refused, naming the rates."""
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    """Image augmentation on the training device."""


_AT_LEAST = {"steps": 1, "batch_size": 1, "grad_accum": 1, "warmup_steps": 0, "val_every": 1,
             "val_batches": 0, "log_every": 1, "save_every": 1, "keep_last": 1, "seed": 0}  # fmt: skip
_RANGES = {  # field: (low, high, high included)
    "weight_decay": (0.0, math.inf, False),
    "min_lr_ratio": (0.0, 1.0, True),
    "grad_clip": (0.0, math.inf, False),
    "ema_decay": (0.0, 1.0, False),
    "val_fraction": (0.0, 1.0, False),
    "max_minutes": (0.0, math.inf, False),
}
_AUGMENT_AT_MOST = {"brightness": 1.0, "contrast": 1.0, "saturation": 1.0}


def validate(cfg: TrainConfig) -> TrainConfig:
    """Every TrainConfig value the loop cannot run with is one `VlaforgeError` naming the field;
    called before any data is read (`train/command.py`) and again by the `Trainer` itself."""
    for name, low in _AT_LEAST.items():
        _integer(f"train.{name}", getattr(cfg, name), low)
    _number("train.lr", cfg.lr, 0.0, math.inf, low_ok=False)
    for name, (low, high, high_ok) in _RANGES.items():
        _number(f"train.{name}", getattr(cfg, name), low, high, high_ok=high_ok)
    if len(cfg.betas) != 2:
        raise VlaforgeError(f"train.betas must be two numbers, got {list(cfg.betas)}")
    for beta in cfg.betas:
        _number("train.betas", beta, 0.0, 1.0)
    if cfg.lr_follows_clock and cfg.max_minutes <= 0:
        raise VlaforgeError("train.lr_follows_clock=true needs a time budget: set train.max_minutes > 0")
    parse_task_weights(cfg.task_weights)
    if cfg.fsdp and cfg.ema_decay > 0:
        raise VlaforgeError("train.fsdp=true needs train.ema_decay=0 (no EMA of sharded weights)")
    _integer("train.augment.shift", cfg.augment.shift, 0)
    for name, high in _AUGMENT_AT_MOST.items():
        _number(f"train.augment.{name}", getattr(cfg.augment, name), 0.0, high, high_ok=True)
    return cfg


def _integer(name: str, value, low: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise VlaforgeError(f"{name} must be an integer >= {low}, got {value!r}")


def _number(name: str, value, low: float, high: float, *, low_ok: bool = True, high_ok: bool = False) -> None:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    ok = ok and (value >= low if low_ok else value > low) and (value <= high if high_ok else value < high)
    if not ok:
        if math.isinf(high):
            bounds = f"{'>=' if low_ok else '>'} {low:g}"
        else:
            bounds = f"in {'[' if low_ok else '('}{low:g}, {high:g}{']' if high_ok else ')'}"
        raise VlaforgeError(f"{name} must be a finite number {bounds}, got {value!r}")


FINETUNE_TRAIN = TrainConfig(lr=1e-4, warmup_steps=50, ema_decay=0.99)
"""Fine-tuning's loop settings: a lower lr, a shorter warmup, a faster EMA; options and --set override them."""
FINETUNE_DEFAULTS = ({"train.lr": FINETUNE_TRAIN.lr, "train.warmup_steps": FINETUNE_TRAIN.warmup_steps,
                      "train.ema_decay": FINETUNE_TRAIN.ema_decay},)  # fmt: skip
"""The same as run-spec overrides (for a spec written by hand, as in the tests)."""


def split_overrides(items) -> tuple[list, list]:
    """`["model.head.kind=flow", {"train.lr": 1e-4}]` -> (["head.kind=flow"], [{"lr": 1e-4}])."""
    model, train = [], []
    for item in items:
        if isinstance(item, dict):
            parts = {}
            for key, value in item.items():
                space, rest = _namespace(str(key).strip())
                parts.setdefault(space, {})[rest] = value
            model += [parts["model"]] if "model" in parts else []
            train += [parts["train"]] if "train" in parts else []
            continue
        space, rest = _namespace(item.split("=", 1)[0].strip())
        (model if space == "model" else train).append(item.split(".", 1)[1])
    return model, train


def _namespace(key: str) -> tuple[str, str]:
    space, _, rest = key.partition(".")
    if space not in NAMESPACES or not rest:
        hint = did_you_mean(space, NAMESPACES) if rest else _bare_key_hint(key)
        raise VlaforgeError(
            f"config key {key!r} must start with 'model.' or 'train.'{hint} (e.g. model.head.kind=flow, train.lr=3e-4)"
        )
    return space, rest


def _bare_key_hint(key: str) -> str:
    """A bare `lr` most likely meant `train.lr`."""
    import dataclasses

    names = [f"train.{f.name}" for f in dataclasses.fields(TrainConfig)]
    return did_you_mean(f"train.{key}", names)


def parse_task_weights(spec: str) -> dict[str, float]:
    """ "push-v3=3,reach-v3=2" -> {"push-v3": 3.0, "reach-v3": 2.0} (`train.task_weights`)."""
    form = "TASK=WEIGHT with a positive weight (e.g. push-v3=3)"
    out: dict[str, float] = {}
    for name, value in key_value_pairs(spec, "task_weights", form):
        try:
            weight = float(value)
        except ValueError:
            weight = math.nan
        if not math.isfinite(weight) or weight <= 0:
            raise VlaforgeError(f"task_weights entry {f'{name}={value}'!r} must be {form}")
        if name in out:
            raise VlaforgeError(f"task_weights names task {name!r} twice")
        out[name] = weight
    return out
