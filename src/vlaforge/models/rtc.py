"""Real-time chunking at the policy level: the next chunk, guided to agree with the committed plan.

While a chunk is computed (`delay` control steps), the robot keeps executing the previous plan; the
new chunk's first `delay` rows therefore lie in the past by the time it arrives, and the rows after
them should continue the old plan smoothly. `sample_inpainted` samples the chunk with the flow head's
RTC guidance (`vlaforge.models.heads.flow`, Black et al. 2025) toward `committed`, the old plan
time-aligned to the new chunk (row 0 = the step of the observation).

Inputs and outputs are in robot units (the policy normalizes with the embodiment's statistics, as
`sample_actions` does). Deviation from the paper: the decaying part of the mask spans the whole
overlap with the committed plan (its remaining rows), not a separately chosen horizon. Flow heads
(`flow`, `flow-expert`) and the diffusion head (DDIM, `DiffusionHead.sample_inpainted`) support it;
other heads raise `VlaforgeError`. A flow head trained with a clean random-delay prefix
(`head.rtc_train_max_delay`, the training-time variant of arXiv 2512.05964) hard-inpaints the
committed rows instead, for delays it was trained for.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from vlaforge import keys
from vlaforge.errors import VlaforgeError
from vlaforge.models.heads.flow import rtc_weights


def supports_rtc(policy: Any) -> bool:
    """Whether the policy's head can sample with real-time-chunking guidance."""
    return hasattr(getattr(policy, "head", None), "sample_inpainted")


def sample_inpainted(
    policy: Any,
    observation: dict[str, Any],
    committed: torch.Tensor | np.ndarray,
    delay: int,
    *,
    max_guidance: float = 5.0,
    schedule: str = "exp",
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Actions [B, H, A_policy] in robot units, guided toward `committed` [B, R, A'] (robot units,
    the plan still to execute, row 0 = the observation's step; R >= delay). Works inside
    `torch.inference_mode()` too: the guidance needs autograd, so it leaves inference mode locally."""
    with torch.inference_mode(False), torch.no_grad():
        return _sample(policy, observation, committed, delay, max_guidance, schedule, generator)


def _sample(policy, observation, committed, delay, max_guidance, schedule, generator) -> torch.Tensor:
    if not supports_rtc(policy):
        kind = getattr(getattr(policy, "config", None), "head", None)
        raise VlaforgeError(
            f"real-time chunking needs a flow or diffusion head (flow, flow-expert, diffusion), not {getattr(kind, 'kind', kind)!r}"
        )
    cfg, dev = policy.config, policy.device
    plan = torch.as_tensor(np.asarray(committed, dtype=np.float32)).to(dev)  # [B, R, A']
    rows = min(plan.shape[1], cfg.chunk)
    if delay > rows:
        raise VlaforgeError(f"RTC delay {delay} exceeds the {rows} committed actions")
    index = observation.get(keys.DATASET_INDEX)
    index = None if index is None else torch.as_tensor(index, device=dev).reshape(-1)
    padded = F.pad(plan[:, :rows], (0, cfg.action_dim - plan.shape[-1], 0, cfg.chunk - rows))  # [B, H, A]
    target = policy.action_norm.normalize(padded, index)  # [B, H, A]
    trunk = policy.encode(observation)
    if 0 < delay <= getattr(policy.head, "prefix_max_delay", 0):  # trained for it: hard inpainting
        normalized = policy.head.sample_prefixed(trunk, target, delay, generator)  # [B, H, A]
        return policy.action_norm.unnormalize(normalized, index)
    weights = rtc_weights(cfg.chunk, delay, rows, schedule).to(dev).expand(plan.shape[0], -1)  # [B, H]
    normalized = policy.head.sample_inpainted(
        trunk, target, weights, max_guidance=max_guidance, generator=generator
    )  # [B, H, A]
    return policy.action_norm.unnormalize(normalized, index)
