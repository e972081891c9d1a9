"""Shared math of the action heads; each piece exists once.

- `masked_mean`: the one loss reduction (True entries of the mask only).
- `cosine_schedule`: the one diffusion noise schedule (Nichol & Dhariwal's cosine, as in Octo).
- `euler_integrate`: the one ODE integrator (flow heads).
- `randn`: Gaussian noise drawn from an optional generator on the generator's device.
- `sinusoidal_embedding` / `TimeEmbedding`: time in [0, 1] -> features (pi0's period range).
- `MLPResNet` / `MLPResNetBlock`: Octo's MLP-ResNet; `ConditionedMLP` splits its input layer so the
  observation's share of it is computed once per observation, not once per denoising step.
- `EmbodimentLinear` / `linear` / `apply_linear`: a linear layer with one weight set per embodiment
  (`model.embodiment_layers="separate"`), picked per sample by the dataset index; `linear` builds a
  plain `nn.Linear` for shared layers, so their checkpoint tensors keep their names and shapes.
- `bin_index` / `bin_centre`: the one uniform binning of [-1, 1] (the tokens head, the bins tokenizer).
- `sample_categorical`: greedy or temperature sampling of token logits from an optional generator.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from vlaforge.errors import VlaforgeError


def masked_mean(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of `values` over entries where `mask` is True (broadcast); 0 when nothing is True.

    Uses `torch.where`, so masked entries get exactly zero gradient even if they hold inf/nan.
    """
    mask = mask.expand_as(values)
    total = torch.where(mask, values, torch.zeros_like(values)).sum()
    return total / mask.sum().clamp(min=1)


def cosine_schedule(num_steps: int, s: float = 0.008, max_beta: float = 0.999) -> torch.Tensor:
    """alpha_bar[k] for k = 0..T-1 of the cosine schedule (Nichol & Dhariwal 2021, Octo's choice).

    Betas are derived from the cosine alpha_bar curve and clipped to `max_beta` as in Octo, then
    alpha_bar is the cumulative product of (1 - beta). Returned in float64 for accurate sampling.
    """
    t = torch.linspace(0, 1, num_steps + 1, dtype=torch.float64)  # [T+1]
    f = torch.cos((t + s) / (1 + s) * math.pi / 2) ** 2  # [T+1]
    betas = (1 - f[1:] / f[:-1]).clamp(0, max_beta)  # [T]
    return torch.cumprod(1 - betas, dim=0)  # [T]


def euler_integrate(
    velocity: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    x: torch.Tensor,
    num_steps: int,
    t_start: float = 1.0,
    t_end: float = 0.0,
) -> torch.Tensor:
    """Integrate dx/dt = velocity(x, t) from `t_start` to `t_end` in `num_steps` equal Euler steps.

    `t` is passed to `velocity` as a [B] tensor (B = x.shape[0]).
    """
    dt = (t_end - t_start) / num_steps
    for i in range(num_steps):
        t = torch.full((x.shape[0],), t_start + i * dt, dtype=x.dtype, device=x.device)  # [B]
        x = x + dt * velocity(x, t)
    return x


def randn(
    shape: tuple[int, ...],
    generator: torch.Generator | None,
    like: torch.Tensor,
) -> torch.Tensor:
    """Standard normal noise with the dtype/device of `like`, drawn from `generator` if given.

    The draw happens on the generator's device (a CPU generator works for a GPU model), so the
    same seed gives the same noise whatever device the head lives on.
    """
    gen_device = generator.device if generator is not None else like.device
    noise = torch.randn(shape, generator=generator, device=gen_device, dtype=torch.float32)
    return noise.to(device=like.device, dtype=like.dtype)


def sinusoidal_embedding(
    t: torch.Tensor,
    dim: int,
    min_period: float = 4e-3,
    max_period: float = 4.0,
    precision: torch.dtype = torch.float32,
) -> torch.Tensor:
    """[B] times in [0, 1] -> [B, dim] sin/cos features with periods geometric in [min, max] (pi0).

    `precision` is the dtype of the angle arithmetic (angles reach 2*pi/min_period ~ 1,571 rad, so
    float32 rounds them by ~1e-4; LeRobot's SmolVLA computes them in float64, which its parity needs)."""
    half = dim // 2
    fraction = torch.linspace(0, 1, half, dtype=precision, device=t.device)  # [dim/2]
    period = min_period * (max_period / min_period) ** fraction  # [dim/2]
    angle = 2 * math.pi * t.to(precision)[:, None] / period[None, :]  # [B, dim/2]
    emb = torch.cat([torch.sin(angle), torch.cos(angle)], dim=-1)  # [B, 2*(dim/2)]
    if dim % 2:
        emb = torch.cat([emb, torch.zeros_like(emb[:, :1])], dim=-1)
    return emb.to(t.dtype if t.is_floating_point() else torch.float32)


class TimeEmbedding(nn.Module):
    """[B] times in [0, 1] -> [B, dim]: sinusoidal features then a 2-layer SiLU MLP (Octo, pi0)."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.dim = dim
        self.mlp = nn.Sequential(nn.Linear(dim, 2 * dim), nn.SiLU(), nn.Linear(2 * dim, dim))

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        return self.mlp(sinusoidal_embedding(t, self.dim).to(self.mlp[0].weight.dtype))  # [B, dim]


class MLPResNetBlock(nn.Module):
    """Octo's block: x + Linear(SiLU(Linear_4x(LayerNorm(Dropout(x)))))."""

    def __init__(self, dim: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Dropout(dropout),
            nn.LayerNorm(dim),
            nn.Linear(dim, 4 * dim),
            nn.SiLU(),
            nn.Linear(4 * dim, dim),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.net(x)


class EmbodimentLinear(nn.Module):
    """One Linear(in -> out) per embodiment (HPT's embodiment-specific stems and heads), picked per
    sample by the dataset index.

    weight [E, out, in], bias [E, out]; each of the E slices is initialised as `nn.Linear`
    initialises its own (Kaiming-uniform, a = sqrt(5); bias U(+-1/sqrt(in))). `forward(x, embodiment)`:
    x [B, ..., in] and embodiment int64 [B] -> [B, ..., out], by gathering each sample's weights (one
    batched matmul, no host sync). With one embodiment the index may be None (slice 0).
    """

    def __init__(self, in_dim: int, out_dim: int, count: int, bias: bool = True) -> None:
        super().__init__()
        if count < 1:
            raise VlaforgeError(f"an embodiment layer needs at least one embodiment, got {count}")
        self.in_features, self.out_features = in_dim, out_dim
        self.weight = nn.Parameter(torch.empty(count, out_dim, in_dim))  # [E, out, in]
        self.bias = nn.Parameter(torch.empty(count, out_dim)) if bias else None  # [E, out]
        for e in range(count):
            nn.init.kaiming_uniform_(self.weight[e], a=math.sqrt(5))
        if self.bias is not None:
            bound = 1 / math.sqrt(in_dim) if in_dim > 0 else 0.0
            nn.init.uniform_(self.bias, -bound, bound)

    @property
    def count(self) -> int:
        return self.weight.shape[0]

    def forward(self, x: torch.Tensor, embodiment: torch.Tensor | None = None) -> torch.Tensor:
        if embodiment is None:
            if self.count > 1:
                raise VlaforgeError(
                    f"this policy has per-embodiment layers for {self.count} embodiments: "
                    "the batch needs dataset_index"
                )
            bias = None if self.bias is None else self.bias[0]
            return nn.functional.linear(x, self.weight[0], bias)
        index = embodiment.reshape(-1).long()  # [B]
        y = torch.einsum("b...i,boi->b...o", x, self.weight[index])  # [B, ..., out]
        if self.bias is None:
            return y
        return y + self.bias[index].view(index.shape[0], *([1] * (x.dim() - 2)), -1)  # [B, ..., out]

    def extra_repr(self) -> str:
        return f"in={self.in_features}, out={self.out_features}, embodiments={self.count}"


def linear(in_dim: int, out_dim: int, embodiments: int = 0, bias: bool = True) -> nn.Module:
    """`nn.Linear` when `embodiments` is 0 (one shared layer), else an `EmbodimentLinear`."""
    if embodiments == 0:
        return nn.Linear(in_dim, out_dim, bias=bias)
    return EmbodimentLinear(in_dim, out_dim, embodiments, bias=bias)


def apply_linear(layer: nn.Module, x: torch.Tensor, embodiment: torch.Tensor | None) -> torch.Tensor:
    """A layer from `linear` on x; the dataset index matters only to an `EmbodimentLinear`."""
    return layer(x, embodiment) if isinstance(layer, EmbodimentLinear) else layer(x)


class MLPResNet(nn.Module):
    """Linear(in -> hidden), `num_blocks` residual blocks, SiLU, Linear(hidden -> out) (Octo); with
    `embodiments` > 0 the output layer is per embodiment (`EmbodimentLinear`)."""

    def __init__(
        self,
        in_dim: int,
        out_dim: int,
        hidden_dim: int,
        num_blocks: int,
        dropout: float = 0.0,
        embodiments: int = 0,
    ):
        super().__init__()
        self.inp = nn.Linear(in_dim, hidden_dim)
        self.body = nn.Sequential(*[MLPResNetBlock(hidden_dim, dropout) for _ in range(num_blocks)])
        self.out = nn.Sequential(nn.SiLU(), linear(hidden_dim, out_dim, embodiments))

    def forward(self, x: torch.Tensor, embodiment: torch.Tensor | None = None) -> torch.Tensor:
        h = self.out[0](self.body(self.inp(x)))  # [..., hidden]
        return apply_linear(self.out[1], h, embodiment)  # [..., out]


class ConditionedMLP(nn.Module):
    """An MLP-ResNet on concat(cond, x) whose input layer is split in two.

    Linear(concat(cond, x)) == Linear_c(cond) + Linear_x(x); `encode(cond)` computes the first term
    once per observation and `forward(cond_h, x)` only the rest, once per denoising/Euler step.
    With `embodiments` > 0 the action-facing layers (Linear_x on the noisy chunk, the output layer)
    are per embodiment; the conditioning layer and the body stay shared.
    """

    def __init__(
        self,
        cond_dim: int,
        x_dim: int,
        out_dim: int,
        hidden_dim: int,
        num_blocks: int,
        dropout: float,
        embodiments: int = 0,
    ):
        super().__init__()
        self.cond_proj = nn.Linear(cond_dim, hidden_dim)
        self.x_proj = linear(x_dim, hidden_dim, embodiments, bias=False)
        self.body = nn.Sequential(*[MLPResNetBlock(hidden_dim, dropout) for _ in range(num_blocks)])
        self.out = nn.Sequential(nn.SiLU(), linear(hidden_dim, out_dim, embodiments))

    def encode(self, cond: torch.Tensor) -> torch.Tensor:
        """[B, cond_dim] -> [B, hidden] (the observation's share of the input layer)."""
        return self.cond_proj(cond)

    def forward(
        self, cond_h: torch.Tensor, x: torch.Tensor, embodiment: torch.Tensor | None = None
    ) -> torch.Tensor:
        """cond_h [B, hidden] from `encode`, x [B, x_dim], embodiment [B] or None -> [B, out_dim]."""
        h = self.out[0](self.body(cond_h + apply_linear(self.x_proj, x, embodiment)))  # [B, hidden]
        return apply_linear(self.out[1], h, embodiment)  # [B, out_dim]


def pooled(readouts: torch.Tensor) -> torch.Tensor:
    """Mean over the readout tokens, [B, R, D] -> [B, D] (Octo's pooling of its readout group)."""
    return readouts.mean(dim=1)


def repeat_samples(x: torch.Tensor, num_samples: int) -> torch.Tensor:
    """[B, ...] -> [B * num_samples, ...], sample-major per observation (the ABC's order)."""
    return x.repeat_interleave(num_samples, dim=0)


class PositionwiseMLP(nn.Module):
    """One MLP-ResNet applied to each of H readouts, after adding a learned per-position embedding.

    The position embedding lets the shared MLP tell chunk positions apart even when the trunk's
    readouts are similar. readouts [B, H, D] -> [B, H, out_dim].
    """

    def __init__(
        self,
        embed_dim: int,
        horizon: int,
        out_dim: int,
        hidden_dim: int,
        num_blocks: int,
        dropout: float,
        embodiments: int = 0,
    ):
        super().__init__()
        self.position = nn.Parameter(torch.randn(horizon, embed_dim) * 0.02)  # [H, D]
        self.norm = nn.LayerNorm(embed_dim)
        self.mlp = MLPResNet(embed_dim, out_dim, hidden_dim, num_blocks, dropout, embodiments)

    def forward(self, readouts: torch.Tensor, embodiment: torch.Tensor | None = None) -> torch.Tensor:
        if readouts.shape[1] != self.position.shape[0]:
            raise ValueError(
                f"expected {self.position.shape[0]} readouts (one per chunk position), got {readouts.shape[1]}"
            )
        return self.mlp(self.norm(readouts + self.position), embodiment)  # [B, H, out_dim]


def mlp_kwargs(cfg: Any) -> dict[str, Any]:
    """The MLP settings every MLP head takes from its `HeadConfig` (hidden width, blocks, dropout)."""
    return {"hidden_dim": cfg.hidden_dim, "num_blocks": cfg.num_blocks, "dropout": cfg.dropout}


def bin_index(values: torch.Tensor, num_bins: int) -> torch.Tensor:
    """Normalized values (any shape) -> uniform bin indices over [-1, 1] (int64), values clipped."""
    unit = (values.clamp(-1.0, 1.0) + 1.0) / 2.0  # in [0, 1]
    return (unit * num_bins).floor().long().clamp(0, num_bins - 1)


def bin_centre(bins: torch.Tensor, num_bins: int) -> torch.Tensor:
    """Bin indices (any shape) -> bin centres in (-1, 1), float32 (within 1/num_bins of the value)."""
    return (bins.float() + 0.5) * (2.0 / num_bins) - 1.0


def sample_categorical(
    logits: torch.Tensor, temperature: float, generator: torch.Generator | None = None
) -> torch.Tensor:
    """[B, K] logits -> [B] class indices: argmax at temperature 0, else softmax(logits / T) drawn
    with the Gumbel-max trick from uniforms drawn on the generator's device (as `randn`)."""
    if temperature <= 0:
        return logits.argmax(-1)
    gen_device = generator.device if generator is not None else logits.device
    u = torch.rand(logits.shape, generator=generator, device=gen_device).to(logits.device)  # [B, K]
    gumbel = -torch.log(-torch.log(u.clamp(1e-10, 1.0 - 1e-7)))  # [B, K]
    return (logits.float() / temperature + gumbel).argmax(-1)
