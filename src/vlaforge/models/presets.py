"""Named policy presets: the anchors' designs at sizes that fit our data, plus the CPU default.

| preset       | anchor         | image / patch  | trunk (depth x width) | head                      | chunk |
| ------------ | -------------- | -------------- | --------------------- | ------------------------- | ----- |
| `default`    | (ours, CPU)    | 64 px / 16     | 4 x 128               | L1 chunk regression       | 16    |
| `default-flow` | (ours, CPU)  | 64 px / 16     | 4 x 128               | flow matching, 10 steps   | 16    |
| `default-effnet` | (ours, CPU) | 64 px / 16, ImageNet EfficientNet-Lite0, frozen | 4 x 128 | L1 chunk regression | 16 |
| `octo-small` | Octo-Small     | 128 px / 16    | 12 x 384              | diffusion, 20 train / 10 DDIM | 4 |
| `octo-base`  | Octo-Base      | 128 px / 16    | 12 x 768              | diffusion                 | 4     |
| `oft`        | OpenVLA-OFT    | 128 px / 16    | 6 x 256               | L1 chunk regression       | 8     |
| `openvla`    | RT-2 / OpenVLA | 128 px / 16    | 6 x 256 + 2-layer decoder | 256-bin tokens, one by one (KV cache) | 8 |
| `pi0`        | pi0            | 128 px / 16    | 6 x 256               | flow-expert, 10 Euler     | 50    |
| `pi0-fast`   | pi0-FAST       | 128 px / 16    | 6 x 256 + 2-layer decoder | FAST tokens (DCT + BPE), one by one | 10 |
| `smolvla-tiny` | SmolVLA (tiny random VLM) | 64 px / 8, SigLIP 2 x 32 | SmolVLM text 4 x 64 (of 6) | SmolVLA expert, flow, 10 Euler | 50 |
| `smolvla`    | SmolVLA (0.45B) | 512 px / 16, SmolVLM2-500M | 16 of 32 text layers x 960 | SmolVLA expert, flow, 10 Euler | 50 |
| `openvla-prismatic-tiny` | OpenVLA (tiny random) | 32 px / 8, SigLIP 3 x 32 + DINOv2 3 x 32 | Llama 2 x 64 | the LM's last 256 tokens, greedy | 4 |
| `openvla-prismatic` | OpenVLA (7B) | 224 px / 14, SigLIP so400m + DINOv2-L | Llama-2-7B 32 x 4096 | the LM's last 256 tokens, greedy | 1 |
| `pi0-paligemma-tiny` | pi0 (tiny random VLM) | 64 px / 8, SigLIP 2 x 32 | Gemma 4 x 64 | pi0 Gemma expert 4 x 32, flow, 10 Euler | 50 |
| `pi0-paligemma` | pi0 (3.3B) | 224 px / 14, paligemma-3b-pt-224 | Gemma 18 x 2048 | pi0 Gemma expert 18 x 1024 (300M), flow, 10 Euler | 50 |

Deviations, by design (all are small, trained from scratch on Meta-World-sized data):
- Octo: 128 px instead of 256 (Meta-World frames are small); same stem (4 stride-2 convs
  32/96/192/384 + 1x1 patch conv), window 2, horizon 4, 12 layers; the language model is a frozen
  MiniLM pooled into task tokens instead of T5-base's 16 token embeddings.
- OpenVLA / RT-2: no 7B VLM; our trunk is the prefix and a 2-layer causal decoder (heads/decoder.py)
  decodes the 256-bin tokens one after another with a KV cache, as the papers do, but a chunk of 8
  steps (32 tokens for Meta-World's 4-d actions) instead of one action. `rt2` is an alias. `oft`
  keeps the one-pass parallel decode (L1 regression); `--head tokens` is the parallel bin head.
- pi0: the prefix is our trunk (not PaliGemma), the action expert a 2-layer transformer of width
  128 attending to the trunk tokens' cached K/V; chunk 50 as in pi0, 10 executed per chunk.
- pi0-FAST: the prefix is our trunk (not PaliGemma) and the action tokens run through a 2-layer
  decoder at the trunk's width after it (prefix-LM attention) instead of through the same LM; the
  FAST tokenizer (scale 10, vocabulary 1024) is fitted on the training split by `vlaforge train`
  (or given with model.head.tokenizer); chunk 10, 5 executed, as openpi's LIBERO config.
- SmolVLA (`vlaforge.models.backbones`): `smolvla` is LeRobot's SmolVLA on SmolVLM2-500M-Video-
  Instruct (needs that model in a local folder or the local Hub cache: `--set
  model.backbone.id=PATH`); LeRobot's defaults: the first 16 of 32 text layers, expert width 0.75x,
  cross/self-attention alternating every 2 layers, VLM frozen (expert, state and action projections
  train), 1 frame, chunk 50 executed 50 (we execute 10, as pi0 here). `smolvla-tiny` is the same
  architecture at a random tiny size with an in-process character tokenizer (tests, CI, CPU).
- OpenVLA on its Prismatic VLM (`backbones/prismatic.py`, `lm_actions.py`): `openvla-prismatic` is
  OpenVLA's composition - SigLIP so400m-patch14-224 (`google/siglip-so400m-patch14-224`) and DINOv2-L/14
  (`facebook/dinov2-large`; OpenVLA's is the 4-register variant) fused, a GELU MLP projector, Llama-2-7B
  (`meta-llama/Llama-2-7b-hf`) - with those three in local folders or the local Hub cache: `--set
  model.backbone.id=LM --set model.backbone.siglip_id=... --set model.backbone.dino_id=...` (the
  inline sizes only count parameters); one action step per chunk, everything trains (OpenVLA's
  full fine-tune) or LoRA rank 32, alpha 16 (`--lora-rank 32`, `model.backbone.lora_targets`).
  `openvla-prismatic-tiny` is the same architecture at random tiny sizes with a character tokenizer,
  a chunk of 4 steps (16 tokens on Meta-World) so it runs collect -> train -> eval -> serve on a CPU.
- pi0 on PaliGemma (`vlaforge.models.backbones.paligemma`, `pi0_expert`): `pi0-paligemma` is pi0 on
  google/paligemma-3b-pt-224 (needs it in a local folder or the local Hub cache: `--set
  model.backbone.id=PATH`) with pi0's 300M Gemma expert (width 1024, MLP 4096, 18 layers, 8 heads,
  1 K/V head of 256); the whole model trains (pi0 fine-tunes the VLM; set
  model.backbone.train_expert_only=true to freeze it), 1 frame, chunk 50, 10 Euler steps, 10 executed.
  `pi0-paligemma-tiny` is the same architecture at a random tiny size with the character tokenizer.
- `default`: 64 px (4x4 tokens of 16 px per frame, stem 16/32/64/128) because training cost on a
  2-core CPU decides what can be learnt in minutes: measured on one loaded core, ~7 ms per training
  sample at 64 px vs ~12 at 96 px and ~21 at 128 px; inference is ~6-8 ms per chunk for all three
  (overhead-bound). Small goal markers (1-2 px at 128 px) are ~1 px at 64 px: for reach-like tasks
  use `-o image_size=96` (or 128).
- `default-effnet`: `default` with the frozen ImageNet EfficientNet-Lite0 (stride-16 map, 112 ch,
  projected to 128; `vlaforge.models.vision`) in place of the conv stem: the same 4x4 tokens at
  64 px; see docs/vision-encoders.md for when it pays and how to fine-tune part of it.
"""

from __future__ import annotations

import dataclasses

from vlaforge.errors import unknown
from vlaforge.models.config import BackboneConfig, ImageEncoderConfig, PolicyConfig, TrunkConfig
from vlaforge.models.heads import AR_KINDS, HeadConfig

DEFAULT_PRESET = "default"

_CPU_IMAGE = ImageEncoderConfig(stem_channels=(16, 32, 64, 128), patch_size=16)
_EFFNET_IMAGE = ImageEncoderConfig(encoder="efficientnet-lite0", feature_stride=16, trainable_blocks=0)
_OCTO_IMAGE = ImageEncoderConfig(stem_channels=(32, 96, 192, 384), patch_size=16, pixel_norm="signed")
_MID_IMAGE = ImageEncoderConfig(stem_channels=(32, 64, 128), patch_size=16)
_MID_TRUNK = TrunkConfig(width=256, depth=6, heads=8)
# SmolVLA's VLM. The sizes are SmolVLM2-500M-Video-Instruct's, used only to count parameters
# (`vlaforge presets`) without its files; the model itself is read from `id`.
SMOLVLM2_500M = BackboneConfig(
    kind="smolvlm", id="HuggingFaceTB/SmolVLM2-500M-Video-Instruct", num_vlm_layers=16,
    text_width=960, text_layers=32, text_heads=15, text_kv_heads=5, text_mlp=2560, vocab_size=49280,
    vision_width=768, vision_layers=12, vision_heads=12, vision_mlp=3072, vision_image_size=512,
    vision_patch=16, scale_factor=4,
)  # fmt: skip

# pi0's VLM, paligemma-3b-pt-224 (sizes for `vlaforge presets` without its files), and its expert.
PALIGEMMA_3B = BackboneConfig(
    kind="paligemma", id="google/paligemma-3b-pt-224", text_width=2048, text_layers=18, text_heads=8,
    text_kv_heads=1, text_mlp=16384, vocab_size=257216, vision_width=1152, vision_layers=27,
    vision_heads=16, vision_mlp=4304, vision_image_size=224, vision_patch=14, scale_factor=1,
    expert_width_multiplier=0.5, expert_mlp=4096, freeze_vision=False, train_expert_only=False,
    max_text_tokens=48,
)  # fmt: skip
PALIGEMMA_TINY = BackboneConfig(
    kind="paligemma", text_width=64, text_layers=4, text_heads=4, text_kv_heads=1, text_mlp=128,
    expert_width_multiplier=0.5, freeze_vision=False, train_expert_only=False,
)  # fmt: skip

PRESETS: dict[str, PolicyConfig] = {
    "default": PolicyConfig(
        image_size=64, image=_CPU_IMAGE, history=2, chunk=16, execute_steps=8,
        trunk=TrunkConfig(width=128, depth=4, heads=4), head=HeadConfig(kind="regression", loss="l1", num_blocks=2),
    ),
    "default-flow": PolicyConfig(
        image_size=64, image=_CPU_IMAGE, history=2, chunk=16, execute_steps=8,
        trunk=TrunkConfig(width=128, depth=4, heads=4), head=HeadConfig(kind="flow", flow_steps=10, num_readouts=4),
    ),
    "default-effnet": PolicyConfig(
        image_size=64, image=_EFFNET_IMAGE, history=2, chunk=16, execute_steps=8,
        trunk=TrunkConfig(width=128, depth=4, heads=4), head=HeadConfig(kind="regression", loss="l1", num_blocks=2),
    ),
    "octo-small": PolicyConfig(
        image_size=128, image=_OCTO_IMAGE, history=2, chunk=4, execute_steps=4,
        language=dataclasses.replace(PolicyConfig().language, num_tokens=4),
        trunk=TrunkConfig(width=384, depth=12, heads=6),
        head=HeadConfig(kind="diffusion", num_readouts=1, hidden_dim=256, num_blocks=3, diffusion_train_steps=20, sample_steps=10),
    ),
    "octo-base": PolicyConfig(
        image_size=128, image=_OCTO_IMAGE, history=2, chunk=4, execute_steps=4,
        language=dataclasses.replace(PolicyConfig().language, num_tokens=4),
        trunk=TrunkConfig(width=768, depth=12, heads=12),
        head=HeadConfig(kind="diffusion", num_readouts=1, hidden_dim=256, num_blocks=3, diffusion_train_steps=20, sample_steps=10),
    ),
    "oft": PolicyConfig(
        image_size=128, image=_MID_IMAGE, history=1, chunk=8, execute_steps=8,
        trunk=_MID_TRUNK, head=HeadConfig(kind="regression", loss="l1", num_blocks=2),
    ),
    "openvla": PolicyConfig(
        image_size=128, image=_MID_IMAGE, history=1, chunk=8, execute_steps=8, normalization="bounds",
        trunk=_MID_TRUNK, head=HeadConfig(kind="ar-bins", num_bins=256, decoder_depth=2, decoder_heads=8),
    ),
    "pi0": PolicyConfig(
        image_size=128, image=_MID_IMAGE, history=1, chunk=50, execute_steps=10,
        trunk=_MID_TRUNK,
        head=HeadConfig(kind="flow-expert", flow_steps=10, expert_width=128, expert_depth=2, expert_heads=4),
    ),
    "pi0-fast": PolicyConfig(
        image_size=128, image=_MID_IMAGE, history=1, chunk=10, execute_steps=5, normalization="bounds",
        trunk=_MID_TRUNK,
        head=HeadConfig(kind="ar-fast", fast_scale=10.0, fast_vocab=1024, decoder_depth=2, decoder_heads=8),
    ),
    "smolvla-tiny": PolicyConfig(
        image_size=64, history=1, chunk=50, execute_steps=10,
        backbone=BackboneConfig(kind="smolvlm", text_layers=6, num_vlm_layers=4),
        head=HeadConfig(kind="smolvla-expert", flow_steps=10),
    ),
    "smolvla": PolicyConfig(
        image_size=512, history=1, chunk=50, execute_steps=10,
        backbone=SMOLVLM2_500M,
        head=HeadConfig(kind="smolvla-expert", flow_steps=10),
    ),
    "pi0-paligemma-tiny": PolicyConfig(
        image_size=64, history=1, chunk=50, execute_steps=10,
        backbone=PALIGEMMA_TINY, head=HeadConfig(kind="pi0-expert", flow_steps=10),
    ),
    "pi0-paligemma": PolicyConfig(
        image_size=224, history=1, chunk=50, execute_steps=10,
        backbone=PALIGEMMA_3B, head=HeadConfig(kind="pi0-expert", flow_steps=10),
    ),
}  # fmt: skip

# OpenVLA's Prismatic VLM. The sizes are SigLIP so400m-patch14-224's, DINOv2-L/14's and Llama-2-7B's,
# used only to count parameters (`vlaforge presets`); the models are read from the three ids.
PRISMATIC_7B = BackboneConfig(
    kind="prismatic", id="meta-llama/Llama-2-7b-hf", siglip_id="google/siglip-so400m-patch14-224",
    dino_id="facebook/dinov2-large", freeze_vision=False, train_expert_only=False, lora_alpha=16.0,
    text_width=4096, text_layers=32, text_heads=32, text_kv_heads=32, text_mlp=11008, vocab_size=32000,
    vision_width=1152, vision_layers=27, vision_heads=16, vision_mlp=4304, vision_image_size=224,
    vision_patch=14, dino_width=1024, dino_layers=24, dino_heads=16,
)  # fmt: skip
PRISMATIC_TINY = BackboneConfig(
    kind="prismatic", freeze_vision=False, train_expert_only=False, lora_alpha=16.0,
    text_width=64, text_layers=2, text_heads=4, text_kv_heads=2, text_mlp=128,
    vision_width=32, vision_layers=3, vision_heads=2, vision_mlp=64, vision_image_size=32, vision_patch=8,
    dino_width=32, dino_layers=3, dino_heads=2,
)  # fmt: skip
PRESETS.update({
    "openvla-prismatic-tiny": PolicyConfig(
        image_size=64, history=1, chunk=4, execute_steps=4, normalization="bounds",
        backbone=PRISMATIC_TINY, head=HeadConfig(kind="lm-bins", num_bins=256),
    ),
    "openvla-prismatic": PolicyConfig(
        image_size=224, history=1, chunk=1, execute_steps=1, normalization="bounds",
        backbone=PRISMATIC_7B, head=HeadConfig(kind="lm-bins", num_bins=256),
    ),
})  # fmt: skip

ALIASES = {"rt2": "openvla", "octo": "octo-small"}


def preset_names() -> list[str]:
    return list(PRESETS) + list(ALIASES)


def get_preset(name: str) -> PolicyConfig:
    """The preset `name` (or an alias); unknown names raise VlaforgeError with a did-you-mean."""
    key = ALIASES.get(name, name)
    if key not in PRESETS:
        raise unknown("preset", name, preset_names())
    return PRESETS[key]


def with_head(cfg: PolicyConfig, kind: str) -> PolicyConfig:
    """`cfg` with its head kind replaced (the token heads switch normalization to bounds; others keep it)."""
    norm = "bounds" if kind in ("tokens", *AR_KINDS) else cfg.normalization
    heads = cfg.head.decoder_heads
    if kind in AR_KINDS and cfg.trunk.width % heads:
        heads = cfg.trunk.heads  # the trunk's head count divides its width
    head = dataclasses.replace(cfg.head, kind=kind, decoder_heads=heads)
    return dataclasses.replace(cfg, head=head, normalization=norm)
