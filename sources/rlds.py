"""Reader for RLDS / TFDS TFRecord datasets (as Open X-Embodiment ships them), without TensorFlow.

One `tf.train.Example` per episode; step features are flattened lists named `steps/...`, shaped by the
TFDS `features.json` beside the files. Split names come from `dataset_info.json` and the file names
(`{dataset}-{split}.tfrecord-XXXXX-of-YYYYY`). Nothing here is specific to one dataset: feature names
come from `features.json` and the sources file's `keys`.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from google.protobuf.message import DecodeError

from vlamix.config import ConfigError
from vlamix.schemas.embodiment import Embodiment
from vlamix.schemas.quarantine import BadRecord, QuarantineRecord
from vlamix.sources.config import RobotSource, SourcesFile, resolve_files
from vlamix.sources.episode import EpisodeRef
from vlamix.sources.frames import EpisodeFacts, camera_slot, frame_row, one_line
from vlamix.sources.success import success_value
from vlamix.sources.tf_example import decode_example
from vlamix.sources.tfrecord import TFRecordError, read_record_at, scan_records
from vlamix.transforms.image import decode_jpeg

__all__ = ["Feature", "list_episodes", "read_episode", "read_features"]

FEATURES_FILE = "features.json"
INFO_FILE = "dataset_info.json"
STATE_KEY = "steps/observation/state"
ACTION_KEY = "steps/action"
INSTRUCTION_KEY = "steps/language_instruction"
OBSERVATION_PREFIX = "steps/observation/"
_BLACK = 8  # a frame whose brightest pixel is at most this is black (an absent camera)


@dataclass(frozen=True)
class Feature:
    name: str  # flattened name, e.g. steps/observation/image_0
    kind: str  # Tensor, Scalar, Image, Text
    dtype: str
    shape: tuple[int, ...]


def _walk(node: dict, path: list[str], out: dict[str, Feature]) -> None:
    if "featuresDict" in node:
        for key, child in node["featuresDict"]["features"].items():
            _walk(child, [*path, key], out)
    elif "sequence" in node:
        _walk(node["sequence"]["feature"], path, out)
    else:
        kind = node.get("pythonClassName", "").rsplit(".", 1)[-1].replace("Feature", "") or "Tensor"
        spec = node.get("tensor") or node.get("image") or {}
        dims = tuple(int(d) for d in (spec.get("shape") or {}).get("dimensions", []))
        name = "/".join(path)
        out[name] = Feature(name, kind, spec.get("dtype", "string" if kind == "Text" else "float32"), dims)


def read_features(folder: Path) -> dict[str, Feature]:
    path = folder / FEATURES_FILE
    if not path.is_file():
        raise ConfigError(
            f"{folder}: no {FEATURES_FILE} (the TFDS metadata that names the features); point `path` at the dataset folder"
        )
    features: dict[str, Feature] = {}
    _walk(json.loads(path.read_text()), [], features)
    return features


def _split_of(file: Path, folder: Path) -> str | None:
    info = folder / INFO_FILE
    names = (
        [s["name"] for s in json.loads(info.read_text()).get("splits", [])]
        if info.is_file()
        else ["train", "val", "test", "validation"]
    )
    for name in names:
        if re.search(rf"-{re.escape(name)}\.tfrecord", file.name):
            return {"validation": "val"}.get(name, name)
    return None


def _dataset_folder(sources: SourcesFile, source: RobotSource) -> Path:
    base = Path(source.path) if Path(source.path).is_absolute() else sources.root / source.path
    if not base.exists() and not any(c in source.path for c in "*?["):
        raise ConfigError(f"path {source.path!r} (under {sources.root}) matches no file or folder")
    return base if base.is_dir() else base.parent


def list_episodes(sources: SourcesFile, source: RobotSource) -> list[EpisodeRef]:
    """One ref per record (episode); the record framing is checked while listing."""
    folder = _dataset_folder(sources, source)
    read_features(folder)  # fail at listing time, in the driver, when the metadata is missing
    spec = source.path if any(c in source.path for c in "*?[") else f"{source.path.rstrip('/')}/*.tfrecord*"
    files = resolve_files(sources.root, spec, ())
    refs: list[EpisodeRef] = []
    for file in files:
        rel = str(file.relative_to(sources.root)) if file.is_relative_to(sources.root) else str(file)
        split = _split_of(file, folder)
        try:
            for record, offset, _ in scan_records(file):
                refs.append(
                    EpisodeRef(
                        source.name, len(refs), str(file), rel, record=record, offset=offset, split=split
                    )
                )
        except TFRecordError as e:  # a broken tail: the records before it are still episodes
            error = str(e).replace(str(file), rel)  # the file as the sources file names it, on any machine
            refs.append(
                EpisodeRef(
                    source.name, len(refs), str(file), rel, record=-1, offset=-1, split=split, error=error
                )
            )
    return refs


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
            values = np.asarray(self.data[key], dtype=np.float32)
            if self.n == 0 or values.size % self.n:
                raise self.bad(
                    f"{key} has {values.size} values, not a multiple of the {self.n} steps: fields that "
                    "disagree in length (a truncated or mis-written episode)",
                    key,
                )
            parts.append(values.reshape(self.n, -1))
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

    def text(self, key: str) -> list[str | None]:
        values = self.data.get(key, [])
        if len(values) not in (0, self.n):
            raise self.bad(
                f"{key} has {len(values)} values, the episode has {self.n} steps: fields that disagree in length",
                key,
            )
        out: list[str | None] = []
        for i, raw in enumerate(values):
            try:
                s = raw.decode("utf-8").strip()
            except UnicodeDecodeError as e:
                raise self.bad(
                    f"text is not UTF-8: {e} (re-write the episode's text as UTF-8)", key, i
                ) from e
            out.append(s or None)  # an empty instruction is data: no instruction
        return out


def _as_list(value: str | list[str] | None, default: str) -> list[str]:
    return [value] if isinstance(value, str) else (value or [default])


def _steps(data: dict) -> int:
    for key in ("steps/is_first", "steps/is_last"):
        if key in data:
            return len(data[key])
    return 0


def read_episode(ref: EpisodeRef, source: RobotSource, emb: Embodiment) -> Iterator[dict]:
    if ref.error:
        raise BadRecord(QuarantineRecord(ref.dataset, ref.source_file, ref.error, ref.index))
    try:
        raw = read_record_at(ref.path, ref.offset, ref.record)
        data = decode_example(raw)
    except (TFRecordError, OSError) as e:
        reason = str(e).replace(ref.path, ref.source_file)
        raise BadRecord(QuarantineRecord(ref.dataset, ref.source_file, reason, ref.index)) from e
    except DecodeError as e:
        raise BadRecord(
            QuarantineRecord(
                ref.dataset, ref.source_file, f"record {ref.record} is not a tf.train.Example: {e}", ref.index
            )
        ) from e
    action_keys = _as_list(source.keys.action, ACTION_KEY)
    n = _steps(data) or len(np.asarray(data.get(action_keys[0], []))) // emb.action_dim
    ep = _Episode(ref, data, n)
    if n == 0:
        raise ep.bad("episode has no steps", "steps")
    state = ep.tensor(_as_list(source.keys.state, STATE_KEY), emb.state_dim, "state")
    action = ep.tensor(action_keys, emb.action_dim, "action")
    instructions = ep.text(source.keys.instruction or INSTRUCTION_KEY) or [None] * n
    cameras = _cameras(ep, source, emb, read_features(Path(ref.path).parent))
    facts = EpisodeFacts(
        ref,
        source,
        emb,
        n,
        hashlib.blake2b(raw, digest_size=16).hexdigest(),
        success_value(source.success, data.get),
    )
    decoded = {}
    for slot, (key, frames) in cameras.items():
        images = []
        for i, jpeg in enumerate(frames):
            try:
                images.append(decode_jpeg(jpeg))
            except OSError as e:
                raise ep.bad(f"image does not decode: {one_line(e)}", key, i) from e
        if max(int(im.max()) for im in images) > _BLACK or _flag(data, key):
            decoded[slot] = images  # all-black frames of a camera flagged absent are data: a masked slot
    for i in range(n):
        task = instructions[i]
        yield frame_row(
            facts,
            i,
            state[i],
            action[i],
            i / emb.control_rate_hz,
            task,
            {slot: v[i] for slot, v in decoded.items()},
        )


def _flag(data: dict, key: str) -> bool:
    """TFDS episode metadata `has_image_K` for camera `image_K` (true when absent from the data)."""
    flag = data.get(f"episode_metadata/has_{key.rsplit('/', 1)[-1]}")
    return bool(len(flag) and flag[0]) if flag is not None else False


def _cameras(
    ep: _Episode, source: RobotSource, emb: Embodiment, features: dict[str, Feature]
) -> dict[str, tuple[str, list[bytes]]]:
    """slot -> (feature name, encoded frames) for every Image feature under steps/observation/."""
    mapping = {**emb.cameras, **source.keys.cameras}
    found: dict[str, tuple[str, list[bytes]]] = {}
    for key in sorted(
        k for k, f in features.items() if f.kind == "Image" and k.startswith(OBSERVATION_PREFIX)
    ):
        if key not in ep.data:
            raise ep.bad(
                f"image feature {key} (declared in {FEATURES_FILE}) is missing from the episode", key
            )
        native = key[len(OBSERVATION_PREFIX) :]
        slot, problem = camera_slot(native, source, emb)
        if problem:
            raise ep.bad(problem, key)
        if slot is None or slot in found:
            continue
        if len(ep.data[key]) != ep.n:
            raise ep.bad(f"camera {native} has {len(ep.data[key])} frames, the episode has {ep.n}", key)
        found[slot] = (key, ep.data[key])
    if not found:
        raise ep.bad(
            f"no camera maps to a slot (spec {emb.name} knows {sorted(mapping)})", OBSERVATION_PREFIX
        )
    return found
