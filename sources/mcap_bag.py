"""Reader for ROS 2 bags in MCAP (format: mcap): one bag per episode, its topics sampled at the control rate.

Sources-file entry: `rate: HZ` and `keys: {state: {topic, field} | [...], action: {topic, field} | [...],
cameras: {TOPIC: slot}, instruction?: {topic, field}}`; `path:` is a `.mcap` file, a rosbag2 bag folder
(with metadata.yaml), a folder of either, or a glob (sources/mcap_files.py reads the files).

Rules (each refuses, never guesses):
- Time: a message's log_time, the time the recorder received it. Header stamps are not used: String,
  Float64MultiArray and most command topics have none, drivers leave them zero or on their own clock
  (a camera's, sim time), so mixing them would align topics on different clocks; log_time is one clock
  for every topic of the bag, at the cost of the transport delay (milliseconds).
- Frames: sources/topic_align.py samples the required topics (state, action, every mapped camera) at
  `rate`, each frame taking every topic's latest message at or before it; a message older than 2 periods
  drops the leading frames it spoils, and quarantines the episode when it is a gap after the start.
- `rate` must be the embodiment spec's control_rate_hz (a configuration error at listing).
- State and action: `field` is a dotted path in the message (sources/ros2_messages.py `numbers`); parts
  of a list are concatenated in order, and their width must be the spec's. A topic whose field changes
  width, or a JointState whose joint names change, between messages is quarantined.
- Cameras: `sensor_msgs/msg/CompressedImage` and `Image` (rgb8, bgr8, rgba8, bgra8, mono8; a bgr8 image is
  flipped by its encoding, and `channel_order: bgr` flips what a mislabelling logger called RGB). Every
  image topic of the bag must map to a slot or to null (silently losing a view is worse than an error).
- Topics named in `keys` that a bag lacks, a wrong field, a width that is not the spec's, or an unmapped
  camera: a configuration error when the first bag shows it (opened at listing, from its summary and
  first messages), a quarantine for a later bag.
- Task: the instruction topic's latest text at each frame (the first one before it is given), else `task:`.
- Success: `success: true | false` only (a bag has no per-episode field to read).
- Episode hash: blake2b of the aligned state and action and of every message on the mapped camera topics.
"""

from __future__ import annotations

import difflib
import hashlib
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np

from vlamix.config import ConfigError
from vlamix.schemas.embodiment import CAMERA_SLOTS, Embodiment
from vlamix.schemas.image_codec import CameraImage, ImageDecodeError
from vlamix.schemas.quarantine import BadRecord, QuarantineRecord
from vlamix.sources.config import RobotSource, SourcesFile, TopicField
from vlamix.sources.environment import environment_of
from vlamix.sources.episode import EpisodeRef
from vlamix.sources.fields import FieldError
from vlamix.sources.frames import (
    MAX_EPISODE_FRAMES,
    MAX_FRAME_BYTES,
    EpisodeFacts,
    camera_slot,
    frame_row,
    one_line,
    plan_cameras,
    rate_problem,
    to_rgb,
)
from vlamix.sources.location import Location, display, locate
from vlamix.sources.mcap_files import (
    BagError,
    Record,
    bag_ids,
    first_message,
    list_bags,
    read_records,
    summary_topics,
)
from vlamix.sources.per_step import no_task, tasks_in_force
from vlamix.sources.ros2_messages import (
    JOINT_STATE,
    field_value,
    image_pixels,
    is_image_type,
    message_text,
    numbers,
    type_name,
)
from vlamix.sources.topic_align import Alignment, TopicGap, align, latest_at_or_before
from vlamix.stage_clock import stage

__all__ = ["list_episodes", "read_episode"]


def _parts(value: TopicField | list[TopicField] | object) -> list[TopicField]:
    return [value] if isinstance(value, TopicField) else list(value)  # type: ignore[arg-type]


def _required(source: RobotSource) -> list[str]:
    """State, action and mapped camera topics, in that order, each once."""
    topics = [tf.topic for tf in (*_parts(source.keys.state), *_parts(source.keys.action))]
    topics += [t for t, key in source.keys.cameras.items() if (getattr(key, "slot", key)) is not None]
    return list(dict.fromkeys(topics))


def _topic_problem(topics: dict[str, str], source: RobotSource, emb: Embodiment) -> tuple[str, str] | None:
    """(reason, topic) for a required topic the bag lacks, a camera topic that is not an image or maps to
    no slot, or no camera at all; None when the bag's topics fit."""
    for topic in _required(source):
        if topic not in topics:
            close = difflib.get_close_matches(topic, list(topics), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            return f"topic {topic} is not in the bag{hint}; its topics: {', '.join(sorted(topics))}", topic
    for topic, key in source.keys.cameras.items():
        if topic in topics and getattr(key, "slot", key) is not None and not is_image_type(topics[topic]):
            return (
                f"camera topic {topic} carries {topics[topic] or 'schemaless messages'}, not "
                "sensor_msgs/msg/Image or CompressedImage",
                topic,
            )
    natives = sorted(t for t, kind in topics.items() if is_image_type(kind))
    for native in natives:
        _, problem = camera_slot(native, source, emb)
        if problem:
            return problem, native
    plan, problem = plan_cameras(natives, source, emb)
    if problem:
        return problem, "cameras"
    if not plan.slots:
        return (
            f"no image topic maps to a slot (image topics: {natives}; map them in `keys: {{cameras: ...}}`)",
            "cameras",
        )
    return None


def _config_problem(source: RobotSource, emb: Embodiment) -> str | None:
    if not source.keys.instruction and not source.task:
        return (
            "the sources file sets neither `task:` nor `keys: {instruction: {topic, field}}`, so every episode "
            "would train on an empty prompt; set `task:` or name the instruction topic"
        )
    if source.success is not None and not isinstance(source.success, bool):
        return "format mcap takes `success: true | false` (a bag has no per-episode field to read it from)"
    return rate_problem(source.rate or 0.0, emb, "the sources file's `rate:`")


def list_episodes(sources: SourcesFile, source: RobotSource) -> list[EpisodeRef]:
    """One ref per bag. Raises ConfigError for a configuration no bag can satisfy, and for a first bag
    whose topics, fields or cameras do not fit the keys (checked here, before any job starts)."""
    emb = sources.embodiment(source).as_logged()
    problem = _config_problem(source, emb)
    if problem:
        raise ConfigError(f"dataset {source.name!r} ({source.path}): {problem}")
    bags = list_bags(sources.root, source.path)
    _check_first_bag(bags[0], display(bags[0], sources.root), source, emb)
    return [
        EpisodeRef(source.name, index, str(p), display(p, sources.root))
        for index, p in zip(bag_ids(bags), bags, strict=True)
    ]


def _check_first_bag(bag: Location, rel: str, source: RobotSource, emb: Embodiment) -> None:
    topics = summary_topics(bag)
    if topics is None:
        return  # no summary, or it does not read: the bag is checked (or quarantined) when read
    found = _topic_problem(topics, source, emb)
    if found:
        raise ConfigError(f"{rel} (the first bag, opened at listing): {found[0]}")
    for what, parts, want in (
        ("state", source.keys.state, emb.state_dim),
        ("action", source.keys.action, emb.action_dim),
    ):
        widths = []
        for tf in _parts(parts):
            msg = first_message(bag, tf.topic)
            if msg is None:
                return
            try:
                widths.append(len(numbers(field_value(msg, tf.field), f"{tf.topic} {tf.field}")))
            except FieldError as e:
                raise ConfigError(f"{rel} (the first bag, opened at listing): {e} (keys.{what})") from None
        if sum(widths) != want:
            raise ConfigError(
                f"{rel} (the first bag, opened at listing): {_width_problem(what, parts, widths, want, emb)}"
            )


def _width_problem(what: str, parts, widths: list[int], want: int, emb: Embodiment) -> str:
    named = " + ".join(f"{tf.topic} {tf.field} ({w})" for tf, w in zip(_parts(parts), widths, strict=True))
    return f"{what} has {sum(widths)} columns ({named}), the embodiment spec {emb.name} says {want}"


@dataclass
class _Series:
    """One topic's messages in bag order: log times, and per field its values (numbers or texts)."""

    schema: str
    times: list[int] = field(default_factory=list)
    values: dict[str, list] = field(default_factory=dict)
    digest: hashlib.blake2b = field(default_factory=lambda: hashlib.blake2b(digest_size=16))
    joint_names: list[str] | None = None

    def order(self) -> np.ndarray:
        """Positions of the messages sorted by log time (ties kept in bag order)."""
        return np.argsort(np.asarray(self.times, np.int64), kind="stable")

    def sorted_times(self) -> np.ndarray:
        return np.asarray(self.times, np.int64)[self.order()]


class _Bag:
    """One episode's bag + the checks that turn what does not fit into a quarantine record naming it."""

    def __init__(self, ref: EpisodeRef, source: RobotSource, emb: Embodiment):
        self.ref, self.source, self.emb = ref, source, emb
        self.where = locate("/", ref.path)
        self.topics: dict[str, str] = {}  # every topic of the bag -> its schema name

    def bad(
        self, reason: str, field: str | None = None, frame: int | None = None, frames: int = 0
    ) -> BadRecord:
        ref = self.ref
        return BadRecord(
            QuarantineRecord(ref.dataset, ref.source_file, reason, ref.index, None, frame, field, frames)
        )

    def records(self):
        try:
            yield from read_records(self.where)
        except BagError as e:
            raise self.bad(str(e)) from None

    def scan(self) -> dict[str, _Series]:
        """First pass over the bag: the times of the topics read, the state/action/instruction fields
        (decoded and checked now), and a digest of every image topic's bytes. The bag reads to its end
        here, before any frame is made."""
        fields: dict[str, list[str]] = {}
        for tf in (*_parts(self.source.keys.state), *_parts(self.source.keys.action)):
            fields.setdefault(tf.topic, []).append(tf.field)
        text = self.source.keys.instruction if isinstance(self.source.keys.instruction, TopicField) else None
        series: dict[str, _Series] = {}
        for rec in self.records():
            self.topics.setdefault(rec.topic, rec.schema)
            image = is_image_type(rec.schema) or rec.topic in self.source.keys.cameras
            if not (image or rec.topic in fields or (text and rec.topic == text.topic)):
                continue
            s = series.setdefault(rec.topic, _Series(rec.schema))
            if rec.schema != s.schema:
                raise self.bad(f"topic {rec.topic} changes type from {s.schema} to {rec.schema}", rec.topic)
            s.times.append(rec.log_time)
            if image:
                if len(rec.data) > MAX_FRAME_BYTES:
                    raise self.bad(
                        f"{rec.topic} message at log time {rec.log_time} ns is {len(rec.data):,} bytes, above "
                        f"the cap of {MAX_FRAME_BYTES:,} per camera frame (sources/frames.py)",
                        rec.topic,
                    )
                s.digest.update(rec.data)
                continue
            try:
                self._values(s, rec, rec.decode(), fields.get(rec.topic, []), text)
            except BagError as e:
                raise self.bad(str(e), rec.topic) from None
        return series

    def _values(
        self, s: _Series, rec: Record, msg: object, paths: list[str], text: TopicField | None
    ) -> None:
        at = f"at log time {rec.log_time} ns"
        for path in paths:
            try:
                v = numbers(field_value(msg, path), f"{rec.topic} {path}")
            except FieldError as e:
                raise self.bad(
                    f"{e} ({at}; check `keys:` in the sources file)", f"{rec.topic}:{path}"
                ) from None
            got = s.values.setdefault(path, [])
            if got and len(v) != len(got[0]):
                raise self.bad(
                    f"{rec.topic} {path} holds {len(v)} values {at}, {len(got[0])} before: a topic with two "
                    "publishers, or a robot reconfigured mid-episode",
                    f"{rec.topic}:{path}",
                )
            got.append(v)
        if paths and type_name(rec.schema) == JOINT_STATE:
            names = list(msg.name)  # type: ignore[attr-defined]
            if s.joint_names is None:
                s.joint_names = names
            elif names != s.joint_names:
                raise self.bad(
                    f"{rec.topic} names joints {names} {at}, {s.joint_names} before: two publishers on one "
                    "topic, or reordered joints (record each joint set on its own topic)",
                    rec.topic,
                )
        if text and rec.topic == text.topic:
            try:
                s.values.setdefault(text.field, []).append(
                    message_text(field_value(msg, text.field), f"{rec.topic} {text.field}")
                )
            except FieldError as e:
                raise self.bad(f"{e} ({at}; keys.instruction)", f"{rec.topic}:{text.field}") from None


def read_episode(
    ref: EpisodeRef, source: RobotSource, emb: Embodiment, *, box: int | None = None
) -> Iterator[dict]:
    """Yield one frame record per frame of the bag sampled at `rate`. Raises BadRecord for a bag that cannot
    become frames: truncated or corrupted files, missing topics, wrong fields or widths, a gap, NaNs,
    images that do not decode or whose encoding has no rule. With `box`, JPEG frames decode `Shrunk`."""
    bag = _Bag(ref, source, emb)
    problem = _config_problem(source, emb)
    if problem:
        raise bag.bad(problem)
    series = bag.scan()
    found = _topic_problem(bag.topics, source, emb)  # a topic counts when it has messages
    if found:
        raise bag.bad(*found)
    cameras = _cameras(bag.topics, source, emb)
    try:
        al = align(
            {t: series[t].sorted_times() for t in _required(source)},
            float(source.rate or 0),
            MAX_EPISODE_FRAMES,
        )
    except TopicGap as e:
        raise bag.bad(str(e), e.topic, e.frame, e.frames) from None
    except ValueError as e:
        raise bag.bad(one_line(e)) from None
    n = len(al.times)
    state = _columns(bag, series, al, "state", source.keys.state, emb.state_dim)
    action = _columns(bag, series, al, "action", source.keys.action, emb.action_dim)
    tasks = _tasks(bag, series, al)
    digest = hashlib.blake2b(digest_size=16)
    digest.update(state.tobytes())
    digest.update(action.tobytes())
    for _, topic, _ in cameras:
        digest.update(series[topic].digest.digest())
    success = source.success if isinstance(source.success, bool) else None
    try:  # a constant or a path pattern: a bag has no per-episode field (refused at load)
        environment = environment_of(source.environment, ref, None)
    except FieldError as e:
        raise bag.bad(str(e), "environment") from None
    facts = EpisodeFacts(ref, source, emb, n, digest.hexdigest(), success, environment)
    yield from _frames(bag, series, cameras, al, facts, (state, action, tasks), box)


def _cameras(topics: dict[str, str], source: RobotSource, emb: Embodiment) -> list[tuple[str, str, str]]:
    """(slot, topic, channel order) per mapped camera, in slot order."""
    plan, _ = plan_cameras(sorted(t for t, k in topics.items() if is_image_type(k)), source, emb)
    return [(slot, plan.slots[slot], plan.orders[slot]) for slot in CAMERA_SLOTS if slot in plan.slots]


def _columns(bag: _Bag, series: dict[str, _Series], al: Alignment, what: str, parts, want: int) -> np.ndarray:
    """The aligned values of each part side by side: (frames, width) float64, checked for width and NaN."""
    cols = []
    for tf in _parts(parts):
        s = series[tf.topic]
        values, order = s.values[tf.field], s.order()
        cols.append(np.stack([values[order[p]] for p in al.picks[tf.topic]]).reshape(len(al.times), -1))
    data = np.concatenate(cols, axis=1)
    n = len(data)
    if data.shape[1] != want:
        raise bag.bad(_width_problem(what, parts, [c.shape[1] for c in cols], want, bag.emb), what, frames=n)
    bad_rows = np.flatnonzero(~np.isfinite(data).all(axis=1))
    if len(bad_rows):
        raise bag.bad(f"non-finite value (NaN or inf) in {what}", what, int(bad_rows[0]), n)
    return data


def _tasks(bag: _Bag, series: dict[str, _Series], al: Alignment) -> list[str | None]:
    tf, n = bag.source.keys.instruction, len(al.times)
    texts: list[str | None] = [None] * n
    s = series.get(tf.topic) if isinstance(tf, TopicField) else None
    if s is not None:
        given, order = s.values[tf.field], s.order()  # type: ignore[union-attr]
        texts = [given[order[j]] if j >= 0 else None for j in latest_at_or_before(s.sorted_times(), al.times)]
    tasks = tasks_in_force(texts, bag.source.task)
    if tasks is None:
        if not isinstance(tf, TopicField):
            missing = "the sources file names no instruction topic (`keys: {instruction: ...}`)"
        elif s is None:
            missing = f"the bag has no messages on {tf.topic} (keys.instruction)"
        else:
            missing = f"every {tf.topic} {tf.field} text is empty"
        raise bag.bad(no_task(missing), tf.topic if isinstance(tf, TopicField) else None, frames=n)
    return tasks


def _frames(bag: _Bag, series, cameras, al: Alignment, facts: EpisodeFacts, columns, box) -> Iterator[dict]:
    """Second pass: decode the camera messages the frames take (each once, however many frames take it)
    and yield each frame as soon as all its images are in (bag order is log-time order: a few at a time)."""
    state, action, tasks = columns
    n, rate = len(al.times), float(bag.source.rate or 0)
    slot_of = {topic: slot for slot, topic, _ in cameras}
    order_of = {slot: order for slot, _, order in cameras}
    # per slot, the bag position (among its topic's messages) of the message each frame takes
    need = {slot: series[topic].order()[al.picks[topic]] for slot, topic, _ in cameras}
    last_use = {slot: {int(k): i for i, k in enumerate(need[slot])} for slot in need}
    first_use = {slot: {int(k): i for i, k in reversed(list(enumerate(need[slot])))} for slot in need}
    seen = dict.fromkeys(slot_of, 0)
    ready: dict[str, dict[int, CameraImage]] = {slot: {} for slot in need}
    i = 0
    for rec in bag.records():
        slot = slot_of.get(rec.topic)
        if slot is None:
            continue
        k, seen[rec.topic] = seen[rec.topic], seen[rec.topic] + 1
        if k not in last_use[slot]:
            continue
        ready[slot][k] = _image(bag, rec, (slot, order_of[slot]), (first_use[slot][k], n), box)
        while i < n and all(int(need[s][i]) in ready[s] for s in need):
            images = {s: ready[s][int(need[s][i])] for s in need}
            yield frame_row(facts, i, state[i], action[i], i / rate, tasks[i], images)
            for s in need:
                if last_use[s][int(need[s][i])] == i:
                    del ready[s][int(need[s][i])]
            i += 1
    if i < n:
        raise bag.bad(f"the bag changed while it was read: {n - i} of {n} frames lack their images", frames=n)


def _image(
    bag: _Bag, rec: Record, camera: tuple[str, str], frame: tuple[int, int], box: int | None
) -> CameraImage:
    """The camera message `rec` as RGB pixels; one that does not decode quarantines the episode, naming
    the first frame that takes it."""
    (slot, channel_order), (i, n) = camera, frame
    try:
        msg = rec.decode()
        with stage("decode"):
            return to_rgb(image_pixels(msg, rec.schema, box), channel_order)
    except (BagError, ImageDecodeError) as e:
        reason = f"{rec.topic} at log time {rec.log_time} ns: {one_line(e)}"
        raise bag.bad(reason, f"image_{slot}", i, n) from None
