"""Image augmentation on the training device: random shift (pad + crop) and colour jitter.

Works on the batch's uint8 `[B, T, H, W, C]` camera tensors where they already live (the GPU when
training on one), computes in float and hands uint8 back, so the policy sees exactly the dtype and
layout it sees at evaluation (the contract of `types.py`); rounding back costs < 0.5 grey level.

Randomness comes from a generator seeded by (seed, step) and is drawn for the *global* batch, of
which each data-parallel process then takes its rows: a run on N processes augments every sample
exactly as the single-process run does, and a resumed run needs no augmentation RNG state.
One shift and one jitter per sample and camera, shared across the history frames.
Off at validation and evaluation (the trainer simply does not call it).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from vlaforge.train.config import AugmentConfig
from vlaforge.types import IMAGE_PREFIX

_GREY = (0.299, 0.587, 0.114)  # ITU-R BT.601 luma weights


def augment_batch(
    batch: dict, cfg: AugmentConfig, seed: int, step: int, rows: slice | None = None, global_batch: int = 0
) -> dict:
    """A new batch with every `observation.images.*` tensor augmented; other keys untouched.

    `rows` selects this process's slice of the `global_batch` rows the random draws are made for.
    """
    if not cfg.enabled:
        return batch
    out = dict(batch)
    for i, key in enumerate(sorted(k for k in batch if k.startswith(IMAGE_PREFIX))):
        images = batch[key]  # [b, T, H, W, C] uint8
        total = images.shape[0] if rows is None else global_batch
        gen = torch.Generator(device=images.device).manual_seed(_mix(seed, step, i))
        params = _draw(cfg, total, images.shape[2], images.shape[3], gen, images.device)
        if rows is not None:
            params = {k: v[rows] for k, v in params.items()}
        out[key] = apply_augmentation(images, params, cfg.shift)
    return out


def apply_augmentation(images: torch.Tensor, params: dict[str, torch.Tensor], shift: int) -> torch.Tensor:
    """Deterministic given `params` (from `_draw`): uint8 [B, T, H, W, C] -> uint8 [B, T, H, W, C]."""
    x = images.permute(0, 1, 4, 2, 3).float()  # [B, T, C, H, W]
    if shift > 0:
        x = _shift(x, params["dy"], params["dx"], shift)
    x = _jitter(x, params["brightness"], params["contrast"], params["saturation"])
    return x.clamp_(0, 255).round_().to(torch.uint8).permute(0, 1, 3, 4, 2)


def _draw(cfg: AugmentConfig, n: int, h: int, w: int, gen: torch.Generator, device) -> dict[str, torch.Tensor]:
    s = cfg.shift

    def uniform(width: float) -> torch.Tensor:  # [n] factors in [1 - width, 1 + width]
        return 1.0 + (torch.rand(n, generator=gen, device=device) * 2 - 1) * width

    return {
        "dy": torch.randint(0, 2 * s + 1, (n,), generator=gen, device=device),
        "dx": torch.randint(0, 2 * s + 1, (n,), generator=gen, device=device),
        "brightness": uniform(cfg.brightness),
        "contrast": uniform(cfg.contrast),
        "saturation": uniform(cfg.saturation),
    }


def _shift(x: torch.Tensor, dy: torch.Tensor, dx: torch.Tensor, pad: int) -> torch.Tensor:
    """Replicate-pad by `pad` and crop H x W at offset (dy, dx) per sample, with one gather."""
    b, t, c, h, w = x.shape
    padded = F.pad(x.reshape(b, t * c, h, w), (pad, pad, pad, pad), mode="replicate")  # [B, T*C, H+2p, W+2p]
    rows = (dy[:, None] + torch.arange(h, device=x.device)[None]).long()  # [B, H]
    cols = (dx[:, None] + torch.arange(w, device=x.device)[None]).long()  # [B, W]
    bidx = torch.arange(b, device=x.device)[:, None, None]
    out = padded.permute(0, 2, 3, 1)[bidx, rows[:, :, None], cols[:, None, :]]  # [B, H, W, T*C]
    return out.permute(0, 3, 1, 2).reshape(b, t, c, h, w)


def _jitter(x: torch.Tensor, brightness: torch.Tensor, contrast: torch.Tensor, saturation: torch.Tensor) -> torch.Tensor:
    """Brightness, then contrast around the mean grey, then saturation; factors are per sample [B]."""
    def per_sample(f: torch.Tensor) -> torch.Tensor:
        return f.view(-1, 1, 1, 1, 1)

    weights = torch.tensor(_GREY, device=x.device).view(1, 1, 3, 1, 1)
    x = x * per_sample(brightness)  # [B, T, C, H, W]
    grey = (x * weights).sum(2, keepdim=True)  # [B, T, 1, H, W]
    x = (x - grey.mean((3, 4), keepdim=True)) * per_sample(contrast) + grey.mean((3, 4), keepdim=True)
    grey = (x * weights).sum(2, keepdim=True)  # [B, T, 1, H, W]
    return (x - grey) * per_sample(saturation) + grey


def _mix(seed: int, step: int, camera: int) -> int:
    """A 63-bit seed from (seed, step, camera) that differs for nearby arguments."""
    x = (seed * 1_000_003 + step) * 1_000_033 + camera
    x = (x ^ (x >> 31)) * 0x9E3779B97F4A7C15
    return x & 0x7FFF_FFFF_FFFF_FFFF
