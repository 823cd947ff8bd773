from __future__ import annotations

import io
import tarfile
import zlib

import numpy as np

from vlamix.shards.assign import place, shard_count
from vlamix.shards.members import npy_bytes
from vlamix.shards.store import Store
from vlamix.shards.writer import write_shard


def _entries(n: int) -> list[dict]:
    return [
        {
            "__key__": f"d/{i:06d}",
            "state.npy": npy_bytes(np.full(3, i, np.float32)),
            "meta.json": b"{}",
            "base_0.jpg": bytes([i]) * (100 + i),
        }
        for i in range(n)
    ]


def test_same_entries_same_bytes_sorted_members_fixed_mtime(tmp_path):
    a = write_shard(Store(tmp_path / "a"), "s.tar", _entries(5))
    b = write_shard(Store(tmp_path / "b"), "s.tar", _entries(5))
    assert a.sha256 == b.sha256 and a.bytes == (tmp_path / "a" / "s.tar").stat().st_size
    with tarfile.open(tmp_path / "a" / "s.tar") as tar:
        members = tar.getmembers()
    assert [m.name for m in members[:3]] == [
        "d/000000.base_0.jpg",
        "d/000000.meta.json",
        "d/000000.state.npy",
    ]
    assert {m.mtime for m in members} == {0} and {m.uname for m in members} == {"vlamix"}
    assert not list((tmp_path / "a").glob(".*tmp*")), "temporary file left behind"


def test_offsets_cover_each_sample_exactly(tmp_path):
    res = write_shard(Store(tmp_path), "s.tar", _entries(4))
    data = (tmp_path / "s.tar").read_bytes()
    for i, (key, offset, length, crc) in enumerate(res.offsets):
        assert crc == zlib.crc32(data[offset : offset + length])  # what the index keeps per sample
        with tarfile.open(fileobj=io.BytesIO(data[offset : offset + length])) as part:
            names = part.getnames()
            assert names == [f"{key}.base_0.jpg", f"{key}.meta.json", f"{key}.state.npy"]
            arr = np.load(io.BytesIO(part.extractfile(f"{key}.state.npy").read()))
            assert arr[0] == i


def test_placement_is_stable_and_spreads():
    assert place("d/000001/000002", 0, 7) == place("d/000001/000002", 0, 7)
    assert place("d/000001/000002", 0, 7) != place("d/000001/000002", 1, 7)
    shards = [place(f"d/000000/{i:06d}", 0, 4)[0] for i in range(4000)]
    counts = np.bincount(shards, minlength=4)
    assert counts.min() > 900 and shard_count(4000, 1000) == 4 and shard_count(1, 1000) == 1


def test_the_tar_stream_writes_what_webdatasets_tar_writer_writes():
    """shards/writer.py TarStream lays out tarfile's headers itself: the bytes must equal webdataset's
    TarWriter with the same owner, mode and time, long names (a pax header) and empty members included."""
    import io

    import webdataset as wds

    from vlamix.shards.writer import MTIME, OWNER, TarStream, entry_sizes

    entries = [
        {
            "__key__": f"ds/{i:06d}",
            "state.npy": bytes(range(i % 200)),
            "prompt.txt": b"pick it up",
            "z.bin": b"",
        }
        for i in range(30)
    ]
    entries.append({"__key__": "d" * 140 + "/000001", "image.jpg": b"\xff\xd8" * 700})  # name > 100 bytes
    theirs = io.BytesIO()
    w = wds.TarWriter(theirs, user=OWNER, group=OWNER, mtime=MTIME, encoder=False)
    for e in entries:
        w.write(e)
    w.close()
    ours = io.BytesIO()
    stream = TarStream(ours)
    sizes = [stream.write(e) for e in entries]
    stream.close()
    assert ours.getvalue() == theirs.getvalue()
    assert entry_sizes(entries) == sizes and sum(sizes) < len(ours.getvalue())
