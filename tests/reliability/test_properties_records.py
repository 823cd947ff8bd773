"""Property-based tests (hypothesis) of the record framing and decoders: TFRecord, tf.train.Example and
the FAST decoder.

The promise under test: bad input becomes a clear error naming the file and record (`BadRecord` for input
to quarantine, or the module's own documented error class), never an unexpected exception type, never a
hang, never silent garbage. Every test is derandomized and keeps no example database (properties_kit.py)."""

from __future__ import annotations

import resource
import struct
from pathlib import Path

import numpy as np
import pytest
from google.protobuf.message import DecodeError
from hypothesis import event, example, given
from hypothesis import strategies as st
from properties_kit import _settings

from vlamix.sources.tf_example import decode_example, encode_example
from vlamix.sources.tfrecord import TFRecordError, masked_crc, read_record_at, scan_records, write_records
from vlamix.tokenizers.fast import FastRangeError, FastTokenizer


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("props")


def _read_all(path: Path) -> tuple[list[bytes], TFRecordError | None]:
    """Every record a pipeline would read (list, then read each), and the error that stopped it."""
    out: list[bytes] = []
    try:
        for index, offset, length in scan_records(path):
            data = read_record_at(path, offset, index)
            assert len(data) == length
            out.append(data)
    except TFRecordError as e:
        return out, e
    return out, None


# ---------------------------------------------------------------------------------------------- TFRecord


@_settings(60)
@given(records=st.lists(st.binary(max_size=300), max_size=8))
def test_tfrecord_round_trips_arbitrary_records(folder, records):
    path = folder / "rt.tfrecord"
    assert write_records(path, records) == len(records)
    got, error = _read_all(path)
    assert error is None and got == records
    offsets = [off for _, off, _ in scan_records(path)]
    assert [read_record_at(path, off, i) for i, off in enumerate(offsets)] == records


@_settings(120)
@given(
    records=st.lists(st.binary(max_size=64), min_size=1, max_size=6),
    flip=st.booleans(),
    where=st.floats(0.0, 1.0, exclude_max=True),
    mask=st.integers(1, 255),
)
def test_tfrecord_damage_yields_the_records_before_it_then_a_tfrecord_error(
    folder, records, flip, where, mask
):
    """One flipped byte anywhere, or a cut anywhere: the records before the damage come back intact, then
    TFRecordError naming the file and the damaged record (a cut at a record boundary is a shorter, valid
    file). CRC32C catches every single-byte error, so a flip is never read as a wrong payload."""
    path = folder / "damaged.tfrecord"
    write_records(path, records)
    blob = bytearray(path.read_bytes())
    starts = np.cumsum([0] + [12 + len(r) + 4 for r in records])
    pos = int(where * len(blob))
    k = int(np.searchsorted(starts, pos, side="right")) - 1  # the record holding byte `pos`
    if flip:
        blob[pos] ^= mask
    else:
        del blob[pos:]
    path.write_bytes(bytes(blob))
    got, error = _read_all(path)
    assert got == records[:k]
    if not flip and pos == starts[k]:
        assert error is None
    else:
        assert error is not None, "damage read as valid records"
        assert str(path) in str(error) and f"record {k} " in str(error)


@_settings(120)
@example(length=2**64 - 1, tail=b"abc", offset=0)
@example(length=2**63, tail=b"", offset=0)
@example(length=2**40, tail=b"x" * 20, offset=0)
@given(
    length=st.one_of(st.integers(0, 40), st.integers(0, 2**64 - 1)),
    tail=st.binary(max_size=64),
    offset=st.integers(0, 80),
)
def test_tfrecord_header_claiming_any_length_is_a_tfrecord_error(folder, length, tail, offset):
    """A header whose length checksum is right but whose length is wrong (up to 2**64 - 1), at any offset
    a caller may hand `read_record_at`: bytes of the claimed length, or TFRecordError; never an
    OverflowError or a read of gigabytes."""
    header = struct.pack("<Q", length)
    path = folder / "header.tfrecord"
    path.write_bytes(header + struct.pack("<I", masked_crc(header)) + tail)
    got, _ = _read_all(path)
    assert all(len(r) == length for r in got)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    try:
        data = read_record_at(path, offset, 3)
    except TFRecordError as e:
        assert str(path) in str(e)
    else:
        assert offset == 0 and data == tail[:length] and len(tail) == length + 4
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 64 * 1024  # KiB: < 64 MiB more


# ------------------------------------------------------------------------------------------- tf.Example

_INT64 = st.integers(-(2**63), 2**63 - 1)
_FEATURE = st.one_of(
    st.lists(st.binary(max_size=20), max_size=5),
    st.lists(st.floats(width=32), max_size=6).map(lambda v: np.asarray(v, np.float32)),
    st.lists(_INT64, max_size=6).map(lambda v: np.asarray(v, np.int64)),
    st.lists(_INT64, min_size=1, max_size=6),  # plain Python ints, as a writer may hand them
)
_FEATURES = st.dictionaries(st.text(max_size=12), _FEATURE, max_size=5)


def _check_decoded(out: dict) -> None:
    for name, value in out.items():
        assert isinstance(name, str)
        if isinstance(value, list):
            assert all(isinstance(v, bytes) for v in value)
        else:
            assert isinstance(value, np.ndarray) and value.dtype in (np.float32, np.int64) and value.ndim == 1


@_settings(150)
@given(features=_FEATURES)
def test_tf_example_round_trips_arbitrary_features(features):
    out = decode_example(encode_example(features))
    _check_decoded(out)
    assert sorted(out) == sorted(features)
    for name, want in features.items():
        got = out[name]
        if isinstance(want, list) and (not want or isinstance(want[0], bytes)):
            assert got == want
        elif np.asarray(want).dtype.kind == "f":
            assert got.dtype == np.float32 and np.array_equal(got, want, equal_nan=True)
            assert np.array_equal(np.signbit(got), np.signbit(want))
        else:
            assert got.dtype == np.int64 and got.tolist() == list(np.asarray(want).tolist())


@_settings(40)
@example(value=[2**63])
@example(value=[-(2**63) - 1])
@given(
    value=st.one_of(
        st.lists(st.integers(2**63, 2**70), min_size=1, max_size=3),
        st.lists(st.integers(-(2**70), -(2**63) - 1), min_size=1, max_size=3),
        st.integers(2**63, 2**64 - 1).map(lambda v: np.asarray([v], np.uint64)),
    )
)
def test_tf_example_refuses_ints_outside_int64_instead_of_wrapping(value):
    with pytest.raises(ValueError, match="int64") as info:
        encode_example({"steps/big": value})
    assert "steps/big" in str(info.value)


def _protobuf_bytes() -> st.SearchStrategy[bytes]:
    """Random bytes, and valid encodings with one byte flipped or cut short (they reach deeper)."""

    def damage(args):
        blob, where, mask, cut = args
        blob = bytearray(blob)
        if not blob:
            return bytes(blob)
        pos = int(where * len(blob))
        if cut:
            return bytes(blob[:pos])
        blob[pos] ^= mask
        return bytes(blob)

    valid = _FEATURES.map(encode_example)
    return st.one_of(
        st.binary(max_size=200),
        st.tuples(valid, st.floats(0, 1, exclude_max=True), st.integers(1, 255), st.booleans()).map(damage),
    )


@_settings(300)
@example(data=b"\x0a\xff\xff\xff\xff\x0f")  # features: a length prefix claiming 4 GiB
@example(data=b"\x0a\xff\xff\xff\xff\xff\xff\xff\xff\x7f")  # ... and 2**63
@example(data=b"\x0a\x08\x0a\x06\x0a\x01\xff\x12\x01\x00")  # a feature name that is not UTF-8
@example(data=b"\x0a" * 100 + b"\x00")  # nested length prefixes
@given(data=_protobuf_bytes())
def test_tf_example_decodes_any_bytes_or_raises_decode_error(data):
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    try:
        out = decode_example(data)
    except DecodeError:
        pass
    else:
        _check_decoded(out)
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 64 * 1024  # KiB


# ----------------------------------------------------------------------------------------------- FAST

H, D = 10, 3


def _smooth(n: int, h: int, d: int, seed: int = 0) -> np.ndarray:
    r = np.random.default_rng(seed)
    t = np.linspace(0, 1, h)[None, :, None]
    wave = np.sin(2 * np.pi * (t * r.uniform(0.2, 1.5, (n, 1, d)) + r.uniform(0, 1, (n, 1, d))))
    return np.clip(wave * r.uniform(0.2, 1, (n, 1, d)), -1, 1)


@pytest.fixture(scope="module")
def fast() -> FastTokenizer:
    return FastTokenizer.fit(_smooth(200, H, D), scale=10.0, vocab_size=256)


def _check_decode(out: np.ndarray, valid: np.ndarray, n: int, horizon: int, dim: int) -> None:
    assert out.shape == (n, horizon, dim) and valid.shape == (n,) and valid.dtype == bool
    assert np.isfinite(out[valid]).all() and np.isnan(out[~valid]).all()


@_settings(200)
@given(
    data=st.data(),
    shape=st.sampled_from([(H, D), (H, D), (5, 3), (H * D, 1), (1, 1), (0, 3), (4, 0), (-1, 3)]),
)
def test_fast_decode_of_any_token_ids_is_finite_or_flagged_invalid(fast, data, shape):
    """Valid ids, ids out of the vocabulary (negative, huge), empty lists, any horizon and dim: actions of
    the asked shape, finite where `valid`, NaN (never zeros) where not."""
    n = fast.vocab_size
    ids = st.one_of(st.integers(0, n - 1), st.integers(-(2**40), 2**40), st.sampled_from([-1, n, n + 1]))
    lists = data.draw(st.lists(st.lists(ids, max_size=40), max_size=4))
    if min(shape) < 1:  # a caller's mistake, told whatever the tokens (never a crash inside scipy)
        with pytest.raises(ValueError, match="horizon >= 1 and dim >= 1"):
            fast.decode(lists, *shape)
        return
    out, valid = fast.decode(lists, *shape)
    _check_decode(out, valid, len(lists), *shape)
    for b, seq in enumerate(lists):
        if any(not 0 <= i < n for i in seq):
            assert not valid[b]


@st.composite
def _chunk(draw) -> np.ndarray:
    t = np.linspace(0, 1, H)[:, None]
    freq = np.asarray(draw(st.lists(st.floats(0.0, 2.0), min_size=D, max_size=D)))
    phase = np.asarray(draw(st.lists(st.floats(0.0, 1.0), min_size=D, max_size=D)))
    amp = np.asarray(draw(st.lists(st.floats(0.0, 1.5), min_size=D, max_size=D)))
    return amp * np.sin(2 * np.pi * (t * freq + phase))


@_settings(150)
@given(chunk=_chunk(), cut=st.integers(1, 8), junk=st.integers(0, 255))
def test_fast_round_trip_is_within_quantization_and_damaged_encodings_are_invalid(fast, chunk, cut, junk):
    """In range: decode(encode(chunk)) is within the quantization bounds (per-dim RMSE <= 0.5 / scale, max
    error <= 0.5 * sqrt(H) / scale), and a truncated or extended encoding is invalid. Out of the fitted
    range: FastRangeError, never a clipped chunk."""
    event(f"in range: {fast.in_range(chunk)[0]}")
    if not fast.in_range(chunk)[0]:
        with pytest.raises(FastRangeError, match="outside the fitted range"):
            fast.encode(chunk)
        return
    (ids,) = fast.encode(chunk)
    out, valid = fast.decode([ids, ids[: max(0, len(ids) - cut)], [*ids, junk]], H, D)
    _check_decode(out, valid, 3, H, D)
    assert valid.tolist() == [True, False, False]
    err = out[0] - chunk
    assert np.sqrt((err**2).mean(axis=0)).max() <= 0.5 / fast.scale + 1e-9
    assert np.abs(err).max() <= 0.5 * np.sqrt(H) / fast.scale + 1e-9
