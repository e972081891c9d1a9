"""Flow-matching heads (pi0): straight-path flow, Beta time sampling, Euler integration.

Convention (pi0's): t = 1 is noise, t = 0 is the action chunk.
- Training: t ~ Beta(1.5, 1) scaled to [0.001, 1] (more weight near the noisy end),
  x_t = t * noise + (1 - t) * actions, target velocity u = noise - actions, MSE over the real
  entries of `action_mask` (padded entries of the actions are zeroed first).
- Sampling: x_1 ~ N(0, I), then `flow_steps` Euler steps of dx/dt = v(x, t) from t = 1 to t = 0
  with the one integrator of `common.euler_integrate`.

Real-time chunking (`sample_inpainted`, Black, Galliker and Levine 2025, "Real-Time Execution of
Action Chunking Flow Policies"): the next chunk is sampled while the robot still executes the
previous one, so its first rows are already committed. At every Euler step the predicted clean chunk
A_hat = x - t * v (our t = 1 - tau of the paper) is pulled toward the committed actions Y with the
soft mask W [H] (1 on the rows executed during inference, decaying to 0 over the rest of the
overlap): g = (dA_hat/dx)^T (W * (Y - A_hat)) by one vector-Jacobian product, and the velocity
becomes v - c * g with c = min(max_guidance, (1 - tau) / tau * (tau^2 + (1 - tau)^2) / (1 - tau)^2)
(the sign flips because our velocity points from actions to noise). Needs autograd: call it under
`torch.no_grad()` (it enables grad locally), never under `torch.inference_mode()`.

Both variants split the network the same way: `context(trunk)` holds everything that depends only
on the observation and is computed **once per observation**; `velocity(x_t, t, context)` is what runs
at each Euler step.
- `FlowHead` (`flow`): an MLP-ResNet on mean-pooled readouts (the context is its input-layer share).
- `ExpertFlowHead` (`flow-expert`): a small transformer "action expert" (`expert.ActionExpert`)
  whose action tokens attend to the trunk tokens and readouts; the context is the per-layer
  keys/values of that prefix (`expert.encode_prefix`), reused at every step.
"""

from __future__ import annotations

import math
from abc import abstractmethod
from typing import TYPE_CHECKING, Any

import torch

from vlaforge.errors import VlaforgeError
from vlaforge.models.heads.base import ActionHead, TrunkOutput
from vlaforge.models.heads.common import (
    ConditionedMLP,
    TimeEmbedding,
    euler_integrate,
    masked_mean,
    mlp_kwargs,
    pooled,
    randn,
    repeat_samples,
)
from vlaforge.models.heads.expert import ActionExpert

if TYPE_CHECKING:
    from vlaforge.models.heads import HeadConfig


class _FlowMatchingHead(ActionHead):
    """Shared loss and sampler of the flow heads; subclasses give `context` and `velocity`."""

    def __init__(
        self,
        embed_dim: int,
        action_dim: int,
        horizon: int,
        *,
        num_readouts: int = 1,
        flow_steps: int = 10,
        time_beta: tuple[float, float] = (1.5, 1.0),
        time_min: float = 0.001,
        prefix_max_delay: int = 0,
    ) -> None:
        super().__init__(embed_dim, action_dim, horizon, num_readouts)
        if not 0 <= prefix_max_delay < horizon:
            raise VlaforgeError(
                f"head.rtc_train_max_delay must be in [0, chunk={horizon}), got {prefix_max_delay}"
            )
        self.flow_steps = flow_steps
        self.time_beta = time_beta
        self.time_min = time_min
        self.prefix_max_delay = prefix_max_delay

    @abstractmethod
    def context(self, trunk: TrunkOutput, num_samples: int) -> Any:
        """Everything that depends on the observation only, repeated for `num_samples` samples."""

    @abstractmethod
    def velocity(self, x: torch.Tensor, t: torch.Tensor, context: Any) -> torch.Tensor:
        """Velocity [B, H, A] at noisy chunks x [B, H, A] and times t [B]."""

    def sample_time(self, batch: int, like: torch.Tensor) -> torch.Tensor:
        """t ~ Beta(a, b) scaled to [time_min, 1], shape [batch] (pi0)."""
        a, b = (torch.tensor(v, dtype=torch.float32, device=like.device) for v in self.time_beta)
        t = torch.distributions.Beta(a, b).sample((batch,))  # [B]
        return (t * (1 - self.time_min) + self.time_min).to(like.dtype)

    def loss(self, trunk, actions, action_mask):
        x0 = actions.masked_fill(~action_mask, 0.0)  # [B, H, A]
        noise = torch.randn_like(x0)  # [B, H, A]
        t = self.sample_time(x0.shape[0], like=x0)  # [B]
        x_t = t[:, None, None] * noise + (1 - t[:, None, None]) * x0  # [B, H, A]
        if self.prefix_max_delay:  # training-time RTC: a clean prefix of random length, not scored
            d = torch.randint(0, self.prefix_max_delay + 1, (x0.shape[0],), device=x0.device)  # [B]
            prefix = (torch.arange(self.horizon, device=x0.device) < d[:, None])[:, :, None]  # [B, H, 1]
            x_t = torch.where(prefix, x0, x_t)
            action_mask = action_mask & ~prefix
        v = self.velocity(x_t, t, self.context(trunk, 1))  # [B, H, A]
        loss = masked_mean((v - (noise - x0)) ** 2, action_mask)
        return loss, {"loss": loss.item()}

    def sample(self, trunk, num_samples=1, generator=None):
        context = self.context(trunk, num_samples)  # once per observation
        batch = trunk.readouts.shape[0] * num_samples
        x = randn((batch, self.horizon, self.action_dim), generator, like=trunk.readouts)  # [B*S, H, A]
        return euler_integrate(lambda x_t, t: self.velocity(x_t, t, context), x, self.flow_steps)

    def sample_inpainted(
        self,
        trunk: TrunkOutput,
        target: torch.Tensor,
        weights: torch.Tensor,
        *,
        max_guidance: float = 5.0,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """One chunk [B, H, A] per observation, guided toward `target` [B, H, A] (normalized, the
        committed actions time-aligned to the new chunk) where `weights` [B, H] > 0 (see the module
        docstring)."""
        context = self.context(trunk, 1)  # once per observation
        x = randn((trunk.readouts.shape[0], self.horizon, self.action_dim), generator, like=trunk.readouts)
        w = weights[:, :, None].to(x)  # [B, H, 1]

        def guided(x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
            with torch.enable_grad():
                x_in = x_t.detach().requires_grad_(True)
                v = self.velocity(x_in, t, context)  # [B, H, A]
                a_hat = x_in - t[:, None, None] * v  # predicted clean chunk [B, H, A]
                (g,) = torch.autograd.grad(a_hat, x_in, grad_outputs=w * (target - a_hat.detach()))
            tau = 1.0 - float(t[0])  # the paper's time: 0 noise, 1 actions
            c = (
                max_guidance
                if tau <= 0
                else min(max_guidance, (1 - tau) / tau * (tau**2 + (1 - tau) ** 2) / (1 - tau) ** 2)
            )
            return v.detach() - c * g

        return euler_integrate(guided, x, self.flow_steps)

    def sample_prefixed(
        self, trunk: TrunkOutput, target: torch.Tensor, delay: int, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """Training-time RTC at inference: the first `delay` rows are the committed `target` rows
        (hard inpainting, as the head saw clean prefixes in training); the rest is sampled."""
        if not 0 < delay <= self.prefix_max_delay:
            raise ValueError(f"delay {delay} is outside the trained prefix range 1..{self.prefix_max_delay}")
        context = self.context(trunk, 1)
        x = randn((trunk.readouts.shape[0], self.horizon, self.action_dim), generator, like=trunk.readouts)
        clean = target[:, :delay]  # [B, d, A]

        def inpainted(x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
            x_t = torch.cat([clean, x_t[:, delay:]], dim=1)  # [B, H, A]
            v = self.velocity(x_t, t, context)
            return torch.cat([torch.zeros_like(clean), v[:, delay:]], dim=1)  # the prefix stays put

        x = torch.cat([clean, x[:, delay:]], dim=1)
        return euler_integrate(inpainted, x, self.flow_steps)


def rtc_weights(horizon: int, delay: int, overlap: int, schedule: str = "exp") -> torch.Tensor:
    """The soft mask W [H] of real-time chunking: 1 on the first `delay` rows (executed while the
    chunk is computed), decaying to 0 over the rest of the `overlap` rows that the committed plan
    covers, 0 after. `schedule`: "exp" (the paper's c * (e^c - 1) / (e - 1)) or "linear"."""
    if not 0 <= delay <= overlap <= horizon:
        raise ValueError(f"need 0 <= delay <= overlap <= horizon, got {delay}, {overlap}, {horizon}")
    i = torch.arange(horizon, dtype=torch.float32)  # [H]
    c = ((overlap - i) / (overlap - delay + 1)).clamp(0, 1)  # [H], 1 -> 0 over the decaying rows
    decay = c * (torch.exp(c) - 1) / (math.e - 1) if schedule == "exp" else c
    if schedule not in ("exp", "linear"):
        raise ValueError(f"unknown RTC schedule {schedule!r}; choose exp or linear")
    return torch.where(i < delay, torch.ones_like(i), torch.where(i < overlap, decay, torch.zeros_like(i)))


class FlowHead(_FlowMatchingHead):
    """`flow`: velocity from an MLP-ResNet conditioned on mean-pooled readouts + time embedding."""

    def __init__(
        self,
        embed_dim: int,
        action_dim: int,
        horizon: int,
        *,
        hidden_dim: int = 256,
        num_blocks: int = 3,
        dropout: float = 0.0,
        time_dim: int = 32,
        embodiments: int = 0,
        **flow_kwargs: Any,
    ) -> None:
        super().__init__(embed_dim, action_dim, horizon, **flow_kwargs)
        flat = horizon * action_dim
        self.time = TimeEmbedding(time_dim)
        self.net = ConditionedMLP(
            embed_dim, flat + time_dim, flat, hidden_dim, num_blocks, dropout, embodiments
        )

    @classmethod
    def from_config(
        cls, cfg: HeadConfig, embed_dim: int, action_dim: int, horizon: int, embodiments: int = 0
    ) -> FlowHead:
        return cls(
            embed_dim, action_dim, horizon, time_dim=cfg.time_dim, embodiments=embodiments,
            **mlp_kwargs(cfg), **_flow_kwargs(cfg),
        )  # fmt: skip

    def context(self, trunk, num_samples):
        cond = repeat_samples(self.net.encode(pooled(trunk.readouts)), num_samples)  # [B*S, hidden]
        index = None if trunk.embodiment is None else repeat_samples(trunk.embodiment, num_samples)
        return cond, index  # index [B*S]: the dataset index for per-embodiment layers

    def velocity(self, x, t, context):
        cond, index = context
        inp = torch.cat([x.flatten(1), self.time(t)], dim=-1)  # [B, H*A + time_dim]
        return self.net(cond, inp, index).view_as(x)  # [B, H, A]


class ExpertFlowHead(_FlowMatchingHead):
    """`flow-expert`: a transformer action expert attending to cached prefix keys/values."""

    def __init__(
        self,
        embed_dim: int,
        action_dim: int,
        horizon: int,
        *,
        width: int = 128,
        depth: int = 2,
        heads: int = 4,
        mlp_ratio: int = 4,
        **flow_kwargs: Any,
    ) -> None:
        super().__init__(embed_dim, action_dim, horizon, **flow_kwargs)
        self.expert = ActionExpert(embed_dim, action_dim, horizon, width, depth, heads, mlp_ratio)

    @classmethod
    def from_config(cls, cfg: HeadConfig, embed_dim: int, action_dim: int, horizon: int) -> ExpertFlowHead:
        return cls(
            embed_dim, action_dim, horizon,
            width=cfg.expert_width, depth=cfg.expert_depth, heads=cfg.expert_heads,
            mlp_ratio=cfg.expert_mlp_ratio, **_flow_kwargs(cfg),
        )  # fmt: skip

    def context(self, trunk, num_samples):
        return self.expert.encode_prefix(trunk).repeat_interleave(num_samples)  # PrefixKV, once

    def velocity(self, x, t, context):
        return self.expert(x, t, context)  # [B, H, A]

    def sample_uncached(self, trunk, num_samples=1, generator=None):
        """Reference sampler that recomputes the prefix keys/values at every Euler step.

        Numerically equal to `sample` (tested); exists to check the cache and to time its benefit.
        """
        rep = TrunkOutput(
            repeat_samples(trunk.readouts, num_samples),
            repeat_samples(trunk.tokens, num_samples),
            None if trunk.token_mask is None else repeat_samples(trunk.token_mask, num_samples),
        )
        x = randn((rep.readouts.shape[0], self.horizon, self.action_dim), generator, like=rep.readouts)
        return euler_integrate(
            lambda x_t, t: self.expert(x_t, t, self.expert.encode_prefix(rep)), x, self.flow_steps
        )


def _flow_kwargs(cfg: HeadConfig) -> dict[str, Any]:
    return {
        "num_readouts": cfg.num_readouts,
        "flow_steps": cfg.flow_steps,
        "time_beta": (cfg.time_beta_a, cfg.time_beta_b),
        "time_min": cfg.time_min,
        "prefix_max_delay": cfg.rtc_train_max_delay,
    }


__all__ = ["ExpertFlowHead", "FlowHead", "rtc_weights"]
