"""Action heads: one `HeadConfig`, one `build_head` factory, one ABC (`base.ActionHead`).

| kind          | module        | readouts                      | output                                  |
| ------------- | ------------- | ----------------------------- | --------------------------------------- |
| `regression`  | regression.py | one per chunk position (H)    | whole chunk in one pass, L1 or MSE      |
| `tokens`      | tokens.py     | one per chunk position (H)    | 256 bins per entry, cross-entropy       |
| `diffusion`   | diffusion.py  | `num_readouts`, mean-pooled   | epsilon prediction, DDPM train / DDIM   |
| `flow`        | flow.py       | `num_readouts`, mean-pooled   | pi0 flow matching, Euler sampling       |
| `flow-expert` | flow.py       | `num_readouts` + trunk tokens | flow matching with a transformer expert |
| `ar-fast`     | decoder.py    | `num_readouts` + trunk tokens | FAST tokens (DCT + BPE) one by one, KV cache |
| `ar-bins`     | decoder.py    | `num_readouts` + trunk tokens | 256-bin tokens one by one, KV cache     |
| `smolvla-expert` | backbones/smolvla_expert.py | the VLM's per-layer K/V | SmolVLA's expert, flow matching (built by the smolvlm backbone) |
| `lm-bins`     | backbones/lm_actions.py | the prismatic prefix embeddings | the LM's last 256 vocabulary tokens, decoded by the LM (OpenVLA) |
| `pi0-expert` | backbones/pi0_expert.py | PaliGemma's per-layer K/V + state | pi0's Gemma expert, flow matching (built by the paligemma backbone) |

Every head receives normalized actions [B, H, A] and a bool `action_mask` [B, H, A] (True = real).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from vlaforge.errors import VlaforgeError, unknown
from vlaforge.models.heads.base import ActionHead, TrunkOutput

HeadKind = Literal[
    "regression", "tokens", "diffusion", "flow", "flow-expert", "ar-fast", "ar-bins", "smolvla-expert",
    "lm-bins", "pi0-expert",
]  # fmt: skip
HEAD_KINDS: tuple[str, ...] = (
    "regression",
    "tokens",
    "diffusion",
    "flow",
    "flow-expert",
    "ar-fast",
    "ar-bins",
)
VLM_HEAD_KINDS: tuple[str, ...] = ("smolvla-expert", "lm-bins", "pi0-expert")
"""Heads built by a VLM backbone on its own layout (`vlaforge.models.backbones`), not by `build_head`."""
AR_KINDS: tuple[str, ...] = ("ar-fast", "ar-bins")
"""The autoregressive decoder heads (they need normalization="bounds" and are not ONNX-exportable)."""
EMBODIMENT_KINDS: tuple[str, ...] = ("regression", "diffusion", "flow")
"""Heads that can give each embodiment its own action layers (`model.embodiment_layers="separate"`)."""


@dataclass(frozen=True)
class HeadConfig:
    """Every head's settings in one flat section; each head reads only the fields it needs."""

    # Which head to build (see the table in the module docstring).
    kind: HeadKind = "diffusion"

    # --- shared by the MLP heads (regression, tokens, diffusion, flow) ---
    # Width of the MLP-ResNet hidden layer (Octo's diffusion head: 256).
    hidden_dim: int = 256
    # Number of MLP-ResNet blocks (Octo: 3). Regression/tokens use the same trunk-to-output MLP.
    num_blocks: int = 3
    # Dropout inside MLP-ResNet blocks. Octo uses 0.1; we default to 0 (small datasets, fast overfit).
    dropout: float = 0.0
    # Readout tokens the trunk appends for the pooled heads (diffusion, flow, flow-expert); they are
    # mean-pooled into one conditioning vector as in Octo. Regression and tokens ignore this field
    # and ask for one readout per chunk position (num_readouts = horizon).
    num_readouts: int = 1
    # Width of the sinusoidal time embedding fed to the diffusion/flow networks (time in [0, 1]).
    time_dim: int = 32

    # --- regression (OpenVLA-OFT / ACT) ---
    # Loss on the normalized chunk: "l1" (OFT, ACT) or "mse".
    loss: Literal["l1", "mse"] = "l1"

    # --- tokens (RT-2 / OpenVLA), ar-bins and lm-bins ---
    # Uniform bins over [-1, 1] per action entry (the policy maps q01/q99 to [-1, 1]).
    num_bins: int = 256

    # --- ar-fast and ar-bins (pi0-FAST, RT-2 / OpenVLA: a causal decoder, heads/decoder.py) ---
    # Decoder transformer layers over [trunk tokens + readouts (prefix), action tokens (causal)];
    # their width is the trunk's.
    decoder_depth: int = 2
    # Attention heads in the decoder (must divide the trunk width).
    decoder_heads: int = 4
    # Most action tokens decoded per chunk before the end-of-actions token (0 = H*A for ar-bins,
    # 2*H*A for ar-fast: BPE tokens are at most the UTF-8 bytes of the H*A coefficients).
    max_action_tokens: int = 0
    # Sampling temperature of the action tokens; 0 = greedy (argmax), as pi0-FAST and OpenVLA.
    temperature: float = 0.0
    # FAST: DCT coefficients are multiplied by this scale and rounded (pi0-FAST: 10). Larger = finer
    # actions and more tokens (benchmarks/fast_tokenizer.py measures the trade-off).
    fast_scale: float = 10.0
    # FAST: BPE vocabulary size (pi0-FAST's default fit 1024; the released tokenizer 2048).
    fast_vocab: int = 1024
    # FAST: a tokenizer JSON from `vlaforge tokenizer fit`; None = training fits one on the training
    # split first. Either way the checkpoint carries the fitted tokenizer (metadata.json), so this
    # path is not needed to evaluate, serve or export it.
    tokenizer: str | None = None

    # --- diffusion (Octo) ---
    # T, the DDPM training steps of the cosine schedule (Octo: 20).
    diffusion_train_steps: int = 20
    # DDIM sampling steps, evenly spaced over the T train steps (<= diffusion_train_steps; equal to
    # it with ddim_eta=1 is DDPM ancestral sampling).
    sample_steps: int = 10
    # DDIM eta: 0 = deterministic given the initial noise, 1 = DDPM-like posterior noise.
    ddim_eta: float = 0.0
    # Clip of the predicted clean chunk during sampling, in normalized units (Octo: 5.0); 0 disables.
    sample_clip: float = 5.0

    # --- flow and flow-expert (pi0) ---
    # Euler steps from t=1 (noise) to t=0 (actions) at sampling (pi0: 10).
    flow_steps: int = 10
    # Training time t ~ Beta(a, b) scaled to [time_min, 1] (pi0: Beta(1.5, 1), time_min 0.001).
    time_beta_a: float = 1.5
    time_beta_b: float = 1.0
    time_min: float = 0.001
    # Training-time real-time chunking (arXiv 2512.05964), flow heads: each training chunk gets a
    # clean prefix of d ~ U{0..rtc_train_max_delay} rows (given as is, left out of the loss), so at
    # inference the committed rows are hard-inpainted instead of guided (`vlaforge.models.rtc`) for
    # delays up to this. 0 = off.
    rtc_train_max_delay: int = 0

    # --- flow-expert only (pi0's action expert, reduced) ---
    # Width of the expert's action tokens (pi0's expert is a narrower Gemma; the trunk is projected).
    expert_width: int = 128
    # Number of expert transformer layers.
    expert_depth: int = 2
    # Attention heads in the expert (must divide expert_width).
    expert_heads: int = 4
    # Expert MLP hidden width = expert_mlp_ratio * expert_width.
    expert_mlp_ratio: int = 4


def build_head(
    cfg: HeadConfig, embed_dim: int, action_dim: int, horizon: int, embodiments: int = 0
) -> ActionHead:
    """The head `cfg.kind` for trunk width `embed_dim`, `action_dim` entries and chunk `horizon`;
    `embodiments` > 0 gives that many sets of action layers (`EMBODIMENT_KINDS` only)."""
    _validate(cfg)
    if embodiments and cfg.kind not in EMBODIMENT_KINDS:
        raise VlaforgeError(
            f'per-embodiment layers (model.embodiment_layers="separate") are built for the '
            f"{', '.join(EMBODIMENT_KINDS)} heads, not {cfg.kind!r}"
        )
    from vlaforge.models.heads import decoder, diffusion, flow, regression, tokens

    builders = {
        "regression": regression.RegressionHead.from_config,
        "tokens": tokens.TokenHead.from_config,
        "diffusion": diffusion.DiffusionHead.from_config,
        "flow": flow.FlowHead.from_config,
        "flow-expert": flow.ExpertFlowHead.from_config,
        "ar-fast": decoder.ARDecoderHead.from_config,
        "ar-bins": decoder.ARDecoderHead.from_config,
    }
    if cfg.kind not in builders:  # smolvla-expert, lm-bins, pi0-expert: built by their backbone (its layout)
        vlm = {"lm-bins": "prismatic", "pi0-expert": "paligemma"}.get(cfg.kind, "smolvlm")
        raise VlaforgeError(f'head.kind="{cfg.kind}" needs model.backbone.kind="{vlm}"')
    extra = {"embodiments": embodiments} if embodiments else {}
    return builders[cfg.kind](cfg, embed_dim, action_dim, horizon, **extra)


_POSITIVE = (
    "hidden_dim", "num_blocks", "num_readouts", "time_dim", "num_bins", "diffusion_train_steps",
    "sample_steps", "flow_steps", "expert_width", "expert_depth", "expert_heads", "expert_mlp_ratio",
    "decoder_depth", "decoder_heads", "fast_vocab",
)  # fmt: skip


def _validate(cfg: HeadConfig) -> None:
    """Raise `VlaforgeError` (one line naming the field) for a config no head can be built from."""
    if cfg.kind not in HEAD_KINDS + VLM_HEAD_KINDS:
        raise unknown("head kind", str(cfg.kind), HEAD_KINDS + VLM_HEAD_KINDS)
    for name in _POSITIVE:
        if getattr(cfg, name) < 1:
            raise VlaforgeError(f"head.{name} must be >= 1, got {getattr(cfg, name)}")
    if cfg.kind == "diffusion" and cfg.sample_steps > cfg.diffusion_train_steps:
        raise VlaforgeError(
            f"head.sample_steps ({cfg.sample_steps}) must be <= head.diffusion_train_steps ({cfg.diffusion_train_steps})"
        )
    if cfg.kind == "flow-expert" and cfg.expert_width % cfg.expert_heads:
        raise VlaforgeError(
            f"head.expert_heads ({cfg.expert_heads}) must divide head.expert_width ({cfg.expert_width})"
        )
    if cfg.max_action_tokens < 0 or cfg.temperature < 0 or not cfg.fast_scale > 0:
        raise VlaforgeError("head.max_action_tokens and head.temperature must be >= 0, head.fast_scale > 0")
    if not 0 < cfg.time_min < 1 or cfg.time_beta_a <= 0 or cfg.time_beta_b <= 0:
        raise VlaforgeError("head.time_min must be in (0, 1) and head.time_beta_a/b > 0")


__all__ = [
    "AR_KINDS",
    "EMBODIMENT_KINDS",
    "HEAD_KINDS",
    "VLM_HEAD_KINDS",
    "ActionHead",
    "HeadConfig",
    "HeadKind",
    "TrunkOutput",
    "build_head",
]
