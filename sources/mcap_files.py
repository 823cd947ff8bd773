"""The bags a `path:` names, the files of each, and their messages (format: mcap), read front to back.

`path:` is a `.mcap` file, a bag folder, a folder of both, or a glob; a `.mcap` file inside a bag folder
is a piece of that bag. A bag's episode id is the number ending its name, else its position (`bag_ids`).

A bag is one `.mcap` file, or a rosbag2 folder whose `metadata.yaml` lists its `.mcap` pieces
(`relative_file_paths`, read in that order; without the list, the folder's `.mcap` files in natural order).
Other storage (sqlite3 `.db3`) and file-compressed bags (`compression_mode: FILE`) are refused by name.

Every file is read with the mcap library's stream reader from its magic to its footer, CRCs checked: a
file cut short (a recorder killed, a partial copy) or corrupted raises BagError naming the file and the
byte where reading stopped. Nothing of a bag that does not read to its end is kept: an episode shortened
without a word would train on a demonstration that never finished. Chunks declaring more than
MAX_READ_BYTES decompressed are refused before they are inflated (sources/frames.py).
"""

from __future__ import annotations

import io
import re
import struct
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import BinaryIO

import yaml
import zstandard
from mcap.exceptions import McapError
from mcap.reader import SeekingReader
from mcap.records import Channel, Chunk, Message, Schema
from mcap.stream_reader import StreamReader, breakup_chunk
from mcap_ros2.decoder import DecoderFactory

from vlamix.config import ConfigError
from vlamix.sources.frames import MAX_READ_BYTES, one_line
from vlamix.sources.location import (
    Location,
    Unreachable,
    glob_files,
    has_glob,
    is_file,
    locate,
    open_file,
    read_bytes,
)

__all__ = [
    "METADATA",
    "SUFFIX",
    "BagError",
    "Record",
    "bag_files",
    "bag_ids",
    "first_message",
    "list_bags",
    "read_records",
    "summary_topics",
]

SUFFIX = ".mcap"
METADATA = "metadata.yaml"  # what makes a folder a rosbag2 bag
_TRAILING_NUMBER = re.compile(r"(?:^|[_\-. ])(\d+)$")  # episode_12, run-3; not mcap
# what the mcap library raises on bytes that are not a whole MCAP (truncated, corrupted, not MCAP)
_BROKEN = (McapError, struct.error, ValueError, EOFError, RuntimeError, zstandard.ZstdError)


class BagError(ValueError):
    """A bag that does not read; the message is the reason, naming the file (and byte, topic, time)."""


def _natural(name: str) -> list:
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", name)]


def bag_files(bag: Location) -> list[Location]:
    """The `.mcap` files of a bag, in reading order."""
    if bag.suffix == SUFFIX:
        return [bag]
    try:
        info = yaml.safe_load(read_bytes(bag / METADATA))
    except yaml.YAMLError as e:
        raise BagError(f"{METADATA} is not YAML: {one_line(e)}") from None
    except FileNotFoundError:
        raise BagError(f"no {METADATA} in the bag folder (is it a rosbag2 bag?)") from None
    info = info.get("rosbag2_bagfile_information") if isinstance(info, dict) else None
    if not isinstance(info, dict):
        raise BagError(f"{METADATA} has no `rosbag2_bagfile_information:` mapping (not a rosbag2 bag?)")
    storage = info.get("storage_identifier", SUFFIX[1:])
    if storage != "mcap":
        raise BagError(
            f"a {storage} bag ({METADATA} storage_identifier): only mcap storage is read; convert it with "
            "`ros2 bag convert` (storage_id: mcap)"
        )
    if str(info.get("compression_mode", "")).upper() == "FILE":
        raise BagError(
            f"a file-compressed bag ({METADATA} compression_mode: FILE): decompress it with "
            "`ros2 bag decompress` or `ros2 bag convert` first"
        )
    names = info.get("relative_file_paths")
    if names is None:
        return sorted((p for p in glob_files(bag, "*") if p.suffix == SUFFIX), key=lambda p: _natural(p.name))
    if not isinstance(names, list) or not names:
        raise BagError(f"{METADATA} relative_file_paths is {names!r}, not a list of files")
    wrong = [n for n in names if not str(n).endswith(SUFFIX)]
    if wrong:
        raise BagError(f"{METADATA} lists {wrong[0]!r}, not a {SUFFIX} file (a compressed piece?)")
    # rosbag2 before Galactic wrote the paths with the bag folder's name in front
    return [bag / str(n).removeprefix(f"{bag.name}/") for n in names]


def _natural_path(p: Location) -> list:
    return [_natural(part) for part in p.parts]


def list_bags(root: Path, spec: str) -> list[Location]:
    """The bags `path:` names: a .mcap file, a bag folder, a folder of .mcap files and bag folders, or a
    glob of .mcap files or metadata.yaml files. A .mcap file inside a bag folder is a piece of that bag."""
    base = locate(root, spec)
    if not has_glob(spec):
        if base.suffix == SUFFIX and is_file(base):
            return [base]
        if is_file(base / METADATA):
            return [base]
        found = glob_files(base, "*") + glob_files(base, f"*/{METADATA}")
    else:
        found = glob_files(base)
    folders = {p.parent for p in found if p.name == METADATA}
    pieces = {p.parent for p in found if p.suffix == SUFFIX} - folders
    folders |= {d for d in pieces if has_glob(spec) and is_file(d / METADATA)}
    bags = [p for p in found if p.suffix == SUFFIX and p.parent not in folders] + sorted(folders, key=str)
    if not bags:
        raise ConfigError(
            f"{spec!r} (under {root}) holds no {SUFFIX} files and no bag folders (with {METADATA})"
        )
    return sorted(bags, key=lambda p: (_natural_path(p), str(p)))


def bag_ids(bags: list[Location]) -> list[int]:
    """The number ending each bag's name (file stem or folder name) when all have one and they are
    unique; else the bags' positions in natural order."""
    found = [_TRAILING_NUMBER.search(p.stem if p.suffix == SUFFIX else p.name) for p in bags]
    numbers = [int(m.group(1)) for m in found if m is not None]
    if len(numbers) == len(bags) and len(set(numbers)) == len(numbers):
        return numbers
    return list(range(len(bags)))


@dataclass(frozen=True)
class Record:
    """One message of the bag: its topic, the schema (ROS 2 type) name, log time (ns) and CDR bytes;
    `decode()` gives the message object or raises BagError."""

    topic: str
    schema: str
    log_time: int
    data: bytes
    decode: Callable[[], object]


class _Decoders:
    """ROS 2 decoders of one file's channels (schema ids are per file)."""

    def __init__(self, name: str):
        self.name, self.factory, self.by_channel = name, DecoderFactory(), {}

    def decode(self, schema: Schema | None, channel: Channel, message: Message) -> object:
        where = f"{channel.topic} at log time {message.log_time} ns in {self.name}"
        decoder = self.by_channel.get(channel.id)
        if decoder is None:
            try:
                decoder = self.factory.decoder_for(channel.message_encoding, schema)
            except _BROKEN as e:
                raise BagError(f"{where}: its schema does not parse: {one_line(e)}") from None
            if decoder is None:
                raise BagError(
                    f"{where}: message encoding {channel.message_encoding!r} with schema encoding "
                    f"{schema.encoding if schema else 'none'!r}: only ROS 2 CDR messages with ros2msg schemas "
                    "decode (re-record, or convert the bag with a ros2msg storage preset)"
                )
            self.by_channel[channel.id] = decoder
        try:
            return decoder(message.data)
        except (*_BROKEN, IndexError, KeyError, TypeError) as e:
            raise BagError(
                f"{where} does not decode as {schema.name if schema else '?'}: {one_line(e)}"
            ) from None


def _broken(e: BaseException, f: BinaryIO, name: str) -> BagError:
    pos = f.tell()
    size = f.seek(0, io.SEEK_END)
    cause = f"{type(e).__name__}: {one_line(e)}" if str(e) else type(e).__name__
    if pos >= size:
        return BagError(
            f"truncated MCAP: {name} ends at byte {size} before its footer ({cause}): a recording cut short "
            "or a partial copy; re-copy it, or salvage what was written with `mcap recover`"
        )
    return BagError(
        f"corrupted MCAP: {name} does not read at byte {pos} of {size} ({cause}); re-copy it, or salvage "
        "it with `mcap recover`"
    )


def _records(f: BinaryIO, name: str) -> Iterator[Schema | Channel | Message]:
    reader = StreamReader(f, emit_chunks=True, validate_crcs=True, record_size_limit=MAX_READ_BYTES)
    stream = reader.records
    while True:
        try:
            record = next(stream, None)
            if isinstance(record, Chunk) and record.uncompressed_size > MAX_READ_BYTES:
                raise BagError(
                    f"{name}: a chunk declares {record.uncompressed_size:,} bytes decompressed, above the cap "
                    f"of {MAX_READ_BYTES:,} (a decompression bomb or a corrupted file?)"
                )
            inner = breakup_chunk(record, validate_crc=True) if isinstance(record, Chunk) else [record]
        except _BROKEN as e:
            raise _broken(e, f, name) from None
        if record is None:
            return
        yield from (r for r in inner if isinstance(r, Schema | Channel | Message))


def read_records(bag: Location) -> Iterator[Record]:
    """Every message of the bag, file by file, each file in its own order (rosbag2 writes messages as
    they arrive: log-time order). Raises BagError for a file that does not read to its end."""
    for path in bag_files(bag):
        name = path.name
        try:
            f = open_file(path)
        except Unreachable as e:
            raise BagError(one_line(e)) from None
        except FileNotFoundError:
            raise BagError(f"the bag's file {name} is missing (a partial copy?)") from None
        except OSError as e:
            raise BagError(f"cannot open {name}: {one_line(e)}") from None
        with f:
            schemas: dict[int, Schema] = {}
            channels: dict[int, tuple[Schema | None, Channel]] = {}
            decoders = _Decoders(name)
            for r in _records(f, name):
                if isinstance(r, Schema):
                    schemas[r.id] = r
                elif isinstance(r, Channel):
                    if r.schema_id and r.schema_id not in schemas:
                        raise BagError(
                            f"{name}: channel {r.topic} names schema {r.schema_id}, which is not in the file"
                        )
                    channels[r.id] = (schemas.get(r.schema_id), r)
                elif r.channel_id not in channels:
                    raise BagError(
                        f"{name}: a message at log time {r.log_time} ns on an unknown channel {r.channel_id}"
                    )
                else:
                    schema, channel = channels[r.channel_id]
                    yield Record(
                        channel.topic,
                        schema.name if schema else "",
                        r.log_time,
                        r.data,
                        partial(decoders.decode, schema, channel, r),
                    )


def summary_topics(bag: Location) -> dict[str, str] | None:
    """topic -> schema name from the summaries of the bag's files (cheap: the end of each file), or None
    when a file has no summary or does not read (reading the bag then finds out)."""
    topics: dict[str, str] = {}
    try:
        for path in bag_files(bag):
            with open_file(path) as f:
                summary = SeekingReader(f, record_size_limit=MAX_READ_BYTES).get_summary()
                if summary is None:
                    return None
                for c in summary.channels.values():
                    schema = summary.schemas.get(c.schema_id)
                    topics[c.topic] = schema.name if schema else ""
    except (*_BROKEN, OSError, BagError):
        return None
    return topics


def first_message(bag: Location, topic: str) -> object | None:
    """The first message on `topic`, decoded (None when it does not read: reading the bag finds out)."""
    try:
        for path in bag_files(bag):
            with open_file(path) as f:
                reader = SeekingReader(
                    f, record_size_limit=MAX_READ_BYTES, decoder_factories=[DecoderFactory()]
                )
                for *_, decoded in reader.iter_decoded_messages(topics=[topic], log_time_order=False):
                    return decoded
    except (*_BROKEN, OSError, BagError, IndexError, KeyError, TypeError):
        return None
    return None
