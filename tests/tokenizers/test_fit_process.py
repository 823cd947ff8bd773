"""FAST fitted in its own process (tokenizers/fit_process.py) is the tokenizer a fit in this process
gives, byte for byte; a refused fit raises the same ValueError here; the temporary folder is removed."""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import pytest

from vlamix.tokenizers.fast import FastTokenizer
from vlamix.tokenizers.fit_process import fit_fast_apart


def _chunks(n: int, horizon: int, dim: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.linspace(0, 1, horizon)[None, :, None]
    return np.sin(t * rng.uniform(1, 4, (n, 1, dim)) + rng.uniform(0, 6, (n, 1, dim))).astype(np.float32)


def test_the_child_fits_the_same_tokenizer_byte_for_byte():
    batches = [_chunks(60, 50, 14, 0), _chunks(40, 10, 7, 1), _chunks(0, 50, 14, 2)]  # two shapes, one empty
    before = set(Path(tempfile.gettempdir()).glob("vlamix-fast-fit-*"))
    apart, chunks = fit_fast_apart(iter(batches), scale=10.0, vocab_size=300)
    here = FastTokenizer.fit([b for b in batches if len(b)], scale=10.0, vocab_size=300)
    assert chunks == 100 and apart.files() == here.files()
    assert apart.encode(batches[0][:5]) == here.encode(batches[0][:5])
    assert set(Path(tempfile.gettempdir()).glob("vlamix-fast-fit-*")) == before


def test_a_refused_fit_raises_its_value_error_here():
    wide = _chunks(20, 50, 14, 3) * 1000.0  # coefficients spanning far more integers than the vocabulary
    with pytest.raises(ValueError, match="more than vocab_size 64"):
        fit_fast_apart([wide], scale=10.0, vocab_size=64)
    with pytest.raises(ValueError, match="no robot chunks"):
        fit_fast_apart([np.zeros((0, 50, 14), np.float32)], scale=10.0, vocab_size=64)
