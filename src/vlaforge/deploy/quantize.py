"""Dynamic INT8 quantization of a policy's linear layers, saved without pickle and loaded for serving.

Method: `torch.ao.quantization.quantize_dynamic` with per-channel symmetric INT8 weights for every
`nn.Linear` but `KEEP_FP32` (activations are quantized per batch at run time; convolutions, norms, embeddings and the
frozen text encoder, whose outputs are cached per instruction, stay fp32). On torch 2.13 this eager
API still runs on CPU (fbgemm/x86 and qnnpack kernels) but warns that it is deprecated in favour of
`torchao`'s `quantize_` (not installed here, and it pulls its own torch pins); the warning is
silenced and the method is kept behind `quantize_dynamic_int8` so it can be swapped in one place.

INT8 export directory (`vlaforge export --int8 --out DIR`):
    config.json, stats.json, metadata.json   copied from the checkpoint
    model_int8.safetensors                   int8 weights (`<name>.weight_int8`, `.weight_scale`,
                                             `.weight_zero_point`, `.bias`) + every fp32 tensor
    quantization.json                        {"format": "vlaforge-int8-dynamic", "scheme": ...}
`load_policy(DIR)` rebuilds the model from config.json, quantizes the structure and copies the saved
int8 weights in, so `vlaforge serve --policy DIR` serves exactly the exported weights.
"""

from __future__ import annotations

import fnmatch
import json
import os
import shutil
import tempfile
import warnings
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from vlaforge.errors import VlaforgeError

QUANT_FILE, INT8_WEIGHTS = "quantization.json", "model_int8.safetensors"
EXPORT = "policy export"  # how error messages name an export directory
FORMAT = "vlaforge-int8-dynamic"
COPIED = ("config.json", "stats.json", "metadata.json")
# Linear layers kept fp32 (fnmatch patterns of module names): model code reads their `.weight` as a
# tensor (`.weight.device` in the task encoder, `.weight.dtype` in the heads' time embedding), which
# a quantized linear exposes as a method `weight()`. Both are tiny (one call per chunk); so is the
# task encoder's FiLM map (`image.film`), kept fp32 beside its projection.
KEEP_FP32 = ("task_encoder.proj", "task_encoder.film", "*time.mlp.0")


def quantize_dynamic_int8(model: nn.Module) -> nn.Module:
    """A copy of `model` with every nn.Linear replaced by a dynamic INT8 linear (per-channel weights)."""
    from torch.ao.quantization import per_channel_dynamic_qconfig, quantize_dynamic

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch 2.13 deprecates torch.ao.quantization (see module doc)
        spec: dict[Any, Any] = {nn.Linear: per_channel_dynamic_qconfig}
        names = [name for name, _ in model.named_modules()]
        spec.update({name: None for pattern in KEEP_FP32 for name in fnmatch.filter(names, pattern)})
        return quantize_dynamic(model, spec, dtype=torch.qint8, inplace=False)


def _quantized_linears(model: nn.Module) -> dict[str, nn.Module]:
    from torch.ao.nn.quantized.dynamic import Linear as DynamicLinear

    return {name: m for name, m in model.named_modules() if isinstance(m, DynamicLinear)}


def int8_state(qmodel: nn.Module) -> dict[str, torch.Tensor]:
    """Plain tensors for safetensors: int8 weights + scales per quantized linear, fp32 for the rest."""
    tensors: dict[str, torch.Tensor] = {}
    for name, mod in _quantized_linears(qmodel).items():
        weight, bias = mod.weight(), mod.bias()
        tensors[f"{name}.weight_int8"] = weight.int_repr().contiguous()  # [out, in] int8
        tensors[f"{name}.weight_scale"] = weight.q_per_channel_scales().float().contiguous()  # [out]
        tensors[f"{name}.weight_zero_point"] = weight.q_per_channel_zero_points().contiguous()  # [out]
        if bias is not None:
            tensors[f"{name}.bias"] = bias.detach().contiguous()
    for key, value in qmodel.state_dict().items():
        if isinstance(value, torch.Tensor) and not value.is_quantized and not _under(key, tensors):
            tensors[key] = value.detach().cpu().contiguous()
    return tensors


def _under(key: str, int8: dict[str, torch.Tensor]) -> bool:
    """Is `key` (e.g. `trunk.0.fc.scale`) a buffer of a quantized linear already stored?"""
    prefix = key.rsplit(".", 1)[0]
    return f"{prefix}.weight_int8" in int8 or f"{prefix.rsplit('.', 1)[0]}.weight_int8" in int8


def load_int8_state(qmodel: nn.Module, tensors: dict[str, torch.Tensor], where: str) -> None:
    """Copy saved int8 weights and fp32 tensors into a quantized model built from the same config."""
    tensors = dict(tensors)
    for name, mod in _quantized_linears(qmodel).items():
        try:
            q = torch._make_per_channel_quantized_tensor(
                tensors.pop(f"{name}.weight_int8"),
                tensors.pop(f"{name}.weight_scale").double(),
                tensors.pop(f"{name}.weight_zero_point"),
                0,
            )
        except KeyError as err:
            raise VlaforgeError(f"{where}: missing int8 tensor {err.args[0]!r}") from err
        mod.set_weight_bias(q, tensors.pop(f"{name}.bias", None))
    full = qmodel.state_dict()  # includes the packed int8 weights just set
    stored = {f"{n}.weight_int8": None for n in _quantized_linears(qmodel)}
    plain = {k for k, v in full.items() if isinstance(v, torch.Tensor) and not _under(k, stored)}
    missing, unexpected = sorted(plain - set(tensors)), sorted(set(tensors) - plain)
    bad = [k for k in plain & set(tensors) if tuple(tensors[k].shape) != tuple(full[k].shape)]
    if missing or unexpected or bad:
        raise VlaforgeError(
            f"{where}: tensors do not match the config (missing {missing[:3]}, "
            f"unexpected {unexpected[:3]}, wrong shape {bad[:3]})"
        )
    full.update(tensors)
    qmodel.load_state_dict(full, strict=True)


def save_int8(policy: nn.Module, source: str | os.PathLike, out: str | os.PathLike) -> Path:
    """Quantize `policy` (loaded from checkpoint `source`) and write the INT8 directory `out` atomically."""
    qmodel = quantize_dynamic_int8(policy)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    try:
        for name in COPIED:
            if (Path(source) / name).exists():
                shutil.copy2(Path(source) / name, tmp / name)
        save_file(int8_state(qmodel), str(tmp / INT8_WEIGHTS), metadata={"format": FORMAT})
        scheme = {
            "format": FORMAT,
            "modules": "torch.nn.Linear",
            "weights": "int8 per-channel symmetric",
            "activations": "int8 dynamic per batch",
            "engine": torch.backends.quantized.engine,
        }
        (tmp / QUANT_FILE).write_text(json.dumps(scheme, indent=2))
        out.mkdir(exist_ok=True)
        for item in sorted(tmp.iterdir(), key=lambda p: p.name == QUANT_FILE):  # the marker file last
            os.replace(item, out / item.name)  # file by file: never deletes what else is in `out`
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out


def is_int8_export(path: str | os.PathLike) -> bool:
    return (Path(path) / QUANT_FILE).exists()


def load_policy(path: str | os.PathLike, *, int8: bool = False) -> Any:
    """A `VLAPolicy` in eval mode from a checkpoint, or from an INT8 export (detected by quantization.json).

    `int8=True` quantizes an fp32 checkpoint on load (same method as `vlaforge export --int8`).
    """
    from vlaforge.models.policy import VLAPolicy

    if not is_int8_export(path):
        policy = VLAPolicy.from_pretrained(path)
        return quantize_dynamic_int8(policy).eval() if int8 else policy
    return _load_int8_dir(Path(path))


def _load_int8_dir(path: Path) -> Any:
    from vlaforge.config import from_dict
    from vlaforge.models.config import PolicyConfig
    from vlaforge.models.policy import VLAPolicy, read_json

    info = read_json(path / QUANT_FILE, EXPORT)
    if info.get("format") != FORMAT:
        raise VlaforgeError(
            f"{path}: unknown quantization format {info.get('format')!r} (expected {FORMAT!r})"
        )
    config = from_dict(PolicyConfig, read_json(path / "config.json", EXPORT), where="config")
    stats = read_json(path / "stats.json", EXPORT) if (path / "stats.json").exists() else None
    metadata = read_json(path / "metadata.json", EXPORT) if (path / "metadata.json").exists() else {}
    qmodel = quantize_dynamic_int8(VLAPolicy(config, stats=stats, metadata=metadata))
    try:
        tensors = load_file(str(path / INT8_WEIGHTS))
    except Exception as err:
        raise VlaforgeError(f"{path / INT8_WEIGHTS}: unreadable int8 weights ({err})") from err
    load_int8_state(qmodel, tensors, str(path))
    return qmodel.eval()
