"""Image augmentation on the training device: random shift (pad + crop) and colour jitter.

Works on the batch's uint8 `[B, T, H, W, C]` camera tensors where they already live (the GPU when
training on one), shifts on uint8, jitters in float and hands uint8 back, so the policy sees exactly the dtype and
layout it sees at evaluation (the contract of `keys.py`); rounding back costs < 0.5 grey level.

Randomness comes from a generator seeded by (seed, step) and is drawn for the *global* batch, of
which each data-parallel process then takes its rows: a run on N processes augments every sample
exactly as the single-process run does, and a resumed run needs no augmentation RNG state.
One shift and one jitter per sample and camera, shared across the history frames.
Off at validation and evaluation (the trainer simply does not call it).
"""

from __future__ import annotations

import torch

from vlaforge.keys import IMAGE_PREFIX
from vlaforge.train.config import AugmentConfig

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
    if shift > 0:
        images = _shift(images, params["dy"] - shift, params["dx"] - shift)
    return _jitter(images.float(), params["brightness"], params["contrast"], params["saturation"])


def _draw(
    cfg: AugmentConfig, n: int, h: int, w: int, gen: torch.Generator, device
) -> dict[str, torch.Tensor]:
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


def _shift(images: torch.Tensor, dy: torch.Tensor, dx: torch.Tensor) -> torch.Tensor:
    """Translate each sample by (dy, dx) pixels with edge replication (= replicate-pad + crop), on
    uint8, as two gathers (rows, then columns); clamped indices stand in for the padding."""
    b, t, h, w, c = images.shape
    rows = (torch.arange(h, device=images.device)[None] + dy[:, None]).clamp_(0, h - 1)  # [B, H]
    cols = (torch.arange(w, device=images.device)[None] + dx[:, None]).clamp_(0, w - 1)  # [B, W]
    out = images.reshape(b, t, h, w * c).gather(2, rows[:, None, :, None].expand(b, t, h, w * c))
    return out.view(b, t, h, w, c).gather(
        3, cols[:, None, None, :, None].expand(b, t, h, w, c)
    )  # [B, T, H, W, C]


def _jitter(
    x: torch.Tensor, brightness: torch.Tensor, contrast: torch.Tensor, saturation: torch.Tensor
) -> torch.Tensor:
    """Brightness (x*b), then contrast around the frame's mean grey (c), then saturation against the
    grey image (s), fused into one affine map per sample and one pass over the pixels:
        out = s*c*b * x + (1-s)*c*b * grey + (1-c)*b * mean_grey
    with grey the input's per-pixel luma. x: float [B, T, H, W, C] in 0..255 -> uint8 (rounded)."""
    b, c, s = (f.view(-1, 1, 1, 1, 1) for f in (brightness, contrast, saturation))  # [B, 1, 1, 1, 1]
    grey = x[..., 0:1] * _GREY[0] + x[..., 1:2] * _GREY[1] + x[..., 2:3] * _GREY[2]  # [B, T, H, W, 1]
    mean = grey.mean((2, 3), keepdim=True)  # [B, T, 1, 1, 1]
    offset = grey * ((1 - s) * c * b) + ((1 - c) * b * mean + 0.5)  # [B, T, H, W, 1]; +0.5 rounds below
    return torch.addcmul(offset, x, s * c * b).clamp_(0, 255).to(torch.uint8)  # [B, T, H, W, C]


def _mix(seed: int, step: int, camera: int) -> int:
    """A 63-bit seed from (seed, step, camera) that differs for nearby arguments."""
    x = (seed * 1_000_003 + step) * 1_000_033 + camera
    x = (x ^ (x >> 31)) * 0x9E3779B97F4A7C15
    return x & 0x7FFF_FFFF_FFFF_FFFF
