"""Autoregressive action decoding (pi0-FAST; RT-2 / OpenVLA): action tokens one after another.

Kinds: `ar-fast` (FAST tokens, `models/tokenizers/fast.py`, fitted on the training data) and
`ar-bins` (256 uniform bins per entry, `models/tokenizers/bins.py`, H x A tokens per chunk: the
whole chunk of H steps is decoded, where OpenVLA decodes one step).

Sequence (prefix-LM attention, as pi0-FAST):

    [trunk tokens (task + observations) + readouts]  [BOS  t1  t2 ... tn]
     prefix: bidirectional among itself                action tokens: causal, see the whole prefix

The prefix is the trunk's output (`TrunkOutput.tokens` and `.readouts`, padded history steps masked
as keys); the decoder's own `decoder_depth` pre-norm blocks (the trunk's `Block`, at the trunk's
width) run over prefix and action tokens. The model predicts t1 ... tn and then EOS, the
end-of-actions token; the loss is cross-entropy on those action positions only. Token ids:
0..V-1 the tokenizer's, V = EOS, V+1 = BOS (input only).

Until `VLAPolicy.set_action_tokenizer` gives it the fitted FAST tokenizer, an ar-fast head uses
`FastTokenizer.unfitted` (DCT + rounding, one token per coefficient, no BPE merges), so a fresh
preset still builds, trains and samples; `vlaforge train` always fits the real one first.

Decoding: greedy (temperature 0) or temperature sampling; at most `max_action_tokens` tokens, then
EOS is implied. The prefix runs once and leaves each layer's K/V; every further token is one step
through the layers with one new query against the cached K/V (`Block.step`). `decode_stats` counts
the chunks decoded and those the tokenizer had to repair (wrong length, invalid ids/characters).

Training metrics besides the loss: `token_accuracy` (teacher forced), `tokens_per_chunk` (target
length without EOS) and `decode_fail_pct`: the share (%) of the batch's chunks whose teacher-forced
argmax tokens (cut at their first EOS) the tokenizer had to repair - a cheap per-step proxy of the
decode failures of free-running sampling, logged with the other metrics in log.jsonl.

Not ONNX-exportable (`NOT_EXPORTABLE`): the number of decode steps depends on the tokens produced,
FAST decoding runs the BPE and inverse DCT in Python/numpy, and the KV cache grows each step;
dynamic INT8 quantization of the linear layers works and serves.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from torch import nn

from vlaforge.errors import VlaforgeError
from vlaforge.models.config import TrunkConfig
from vlaforge.models.heads.base import ActionHead, TrunkOutput
from vlaforge.models.heads.common import masked_mean, sample_categorical
from vlaforge.models.tokenizers import ActionTokenizer
from vlaforge.models.trunk import Block

if TYPE_CHECKING:
    from vlaforge.models.heads import HeadConfig

NOT_EXPORTABLE = (
    "the autoregressive decoder (ar-fast, ar-bins) is not ONNX-exportable: the number of decode steps "
    "depends on the tokens it produces, FAST decoding runs BPE and an inverse DCT outside torch, and "
    "its KV cache grows per token; serve the checkpoint or its INT8 export (`vlaforge export --int8`)"
)
IGNORE = -100  # cross-entropy target of padding positions

KVCache = list[tuple[torch.Tensor, torch.Tensor]]


def prefix_lm_mask(prefix: int, length: int, device: torch.device | None = None) -> torch.Tensor:
    """Bool [P+L, P+L] (True = may attend): the prefix sees the prefix; action token i sees the
    prefix and action tokens <= i."""
    n = prefix + length
    row, col = torch.arange(n, device=device)[:, None], torch.arange(n, device=device)[None, :]
    return (col < prefix) | ((row >= prefix) & (col <= row))


class TokenDecoder(ActionHead):
    """What every autoregressive action-token head shares: the tokenizer, teacher-forced
    cross-entropy over the action tokens + EOS, greedy/temperature decoding with a KV cache, the
    decode statistics. Ids are the head's own: 0..V-1 the tokenizer's, V = EOS, V+1 = BOS (input
    only). Subclasses give the network: `_prefix`, `full_logits`, `prefill`, `extend` (logits over
    the V + 1 head ids; the cache is whatever `prefill` returns and `extend` grows)."""

    def __init__(
        self,
        embed_dim: int,
        action_dim: int,
        horizon: int,
        *,
        scheme: str,
        vocab_size: int,
        max_tokens: int,
        temperature: float = 0.0,
        num_readouts: int = 1,
        tokenizer: ActionTokenizer,
    ) -> None:
        super().__init__(embed_dim, action_dim, horizon, num_readouts=num_readouts)
        self.scheme, self.vocab_size, self.max_tokens = scheme, vocab_size, max_tokens
        self.eos, self.bos = vocab_size, vocab_size + 1
        self.temperature = temperature
        self.decode_stats = {"chunks": 0, "failures": 0}
        self.set_tokenizer(tokenizer)

    # ------------------------------------------------------------------ tokenizer
    def set_tokenizer(self, tokenizer: ActionTokenizer) -> None:
        """Attach the (fitted) tokenizer; it must match this head's scheme, chunk shape and vocabulary."""
        if tokenizer.kind != self.scheme:
            raise VlaforgeError(f"the ar-{self.scheme} head cannot use a {tokenizer.kind!r} action tokenizer")
        tokenizer.check_shape(self.horizon, self.action_dim)
        if tokenizer.vocab_size > self.vocab_size:
            raise VlaforgeError(
                f"the action tokenizer has {tokenizer.vocab_size} tokens but the head was built for "
                f"{self.vocab_size} (raise model.head.fast_vocab)"
            )
        self.tokenizer: ActionTokenizer = tokenizer

    # ------------------------------------------------------------------ the network (subclasses)
    def _prefix(self, trunk: TrunkOutput) -> tuple[torch.Tensor, torch.Tensor]:
        """Prefix tokens [B, P, D] and their key mask [B, P] (True = real)."""
        raise NotImplementedError

    def full_logits(self, prefix: torch.Tensor, real: torch.Tensor, inputs: torch.Tensor) -> torch.Tensor:
        """Recompute everything: inputs [B, L] (BOS first) -> logits [B, L, V+1] (training, tests)."""
        raise NotImplementedError

    def prefill(self, prefix: torch.Tensor, real: torch.Tensor) -> tuple[torch.Tensor, Any]:
        """The prefix once: logits of the first action token [B, V+1] and the KV cache."""
        raise NotImplementedError

    def extend(self, token: torch.Tensor, position: int, cache: Any, real: torch.Tensor) -> torch.Tensor:
        """One decode step: token [B] at action position `position` (1 = the first action token)
        -> next logits [B, V+1]; `cache` grows in place. `real` [B, P] is the prefix key mask."""
        raise NotImplementedError

    # ------------------------------------------------------------------ ActionHead
    def _sequences(self, actions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, float]:
        """Inputs [B, L] (BOS + tokens, EOS-padded), targets [B, L] (tokens + EOS, IGNORE-padded),
        and the mean target length without EOS. Sequences over max_tokens are cut (EOS kept)."""
        seqs = [s[: self.max_tokens] for s in self.tokenizer.encode(actions)]
        length = max(len(s) for s in seqs) + 1
        inputs = torch.full((len(seqs), length), self.eos, dtype=torch.long)
        targets = torch.full((len(seqs), length), IGNORE, dtype=torch.long)
        for i, s in enumerate(seqs):
            inputs[i, 0], inputs[i, 1 : len(s) + 1] = self.bos, torch.tensor(s, dtype=torch.long)
            targets[i, : len(s) + 1] = torch.tensor([*s, self.eos], dtype=torch.long)
        dev = actions.device
        return inputs.to(dev), targets.to(dev), sum(map(len, seqs)) / len(seqs)

    def loss(self, trunk, actions, action_mask):
        # Masked entries (chunk padding, a smaller robot's dims) are encoded as 0: whatever they
        # hold never changes the tokens. The loss covers every token: FAST's mix all entries.
        inputs, targets, mean_len = self._sequences(
            torch.where(action_mask, actions, torch.zeros_like(actions))
        )
        prefix, real = self._prefix(trunk)
        logits = self.full_logits(prefix, real, inputs)  # [B, L, V+1]
        ce = F.cross_entropy(logits.flatten(0, 1), targets.flatten(), ignore_index=IGNORE, reduction="none")
        valid = targets != IGNORE  # [B, L]
        loss = masked_mean(ce.view_as(targets), valid)
        predicted = logits.detach().argmax(-1)  # [B, L]
        accuracy = masked_mean((predicted == targets).float(), valid)
        failed = self.tokenizer.decode(self._until_eos(predicted)).failures
        return loss, {
            "loss": loss.item(),
            "token_accuracy": accuracy.item(),
            "tokens_per_chunk": mean_len,
            "decode_fail_pct": 100.0 * failed / len(targets),
        }

    def _until_eos(self, tokens: torch.Tensor) -> list[list[int]]:
        """[B, L] ids -> per row the ids before its first EOS."""
        rows = []
        for row in tokens.tolist():
            rows.append(row[: row.index(self.eos)] if self.eos in row else row)
        return rows

    @torch.no_grad()
    def generate(
        self,
        trunk: TrunkOutput,
        num_samples: int = 1,
        generator: torch.Generator | None = None,
        use_cache: bool = True,
    ) -> list[list[int]]:
        """Decode token lists (without EOS) for every observation x sample, sample-major.
        `use_cache=False` recomputes the whole sequence every step (the reference for tests)."""
        if torch.jit.is_tracing() or torch.onnx.is_in_onnx_export():
            raise VlaforgeError(NOT_EXPORTABLE)
        prefix, real = self._prefix(trunk)
        prefix, real = prefix.repeat_interleave(num_samples, 0), real.repeat_interleave(num_samples, 0)
        b = prefix.shape[0]
        done = torch.zeros(b, dtype=torch.bool, device=prefix.device)
        out = torch.full((b, 0), self.eos, dtype=torch.long, device=prefix.device)
        cache: KVCache = []
        if use_cache:
            logits, cache = self.prefill(prefix, real)
        for i in range(self.max_tokens):
            if not use_cache:
                bos = torch.full((b, 1), self.bos, dtype=torch.long, device=prefix.device)
                logits = self.full_logits(prefix, real, torch.cat([bos, out], dim=1))[:, -1]
            token = sample_categorical(logits, self.temperature, generator).masked_fill(done, self.eos)  # [B]
            out, done = torch.cat([out, token[:, None]], dim=1), done | (token == self.eos)
            if bool(done.all()) or i + 1 == self.max_tokens:
                break
            if use_cache:
                logits = self.extend(token, i + 1, cache, real)
        return self._until_eos(out)

    def sample(self, trunk, num_samples=1, generator=None):
        decoded = self.tokenizer.decode(self.generate(trunk, num_samples, generator))
        self.decode_stats["chunks"] += len(decoded.failed)
        self.decode_stats["failures"] += decoded.failures
        return decoded.actions.to(device=trunk.readouts.device, dtype=trunk.readouts.dtype)  # [B*S, H, A]


class ARDecoderHead(TokenDecoder):
    """A causal action-token decoder after the trunk's prefix (see the module docstring)."""

    def __init__(
        self,
        embed_dim: int,
        action_dim: int,
        horizon: int,
        *,
        scheme: str,
        vocab_size: int,
        max_tokens: int,
        depth: int = 2,
        heads: int = 4,
        dropout: float = 0.0,
        temperature: float = 0.0,
        num_readouts: int = 1,
        tokenizer: ActionTokenizer,
    ) -> None:
        super().__init__(
            embed_dim, action_dim, horizon, scheme=scheme, vocab_size=vocab_size,
            max_tokens=max_tokens, temperature=temperature, num_readouts=num_readouts, tokenizer=tokenizer,
        )  # fmt: skip
        self.embed = nn.Embedding(vocab_size + 2, embed_dim)  # action tokens, EOS, BOS
        self.position = nn.Parameter(torch.randn(max_tokens + 1, embed_dim) * 0.02)  # [BOS + tokens, D]
        block = TrunkConfig(width=embed_dim, depth=depth, heads=heads, dropout=dropout)
        self.blocks = nn.ModuleList(Block(block) for _ in range(depth))
        self.ln_out = nn.LayerNorm(embed_dim)
        self.out = nn.Linear(embed_dim, vocab_size + 1)  # logits of the action tokens and EOS

    @classmethod
    def from_config(cls, cfg: HeadConfig, embed_dim: int, action_dim: int, horizon: int) -> ARDecoderHead:
        from vlaforge.models.tokenizers.bins import BinTokenizer
        from vlaforge.models.tokenizers.fast import FastTokenizer

        n = horizon * action_dim
        bins = cfg.kind == "ar-bins"
        tokenizer = (
            BinTokenizer(horizon, action_dim, cfg.num_bins) if bins
            else FastTokenizer.unfitted(horizon, action_dim, cfg.fast_scale)
        )  # fmt: skip
        return cls(
            embed_dim, action_dim, horizon,
            scheme="bins" if bins else "fast",
            vocab_size=cfg.num_bins if bins else cfg.fast_vocab,
            max_tokens=cfg.max_action_tokens or (n if bins else 2 * n),
            depth=cfg.decoder_depth, heads=cfg.decoder_heads, dropout=cfg.dropout,
            temperature=cfg.temperature, num_readouts=cfg.num_readouts,
            tokenizer=tokenizer,
        )  # fmt: skip

    # ------------------------------------------------------------------ the network
    def _prefix(self, trunk: TrunkOutput) -> tuple[torch.Tensor, torch.Tensor]:
        """Prefix tokens [B, P, D] and their key mask [B, P] (True = real)."""
        prefix = torch.cat([trunk.tokens, trunk.readouts], dim=1)  # [B, P, D]
        b, p = prefix.shape[:2]
        real = torch.ones(b, p, dtype=torch.bool, device=prefix.device)  # [B, P]
        if trunk.token_mask is not None:
            real[:, : trunk.tokens.shape[1]] = trunk.token_mask
        return prefix, real

    def _embed(self, tokens: torch.Tensor, start: int) -> torch.Tensor:
        """Token ids [B, L] at action positions start.. -> [B, L, D]."""
        return self.embed(tokens) + self.position[start : start + tokens.shape[1]]

    def _logits(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(self.ln_out(x))  # [B, L, V+1]

    def full_logits(self, prefix: torch.Tensor, real: torch.Tensor, inputs: torch.Tensor) -> torch.Tensor:
        """Recompute everything: inputs [B, L] (BOS first) -> logits [B, L, V+1] (training, tests)."""
        p = prefix.shape[1]
        x = torch.cat([prefix, self._embed(inputs, 0)], dim=1)  # [B, P+L, D]
        keys = torch.cat([real, torch.ones_like(inputs, dtype=torch.bool)], dim=1)  # [B, P+L]
        mask = prefix_lm_mask(p, inputs.shape[1], x.device)[None, None] & keys[:, None, None, :]
        for block in self.blocks:
            x = block(x, mask)
        return self._logits(x[:, p:])

    def prefill(self, prefix: torch.Tensor, real: torch.Tensor) -> tuple[torch.Tensor, KVCache]:
        """Prefix + BOS through every layer once: logits of the first token [B, V+1], the KV cache."""
        b, p = prefix.shape[:2]
        bos = torch.full((b, 1), self.bos, dtype=torch.long, device=prefix.device)
        x = torch.cat([prefix, self._embed(bos, 0)], dim=1)  # [B, P+1, D]
        keys = torch.cat([real, torch.ones(b, 1, dtype=torch.bool, device=x.device)], dim=1)
        mask = prefix_lm_mask(p, 1, x.device)[None, None] & keys[:, None, None, :]  # [B, 1, P+1, P+1]
        cache: KVCache = []
        for block in self.blocks:
            x, kv = block.step(x, mask)
            cache.append(kv)
        return self._logits(x[:, -1]), cache

    def extend(self, token: torch.Tensor, position: int, cache: KVCache, real: torch.Tensor) -> torch.Tensor:
        """One decode step: token [B] at action position `position` -> next logits [B, V+1];
        `cache` grows in place by one key per layer. `real` [B, P] is the prefix key mask."""
        x = self._embed(token[:, None], position)  # [B, 1, D]
        new = torch.ones(token.shape[0], position + 1, dtype=torch.bool, device=x.device)
        mask = torch.cat([real, new], dim=1)[:, None, None, :]  # [B, 1, 1, P+position+1]
        for i, block in enumerate(self.blocks):
            x, cache[i] = block.step(x, mask, cache[i])
        return self._logits(x[:, -1])


__all__ = ["NOT_EXPORTABLE", "ARDecoderHead", "TokenDecoder", "prefix_lm_mask"]
