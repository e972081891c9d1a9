"""Action tokenizers: FAST (DCT + BPE) and uniform bins - round trips, repairs, save/load."""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from vlaforge.errors import VlaforgeError
from vlaforge.models.tokenizers import load_tokenizer, save_tokenizer, tokenizer_from_dict
from vlaforge.models.tokenizers.bins import BinTokenizer
from vlaforge.models.tokenizers.fast import FastTokenizer, dct_coefficients

H, A = 10, 4


def smooth_chunks(n: int, seed: int = 0, horizon: int = H, dim: int = A) -> np.ndarray:
    """Normalized chunks in [-1, 1] shaped like robot motion: a few slow sines per dimension."""
    rng = np.random.default_rng(seed)
    t = np.linspace(0, 1, horizon)[None, :, None]
    freq, phase = rng.uniform(0.2, 1.5, (n, 1, dim)), rng.uniform(0, 1, (n, 1, dim))
    amp = rng.uniform(0.1, 0.9, (n, 1, dim))
    return np.clip(amp * np.sin(2 * np.pi * (freq * t + phase)), -1, 1)


@pytest.fixture(scope="module")
def fitted() -> FastTokenizer:
    return FastTokenizer.fit(smooth_chunks(400), scale=10.0, vocab_size=512)


def test_fast_round_trip_is_within_the_quantization_error(fitted):
    chunks = smooth_chunks(400)[:100]  # coefficients in the fitted range (decode clips to it)
    ids = fitted.encode(torch.tensor(chunks))
    out = fitted.decode(ids)
    assert out.failures == 0 and out.actions.shape == (100, H, A)
    # Rounding moves each orthonormal DCT coefficient by <= 0.5 / scale, so each dimension's error
    # over time has L2 norm <= sqrt(H) * 0.5 / scale (the inverse DCT is orthonormal).
    err = np.linalg.norm(out.actions.numpy() - chunks, axis=1)  # [N, A]
    assert err.max() <= np.sqrt(H) * 0.5 / fitted.scale + 1e-5
    assert np.mean([len(s) for s in ids]) < H * A  # BPE compresses smooth chunks
    finer = FastTokenizer.fit(smooth_chunks(400), scale=50.0, vocab_size=512)
    fine_err = np.abs(finer.decode(finer.encode(torch.tensor(chunks))).actions.numpy() - chunks)
    assert fine_err.mean() < np.abs(out.actions.numpy() - chunks).mean()


def test_fast_coefficients_are_frequency_major():
    chunk = np.zeros((1, H, A))
    chunk[0, :, 1] = 0.5  # a constant in dimension 1: only its lowest frequency is non-zero
    coeff = dct_coefficients(chunk, 10.0)[0]
    assert coeff[1] == round(0.5 * np.sqrt(H) * 10) and np.count_nonzero(coeff) == 1


def test_wrong_lengths_are_repaired_in_coefficient_space_and_counted(fitted):
    chunk = torch.tensor(smooth_chunks(1, seed=2))
    ids = fitted.encode(chunk)[0]
    clean = fitted.decode([ids]).actions
    short, long_ = fitted.decode([ids[:-1]]), fitted.decode([ids + ids])
    assert short.failed == [True] and long_.failed == [True]
    assert short.actions.shape == long_.actions.shape == (1, H, A)
    # The long one holds the chunk's coefficients first, then extras that are cut away.
    assert torch.allclose(long_.actions, clean, atol=1e-6)
    empty = fitted.decode([[]])
    assert empty.failed == [True] and torch.count_nonzero(empty.actions) == 0  # all-zero coefficients


def test_unknown_ids_and_invalid_utf8_are_handled(fitted):
    wide = FastTokenizer.fit(
        smooth_chunks(200) * 1.0, scale=200.0, vocab_size=600
    )  # values >= 128: 2-byte chars
    assert wide.max_token - wide.min_token >= 128
    lead = wide.bpe.token_to_id("Ã")  # the byte-level symbol of byte 0xC3, a UTF-8 lead byte alone
    assert lead is not None
    out = wide.decode([[lead], [lead, lead, lead]])
    assert out.failed == [True, True] and torch.isfinite(out.actions).all()
    out = fitted.decode([[10**6, -3, 5]])
    assert out.failed == [True] and torch.isfinite(out.actions).all()


def test_decoded_coefficients_are_clipped_to_the_fitted_range(fitted):
    top = max(range(fitted.vocab_size), key=lambda i: max(map(ord, fitted.bpe.decode([i])), default=0))
    out = fitted.decode([[top] * (H * A)])
    coeff = dct_coefficients(out.actions.numpy(), fitted.scale)[0]
    assert (coeff >= fitted.low - 1).all() and (coeff <= fitted.high + 1).all()


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(min_value=-50, max_value=1100), max_size=3 * H * A))
def test_any_token_sequence_decodes_to_a_finite_chunk(seq):
    for tok in (_SHARED, BinTokenizer(H, A)):
        out = tok.decode([seq])
        assert out.actions.shape == (1, H, A) and torch.isfinite(out.actions).all()
        assert isinstance(out.failed[0], bool)


_SHARED = FastTokenizer.fit(smooth_chunks(200, seed=5), vocab_size=300)


def test_save_load_is_json_and_identical(fitted, tmp_path):
    path = save_tokenizer(fitted, tmp_path / "fast.json")
    data = json.loads(path.read_text())
    assert data["kind"] == "fast" and data["fitted"] and data["horizon"] == H
    again = load_tokenizer(path)
    chunks = torch.tensor(smooth_chunks(20, seed=3))
    assert again.encode(chunks) == fitted.encode(chunks)
    assert torch.equal(
        again.decode(fitted.encode(chunks)).actions, fitted.decode(fitted.encode(chunks)).actions
    )
    assert copy.deepcopy(fitted).encode(chunks) == fitted.encode(chunks)  # EMA copies policies
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(VlaforgeError, match="not valid JSON"):
        load_tokenizer(tmp_path / "bad.json")
    with pytest.raises(VlaforgeError, match="tokenizer kind"):
        tokenizer_from_dict({"kind": "fats"})
    with pytest.raises(VlaforgeError, match="malformed fast"):
        tokenizer_from_dict({**data, "low": [0]})


def test_fit_rejects_bad_input():
    with pytest.raises(VlaforgeError, match="finite chunks"):
        FastTokenizer.fit(np.full((2, H, A), np.nan))
    with pytest.raises(VlaforgeError, match="scale"):
        FastTokenizer.fit(smooth_chunks(3), scale=0)


def test_unfitted_fast_is_lossless_up_to_rounding_for_any_bounded_chunk():
    tok = FastTokenizer.unfitted(H, A, 10.0)
    chunks = torch.rand(50, H, A, generator=torch.Generator().manual_seed(0)) * 2 - 1  # not smooth
    out = tok.decode(tok.encode(chunks))
    assert not tok.fitted and out.failures == 0
    assert np.linalg.norm(out.actions.numpy() - chunks.numpy(), axis=1).max() <= np.sqrt(H) * 0.05 + 1e-5


def test_bins_round_trip_and_repairs():
    tok = BinTokenizer(H, A, 256)
    chunks = torch.rand(8, H, A, generator=torch.Generator().manual_seed(1)) * 2 - 1
    ids = tok.encode(chunks)
    assert all(len(s) == H * A for s in ids) and max(map(max, ids)) < 256
    out = tok.decode(ids)
    assert out.failures == 0 and (out.actions - chunks).abs().max() <= 1 / 256 + 1e-6
    # time-major: the first A tokens are step 0's entries
    assert ids[0][:A] == tok.encode(chunks[:1, :1].expand(1, H, A))[0][:A]
    bad = tok.decode([ids[0][:-3], ids[0] + [1], [300] + ids[0][1:]])
    assert bad.failed == [True, True, True] and bad.actions[2, 0, 0] == 0.0
    assert tokenizer_from_dict(tok.to_dict()).encode(chunks) == ids
