"""Uniform bins (RT-2 / OpenVLA): each entry of a normalized chunk is one of `num_bins` tokens.

Order: time-major, one step's A entries after another (h0a0, h0a1, ..., h1a0, ...), so a chunk is
exactly H x A tokens; the decoder decodes the whole chunk of H steps (OpenVLA decodes one step of 7).
The binning is the tokens head's (`heads.common.bin_index` / `bin_centre`): decode(encode(x)) is
within 1 / num_bins of clip(x, -1, 1). Repairs in `decode` (each marks the row failed): an id
outside [0, num_bins) decodes as 0 (the normalized centre of the range); a sequence shorter than
H x A is padded with 0, a longer one truncated.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from vlaforge.models.heads.common import bin_centre, bin_index
from vlaforge.models.tokenizers import ActionTokenizer, Decoded


class BinTokenizer(ActionTokenizer):
    """H x A tokens per chunk, `num_bins` uniform bins over [-1, 1]; needs no fitting."""

    kind = "bins"
    fitted = True  # nothing to fit

    def __init__(self, horizon: int, action_dim: int, num_bins: int = 256) -> None:
        super().__init__(horizon, action_dim)
        self.num_bins = num_bins

    @property
    def vocab_size(self) -> int:
        return self.num_bins

    def encode(self, chunks: torch.Tensor) -> list[list[int]]:
        return bin_index(chunks.detach().float().cpu(), self.num_bins).flatten(1).tolist()  # [B][H*A]

    def decode(self, sequences: Sequence[Sequence[int]]) -> Decoded:
        n = self.horizon * self.action_dim
        rows, failed = [], []
        for seq in sequences:
            ids = torch.as_tensor(list(seq)[:n], dtype=torch.long)  # [<=n]
            valid = (ids >= 0) & (ids < self.num_bins)
            values = torch.where(valid, bin_centre(ids.clamp(0, self.num_bins - 1), self.num_bins), 0.0)
            failed.append(len(seq) != n or not bool(valid.all()))
            rows.append(torch.nn.functional.pad(values, (0, n - len(values))))  # [n]
        actions = (
            torch.stack(rows).view(-1, self.horizon, self.action_dim)
            if rows
            else torch.zeros(0, self.horizon, self.action_dim)
        )
        return Decoded(actions, failed)

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "version": 1, "horizon": self.horizon, "action_dim": self.action_dim,
                "num_bins": self.num_bins}  # fmt: skip

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> BinTokenizer:
        return cls(int(data["horizon"]), int(data["action_dim"]), int(data["num_bins"]))
