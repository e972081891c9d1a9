"""`vlaforge tokenizer fit`: fit the FAST action tokenizer on datasets, as training would.

    vlaforge tokenizer fit --data data/mw --out fast.json                 # pi0-fast's chunk, scale 10
    vlaforge tokenizer fit --data data/mw --scale 20 --vocab 2048 --out fast20.json
    vlaforge train --preset pi0-fast --data data/mw --set model.head.tokenizer=fast.json --out RUN

The chunks are exactly what the ar-fast head trains on: the training split of the episodes (the
same `--val-fraction`/`--seed` split as `vlaforge train`), windows at every frame, the policy's own
normalization (q01/q99 bounds of each dataset, dims padded to the mixture's widest), chunk padding
past an episode's end as zeros. `vlaforge train` with an ar-fast head and no model.head.tokenizer
runs the same fit (`fit_action_tokenizer`) before the first step; the checkpoint carries the result.
"""

from __future__ import annotations

import dataclasses
import sys
import time
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from vlaforge import keys
from vlaforge.config import option
from vlaforge.errors import VlaforgeError
from vlaforge.train.config import TrainConfig

MAX_CHUNKS = 20000


@dataclass(frozen=True)
class TokenizerCommand:
    """`vlaforge tokenizer fit`: a FAST tokenizer JSON from LeRobot v3 datasets."""

    out: str = field(metadata=option(metavar="T"))
    """Tokenizer JSON to write (give it to training as --set model.head.tokenizer=T)."""
    action: Literal["fit"] = "fit"
    """What to do (fit)."""
    data: tuple[str, ...] = field(default=(), metadata=option(repeat=True, metavar="DIR[:WEIGHT]"))
    """A dataset directory (repeat for a mixture)."""
    preset: str = "pi0-fast"
    """Model preset whose chunk, normalization and FAST settings are used."""
    chunk: int | None = None
    """Chunk length H (default: the preset's)."""
    scale: float | None = None
    """DCT scale before rounding (default: the preset's model.head.fast_scale, 10)."""
    vocab: int | None = None
    """BPE vocabulary size (default: the preset's model.head.fast_vocab, 1024)."""
    val_fraction: float = TrainConfig.val_fraction
    """Episodes held out, as `vlaforge train --val-fraction` (fit on the rest)."""
    seed: int = TrainConfig.seed
    """Split seed, as `vlaforge train --seed`."""
    max_chunks: int = MAX_CHUNKS
    """At most this many chunks (an even random subset of the windows beyond it)."""


def fit_action_tokenizer(policy, loader, max_chunks: int = MAX_CHUNKS, seed: int = 0):
    """Fit a FAST tokenizer on the normalized chunks of `loader.datasets` (a MixtureLoader) exactly
    as `policy` normalizes them for its head; returns it (not attached)."""
    from vlaforge.models.tokenizers.fast import FastTokenizer

    chunks = normalized_chunks(policy, loader.datasets, max_chunks, seed)
    head = policy.config.head
    return FastTokenizer.fit(chunks, scale=head.fast_scale, vocab_size=head.fast_vocab)


def normalized_chunks(policy, datasets, max_chunks: int = MAX_CHUNKS, seed: int = 0) -> np.ndarray:
    """[N, H, A] chunks of `datasets` (WindowDatasets; dataset i = the policy's dataset_index i) as
    the policy's head receives them; at most `max_chunks`, an even random subset beyond it."""
    from vlaforge.data.dataset import to_torch
    from vlaforge.train.setup import pad_dims

    cfg, rng = policy.config, np.random.default_rng(seed)
    total = sum(len(d) for d in datasets)
    chunks = []
    for i, dataset in enumerate(datasets):
        ids = np.arange(len(dataset))
        if total > max_chunks:
            ids = np.sort(rng.choice(ids, size=max(1, len(ids) * max_chunks // total), replace=False))
        for part in np.array_split(ids, max(1, -(-len(ids) // 256))):
            batch = to_torch(dataset.gather(part))
            batch[keys.DATASET_INDEX][:] = i
            actions, _ = policy.normalized_targets(pad_dims(batch, cfg.action_dim, cfg.state_dim))
            chunks.append(actions.cpu().numpy())  # [b, H, A]
    return np.concatenate(chunks)


def describe(tokenizer, seconds: float) -> str:
    n = tokenizer.horizon * tokenizer.action_dim
    return (f"fitted the FAST tokenizer in {seconds:.1f} s: vocabulary {tokenizer.vocab_size}, "
            f"chunks {tokenizer.horizon} x {tokenizer.action_dim} ({n} coefficients), scale {tokenizer.scale:g}")  # fmt: skip


def run(cfg: TokenizerCommand) -> int:
    """Fit and write the tokenizer JSON; prints where and what."""
    from vlaforge.models.policy import VLAPolicy
    from vlaforge.models.presets import get_preset, with_head
    from vlaforge.models.tokenizers import save_tokenizer
    from vlaforge.train.setup import build_data, parse_data

    if not cfg.data:
        raise VlaforgeError("tokenizer fit needs --data DIR")
    if cfg.max_chunks < 1 or (cfg.chunk is not None and cfg.chunk < 1):
        raise VlaforgeError("--max-chunks and --chunk must be >= 1")
    policy_cfg = with_head(get_preset(cfg.preset), "ar-fast")
    head = dataclasses.replace(
        policy_cfg.head,
        fast_scale=policy_cfg.head.fast_scale if cfg.scale is None else cfg.scale,
        fast_vocab=policy_cfg.head.fast_vocab if cfg.vocab is None else cfg.vocab,
    )
    chunk = cfg.chunk or policy_cfg.chunk
    policy_cfg = dataclasses.replace(
        policy_cfg, head=head, chunk=chunk, execute_steps=min(policy_cfg.execute_steps, chunk)
    )
    train_cfg = TrainConfig(val_fraction=cfg.val_fraction, seed=cfg.seed, val_batches=0)
    data = build_data([parse_data(s) for s in cfg.data], policy_cfg, train_cfg, None)
    policy_cfg = dataclasses.replace(policy_cfg, action_dim=data.action_dim, state_dim=data.state_dim)
    start = time.perf_counter()
    tokenizer = fit_action_tokenizer(
        VLAPolicy(policy_cfg, stats=data.stats), data.loader, cfg.max_chunks, cfg.seed
    )
    print(describe(tokenizer, time.perf_counter() - start), file=sys.stderr)
    print(save_tokenizer(tokenizer, cfg.out))
    return 0
