"""`SmolVLMBackbone`: SmolVLA's VLM (transformers SmolVLM / Idefics3) as a `Backbone`.

Prefix layout (SmolVLA's `embed_prefix`, no image special tokens):

    [image tokens, camera 1] ... [image tokens, camera C] [instruction tokens] [state token]
     \\__________________ block 0 (bidirectional) ______________________/    \\ block 1 /

Image tokens are the vision tower + connector (pixel shuffle + linear) outputs and instruction
tokens the text embeddings, both multiplied by sqrt(text width) as SmolVLA does; the state token is
`state_proj(state)` (SmolVLA's, part of this backbone because it is a prefix token). Images and text
never see the state token; padded instruction tokens are seen by nobody. Positions are the cumulative
count of real tokens minus one. The first `num_vlm_layers` text layers run (SmolVLA skips the rest);
each layer's keys (RoPE applied) and values are returned for the action expert.

Preprocessing follows the model's processor settings: the last history frame of each camera,
uint8 -> x * rescale_factor -> resized to the vision tower's image_size keeping the aspect ratio and
padded with 0 on the left/top (SmolVLA's `resize_with_pad`) -> (x - image_mean) / image_std
(SmolVLM: 1/255, 0.5, 0.5, i.e. [-1, 1]). The instruction gets a trailing newline (SmolVLA's prompt
format) and goes through the model's tokenizer, right-padded to the longest, cut at max_text_tokens.

Loading: `backbone.id = ""` builds the tiny random configuration of `BackboneConfig` with the
in-process character tokenizer (`tokenizer.py`); otherwise `id` is a local folder or a Hub id in
the local cache (offline) with config.json, the tokenizer files, preprocessor_config.json and, for
training from it, model.safetensors. A policy loaded from a vlaforge checkpoint takes every weight
from the checkpoint (`no_pretrained_weights`), but still reads config and tokenizer from `id`.
"""

from __future__ import annotations

import contextlib
import contextvars
import json
import math
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from vlaforge.errors import VlaforgeError
from vlaforge.models.backbones.attention import attend, block_mask, rope
from vlaforge.models.backbones.base import Backbone, BackboneOutput
from vlaforge.models.backbones.tokenizer import char_tokenizer
from vlaforge.models.config import BackboneConfig

_LOAD_WEIGHTS = contextvars.ContextVar("vlaforge_vlm_weights", default=True)
NEEDED_FILES = ("config.json", "preprocessor_config.json")


def load_or_build(model_cls, folder, config):
    """`model_cls` with the folder's float32 weights when it has safetensors and loading is on (not
    under `no_pretrained_weights`), else `model_cls(config)` at random init."""
    if _LOAD_WEIGHTS.get() and any(folder.glob("*.safetensors")):
        return model_cls.from_pretrained(folder, local_files_only=True, dtype=torch.float32)
    return model_cls(config)


def open_vlm(model_cls, bb: BackboneConfig, tiny_config):
    """(tokenizer, model, image settings, transformers config) for `bb.id` (a local folder or a Hub id
    in the cache; its weights when it has them) or, without an id, a random `tiny_config(bb, vocab)`
    model with the character tokenizer (the `-tiny` presets)."""
    from transformers import AutoConfig, AutoTokenizer

    if bb.id:
        folder = resolve_folder(bb.id)
        config = AutoConfig.from_pretrained(folder, local_files_only=True)
        tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
        images = ImageSettings.from_folder(folder, config.vision_config.image_size)
        return tokenizer, load_or_build(model_cls, folder, config), images, config
    tokenizer = char_tokenizer()
    config = tiny_config(bb, max(bb.vocab_size, len(tokenizer)))
    return tokenizer, model_cls(config), ImageSettings(config.vision_config.image_size), config


@contextlib.contextmanager
def no_pretrained_weights():
    """Build VLM backbones without reading their weights (a vlaforge checkpoint brings them)."""
    token = _LOAD_WEIGHTS.set(False)
    try:
        yield
    finally:
        _LOAD_WEIGHTS.reset(token)


def tiny_config(bb: BackboneConfig, vocab_size: int):
    """The random SmolVLM configuration of `bb`'s tiny sizes (Llama text, SigLIP vision)."""
    from transformers import SmolVLMConfig

    text = dict(
        model_type="llama", hidden_size=bb.text_width, intermediate_size=bb.text_mlp,
        num_hidden_layers=bb.text_layers, num_attention_heads=bb.text_heads,
        num_key_value_heads=bb.text_kv_heads, head_dim=bb.text_width // bb.text_heads,
        vocab_size=vocab_size, rms_norm_eps=1e-5, pad_token_id=0,
    )  # fmt: skip
    vision = dict(
        hidden_size=bb.vision_width, intermediate_size=bb.vision_mlp, num_hidden_layers=bb.vision_layers,
        num_attention_heads=bb.vision_heads, image_size=bb.vision_image_size, patch_size=bb.vision_patch,
    )  # fmt: skip
    return SmolVLMConfig(text_config=text, vision_config=vision, scale_factor=bb.scale_factor)


def resolve_folder(model_id: str, needed: tuple[str, ...] = NEEDED_FILES, field: str = "backbone.id") -> Path:
    """A local folder for `model_id` (a directory, or a Hub id in the local cache) holding the
    `needed` files; one-line errors naming `field` and the missing file."""
    local = Path(model_id).expanduser()
    if local.is_dir():
        folder = local
    else:
        try:
            from huggingface_hub import snapshot_download

            folder = Path(snapshot_download(model_id, local_files_only=True))
        except Exception as err:
            raise VlaforgeError(
                f"{field} {model_id!r} is not a local folder and not in the local Hub cache (offline)"
            ) from err
    for name in needed:
        if not (folder / name).exists():
            raise VlaforgeError(f"{field} {model_id!r}: missing {folder / name}")
    return folder


class ImageSettings:
    """The processor's rescale factor, mean/std and the vision tower's input side."""

    def __init__(self, size: int, rescale: float = 1 / 255, mean=(0.5,) * 3, std=(0.5,) * 3) -> None:
        self.size, self.rescale = size, rescale
        self.mean = torch.tensor(mean, dtype=torch.float32)[:, None, None]  # [3, 1, 1]
        self.std = torch.tensor(std, dtype=torch.float32)[:, None, None]  # [3, 1, 1]

    @classmethod
    def from_folder(cls, folder: Path, size: int) -> ImageSettings:
        pre = json.loads((folder / "preprocessor_config.json").read_text())
        return cls(
            size,
            float(pre.get("rescale_factor", 1 / 255)),
            tuple(pre.get("image_mean", (0.5,) * 3)),
            tuple(pre.get("image_std", (0.5,) * 3)),
        )

    def __call__(self, frames: torch.Tensor) -> torch.Tensor:
        """uint8 [B, H, W, C] -> normalized float [B, C, S, S] (see the module docstring)."""
        x = frames.permute(0, 3, 1, 2).float() * self.rescale  # [B, C, H, W]
        x = resize_with_pad(x, self.size)  # [B, C, S, S]
        return (x - self.mean.to(x.device)) / self.std.to(x.device)


def resize_with_pad(img: torch.Tensor, side: int) -> torch.Tensor:
    """[B, C, H, W] -> [B, C, side, side]: bilinear resize keeping the aspect ratio, zero padding on
    the left and top (SmolVLA's `resize_with_pad`; a square frame is only resized)."""
    h, w = img.shape[2:]
    ratio = max(w / side, h / side)
    rh, rw = int(h / ratio), int(w / ratio)
    out = F.interpolate(img, size=(rh, rw), mode="bilinear", align_corners=False)
    return F.pad(out, (max(0, side - rw), 0, max(0, side - rh), 0), value=0.0)


class SmolVLMBackbone(nn.Module, Backbone):
    """SmolVLM's vision tower, connector and first `num_vlm_layers` text layers (module docstring)."""

    def __init__(self, bb: BackboneConfig, state_dim: int) -> None:
        super().__init__()
        from transformers import SmolVLMForConditionalGeneration

        self.bb = bb
        self.tokenizer, self.vlm, self.images, config = open_vlm(
            SmolVLMForConditionalGeneration, bb, tiny_config
        )
        self.text_config = config.text_config
        text = self.vlm.model.text_model
        if bb.num_vlm_layers:
            if bb.num_vlm_layers > len(text.layers):
                raise VlaforgeError(
                    f"backbone.num_vlm_layers={bb.num_vlm_layers} but the VLM has {len(text.layers)} text layers"
                )
            text.layers = text.layers[: bb.num_vlm_layers]  # SmolVLA skips the top layers
        self.state_proj = nn.Linear(state_dim, config.text_config.hidden_size) if state_dim > 0 else None
        self._freeze()

    @property
    def width(self) -> int:
        return self.text_config.hidden_size

    @property
    def num_layers(self) -> int:
        return len(self.vlm.model.text_model.layers)

    def _freeze(self) -> None:
        """SmolVLA's defaults: vision tower frozen; with train_expert_only the whole VLM."""
        frozen = self.vlm if self.bb.train_expert_only else self.vlm.model.vision_model
        if self.bb.freeze_vision or self.bb.train_expert_only:
            frozen.requires_grad_(False)

    def tokenize(self, texts: list[str], device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        """Instructions -> ids [B, L] and mask [B, L] (True = real), SmolVLA's prompt format."""
        enc = self.tokenizer(
            [t if t.endswith("\n") else f"{t}\n" for t in texts],
            padding="longest", padding_side="right", truncation=True,
            max_length=self.bb.max_text_tokens, return_tensors="pt",
        )  # fmt: skip
        return enc["input_ids"].to(device), enc["attention_mask"].to(device).bool()

    def embed_image(self, pixels: torch.Tensor) -> torch.Tensor:
        """Normalized pixels [B, C, S, S] -> image tokens [B, K, D] (scaled by sqrt(D))."""
        model = self.vlm.model
        hidden = model.vision_model(pixel_values=pixels).last_hidden_state  # [B, patches, Dv]
        tokens = model.connector(hidden)  # [B, K, D]
        return tokens * math.sqrt(tokens.shape[-1])

    def embed_prefix(
        self,
        pixels: list[torch.Tensor],
        ids: torch.Tensor,
        text_mask: torch.Tensor,
        state: torch.Tensor | None,
        camera_mask: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Prefix embeddings [B, P, D], pad mask [B, P] (True = real), block starts [B, P]. A camera
        slot that `camera_mask` [B, C] marks missing has its image tokens padded out (SmolVLA's
        image masks)."""
        embs = [self.embed_image(p) for p in pixels]  # each [B, K, D]
        text = self.vlm.model.text_model.get_input_embeddings()(ids)  # [B, L, D]
        embs.append(text * math.sqrt(text.shape[-1]))
        b, dev = ids.shape[0], ids.device
        present = (
            torch.ones(b, len(pixels), dtype=torch.bool, device=dev)
            if camera_mask is None
            else camera_mask.bool()
        )
        pads = [present[:, j : j + 1].expand(b, e.shape[1]) for j, e in enumerate(embs[:-1])] + [text_mask]
        if state is not None and self.state_proj is not None:
            embs.append(self.state_proj(state)[:, None, :])  # [B, 1, D]
            pads.append(torch.ones(b, 1, dtype=torch.bool, device=dev))
        pad = torch.cat(pads, dim=1)  # [B, P]
        blocks = torch.zeros_like(pad)
        if state is not None and self.state_proj is not None:
            blocks[:, -1] = True  # the state token starts block 1
        return torch.cat(embs, dim=1), pad, blocks

    def run_layers(
        self, x: torch.Tensor, pad: torch.Tensor, blocks: torch.Tensor
    ) -> tuple[torch.Tensor, list[tuple[torch.Tensor, torch.Tensor]]]:
        """The text layers over the prefix -> final-normed tokens [B, P, D] and per-layer (k, v)."""
        mask = block_mask(pad, blocks)  # [B, P, P]
        positions = torch.cumsum(pad.long(), dim=1) - 1  # [B, P]
        text = self.vlm.model.text_model
        kv = []
        for layer in text.layers:
            attn = layer.self_attn
            h = layer.input_layernorm(x)
            q = attn.q_proj(h).unflatten(-1, (-1, attn.head_dim))  # [B, P, H, d]
            k = attn.k_proj(h).unflatten(-1, (-1, attn.head_dim))  # [B, P, Hkv, d]
            v = attn.v_proj(h).unflatten(-1, (-1, attn.head_dim))  # [B, P, Hkv, d]
            q, k = rope(q, positions), rope(k, positions)
            kv.append((k, v))
            x = x + attn.o_proj(attend(q, k, v, mask))  # [B, P, D]
            x = x + layer.mlp(layer.post_attention_layernorm(x))
        return text.norm(x), kv

    def encode(
        self, images, texts, state, obs_is_pad=None, goal=None, camera_mask=None, embodiment=None
    ) -> BackboneOutput:
        dev = self.vlm.lm_head.weight.device
        pixels = [self.images(frames[:, -1].to(dev)) for frames in images]  # each [B, C, S, S]
        ids, text_mask = self.tokenize(texts, dev)
        last_state = None if state is None else state[:, -1]  # [B, S]
        mask = None if camera_mask is None else camera_mask.to(dev)
        return self.forward_prefix(pixels, ids, text_mask, last_state, camera_mask=mask)

    def forward_prefix(
        self,
        pixels: list[torch.Tensor],
        ids: torch.Tensor,
        text_mask: torch.Tensor,
        state: torch.Tensor | None,
        camera_mask: torch.Tensor | None = None,
    ) -> BackboneOutput:
        """Preprocessed inputs (pixels, token ids, their mask, state [B, S], camera_mask [B, C]) ->
        `BackboneOutput`."""
        x, pad, blocks = self.embed_prefix(pixels, ids, text_mask, state, camera_mask)
        tokens, kv = self.run_layers(x, pad, blocks)
        return BackboneOutput(readouts=tokens[:, -1:], tokens=tokens, token_mask=pad, layer_kv=kv)

    def lora_target(self) -> nn.Module:
        """The text model (its kept layers' attention and MLP linears; OpenVLA/SmolVLA adapt the LM)."""
        return self.vlm.model.text_model

    def lora_modules(self, targets: str = "lm") -> list[nn.Module]:
        """`lm`: the text model; `vision`: the vision tower and connector; `lm+vision`: both."""
        vision = [self.vlm.model.vision_model, self.vlm.model.connector]
        return {"lm": [self.lora_target()], "vision": vision, "lm+vision": [self.lora_target(), *vision]}[
            targets
        ]

    def logits(self, out: BackboneOutput) -> torch.Tensor:
        """LM logits [B, P, V] of the prefix (through the kept layers only)."""
        return self.vlm.lm_head(out.tokens)


def describe(bb: BackboneConfig) -> dict[str, Any]:
    """A short description for `vlaforge presets`."""
    return {"id": bb.id or "tiny-random", "num_vlm_layers": bb.num_vlm_layers}
