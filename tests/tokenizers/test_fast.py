"""FAST tokens: the algorithm of the paper, its error bounds, and the defects of the reference fixed."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.fft import dct

from vlamix.tokenizers.fast import FastRangeError, FastTokenizer, _symbol, _unsymbol

rng = np.random.default_rng(0)


def _smooth(n: int, h: int, d: int, seed: int = 0) -> np.ndarray:
    r = np.random.default_rng(seed)
    t = np.linspace(0, 1, h)[None, :, None]
    return np.clip(
        np.sin(2 * np.pi * (t * r.uniform(0.2, 1.5, (n, 1, d)) + r.uniform(0, 1, (n, 1, d))))
        * r.uniform(0.2, 1, (n, 1, d)),
        -1,
        1,
    )


@pytest.fixture(scope="module")
def tok() -> FastTokenizer:
    return FastTokenizer.fit(_smooth(600, 20, 7), scale=10.0, vocab_size=512)


def test_quantize_matches_a_per_chunk_reference(tok):
    chunks = _smooth(5, 20, 7, seed=1)
    for chunk, got in zip(chunks, tok.quantize(chunks), strict=True):
        coeffs = dct(chunk.astype(np.float64), axis=0, norm="ortho")
        want = []
        for freq in range(chunk.shape[0]):  # frequency-major: every dim's frequency 0, then frequency 1, ...
            for dim in range(chunk.shape[1]):
                want.append(int(np.around(coeffs[freq, dim] * 10.0)))
        assert got.tolist() == want


def test_round_trip_within_the_bounds(tok):
    chunks = _smooth(200, 20, 7, seed=2)
    ok = tok.in_range(chunks)
    assert ok.mean() > 0.95
    ids = tok.encode(chunks[ok])
    back, valid = tok.decode(ids, 20, 7)
    assert valid.all()
    err = back - chunks[ok]
    assert np.sqrt((err**2).mean(axis=1)).max() <= 0.5 / 10.0 + 1e-9  # per-dim RMSE
    assert np.abs(err).max() <= 0.5 * np.sqrt(20) / 10.0 + 1e-9
    assert np.mean([len(i) for i in ids]) < 20 * 7  # BPE compresses


def test_out_of_range_is_flagged_never_clipped(tok):
    wild = _smooth(3, 20, 7, seed=3) * 6.0  # far outside the normalized range the tokenizer saw
    assert not tok.in_range(wild).any()
    with pytest.raises(FastRangeError, match="outside the fitted range"):
        tok.encode(wild)


def test_malformed_sequences_are_invalid_not_zero(tok):
    (ids,) = tok.encode(_smooth(1, 20, 7, seed=4))
    back, valid = tok.decode([ids, ids[:-1], [], [tok.vocab_size + 5], ids + ids], 20, 7)
    assert valid.tolist() == [True, False, False, False, False]
    assert np.isfinite(back[0]).all() and np.isnan(back[1:]).all()
    _, valid = tok.decode([ids], 10, 7)  # the wrong horizon is caught too
    assert not valid[0]


def test_symbol_mapping_is_total_and_skips_surrogates():
    k = np.arange(0, 70000)
    cp = _symbol(k)
    assert not ((cp >= 0xD800) & (cp < 0xE000)).any()
    assert (_unsymbol(cp) == k).all()
    assert len({chr(c) for c in cp[::97]}) == len(cp[::97])


def test_fit_is_deterministic_and_save_load_round_trips(tok, tmp_path):
    again = FastTokenizer.fit(_smooth(600, 20, 7), scale=10.0, vocab_size=512)
    assert again.bpe.to_str() == tok.bpe.to_str()
    tok.save(tmp_path / "fast")
    loaded = FastTokenizer.load(tmp_path / "fast")
    chunks = _smooth(4, 20, 7, seed=5)
    assert loaded.encode(chunks) == tok.encode(chunks)


def test_vocab_too_small_for_the_range_is_a_clear_error():
    with pytest.raises(ValueError, match="raise vocab_size or lower scale"):
        FastTokenizer.fit(_smooth(50, 20, 7) * 5, scale=100.0, vocab_size=64)


@settings(max_examples=20, deadline=None)
@given(
    h=st.integers(1, 16),
    d=st.integers(1, 6),
    scale=st.floats(2.0, 30.0),
    seed=st.integers(0, 10_000),
)
def test_property_round_trip_bounds(h, d, scale, seed):
    chunks = np.random.default_rng(seed).uniform(-1, 1, size=(40, h, d))
    tok = FastTokenizer.fit(chunks, scale=scale, vocab_size=2048)
    back, valid = tok.decode(tok.encode(chunks), h, d)
    assert valid.all()
    err = back - chunks
    assert np.sqrt((err**2).mean(axis=1)).max() <= 0.5 / scale + 1e-9
    assert np.abs(err).max() <= 0.5 * np.sqrt(h) / scale + 1e-9
