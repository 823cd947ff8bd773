"""FAST action tokens (Pertsch et al., 2025): DCT over time per dim, scale and round, flatten
frequency-major, shift by the fitted minimum, one symbol per integer, then BPE.

Better than the public reference in four ways: the integer -> symbol mapping is total (code points that
skip the UTF-16 surrogate block, so no integer breaks the BPE); coefficients outside the fitted range
are detected at encode time (never clipped, never dropped by the BPE); a malformed token sequence
decodes as invalid, with NaN actions and `valid=False` (never a silent zero chunk); horizon and dim are
explicit arguments of `decode`, not hidden state of the last call. Encoding is vectorized over a batch.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from scipy.fft import dct, idct

from tokenizers import Tokenizer, decoders, models, trainers

__all__ = ["FastRangeError", "FastTokenizer"]

CONFIG_FILE = "fast.json"
BPE_FILE = "fast_bpe.json"
_BASE = 0x100  # first code point used for symbols (clear of ASCII and Latin-1 controls)
_SURROGATES = (0xD800, 0xE000)


class FastRangeError(ValueError):
    """A chunk whose DCT coefficients fall outside the range the tokenizer was fitted on; `first` is the
    position of the first such chunk in the batch encoded."""

    def __init__(self, message: str, first: int = 0):
        super().__init__(message)
        self.first = first


def _symbol(k: np.ndarray) -> np.ndarray:
    """Shifted integer (>= 0) -> code point, skipping the surrogate block: a total, invertible mapping."""
    cp = _BASE + k
    return np.where(cp >= _SURROGATES[0], cp + (_SURROGATES[1] - _SURROGATES[0]), cp)


def _unsymbol(cp: np.ndarray) -> np.ndarray:
    k = np.where(cp >= _SURROGATES[1], cp - (_SURROGATES[1] - _SURROGATES[0]), cp) - _BASE
    bad = (cp < _BASE) | ((cp >= _SURROGATES[0]) & (cp < _SURROGATES[1]))
    return np.where(bad, -1, k)


def _texts(shifted: np.ndarray) -> list[str]:
    """Rows of shifted integers [B, N] -> one string of N symbols per row, built in one UTF-32 decode
    (not a chr() per integer)."""
    if shifted.size == 0:
        return [""] * len(shifted)
    n = shifted.shape[1]
    text = _symbol(shifted).astype("<u4").tobytes().decode("utf-32-le")
    return [text[i * n : (i + 1) * n] for i in range(len(shifted))]


def _codepoints(text: str) -> np.ndarray:
    return np.frombuffer(text.encode("utf-32-le"), dtype="<u4").astype(np.int64)


def _as_batch(chunks: np.ndarray | Sequence[np.ndarray]) -> np.ndarray:
    batch = np.asarray(chunks, dtype=np.float64)
    if batch.ndim == 2:
        batch = batch[None]
    if batch.ndim != 3:
        raise ValueError(f"chunks must be [B, H, D] (or one [H, D]), got shape {batch.shape}")
    return batch


class FastTokenizer:
    """Use `FastTokenizer.fit(...)` or `FastTokenizer.load(path)`."""

    def __init__(self, scale: float, min_token: int, max_token: int, bpe: Tokenizer):
        self.scale, self.min_token, self.max_token, self.bpe = (
            float(scale),
            int(min_token),
            int(max_token),
            bpe,
        )

    @property
    def vocab_size(self) -> int:
        return self.bpe.get_vocab_size()

    def quantize(self, chunks: np.ndarray | Sequence[np.ndarray]) -> list[np.ndarray]:
        """Per chunk: round(dct(chunk, axis=0, norm="ortho") * scale), flattened frequency-major (all dims'
        frequency 0, then frequency 1, ...), as int64, before the min shift."""
        return list(self._coefficients(chunks))

    def _coefficients(self, chunks: np.ndarray | Sequence[np.ndarray]) -> np.ndarray:
        """`quantize` as one [B, H*D] array."""
        batch = _as_batch(chunks)
        return (
            np.around(dct(batch, axis=1, norm="ortho") * self.scale).astype(np.int64).reshape(len(batch), -1)
        )

    @classmethod
    def fit(
        cls, chunks: np.ndarray | Sequence[np.ndarray], scale: float = 10.0, vocab_size: int = 1024
    ) -> FastTokenizer:
        """Fit the BPE on normalized chunks [B, H, D], or on a list of such batches of different H and D
        (one tokenizer for every embodiment of an ingest); the whole integer range seen is the initial
        alphabet."""
        tmp = cls(scale, 0, 0, Tokenizer(models.BPE()))
        single = isinstance(chunks, np.ndarray) or (len(chunks) > 0 and np.ndim(chunks[0]) == 2)
        batches = [chunks] if single else list(chunks)
        # two passes over the batches, one batch's coefficients in memory at a time (the range, then the
        # texts): holding every chunk's int64 coefficients took more memory than the texts themselves
        lo = hi = None
        for batch in batches:
            if len(batch):
                q = tmp._coefficients(batch)
                lo = int(q.min()) if lo is None else min(lo, int(q.min()))
                hi = int(q.max()) if hi is None else max(hi, int(q.max()))
        if lo is None or hi is None:
            raise ValueError("no chunks to fit FAST on")
        if hi - lo + 1 > vocab_size:
            raise ValueError(
                f"the fitted coefficients span {hi - lo + 1} integers, more than vocab_size {vocab_size}: raise vocab_size or lower scale"
            )
        alphabet = [chr(c) for c in _symbol(np.arange(hi - lo + 1))]
        bpe = Tokenizer(models.BPE())
        bpe.decoder = decoders.Fuse()
        trainer = trainers.BpeTrainer(
            vocab_size=vocab_size,
            min_frequency=2,
            show_progress=False,
            initial_alphabet=alphabet,
            special_tokens=[],
        )
        texts = [t for batch in batches if len(batch) for t in _texts(tmp._coefficients(batch) - lo)]
        bpe.train_from_iterator(texts, trainer=trainer, length=len(texts))
        return cls(scale, lo, hi, bpe)

    def in_range(self, chunks: np.ndarray | Sequence[np.ndarray]) -> np.ndarray:
        """Per chunk: are all its coefficients inside the fitted range (so `encode` can represent it)?"""
        return np.array(
            [(q.min() >= self.min_token) & (q.max() <= self.max_token) for q in self.quantize(chunks)],
            dtype=bool,
        )

    def encode(self, chunks: np.ndarray | Sequence[np.ndarray]) -> list[list[int]]:
        """Token ids per chunk. Raises FastRangeError naming the chunks whose coefficients fall outside the
        fitted range (check `in_range` first to route them elsewhere)."""
        ints = self._coefficients(chunks)
        bad = np.flatnonzero(
            (ints.min(axis=1, initial=0) < self.min_token) | (ints.max(axis=1, initial=0) > self.max_token)
        )
        if len(bad):
            q = ints[bad[0]]
            raise FastRangeError(
                f"{len(bad)} chunk(s) (first: {bad[0]}) have DCT coefficients in [{q.min()}, {q.max()}], outside the "
                f"fitted range [{self.min_token}, {self.max_token}]: refit the tokenizer on data that covers them",
                int(bad[0]),
            )
        texts = _texts(ints - self.min_token)
        return [e.ids for e in self.bpe.encode_batch_fast(texts)]  # no character offsets: not needed here

    def decode(
        self, token_lists: Sequence[Sequence[int]], horizon: int, dim: int
    ) -> tuple[np.ndarray, np.ndarray]:
        """(actions [B, horizon, dim], valid [B]). A sequence that does not decode to exactly horizon*dim
        in-range coefficients is invalid: its actions are NaN, never a silent zero chunk."""
        if horizon < 1 or dim < 1:
            raise ValueError(f"decode needs horizon >= 1 and dim >= 1, got horizon {horizon}, dim {dim}")
        out = np.full((len(token_lists), horizon, dim), np.nan)
        valid = np.zeros(len(token_lists), dtype=bool)
        n_vocab, span = self.vocab_size, self.max_token - self.min_token
        known = [b for b, ids in enumerate(token_lists) if all(0 <= int(i) < n_vocab for i in ids)]
        texts = self.bpe.decode_batch([[int(i) for i in token_lists[b]] for b in known]) if known else []
        coeffs = []
        for b, text in zip(known, texts, strict=True):
            k = _unsymbol(_codepoints(text))
            if len(k) == horizon * dim and not (k < 0).any() and not (k > span).any():
                coeffs.append((k + self.min_token).reshape(horizon, dim))
                valid[b] = True
        if coeffs:  # one inverse DCT for the whole batch
            out[valid] = idct(np.stack(coeffs) / self.scale, axis=1, norm="ortho")
        return out, valid

    def files(self) -> dict[str, bytes]:
        """The tokenizer as files (name -> bytes): what `save` writes and a tokenizer set hashes."""
        config = {
            "version": 1,
            "scale": self.scale,
            "min_token": self.min_token,
            "max_token": self.max_token,
            "symbol_base": _BASE,
        }
        return {
            CONFIG_FILE: (json.dumps(config, indent=2, sort_keys=True) + "\n").encode(),
            BPE_FILE: (self.bpe.to_str(pretty=True) + "\n").encode(),
        }

    def save(self, folder: str | Path) -> None:
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        for name, data in self.files().items():
            (folder / name).write_bytes(data)

    @classmethod
    def load(cls, folder: str | Path) -> FastTokenizer:
        folder = Path(folder)
        config = json.loads((folder / CONFIG_FILE).read_text())
        if config.get("version") != 1 or config.get("symbol_base") != _BASE:
            raise ValueError(
                f"{folder / CONFIG_FILE}: a FAST tokenizer of another format version ({config.get('version')})"
            )
        bpe = Tokenizer.from_str((folder / BPE_FILE).read_text())
        return cls(config["scale"], config["min_token"], config["max_token"], bpe)
