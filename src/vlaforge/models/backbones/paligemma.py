"""`PaliGemmaBackbone`: pi0's VLM (transformers PaliGemma: SigLIP + Gemma) as a `Backbone`.

Prefix layout (pi0's `embed_prefix`, openpi and LeRobot):

    [image tokens, camera 1] ... [image tokens, camera C] [BOS instruction "\\n"]
     \\_______________________ one block, bidirectional ________________________/

Image tokens are SigLIP's last hidden state through PaliGemma's linear projector, *not* rescaled
(openpi; transformers' `get_image_features` divides by sqrt(D) only because its Gemma multiplies
every input embedding by sqrt(D) again); instruction tokens are Gemma's scaled embeddings
(x sqrt(D), done by transformers' `GemmaTextScaledWordEmbedding`). A camera slot marked missing and
padded instruction tokens are seen by nobody. Positions are the cumulative count of real tokens minus
one. All Gemma layers run over the prefix and return their keys (RoPE applied, base 10,000 as
Gemma's) and values for pi0's action expert (`pi0_expert.py`); the state is *not* a prefix token in
pi0 (it is the expert's first token), so the backbone hands the normalized last state through
`BackboneOutput.state`.

Preprocessing: the last history frame of each camera, uint8 -> x / 255 -> resized to the vision
tower's side (224 for paligemma-3b-pt-224) keeping the aspect ratio with zero padding (pi0's
`resize_with_pad`; a square frame is only resized, as PaliGemma's processor does) -> (x - 0.5) / 0.5
(the processor's mean/std, read from preprocessor_config.json). The instruction is cleaned as openpi
does (strip, "_" -> " ", newlines -> spaces), gets pi0's trailing "\\n" and goes through the model's
tokenizer with its special tokens (Gemma's BOS; the tiny character tokenizer adds none), right-padded
to the longest and cut at `max_text_tokens` (pi0: 48).

Loading: `backbone.id = ""` builds the tiny random configuration of `BackboneConfig` (Gemma text,
SigLIP vision; `text_kv_heads` K/V heads as pi0's 1) with the in-process character tokenizer;
otherwise a local folder / Hub id in the local cache (offline), as `smolvlm.resolve_folder`.
`train.grad_checkpointing` recomputes each vision and Gemma layer in backward (`checkpointed`).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from vlaforge.models.backbones.attention import attend, block_mask, rope
from vlaforge.models.backbones.base import Backbone, BackboneOutput
from vlaforge.models.backbones.smolvlm import open_vlm
from vlaforge.models.checkpointing import checkpointed
from vlaforge.models.config import BackboneConfig


def tiny_config(bb: BackboneConfig, vocab_size: int):
    """The random PaliGemma configuration of `bb`'s sizes (Gemma text, SigLIP vision)."""
    from transformers import PaliGemmaConfig

    text = dict(
        model_type="gemma", hidden_size=bb.text_width, intermediate_size=bb.text_mlp,
        num_hidden_layers=bb.text_layers, num_attention_heads=bb.text_heads,
        num_key_value_heads=bb.text_kv_heads, head_dim=bb.text_width // bb.text_heads,
        vocab_size=vocab_size, pad_token_id=0,
    )  # fmt: skip
    vision = dict(
        hidden_size=bb.vision_width, intermediate_size=bb.vision_mlp, num_hidden_layers=bb.vision_layers,
        num_attention_heads=bb.vision_heads, image_size=bb.vision_image_size, patch_size=bb.vision_patch,
        projection_dim=bb.text_width, vision_use_head=False,
    )  # fmt: skip
    return PaliGemmaConfig(text_config=text, vision_config=vision, projection_dim=bb.text_width)


def clean_prompt(text: str) -> str:
    """openpi's instruction cleaning plus pi0's trailing newline."""
    return text.strip().replace("_", " ").replace("\n", " ") + "\n"


class PaliGemmaBackbone(nn.Module, Backbone):
    """PaliGemma's SigLIP tower, projector and every Gemma layer over the prefix (module docstring)."""

    def __init__(self, bb: BackboneConfig) -> None:
        super().__init__()
        from transformers import PaliGemmaForConditionalGeneration

        self.bb, self.grad_checkpointing = bb, False
        self.tokenizer, self.vlm, self.images, config = open_vlm(
            PaliGemmaForConditionalGeneration, bb, tiny_config
        )
        self.text_config = config.text_config
        # PaliGemma ties its LM head to the text embeddings; a second name for one tensor cannot be
        # saved to safetensors, so `logits` multiplies by the embeddings directly (the same values).
        self.vlm.lm_head = nn.Identity()
        if self.bb.freeze_vision or self.bb.train_expert_only:
            (self.vlm if self.bb.train_expert_only else self.vlm.model.vision_tower).requires_grad_(False)

    @property
    def width(self) -> int:
        return self.text_config.hidden_size

    @property
    def num_layers(self) -> int:
        return len(self.vlm.model.language_model.layers)

    def tokenize(self, texts: list[str], device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        """Instructions -> ids [B, L] and mask [B, L] (True = real), pi0's prompt format."""
        enc = self.tokenizer(
            [clean_prompt(t) for t in texts], padding="longest", padding_side="right",
            truncation=True, max_length=self.bb.max_text_tokens, return_tensors="pt",
        )  # fmt: skip
        return enc["input_ids"].to(device), enc["attention_mask"].to(device).bool()

    def embed_image(self, pixels: torch.Tensor) -> torch.Tensor:
        """Normalized pixels [B, C, S, S] -> image tokens [B, K, D] (SigLIP + projector, unscaled)."""
        tower = self.vlm.model.vision_tower
        tower = getattr(tower, "vision_model", tower)  # transformers < 5 nests it one level deeper
        x = tower.embeddings(pixels)  # [B, K, Dv]
        for layer in tower.encoder.layers:
            x = checkpointed(self, layer, x, None)  # [B, K, Dv]
        return self.vlm.model.multi_modal_projector(tower.post_layernorm(x))  # [B, K, D]

    def embed_prefix(
        self, pixels: list[torch.Tensor], ids: torch.Tensor, text_mask: torch.Tensor,
        camera_mask: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:  # fmt: skip
        """Prefix embeddings [B, P, D] and pad mask [B, P] (True = real)."""
        embs = [self.embed_image(p) for p in pixels]  # each [B, K, D]
        embs.append(self.vlm.model.language_model.embed_tokens(ids))  # [B, L, D], x sqrt(D)
        b, dev = ids.shape[0], ids.device
        present = (
            torch.ones(b, len(pixels), dtype=torch.bool, device=dev)
            if camera_mask is None
            else camera_mask.bool()
        )
        pads = [present[:, j : j + 1].expand(b, e.shape[1]) for j, e in enumerate(embs[:-1])] + [text_mask]
        return torch.cat(embs, dim=1), torch.cat(pads, dim=1)

    def run_layers(
        self, x: torch.Tensor, pad: torch.Tensor
    ) -> tuple[torch.Tensor, list[tuple[torch.Tensor, torch.Tensor]]]:
        """The Gemma layers over the prefix -> final-normed tokens [B, P, D] and per-layer (k, v)."""
        mask = block_mask(pad, torch.zeros_like(pad))  # [B, P, P] one bidirectional block
        positions = torch.cumsum(pad.long(), dim=1) - 1  # [B, P]
        lm = self.vlm.model.language_model
        kv = []
        for layer in lm.layers:
            x, k, v = checkpointed(self, gemma_prefix_layer, layer, x, positions, mask)
            kv.append((k, v))
        return lm.norm(x), kv

    def encode(
        self, images, texts, state, obs_is_pad=None, goal=None, camera_mask=None, embodiment=None
    ) -> BackboneOutput:
        dev = self.vlm.model.language_model.embed_tokens.weight.device
        pixels = [self.images(frames[:, -1].to(dev)) for frames in images]  # each [B, C, S, S]
        ids, text_mask = self.tokenize(texts, dev)
        mask = None if camera_mask is None else camera_mask.to(dev)
        x, pad = self.embed_prefix(pixels, ids, text_mask, mask)
        tokens, kv = self.run_layers(x, pad)
        last_state = None if state is None else state[:, -1]  # [B, S]
        return BackboneOutput(tokens[:, -1:], tokens, pad, layer_kv=kv, state=last_state)

    def lora_target(self) -> nn.Module:
        """The Gemma language model (attention and MLP linears; openpi's LoRA variants adapt Gemma)."""
        return self.vlm.model.language_model

    def logits(self, out: BackboneOutput) -> torch.Tensor:
        """LM logits [B, P, V] of the prefix, through the tied embeddings (PaliGemma's LM head)."""
        return F.linear(out.tokens, self.vlm.model.language_model.embed_tokens.weight)  # [B, P, V]


def gemma_prefix_layer(
    layer: nn.Module, x: torch.Tensor, positions: torch.Tensor, mask: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One Gemma decoder layer on x [B, P, D] -> (x, keys with RoPE [B, P, Hkv, d], values)."""
    attn = layer.self_attn
    h = layer.input_layernorm(x)
    q = rope(attn.q_proj(h).unflatten(-1, (-1, attn.head_dim)), positions)  # [B, P, H, d]
    k = rope(attn.k_proj(h).unflatten(-1, (-1, attn.head_dim)), positions)  # [B, P, Hkv, d]
    v = attn.v_proj(h).unflatten(-1, (-1, attn.head_dim))  # [B, P, Hkv, d]
    x = x + attn.o_proj(attend(q, k, v, mask))  # [B, P, D]
    return x + layer.mlp(layer.post_attention_layernorm(x)), k, v
