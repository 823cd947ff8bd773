"""Reader for RLDS / TFDS TFRecord datasets (as Open X-Embodiment ships them), without TensorFlow.

One `tf.train.Example` per episode; step features are flattened lists named `steps/...`, shaped by the
TFDS `features.json` beside the files. Split names come from `dataset_info.json` and the file names
(`{dataset}-{split}.tfrecord-XXXXX-of-YYYYY`). Nothing here is specific to one dataset: feature names
come from `features.json` and the sources file's `keys` (sources/rlds_features.py resolves them).

Rules (each refuses, never guesses):
- Episode id: the record's position across the files in natural order, unless the sources file names
  an id feature (`keys: {episode_id: episode_metadata/episode_id}`): then every record is decoded at
  listing to read it, and an id that repeats is a ConfigError. Not the default: listing otherwise reads
  only the record framing (cheap), and BridgeData V2 numbers episodes within each original file (ids
  repeat).
- Task: the instruction feature, one text per step (or one for the episode); a step without text is under
  the instruction in force (sources/per_step.py). An episode with no text on any step takes `task:`;
  without one it is quarantined, unless `episode_metadata/has_language` is false (the dataset says it has
  no instruction: a missing instruction, data).
- State and action: numeric features (a bool or string feature is a ConfigError at listing).
- Cameras: planned once from features.json (an unknown camera or two on one slot is a ConfigError at
  listing). A camera is absent from an episode when its data is missing (no feature, no frames, every frame
  empty), or when `episode_metadata/has_image_K` is false and its frames hold no picture (one value
  everywhere: a fill). A flag contradicted by real pictures is not trusted (BridgeData's debug episodes
  flag every camera false); a dark but real camera is kept. `channel_order: bgr` is flipped to RGB.
- Rate: where the steps have a timestamp feature (TIMESTAMP_KEYS, seconds) its median period must match
  the spec's control rate; without one there is nothing to check.
- Success: a constant, or a feature reduced over the steps by the declared rule (sources/success.py):
  `steps/reward` or `steps/is_terminal` with `reduce: last` (the default) is the last step's value.
- Environment: a constant, a path pattern over the TFRecord file, or a text feature (`episode_metadata/
  room`, resolved like every key at listing) holding one text (sources/environment.py).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from google.protobuf.message import DecodeError

from vlamix.config import ConfigError
from vlamix.schemas.embodiment import Embodiment
from vlamix.schemas.image_codec import CameraImage, decode_camera, pixels_of
from vlamix.schemas.quarantine import BadRecord, QuarantineRecord
from vlamix.sources.config import RobotSource, SourcesFile, resolve_files
from vlamix.sources.environment import environment_of
from vlamix.sources.episode import EpisodeRef
from vlamix.sources.fields import FieldError, numeric_matrix, per_step_text
from vlamix.sources.frames import EpisodeFacts, frame_row, one_line, to_rgb
from vlamix.sources.location import Location, display, has_glob, is_remote, locate, read_bytes
from vlamix.sources.per_step import bad_text_step, measured_rate_problem, no_task, tasks_in_force
from vlamix.sources.rlds_features import (
    FEATURES_FILE,
    OBSERVATION_PREFIX,
    Feature,
    RldsKeys,
    read_features,
    resolve_key,
    resolve_keys,
)
from vlamix.sources.success import success_value
from vlamix.sources.tf_example import decode_example
from vlamix.sources.tfrecord import TFRecordError, read_record_at, scan_records
from vlamix.stage_clock import stage

__all__ = ["Feature", "list_episodes", "read_episode", "read_features"]

INFO_FILE = "dataset_info.json"
LIST_THREADS = 16  # files whose record headers are read at once at a URL
HAS_LANGUAGE = "episode_metadata/has_language"


def _split_names(folder: Location) -> list[str]:
    try:
        return [s["name"] for s in json.loads(read_bytes(folder / INFO_FILE)).get("splits", [])]
    except FileNotFoundError:
        return ["train", "val", "test", "validation"]


def _split_of(file: Location, names: list[str]) -> str | None:
    for name in names:
        if re.search(rf"-{re.escape(name)}\.tfrecord", file.name):
            return {"validation": "val"}.get(name, name)
    return None


def _dataset_folder(sources: SourcesFile, source: RobotSource) -> Location:
    base = locate(sources.root, source.path)
    if has_glob(source.path) or ".tfrecord" in base.name:
        return base.parent
    if is_remote(base):
        return base  # a URL without a glob or a TFRecord name is the dataset's folder
    if not base.exists():
        raise ConfigError(f"path {source.path!r} (under {sources.root}) matches no file or folder")
    return base if base.is_dir() else base.parent


def _scan(file: Location) -> tuple[list[tuple[int, int]], str | None]:
    """(record, offset) of every record of a file, and why its tail does not read, if it does not."""
    records: list[tuple[int, int]] = []
    try:
        for record, offset, _ in scan_records(file):  # one at a time: a broken tail keeps the rest
            records.append((record, offset))
    except TFRecordError as e:
        return records, str(e)
    return records, None


def _features_where(folder: Path, root: Path) -> str:
    return display(folder / FEATURES_FILE, root)


def list_episodes(sources: SourcesFile, source: RobotSource) -> list[EpisodeRef]:
    """One ref per record (episode); the record framing is checked while listing, and the sources file's
    keys against features.json (a ConfigError here, in the driver, before any job starts)."""
    folder = _dataset_folder(sources, source)
    resolve_keys(
        read_features(folder),
        source,
        sources.embodiment(source).as_logged(),
        _features_where(folder, sources.root),
    )
    spec = source.path if any(c in source.path for c in "*?[") else f"{source.path.rstrip('/')}/*.tfrecord*"
    files = resolve_files(sources.root, spec, ())
    names = _split_names(folder)
    # the record headers, file by file (at a URL, several files at once: each header is a range request)
    with ThreadPoolExecutor(LIST_THREADS if is_remote(folder) else 1) as pool:
        scans = list(pool.map(_scan, files))
    refs: list[EpisodeRef] = []
    for file, (records, error) in zip(files, scans, strict=True):
        rel = display(file, sources.root)
        split = _split_of(file, names)
        for record, offset in records:
            refs.append(
                EpisodeRef(source.name, len(refs), str(file), rel, record=record, offset=offset, split=split)
            )
        if error is not None:  # a broken tail: the records before it are still episodes
            error = error.replace(str(file), rel)  # the file as the sources file names it, on any machine
            refs.append(
                EpisodeRef(
                    source.name, len(refs), str(file), rel, record=-1, offset=-1, split=split, error=error
                )
            )
    if source.keys.episode_id:
        key = resolve_key(
            source.keys.episode_id, read_features(folder), "episode id", _features_where(folder, sources.root)
        )
        refs = _own_ids(refs, key)
    return refs


def _own_ids(refs: list[EpisodeRef], key: str) -> list[EpisodeRef]:
    """The refs with the ids their records' `key` feature holds (one non-negative integer each, unique
    over the dataset). A record that does not read holds none: it gets an id past the largest, and is
    quarantined when read. ConfigError for a record without one integer, or an id two records share."""
    seen: dict[int, EpisodeRef] = {}
    ids: list[int | None] = []
    for ref in refs:
        try:
            value = None if ref.error else decode_example(read_record_at(ref.path, ref.offset, ref.record))
        except (TFRecordError, OSError, DecodeError):
            value = None
        if value is None:
            ids.append(None)
            continue
        got = value.get(key)
        values = np.asarray(got if got is not None else [])
        if values.shape != (1,) or values.dtype.kind not in "iu" or int(values[0]) < 0:
            raise ConfigError(
                f"{ref.source_file} record {ref.record}: {key} holds {got!r:.60}, not one non-negative "
                "integer: `keys: {episode_id: ...}` must name a feature holding each episode's own id"
            )
        own = int(values[0])
        if own in seen:
            raise ConfigError(
                f"{ref.source_file} record {ref.record} and {seen[own].source_file} record "
                f"{seen[own].record} share {key} {own}: ids that repeat cannot address episodes; leave out "
                "`keys: {episode_id: ...}` to use the records' positions"
            )
        seen[own] = ref
        ids.append(own)
    nxt = max(seen, default=-1) + 1
    out = []
    for ref, own in zip(refs, ids, strict=True):
        if own is None:
            own, nxt = nxt, nxt + 1
        out.append(dataclasses.replace(ref, index=own))
    return out


class _Episode:
    def __init__(self, ref: EpisodeRef, data: dict, n: int = 0):
        self.ref, self.data, self.n = ref, data, n

    def bad(self, reason: str, field: str | None = None, frame: int | None = None) -> BadRecord:
        r = self.ref
        return BadRecord(
            QuarantineRecord(r.dataset, r.source_file, reason, r.index, None, frame, field, self.n)
        )

    def tensor(self, keys: list[str], width: int, what: str) -> np.ndarray:
        parts = []
        for key in keys:
            if key not in self.data:
                raise self.bad(
                    f"no feature {key}: the {what} is missing (set `keys: {{{what}: ...}}` in the sources file)",
                    key,
                )
            raw = self.data[key]
            size = len(raw)
            if self.n == 0 or size % self.n:
                raise self.bad(
                    f"{key} has {size} values, not a multiple of the {self.n} steps: fields that "
                    "disagree in length (a truncated or mis-written episode)",
                    key,
                )
            rows = np.asarray(raw).reshape(self.n, -1) if isinstance(raw, np.ndarray) else raw
            try:
                parts.append(numeric_matrix(rows, self.n, key))
            except FieldError as e:
                raise self.bad(f"{e}: the {what} must be numbers", key) from None
        out = np.concatenate(parts, axis=1)
        if out.shape[1] != width:
            raise self.bad(
                f"{what} has {out.shape[1]} columns ({' + '.join(keys)}), the embodiment spec says {width}",
                what,
            )
        bad_rows = np.flatnonzero(~np.isfinite(out).all(axis=1))
        if len(bad_rows):
            raise self.bad(f"non-finite value (NaN or inf) in {what}", what, int(bad_rows[0]))
        return out

    def flag(self, key: str) -> bool | None:
        """An episode-metadata bool (`has_language`, `has_image_K`); None when the episode has none."""
        value = self.data.get(key)
        if value is None or len(value) == 0:
            return None
        if not isinstance(value, np.ndarray) or value.dtype.kind not in "iub" or value.size != 1:
            raise self.bad(f"{key} is {value!r:.60}, not one bool", key)
        return bool(value[0])

    def tasks(self, key: str | None, default: str | None) -> list[str | None]:
        values = self.data.get(key, []) if key else []
        if len(values) not in (0, 1, self.n):
            raise self.bad(
                f"{key} has {len(values)} values, the episode has {self.n} steps: fields that disagree in length",
                key,
            )
        try:
            texts = per_step_text(list(values), self.n, key) if key and len(values) else [None] * self.n
        except FieldError as e:
            raise self.bad(str(e), key, bad_text_step(list(values), self.n, key or "")) from None
        tasks = tasks_in_force(texts, default)
        if tasks is not None:
            return tasks
        if self.flag(HAS_LANGUAGE) is False:
            return [None] * self.n  # the dataset says the episode has no instruction
        where = f"{key} is empty on every step" if key else "the dataset has no instruction feature"
        raise self.bad(no_task(where), key)


def _steps(data: dict) -> int:
    for key in ("steps/is_first", "steps/is_last"):
        if key in data:
            return len(data[key])
    return 0


def _load(ref: EpisodeRef) -> tuple[bytes, dict]:
    if ref.error:
        raise BadRecord(QuarantineRecord(ref.dataset, ref.source_file, ref.error, ref.index))
    try:
        raw = read_record_at(ref.path, ref.offset, ref.record)
        return raw, decode_example(raw)
    except (TFRecordError, OSError) as e:
        reason = str(e).replace(ref.path, ref.source_file)
        raise BadRecord(QuarantineRecord(ref.dataset, ref.source_file, reason, ref.index)) from e
    except DecodeError as e:
        raise BadRecord(
            QuarantineRecord(
                ref.dataset, ref.source_file, f"record {ref.record} is not a tf.train.Example: {e}", ref.index
            )
        ) from e


def _keys(ref: EpisodeRef, source: RobotSource, emb: Embodiment) -> RldsKeys:
    folder = locate("/", ref.path).parent
    try:
        where = (
            f"{ref.source_file.rsplit('/', 1)[0]}/{FEATURES_FILE}"
            if "/" in ref.source_file
            else FEATURES_FILE
        )
        return resolve_keys(read_features(folder), source, emb, where)
    except ConfigError as e:  # features.json changed since listing, or a ref not made by list_episodes
        raise BadRecord(QuarantineRecord(ref.dataset, ref.source_file, str(e), ref.index)) from e


def read_episode(
    ref: EpisodeRef, source: RobotSource, emb: Embodiment, *, box: int | None = None
) -> Iterator[dict]:
    """One frame record per step of the episode's record; with `box`, images decode `Shrunk` (no
    smaller than fitting them into a box x box square needs). Raises BadRecord for input to quarantine."""
    raw, data = _load(ref)
    keys = _keys(ref, source, emb)
    n = _steps(data) or len(np.asarray(data.get(keys.action[0], []))) // emb.action_dim
    ep = _Episode(ref, data, n)
    if n == 0:
        raise ep.bad("episode has no steps", "steps")
    state = ep.tensor(keys.state, emb.state_dim, "state")
    action = ep.tensor(keys.action, emb.action_dim, "action")
    if keys.timestamp is not None and keys.timestamp in data:
        try:
            problem = measured_rate_problem(data[keys.timestamp], n, emb, keys.timestamp)
        except FieldError as e:
            raise ep.bad(str(e), keys.timestamp) from None
        if problem:
            raise ep.bad(problem, keys.timestamp)
    tasks = ep.tasks(keys.instruction, source.task)
    decoded = _cameras(ep, keys, box)
    try:
        success = success_value(keys.success, data.get)
    except FieldError as e:
        field = getattr(keys.success, "field", None)
        raise ep.bad(f"{e} (the sources file's `success:`)", field) from None
    try:  # a field: the feature resolved at listing (an episode_metadata/... text)
        environment = environment_of(source.environment, ref, lambda name: data.get(keys.environment or name))
    except FieldError as e:
        raise ep.bad(f"{e} ({keys.environment})" if keys.environment else str(e), keys.environment) from None
    digest = hashlib.blake2b(raw, digest_size=16).hexdigest()
    facts = EpisodeFacts(ref, source, emb, n, digest, success, environment)
    for i in range(n):
        images = {slot: frames[i] for slot, frames in decoded.items()}
        yield frame_row(facts, i, state[i], action[i], i / emb.control_rate_hz, tasks[i], images)


def _cameras(ep: _Episode, keys: RldsKeys, box: int | None) -> dict[str, list[CameraImage]]:
    """slot -> decoded RGB frames of every camera present in the episode (see the module doc)."""
    decoded: dict[str, list[np.ndarray]] = {}
    for slot, key in keys.cameras.items():
        native = key[len(OBSERVATION_PREFIX) :]
        frames = ep.data.get(key)
        if frames is None or len(frames) == 0:
            continue  # missing data: an absent camera, a masked slot
        if not isinstance(frames, list):
            raise ep.bad(f"camera {native} holds numbers, not encoded images", key)
        if all(len(b) == 0 for b in frames):
            continue  # every frame empty: missing data too
        if len(frames) != ep.n:
            raise ep.bad(f"camera {native} has {len(frames)} frames, the episode has {ep.n}", key)
        images = []
        for i, jpeg in enumerate(frames):
            if not jpeg:
                raise ep.bad(f"camera {native} frame {i} is empty while other frames hold images", key, i)
            try:
                with stage("decode"):
                    image = decode_camera(jpeg, box)
                images.append(to_rgb(image, keys.orders[slot]))
            except OSError as e:
                raise ep.bad(f"image does not decode: {one_line(e)}", key, i) from e
        flagged_absent = ep.flag(f"episode_metadata/has_{native.rsplit('/', 1)[-1]}") is False
        if flagged_absent and all(int(pixels_of(im).min()) == int(pixels_of(im).max()) for im in images):
            continue  # flagged absent and a fill, no picture: a masked slot
        decoded[slot] = images
    if not decoded:
        raise ep.bad(
            f"no camera has frames in this episode ({sorted(keys.cameras.values())} are all absent)",
            OBSERVATION_PREFIX,
        )
    return decoded
