"""The one image resize: uint8 frames in, uint8 frames out, on any floor that needs it.

The frame cache (training), the policy's image stem (evaluation, serving, export) and anything else
that changes a frame's size call `resize`, so a policy whose image size differs from the recorded
frames sees the same pixels in training as at test time. (Two resizers, e.g. libswscale's AREA in
the decoder and torch's bilinear in the model, differ by a few grey levels per pixel: enough to shift
a policy trained on one and run on the other.)

Convention: bilinear interpolation with antialiasing when shrinking (`torch.nn.functional.interpolate`,
`align_corners=False`), computed in float32 and rounded back to uint8 (round half to even). Works on
numpy arrays (returns numpy) and torch tensors (returns a tensor on the same device; the CPU result
is the reference, CUDA kernels may differ in the last bit).
"""

from __future__ import annotations

from typing import TypeVar

import numpy as np
import torch
import torch.nn.functional as F

Frames = TypeVar("Frames", np.ndarray, torch.Tensor)

#: Frames resized per call when a long array is resized in pieces (bounds the float32 copy).
CHUNK = 256


def _size(size: int | tuple[int, int]) -> tuple[int, int]:
    height, width = (size, size) if isinstance(size, int) else size
    if int(height) < 1 or int(width) < 1:
        raise ValueError(f"a resize target must be positive, got {size!r}")
    return int(height), int(width)


def resize(frames: Frames, size: int | tuple[int, int]) -> Frames:
    """uint8 `[..., H, W, 3]` -> uint8 `[..., h, w, 3]` with `size` = h = w or `(h, w)`.

    A frame that already has the target size is returned unchanged (no copy).
    """
    height, width = _size(size)
    if tuple(frames.shape[-3:-1]) == (height, width):
        return frames
    as_numpy = isinstance(frames, np.ndarray)
    if as_numpy:
        array = np.ascontiguousarray(frames)
        x = torch.from_numpy(array if array.flags.writeable else array.copy())  # memmaps are read-only
    else:
        x = frames
    if x.dtype != torch.uint8 or x.dim() < 3 or x.shape[-1] != 3:
        raise ValueError(f"resize takes uint8 [..., H, W, 3] frames, got {x.dtype} {list(x.shape)}")
    lead = x.shape[:-3]
    flat = x.reshape(-1, *x.shape[-3:])  # [N, H, W, 3]
    if len(flat) == 0:
        return frames.reshape(*lead, height, width, 3) if as_numpy else x.reshape(*lead, height, width, 3)
    out = torch.cat([_resize_chunk(flat[i : i + CHUNK], height, width) for i in range(0, len(flat), CHUNK)])
    out = out.reshape(*lead, height, width, 3)  # [..., h, w, 3]
    return out.numpy() if as_numpy else out


def _resize_chunk(x: torch.Tensor, height: int, width: int) -> torch.Tensor:
    shrink = height < x.shape[1] or width < x.shape[2]
    y = x.permute(0, 3, 1, 2).float()  # [N, 3, H, W] in [0, 255]
    y = F.interpolate(y, size=(height, width), mode="bilinear", antialias=shrink, align_corners=False)
    return y.round_().clamp_(0, 255).to(torch.uint8).permute(0, 2, 3, 1).contiguous()  # [N, h, w, 3]
