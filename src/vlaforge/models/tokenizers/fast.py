"""FAST (pi0-FAST's action tokenizer): DCT over time, scale and round, byte-level BPE.

Encode (a normalized chunk [H, A], the policy's q01/q99 bounds already applied):
    coeff = round(scale * DCT-II_ortho(chunk, over time))      [H, A] integers (scale 10 default)
    flat  = coeff.reshape(-1)                                   frequency-major: every dimension's
                                                                lowest frequency first
    text  = "".join(chr(c - min_token))                         min_token = the fitted minimum
    ids   = BPE(text)                                           byte-level BPE (HF `tokenizers`)
Decode reverses it: BPE decode -> ord + min_token -> [H, A] -> / scale -> inverse DCT.

Fitting (`FastTokenizer.fit`): the coefficients of the training chunks set `min_token`/`max_token`
and, per coefficient, the range seen (`low`, `high`); the BPE is trained on their strings with a
vocabulary of 1024 (the released tokenizer has 2048), minimum pair frequency 2, and as the initial
alphabet the byte-level symbols of every value in [0, max_token - min_token], so any chunk whose
coefficients are in the fitted range encodes without loss (the reference passes the raw characters,
whose bytes the byte-level pre-tokenizer then maps elsewhere).

Failures, handled by design (each marks the row failed in `Decoded`, never raises):
- a sequence decoding to the wrong number of coefficients (openpi issue 299 returns all-zero
  actions): truncated, or zero-padded with the coefficient 0 (no contribution), in coefficient space;
- ids outside the BPE vocabulary are dropped; characters outside the fitted range, e.g. U+FFFD from
  byte sequences that are not valid UTF-8 (openpi 333), become the coefficient 0 in place;
- every coefficient is clipped to the range fitted for its position (not counted as a failure).
At encode time coefficients beyond [min_token, max_token] are clipped into the alphabet.

Deviation: the pre-tokenizer is byte-level without the GPT-2 word regex (`use_regex=False`): the
values are not text, and the regex would cut a chunk's string wherever a value's character changes
Unicode category (letter, digit, space), forbidding merges across those points.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import torch
from scipy.fft import dct, idct
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

from vlaforge.errors import VlaforgeError
from vlaforge.models.tokenizers import ActionTokenizer, Decoded


def _byte_level() -> pre_tokenizers.ByteLevel:
    return pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)


def _alphabet(size: int) -> list[str]:
    """The byte-level symbols of the UTF-8 bytes of chr(0) ... chr(size - 1)."""
    pre = _byte_level()
    symbols = {ch for v in range(size) for piece, _ in pre.pre_tokenize_str(chr(v)) for ch in piece}
    return sorted(symbols)


def dct_coefficients(chunks: np.ndarray, scale: float) -> np.ndarray:
    """Normalized chunks [N, H, A] -> rounded scaled DCT coefficients [N, H*A] (int64, freq-major)."""
    coeff = dct(np.asarray(chunks, dtype=np.float64), axis=1, norm="ortho")  # [N, H, A]
    return np.around(coeff * scale).astype(np.int64).reshape(len(coeff), -1)  # [N, H*A]


class FastTokenizer(ActionTokenizer):
    """A fitted FAST tokenizer for chunks of `horizon` x `action_dim` (see the module docstring)."""

    kind = "fast"

    def __init__(
        self,
        bpe: Tokenizer,
        *,
        horizon: int,
        action_dim: int,
        scale: float,
        min_token: int,
        low: np.ndarray,
        high: np.ndarray,
    ) -> None:
        super().__init__(horizon, action_dim)
        self.bpe, self.scale, self.min_token = bpe, float(scale), int(min_token)
        self.low, self.high = np.asarray(low, dtype=np.int64), np.asarray(high, dtype=np.int64)  # [H*A]
        self.max_token = int(self.high.max())
        self.fitted = True  # False only for `unfitted()`

    # ------------------------------------------------------------------ fit
    @classmethod
    def fit(
        cls, chunks: np.ndarray, *, scale: float = 10.0, vocab_size: int = 1024, min_frequency: int = 2
    ) -> FastTokenizer:
        """Fit on normalized chunks [N, H, A] (N >= 1)."""
        chunks = np.asarray(chunks, dtype=np.float64)
        if chunks.ndim != 3 or len(chunks) == 0 or not np.isfinite(chunks).all():
            raise VlaforgeError(
                f"FAST fit needs finite chunks [N, H, A] with N >= 1, got shape {list(chunks.shape)}"
            )
        if not (scale > 0 and np.isfinite(scale)) or vocab_size < 2 or min_frequency < 1:
            raise VlaforgeError("FAST fit needs scale > 0, vocab_size >= 2 and min_frequency >= 1")
        coeff = dct_coefficients(chunks, scale)  # [N, H*A]
        low, high = coeff.min(axis=0), coeff.max(axis=0)  # [H*A]
        min_token = int(low.min())
        bpe = Tokenizer(models.BPE())
        bpe.pre_tokenizer, bpe.decoder = _byte_level(), decoders.ByteLevel()
        trainer = trainers.BpeTrainer(
            vocab_size=vocab_size,
            min_frequency=min_frequency,
            show_progress=False,
            special_tokens=[],
            initial_alphabet=_alphabet(int(high.max()) - min_token + 1),
        )
        bpe.train_from_iterator(_strings(coeff - min_token), trainer=trainer, length=len(coeff))
        _, h, a = chunks.shape
        return cls(bpe, horizon=h, action_dim=a, scale=scale, min_token=min_token, low=low, high=high)

    @classmethod
    def unfitted(cls, horizon: int, action_dim: int, scale: float = 10.0) -> FastTokenizer:
        """DCT + rounding with one token per coefficient byte (no BPE merges): what an ar-fast head
        uses before `vlaforge train` fits the real one, so an unfitted policy still builds, trains
        and samples (tests, `vlaforge presets`, latency of a fresh preset). The range is every
        coefficient a chunk in [-1, 1] can have: |c| <= sqrt(2H) under the orthonormal DCT."""
        bound = int(np.ceil(scale * np.sqrt(2 * horizon)))
        alphabet = _alphabet(2 * bound + 1)
        bpe = Tokenizer(models.BPE())
        bpe.pre_tokenizer, bpe.decoder = _byte_level(), decoders.ByteLevel()
        trainer = trainers.BpeTrainer(
            vocab_size=len(alphabet), show_progress=False, initial_alphabet=alphabet
        )
        bpe.train_from_iterator([], trainer=trainer)
        n = horizon * action_dim
        full = np.full(n, bound, dtype=np.int64)
        tok = cls(
            bpe, horizon=horizon, action_dim=action_dim, scale=scale, min_token=-bound, low=-full, high=full
        )
        tok.fitted = False
        return tok

    # ------------------------------------------------------------------ encode / decode
    @property
    def vocab_size(self) -> int:
        return int(self.bpe.get_vocab_size())

    def encode(self, chunks: torch.Tensor) -> list[list[int]]:
        values = np.asarray(torch.as_tensor(chunks).detach().float().cpu())  # [B, H, A]
        coeff = dct_coefficients(values, self.scale).clip(self.min_token, self.max_token)  # [B, H*A]
        return [e.ids for e in self.bpe.encode_batch(list(_strings(coeff - self.min_token)))]

    def decode(self, sequences: Sequence[Sequence[int]]) -> Decoded:
        rows, failed = [], []
        for seq in sequences:
            coeff, bad = self._coefficients(seq)
            rows.append(coeff)
            failed.append(bad)
        h, a = self.horizon, self.action_dim
        coeff = np.stack(rows).reshape(-1, h, a) if rows else np.zeros((0, h, a))  # [B, H, A]
        actions = idct(coeff / self.scale, axis=1, norm="ortho")  # [B, H, A]
        return Decoded(torch.from_numpy(actions.astype(np.float32)), failed)

    def _coefficients(self, seq: Sequence[int]) -> tuple[np.ndarray, bool]:
        """One token list -> clipped coefficients [H*A] and whether it had to be repaired."""
        n, vocab = self.horizon * self.action_dim, self.vocab_size
        ids = [int(i) for i in seq if 0 <= int(i) < vocab]
        values = np.array([ord(c) for c in self.bpe.decode(ids)], dtype=np.int64)  # [n']
        valid = (values >= 0) & (values <= self.max_token - self.min_token)
        coeff = np.where(valid, values + self.min_token, 0)[:n]  # invalid characters -> 0
        bad = len(ids) != len(seq) or not bool(valid.all()) or len(values) != n
        coeff = np.pad(coeff, (0, n - len(coeff)))  # zero-padded in coefficient space
        return coeff.clip(self.low, self.high), bad

    # ------------------------------------------------------------------ save / load
    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "version": 1,
            "horizon": self.horizon,
            "action_dim": self.action_dim,
            "scale": self.scale,
            "min_token": self.min_token,
            "low": self.low.tolist(),
            "high": self.high.tolist(),
            "fitted": self.fitted,
            "bpe": json.loads(self.bpe.to_str()),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FastTokenizer:
        h, a = int(data["horizon"]), int(data["action_dim"])
        low, high = np.asarray(data["low"], dtype=np.int64), np.asarray(data["high"], dtype=np.int64)
        if low.shape != (h * a,) or high.shape != (h * a,) or (low > high).any():
            raise ValueError(f"low/high must be {h * a} ordered integers")
        bpe = Tokenizer.from_str(json.dumps(data["bpe"]))
        tok = cls(bpe, horizon=h, action_dim=a, scale=float(data["scale"]),
                  min_token=int(data["min_token"]), low=low, high=high)  # fmt: skip
        tok.fitted = bool(data.get("fitted", True))
        return tok


def _strings(offsets: np.ndarray) -> Iterable[str]:
    """Non-negative coefficient offsets [N, H*A] -> one string per chunk."""
    for row in offsets:
        yield "".join(map(chr, row.tolist()))
