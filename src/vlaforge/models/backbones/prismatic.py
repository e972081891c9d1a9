"""`PrismaticBackbone`: OpenVLA's Prismatic composition (fused SigLIP + DINOv2, MLP projector, an LM).

Vision (OpenVLA's "dinosiglip"): each camera's last history frame goes through both towers, each
with its own processor settings - resized (bilinear, no crop or pad: OpenVLA's `resize-naive`) to the
tower's input side, x / 255, then (x - mean) / std: SigLIP 0.5 / 0.5, DINOv2 the ImageNet mean/std
(from preprocessor_config.json for real towers). Features are the patch tokens of each tower's
second-to-last layer (OpenVLA's `get_intermediate_layers(n={len(blocks) - 2})`: the last layer and
the final norm are dropped at build, so they are neither run nor counted; DINOv2's CLS token is
dropped), concatenated on the channel axis [B, K, Dsiglip + Ddino], then OpenVLA's fused GELU MLP
projector: Linear(F, 4F) GELU Linear(4F, D) GELU Linear(D, D).

Prefix (OpenVLA's layout, patches after BOS):

    [BOS] [patches, camera 1] ... [patches, camera C] [pad ...] ["In: What action should the robot take to {instruction}?\\nOut: "]

The instruction is lower-cased (as OpenVLA) and tokenized by the LM's tokenizer without special
tokens; the prompt is left-padded (so the last prefix token is real and the first action token
follows it) and BOS is the tokenizer's (Llama: `<s>`; none for Qwen2). A camera slot that
`camera_mask` marks missing has its patches padded out. Proprio is not used (OpenVLA has none).
`encode` returns the prefix *input embeddings* (`tokens`, `token_mask`): the LM runs inside the
`lm-bins` head (`lm_actions.py`), over the prefix and the action tokens, and `logits` runs it over
the prefix alone.

Loading: `id = ""` builds all three at the tiny random sizes of `BackboneConfig` (SigLIP from
vision_*, DINOv2 from dino_*, the LM (`lm_type` Llama or Qwen2) from text_*) with an in-process
character tokenizer (`tokenizer.py`, with `<s>`/`</s>`; 256 extra ids hold the action tokens).
Otherwise `id` is the LM and `siglip_id` / `dino_id` the towers (local folders or Hub ids in the
local cache, offline; a missing file is a one-line error naming it); a policy loaded from a vlaforge
checkpoint reads only configs, tokenizer and processor settings from them (`no_pretrained_weights`).
Deviation: DINOv2 is HF `Dinov2Model` (e.g. facebook/dinov2-large); OpenVLA's timm tower is the
4-register variant (`vit_large_patch14_reg4_dinov2`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from vlaforge.models.backbones.base import Backbone, BackboneOutput
from vlaforge.models.backbones.smolvlm import _LOAD_WEIGHTS, ImageSettings, resolve_folder
from vlaforge.models.backbones.tokenizer import SPECIAL_TOKENS, char_tokenizer
from vlaforge.models.config import BackboneConfig

PROMPT = "In: What action should the robot take to {instruction}?\nOut: "
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
NUM_ACTION_TOKENS = 256
TINY_SPECIALS = (*SPECIAL_TOKENS, "<s>", "</s>")


def prompt(instruction: str) -> str:
    """OpenVLA's prompt around a (lower-cased, stripped) instruction."""
    return PROMPT.format(instruction=instruction.strip().rstrip(".").lower())


class NaiveResize(ImageSettings):
    """A tower's processor settings with OpenVLA's `resize-naive` (square bilinear resize, no pad)."""

    def __call__(self, frames: torch.Tensor) -> torch.Tensor:
        """uint8 [B, H, W, C] -> normalized float [B, C, S, S]."""
        x = frames.permute(0, 3, 1, 2).float() * self.rescale  # [B, C, H, W]
        x = F.interpolate(x, size=(self.size, self.size), mode="bilinear", align_corners=False)
        return (x - self.mean.to(x.device)) / self.std.to(x.device)


def tiny_towers(bb: BackboneConfig):
    """Random SigLIP and DINOv2 configurations at `bb`'s tiny sizes."""
    from transformers import Dinov2Config, SiglipVisionConfig

    side, patch = bb.vision_image_size, bb.vision_patch
    siglip = SiglipVisionConfig(
        hidden_size=bb.vision_width, intermediate_size=bb.vision_mlp, num_hidden_layers=bb.vision_layers,
        num_attention_heads=bb.vision_heads, image_size=side, patch_size=patch, vision_use_head=False,
    )  # fmt: skip
    dino = Dinov2Config(
        hidden_size=bb.dino_width, num_hidden_layers=bb.dino_layers, num_attention_heads=bb.dino_heads,
        mlp_ratio=4, image_size=side, patch_size=patch,
    )  # fmt: skip
    return siglip, dino


def tiny_lm_config(bb: BackboneConfig, vocab_size: int, bos: int, eos: int):
    """A random Llama / Qwen2 configuration at `bb`'s text_* sizes."""
    from transformers import LlamaConfig, Qwen2Config

    cls = LlamaConfig if bb.lm_type == "llama" else Qwen2Config
    return cls(
        hidden_size=bb.text_width, intermediate_size=bb.text_mlp, num_hidden_layers=bb.text_layers,
        num_attention_heads=bb.text_heads, num_key_value_heads=bb.text_kv_heads,
        vocab_size=vocab_size, max_position_embeddings=4096, rms_norm_eps=1e-5,
        pad_token_id=0, bos_token_id=bos, eos_token_id=eos, tie_word_embeddings=False,
    )  # fmt: skip


def _drop_last_layer(tower: nn.Module) -> None:
    """Keep the second-to-last layer's output as the features: drop the last layer and final norm."""
    vm = getattr(tower, "vision_model", tower)  # SiglipVisionModel (its transformer, in older transformers)
    if hasattr(vm, "post_layernorm"):
        vm.encoder.layers = vm.encoder.layers[:-1]
        vm.post_layernorm = nn.Identity()
    else:  # Dinov2Model
        tower.encoder.layer = tower.encoder.layer[:-1]
        tower.layernorm = nn.Identity()


class PrismaticBackbone(nn.Module, Backbone):
    """SigLIP + DINOv2 -> fused GELU MLP projector -> LM input embeddings (module docstring)."""

    def __init__(self, bb: BackboneConfig) -> None:
        super().__init__()
        self.bb = bb
        if bb.id:
            self._load(bb)
        else:
            self._tiny(bb)
        for tower in (self.siglip, self.dino):
            _drop_last_layer(tower)
        fused = self.siglip.config.hidden_size + self.dino.config.hidden_size
        width = self.lm.config.hidden_size
        self.projector = nn.Sequential(
            nn.Linear(fused, 4 * fused), nn.GELU(), nn.Linear(4 * fused, width), nn.GELU(), nn.Linear(width, width)
        )  # fmt: skip
        self.vocab_end = self.lm.config.vocab_size  # the action tokens are its last 256 ids
        if bb.freeze_vision:
            self.siglip.requires_grad_(False)
            self.dino.requires_grad_(False)

    def _tiny(self, bb: BackboneConfig) -> None:
        from transformers import AutoModelForCausalLM, Dinov2Model, SiglipVisionModel

        self.tokenizer = char_tokenizer(TINY_SPECIALS, bos_token="<s>", eos_token="</s>")
        vocab = max(bb.vocab_size, len(self.tokenizer) + NUM_ACTION_TOKENS)
        siglip, dino = tiny_towers(bb)
        self.siglip, self.dino = SiglipVisionModel(siglip), Dinov2Model(dino)
        lm = tiny_lm_config(bb, vocab, self.tokenizer.bos_token_id, self.tokenizer.eos_token_id)
        self.lm = AutoModelForCausalLM.from_config(lm)
        side = bb.vision_image_size
        self.siglip_images, self.dino_images = (
            NaiveResize(side),
            NaiveResize(side, 1 / 255, IMAGENET_MEAN, IMAGENET_STD),
        )

    def _load(self, bb: BackboneConfig) -> None:
        from transformers import (
            AutoConfig,
            AutoModelForCausalLM,
            AutoTokenizer,
            Dinov2Model,
            SiglipVisionModel,
        )

        weights = _LOAD_WEIGHTS.get()
        needed = ("config.json", "model.safetensors") if weights else ("config.json",)
        lm_dir = resolve_folder(bb.id, needed, "backbone.id")
        sig_dir = resolve_folder(bb.siglip_id, (*needed, "preprocessor_config.json"), "backbone.siglip_id")
        dino_dir = resolve_folder(bb.dino_id, (*needed, "preprocessor_config.json"), "backbone.dino_id")
        self.tokenizer = AutoTokenizer.from_pretrained(lm_dir, local_files_only=True)
        self.siglip = _tower(SiglipVisionModel, sig_dir, weights, vision_use_head=False)
        self.dino = _tower(Dinov2Model, dino_dir, weights)
        if weights:
            self.lm = AutoModelForCausalLM.from_pretrained(lm_dir, local_files_only=True, dtype=torch.float32)
        else:
            self.lm = AutoModelForCausalLM.from_config(
                AutoConfig.from_pretrained(lm_dir, local_files_only=True)
            )
        self.siglip_images = _settings(sig_dir, self.siglip.config.image_size, (0.5,) * 3, (0.5,) * 3)
        self.dino_images = _settings(
            dino_dir, _dino_side(dino_dir, self.dino.config), IMAGENET_MEAN, IMAGENET_STD
        )

    @property
    def width(self) -> int:
        return self.lm.config.hidden_size

    def tokenize(self, texts: list[str], device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        """Prompts -> ids [B, L] and mask [B, L] (True = real), left-padded, no special tokens, never
        truncated (OpenVLA's; `max_text_tokens` is SmolVLA's and does not apply)."""
        enc = self.tokenizer(
            [prompt(t) for t in texts], padding="longest", padding_side="left",
            add_special_tokens=False, return_tensors="pt",
        )  # fmt: skip
        return enc["input_ids"].to(device), enc["attention_mask"].to(device).bool()

    def embed_image(self, frames: torch.Tensor) -> torch.Tensor:
        """uint8 [B, H, W, C] -> projected patch tokens [B, K, D] (fused SigLIP + DINOv2)."""
        sig = self.siglip(pixel_values=self.siglip_images(frames)).last_hidden_state  # [B, K, Ds]
        dino = self.dino(pixel_values=self.dino_images(frames)).last_hidden_state[
            :, 1:
        ]  # [B, K, Dd] (no CLS)
        return self.projector(torch.cat([sig, dino], dim=-1))  # [B, K, D]

    def encode(
        self, images, texts, state, obs_is_pad=None, goal=None, camera_mask=None, embodiment=None
    ) -> BackboneOutput:
        dev = self.lm.get_input_embeddings().weight.device  # (an INT8 export quantizes the linears)
        patches = [self.embed_image(frames[:, -1].to(dev)) for frames in images]  # each [B, K, D]
        ids, text_mask = self.tokenize(texts, dev)
        b = ids.shape[0]
        embed = self.lm.get_input_embeddings()
        parts, masks = [], []
        if self.tokenizer.bos_token_id is not None:
            bos = torch.full((b, 1), self.tokenizer.bos_token_id, dtype=torch.long, device=dev)
            parts.append(embed(bos))  # [B, 1, D]
            masks.append(torch.ones(b, 1, dtype=torch.bool, device=dev))
        present = (
            torch.ones(b, len(images), dtype=torch.bool, device=dev)
            if camera_mask is None
            else camera_mask.to(dev).bool()
        )
        for j, p in enumerate(patches):
            parts.append(p)
            masks.append(present[:, j : j + 1].expand(b, p.shape[1]))
        parts.append(embed(ids))  # [B, L, D]
        masks.append(text_mask)
        tokens, mask = torch.cat(parts, dim=1), torch.cat(masks, dim=1)  # [B, P, D], [B, P]
        return BackboneOutput(readouts=tokens[:, -1:], tokens=tokens, token_mask=mask)

    def logits(self, out: BackboneOutput) -> torch.Tensor:
        """LM logits [B, P, V] over the prefix (the LM run causally over the prefix embeddings)."""
        mask = out.token_mask
        positions = (mask.long().cumsum(1) - 1).clamp(min=0)  # [B, P]
        return self.lm(inputs_embeds=out.tokens, attention_mask=mask.long(), position_ids=positions).logits

    def lora_target(self) -> nn.Module:
        """The LM's decoder (every attention and MLP linear; not the output embedding)."""
        return self.lm.model

    def lora_modules(self, targets: str = "lm") -> list[nn.Module]:
        """`lm`: the LM's decoder; `vision`: SigLIP, DINOv2 and the projector; `lm+vision`: all."""
        vision = [self.siglip, self.dino, self.projector]
        return {"lm": [self.lm.model], "vision": vision, "lm+vision": [self.lm.model, *vision]}[targets]


def _tower(cls, folder: Path, weights: bool, **overrides) -> nn.Module:
    if weights:
        return cls.from_pretrained(folder, local_files_only=True, dtype=torch.float32, **overrides)
    config = cls.config_class.from_pretrained(folder, local_files_only=True, **overrides)
    return cls(config)


def _settings(folder: Path, side: int, mean, std) -> NaiveResize:
    import json

    pre = json.loads((folder / "preprocessor_config.json").read_text())
    return NaiveResize(side, float(pre.get("rescale_factor", 1 / 255)), tuple(pre.get("image_mean", mean)),
                       tuple(pre.get("image_std", std)))  # fmt: skip


def _dino_side(folder: Path, config) -> int:
    """DINOv2's processor crop side (224 for facebook/dinov2-*; its config's 518 is the pretraining side)."""
    import json

    crop = json.loads((folder / "preprocessor_config.json").read_text()).get("crop_size", {})
    return int(crop.get("height", config.image_size)) if isinstance(crop, dict) else int(crop)


def describe(bb: BackboneConfig) -> dict[str, Any]:
    """A short description for `vlaforge presets`."""
    return {"id": bb.id or "tiny-random", "siglip_id": bb.siglip_id, "dino_id": bb.dino_id}


__all__ = ["PROMPT", "PrismaticBackbone", "prompt"]
