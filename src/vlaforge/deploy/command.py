"""`vlaforge export` and `vlaforge bench`: their configs and the functions that run them.

    vlaforge export --policy CKPT --int8 --out DIR           # DIR serves with `vlaforge serve --policy DIR`
    vlaforge export --policy CKPT --onnx --out DIR           # DIR/policy.onnx (+ text embeddings, onnx.json)
    vlaforge bench latency --preset default --head flow --json
    vlaforge bench latency --policy CKPT --threads 1 --set model.flow_steps=5   # (a preset's field)

--int8 makes DIR a servable INT8 policy (dynamic INT8 linear layers, `vlaforge.deploy.quantize`);
--onnx writes the graph observation -> actions from the fp32 weights (`vlaforge.deploy.export`;
regression and token heads). Both may be given; then DIR also gets policy.int8.onnx (onnxruntime
dynamic quantization). An existing, non-empty DIR is refused unless --overwrite.

`bench latency` times a freshly initialised preset (latency does not depend on the weights) unless
--policy names a checkpoint; --head swaps the preset's head kind (tokens also switches to bounds
normalization) and `--set model.<PolicyConfig field>=...` overrides any field of the preset.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from vlaforge.config import option
from vlaforge.errors import VlaforgeError

CAMERA_PX = 128
"""The camera frame size `measure_latency` feeds the policy (resized to the policy's own size)."""


@dataclass(frozen=True)
class ExportCommand:
    """`vlaforge export`: INT8 and/or ONNX from one fp32 checkpoint."""

    policy: str = field(metadata=option(metavar="CKPT"))
    """Checkpoint directory (fp32)."""
    out: str = field(metadata=option(metavar="DIR"))
    """Output directory."""
    int8: bool = False
    """Dynamic INT8 quantization of the linear layers (a servable policy directory)."""
    onnx: bool = False
    """ONNX graph observation -> actions (regression and token heads)."""
    task: tuple[str, ...] = field(default=(), metadata=option(repeat=True, metavar="TEXT"))
    """An instruction whose text embedding is saved with the ONNX graph (the checkpoint's known tasks
    are always saved)."""
    batch: int = 1
    """Batch size of the ONNX graph (fixed)."""
    embodiment: str | None = None
    """Mixture policy: the training dataset (embodiment) the ONNX graph is for, by name or index;
    none: the first. (An INT8 export keeps every embodiment; `vlaforge serve --embodiment` picks.)"""
    overwrite: bool = False
    """Replace an existing output directory."""


@dataclass(frozen=True)
class BenchCommand:
    """`vlaforge bench latency`: per-call latency of a preset's (or a checkpoint's) policy on the CPU."""

    what: Literal["latency"] = field(default="latency", metadata=option(positional=True))
    """Which benchmark."""
    preset: str | None = None
    """Model preset; none: the default preset."""
    policy: str | None = field(default=None, metadata=option(metavar="CKPT"))
    """A checkpoint directory to time instead of a preset."""
    head: str | None = None
    """Swap the preset's head kind (regression, tokens, diffusion, flow, flow-expert)."""
    model: tuple[str, ...] = field(default=(), metadata=option(overrides=True))
    """Overrides of the preset's PolicyConfig, from `--set model.<field>=...`."""
    threads: int | None = None
    """Torch threads; none: torch's choice."""
    iters: int = 50
    """Timed calls."""
    warmup: int = 5
    """Untimed calls first."""
    int8: bool = False
    """Time the dynamic INT8 policy (`vlaforge.deploy.quantize`)."""
    json: bool = False
    """Print one JSON object instead of a table."""


def run_export(cfg: ExportCommand) -> int:
    """Write the exports `cfg` asks for; prints what was written as JSON."""
    from vlaforge.deploy.quantize import is_int8_export, load_policy

    if not (cfg.int8 or cfg.onnx):
        raise VlaforgeError("nothing to export: give --int8 and/or --onnx")
    if cfg.batch < 1:
        raise VlaforgeError(f"--batch must be at least 1, got {cfg.batch}")
    source, out = Path(cfg.policy), Path(cfg.out)
    if out.resolve() == source.resolve():
        raise VlaforgeError(f"--out {out} is the checkpoint itself; choose another directory")
    if out.exists() and not out.is_dir():
        raise VlaforgeError(f"--out {out}: is a file, not a directory")
    if out.exists() and any(out.iterdir()) and not cfg.overwrite:
        raise VlaforgeError(f"{out} exists and is not empty (use --overwrite to replace it)")
    if is_int8_export(source):
        raise VlaforgeError(f"{source} is already an INT8 export; export from the fp32 checkpoint")
    policy = load_policy(source)
    if cfg.onnx:
        from vlaforge.deploy.export import check_exportable
        from vlaforge.models.io import PolicyIO

        check_exportable(policy)  # before the INT8 directory is written
        PolicyIO(policy, embodiment_ref(cfg.embodiment))  # an unknown embodiment fails here too
    try:
        written = _write_exports(cfg, policy, source, out)
    except OSError as exc:  # /proc/x, a read-only or full disk
        raise VlaforgeError(f"--out {out}: cannot write the export ({exc.strerror or exc})") from exc
    print(json.dumps({"policy": str(source), "written": written}, indent=2))
    return 0


def _write_exports(cfg: ExportCommand, policy, source: Path, out: Path) -> list[str]:
    from vlaforge.deploy.export import save_onnx_export
    from vlaforge.deploy.quantize import save_int8

    written = []
    if cfg.int8:
        save_int8(policy, source, out)
        written.append(str(out))
    if cfg.onnx:
        embodiment = embodiment_ref(cfg.embodiment)
        onnx = save_onnx_export(
            policy, out, tasks=list(cfg.task), batch=cfg.batch, int8=cfg.int8, embodiment=embodiment
        )
        written += [str(onnx)] + ([str(onnx.with_name("policy.int8.onnx"))] if cfg.int8 else [])
    return written


def embodiment_ref(text: str | None) -> int | str | None:
    """`--embodiment 1` is an index, `--embodiment aloha` a dataset name."""
    return int(text) if text is not None and text.isdigit() else text


def bench_policy(cfg: BenchCommand):
    """The policy to time and its name: a checkpoint, or a preset with --head / model overrides."""
    import torch

    from vlaforge.config import apply_overrides
    from vlaforge.models.heads import HEAD_KINDS
    from vlaforge.models.policy import VLAPolicy
    from vlaforge.models.presets import DEFAULT_PRESET, get_preset, with_head

    if cfg.policy:
        if cfg.preset or cfg.head or cfg.model:
            raise VlaforgeError("--policy cannot be combined with --preset, --head or --set model.*")
        from vlaforge.deploy.quantize import load_policy

        return load_policy(cfg.policy), cfg.policy
    name = cfg.preset or DEFAULT_PRESET
    policy_cfg = get_preset(name)
    if cfg.head:
        if cfg.head not in HEAD_KINDS:
            from vlaforge.errors import unknown

            raise unknown("head kind", cfg.head, HEAD_KINDS)
        policy_cfg = with_head(policy_cfg, cfg.head)
    policy_cfg = apply_overrides(policy_cfg, list(cfg.model))
    torch.manual_seed(0)
    return VLAPolicy(policy_cfg), name


def run_bench(cfg: BenchCommand) -> int:
    """Time the policy; prints a table or one JSON object."""
    from vlaforge.deploy.bench import measure_latency

    for name in ("iters", "warmup"):
        if getattr(cfg, name) < (1 if name == "iters" else 0):
            raise VlaforgeError(
                f"--{name} must be at least {1 if name == 'iters' else 0}, got {getattr(cfg, name)}"
            )
    policy, name = bench_policy(cfg)
    params = policy.num_parameters()  # counted on the fp32 model (quantized linears hold no Parameters)
    if cfg.int8:
        from vlaforge.deploy.quantize import quantize_dynamic_int8

        policy = quantize_dynamic_int8(policy).eval()
    result = measure_latency(
        policy, iters=cfg.iters, warmup=cfg.warmup, threads=cfg.threads, camera_size=CAMERA_PX
    )
    result = {"preset": name, "head": policy.config.head.kind, "int8": cfg.int8,
              "image_size": policy.config.image_size, "camera_px": CAMERA_PX, "history": policy.config.history,
              **result, "params_trainable": params["trainable"], "params_frozen_text": params["frozen_text"]}  # fmt: skip
    if cfg.json:
        print(json.dumps(result))
    else:
        for key, value in result.items():
            print(f"{key:>20}: {value}")
    return 0
