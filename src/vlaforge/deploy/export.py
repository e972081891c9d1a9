"""ONNX export of a policy's whole observation -> actions graph (regression and token heads).

The graph takes the language embedding as an input instead of the instruction string, so the ONNX
file holds everything but the frozen text encoder; the embeddings of the checkpoint's known tasks
(`metadata["tasks"]`, plus any given with `--task`) are computed once and saved beside it
(`text_embeddings.safetensors`, key = instruction string, value float32 [E]).

With `vlaforge export --onnx --int8`, `policy.int8.onnx` is the same graph after onnxruntime's
dynamic quantization (int8 weights, activations quantized at run time; `quantize_onnx`).

Inputs / output (B = `batch`, fixed at export; T = history; H from the config; A, S the exported
embodiment's real dims, `vlaforge.models.io.PolicyIO`):
    observation.images.<cam>   uint8   [B, T, image_size, image_size, 3]  (frames of another size:
                                                          resize them with `vlaforge.image.resize`)
    observation.state          float32 [B, T, S]          (absent when state_dim = 0)
    observation_is_pad         bool    [B, T]             True = padding before the episode start
    text_embedding             float32 [B, E]
    actions (output)           float32 [B, H, A]          robot units of that embodiment

A mixture policy is exported for one embodiment (`embodiment`, default the first training dataset):
its statistics unnormalize the actions and the graph returns its action width.

Exporter: torch 2.13's default `dynamo=True` exporter needs `onnxscript` (not installed), so the
TorchScript-based exporter (`dynamo=False`) is used; it traces, so data-dependent branches are fixed
at export. The trunk skips its padding mask when no step is padded; we trace with a padded first
step so the masked path, which is also exact when nothing is padded, is the one recorded. Diffusion
and flow heads (sampling loops with noise) are not exported. The batch size is fixed (default 1,
one robot); the encoder reuses the policy's own `encode` with the text embedder swapped for the
input tensor, so there is no second copy of the model code.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import save_file
from torch import nn

from vlaforge import keys
from vlaforge.errors import VlaforgeError
from vlaforge.models.io import PolicyIO

EXPORTABLE_HEADS = ("regression", "tokens")
ONNX_FILE, EMBED_FILE, INFO_FILE = "policy.onnx", "text_embeddings.safetensors", "onnx.json"
ONNX_INT8_FILE = "policy.int8.onnx"


class _FixedText:
    """Stands in for the policy's `TextEmbedder`: returns the embedding given as a graph input."""

    def __init__(self) -> None:
        self.value: torch.Tensor | None = None

    def __call__(self, texts: list[str]) -> torch.Tensor:
        return self.value  # [B, E]


class ObservationToActions(nn.Module):
    """`forward(*images, [state], is_pad, text_embedding) -> actions [B, H, A]` around a VLAPolicy,
    for one embodiment (`vlaforge.models.io.PolicyIO`)."""

    def __init__(self, policy: nn.Module, embodiment: int | str | None = None) -> None:
        super().__init__()
        self.policy = policy
        self.io = PolicyIO(policy, embodiment)
        self.keys = [keys.image_key(cam) for cam in self.io.cameras]  # the embodiment's camera names
        self.has_state = policy.config.state_dim > 0
        # Graph inputs are named by the embodiment's cameras; the policy reads its slots. A slot the
        # embodiment lacks is a constant False in camera_mask (baked into this embodiment's graph).
        self._rename = {keys.image_key(c): keys.image_key(s) for s, c in self.io.slots if c is not None}
        present = [c is not None for _, c in self.io.slots]
        self._camera_mask = None if all(present) else torch.tensor([present])  # [1, C]

    def input_names(self) -> list[str]:
        return [
            *self.keys,
            *(["observation.state"] if self.has_state else []),
            "observation_is_pad",
            "text_embedding",
        ]

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        named = dict(zip(self.input_names(), inputs, strict=True))
        text = self.policy.task_encoder.text
        shim = _FixedText()
        shim.value = named.pop("text_embedding")
        self.policy.task_encoder.text = shim
        try:
            b = shim.value.shape[0]
            index = torch.full((b,), self.io.embodiment, dtype=torch.long)  # [B]
            batch = {self._rename.get(k, k): v for k, v in named.items()}
            batch.update({keys.TASK: [""] * b, keys.DATASET_INDEX: index})
            if self._camera_mask is not None:
                batch[keys.CAMERA_MASK] = self._camera_mask.expand(b, -1)  # [B, C]
            trunk = self.policy.encode(batch)
            normalized = self.policy.head.sample(trunk, 1, None)  # [B, H, A_policy]
            actions = self.policy.action_norm.unnormalize(normalized, index)  # [B, H, A_policy]
            return actions[..., : self.io.action_dim]  # [B, H, A]
        finally:
            self.policy.task_encoder.text = text


def example_inputs(
    policy: nn.Module, batch: int = 1, seed: int = 0, embodiment: int | str | None = None
) -> dict[str, torch.Tensor]:
    """Random inputs of the exported shapes (first history step padded, see the module doc)."""
    cfg, g = policy.config, torch.Generator().manual_seed(seed)
    io = PolicyIO(policy, embodiment)
    state_dim = io.state_dim
    side, t = cfg.image_size, cfg.history
    out: dict[str, torch.Tensor] = {
        f"observation.images.{cam}": torch.randint(
            0, 256, (batch, t, side, side, 3), generator=g, dtype=torch.uint8
        )
        for cam in io.cameras
    }
    if cfg.state_dim > 0:
        out["observation.state"] = torch.randn(batch, t, state_dim, generator=g)
    out["observation_is_pad"] = (torch.arange(t) < min(1, t - 1)).expand(batch, t).clone()  # [B, T]
    out["text_embedding"] = torch.nn.functional.normalize(
        torch.randn(batch, policy.task_encoder.text.dim, generator=g), dim=-1
    )
    return out


def check_exportable(policy: nn.Module) -> None:
    """Raise `VlaforgeError` saying why a head has no ONNX graph (before anything is written)."""
    from vlaforge.models.heads import AR_KINDS
    from vlaforge.models.heads.decoder import NOT_EXPORTABLE

    kind = policy.config.head.kind
    backbone = getattr(getattr(policy.config, "backbone", None), "kind", "trunk")
    if backbone != "trunk":
        raise VlaforgeError(
            f"ONNX export supports policies on vlaforge's own trunk, not the {backbone!r} vision-language "
            "backbone (its transformers prefix and action head are not traced); serve it from PyTorch "
            "(vlaforge serve)"
        )
    if kind in AR_KINDS:
        raise VlaforgeError(NOT_EXPORTABLE)
    if kind not in EXPORTABLE_HEADS:
        raise VlaforgeError(
            f"ONNX export supports the {' and '.join(EXPORTABLE_HEADS)} heads, not {kind!r} "
            "(its sampling loop draws noise at every step)"
        )


def export_onnx(
    policy: nn.Module,
    path: str | os.PathLike,
    *,
    batch: int = 1,
    opset: int = 17,
    embodiment: int | str | None = None,
) -> Path:
    """Write the ONNX graph of `policy` (regression or tokens head) for `embodiment` to `path`."""
    check_exportable(policy)
    graph = ObservationToActions(policy.eval(), embodiment).eval()
    inputs = example_inputs(policy, batch, embodiment=embodiment)
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # tracer warnings about Python ints; the shapes are fixed by design
        torch.onnx.export(
            graph,
            tuple(inputs[n] for n in graph.input_names()),
            str(path),
            dynamo=False,
            input_names=graph.input_names(),
            output_names=["actions"],
            opset_version=opset,
        )
    return Path(path)


def text_embeddings(policy: nn.Module, tasks: list[str]) -> dict[str, torch.Tensor]:
    """Instruction -> pooled embedding [E] from the policy's frozen text encoder."""
    if not tasks:
        return {}
    emb = policy.task_encoder.text(list(tasks))  # [n, E]
    return {task: emb[i].contiguous() for i, task in enumerate(tasks)}


def save_onnx_export(
    policy: nn.Module,
    out: str | os.PathLike,
    *,
    tasks: list[str] = (),
    batch: int = 1,
    int8: bool = False,
    embodiment: int | str | None = None,
) -> Path:
    """`out/` = policy.onnx (+ policy.int8.onnx with `int8`) + text_embeddings.safetensors + onnx.json
    (inputs, shapes, tasks, the embodiment's interface); each file appears whole."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".onnx.tmp-", dir=out))
    try:
        export_onnx(policy, tmp / ONNX_FILE, batch=batch, embodiment=embodiment)
        io = PolicyIO(policy, embodiment)
        known = sorted({*io.record.tasks, *tasks})
        save_file(text_embeddings(policy, known), str(tmp / EMBED_FILE))
        inputs = example_inputs(policy, batch, embodiment=embodiment)
        info = {
            "inputs": {k: list(v.shape) for k, v in inputs.items()},
            "output": {"actions": [batch, io.chunk, io.action_dim]},
            "head": policy.config.head.kind,
            "tasks": known,
            "resize": "frames of another size than image_size: vlaforge.image.resize (what training used)",
            **io.describe(),
            "exporter": "torch.onnx (dynamo=False)",
        }
        (tmp / INFO_FILE).write_text(json.dumps(info, indent=2))
        names = [ONNX_FILE, EMBED_FILE, INFO_FILE]
        if int8:
            quantize_onnx(tmp / ONNX_FILE, tmp / ONNX_INT8_FILE)
            names.append(ONNX_INT8_FILE)
        for name in names:
            os.replace(tmp / name, out / name)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out / ONNX_FILE


def quantize_onnx(source: str | os.PathLike, target: str | os.PathLike) -> Path:
    """onnxruntime's dynamic quantization of an exported graph (int8 weights of MatMul/Gemm; activations
    quantized at run time), the ONNX counterpart of `vlaforge.deploy.quantize`."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    tmp = Path(target).with_name(f".{Path(target).name}.tmp")
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)  # onnxruntime warns on the root logger about the uint8 image inputs
    try:
        quantize_dynamic(str(source), str(tmp), weight_type=QuantType.QInt8)
    finally:
        root.setLevel(level)
    os.replace(tmp, target)
    return Path(target)


class OnnxPolicy:
    """Run an exported graph with onnxruntime: `sample_actions(inputs: dict[str, ndarray]) -> [B, H, A]`."""

    def __init__(self, path: str | os.PathLike, threads: int | None = None) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self.input_names = [i.name for i in self.session.get_inputs()]

    def sample_actions(self, inputs: dict[str, Any]) -> np.ndarray:
        feed = {
            name: np.asarray(inputs[name].numpy() if isinstance(inputs[name], torch.Tensor) else inputs[name])
            for name in self.input_names
        }
        return self.session.run(["actions"], feed)[0]
