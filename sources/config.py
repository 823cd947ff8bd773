"""The sources file (docs/design.md §9): which datasets an ingest reads, in which format, as which embodiment."""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar, Literal

from vlamix.config import ConfigError, from_mapping, load_yaml
from vlamix.schemas.embodiment import CAMERA_SLOTS, SHIPPED_DIR, Embodiment, load_embodiment
from vlamix.sources.environment import EnvironmentField, check_environment
from vlamix.sources.location import Location, glob_files, has_glob, is_file, locate

__all__ = [
    "AnnotationSource",
    "CameraKey",
    "RobotKeys",
    "RobotSource",
    "SourcesFile",
    "SuccessRule",
    "TopicField",
    "WebAnnotations",
    "WebSource",
    "load_sources",
    "locations",
    "resolve_files",
]

_NAME = re.compile(r"^[a-z0-9_]+$")
ROBOT_FORMATS = ("aloha_hdf5", "hdf5", "lerobot", "mcap", "rlds", "zarr")


@dataclass(frozen=True)
class CameraKey:
    """A native camera's slot, with how its frames were logged: `channel_order: bgr` for frames stored
    blue-first (OpenCV-based loggers); they are flipped to RGB on read."""

    slot: str | None
    channel_order: Literal["rgb", "bgr"] = "rgb"

    def check(self) -> None:
        _check_slot(self.slot)


def _check_slot(slot: str | None) -> None:
    """A mistyped slot would drop its camera silently (no reader fills an unknown slot)."""
    if slot is not None and slot not in CAMERA_SLOTS:
        close = difflib.get_close_matches(slot, CAMERA_SLOTS, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ValueError(f"camera slot {slot!r} is not a slot{hint}; slots are {list(CAMERA_SLOTS)} or null")


@dataclass(frozen=True)
class TopicField:
    """A field of the messages on one topic of a ROS 2 bag (format: mcap): `field` is a dotted path in the
    message (`position`, `pose.position`); a list or array field gives several dims, a number one."""

    topic: str
    field: str


@dataclass(frozen=True)
class RobotKeys:
    """Native names, where a dataset does not use its format's defaults. Per format: HDF5 dataset paths
    (aloha_hdf5, hdf5), RLDS feature names, LeRobot features (or meta/modality.json part names), Zarr
    array keys, or `{topic, field}` of a ROS 2 bag (mcap)."""

    state: str | list[str] | TopicField | list[TopicField] | None = None
    action: str | list[str] | TopicField | list[TopicField] | None = None
    instruction: str | TopicField | None = None
    timestamp: str | None = None  # hdf5: a dataset of per-step times in seconds, checked against the rate
    # native camera name -> slot (null drops it), or {slot, channel_order}
    cameras: dict[str, str | CameraKey | None] = field(default_factory=dict)
    # RLDS: a per-episode feature holding the episode's own id (e.g. episode_metadata/episode_id), read
    # from every record at listing; by default an episode's id is its record's position
    episode_id: str | None = None

    def check(self) -> None:
        for key in self.cameras.values():
            _check_slot(key if not isinstance(key, CameraKey) else key.slot)


REDUCE_RULES = ("last", "any", "all", "first")


@dataclass(frozen=True)
class SuccessRule:
    """Episode success from a per-frame (or per-episode) field, reduced over the episode's steps: `last`
    (the default: LeRobot's `next.success` and RLDS's `steps/reward` are true at the last step only),
    `any`, `all` or `first`."""

    field: str
    reduce: Literal["last", "any", "all", "first"] = "last"


@dataclass(frozen=True)
class RobotSource:
    name: str
    kind: Literal["MM", "ME", "CE"]
    format: str
    path: str
    embodiment: str
    task: str | None = None
    split: Literal["train", "val", "test"] | None = None
    success: bool | str | SuccessRule | None = None  # a constant, a field name, or {field, reduce}
    stride: int = 1
    idle_filter: float | None = None  # drop frames whose action moves less than this (max over dims)
    normalization: Literal["quantile", "zscore"] = "quantile"
    val_fraction: float = 0.1  # for seeded splits, when the source has none of its own
    license: str | None = None
    citation: str | None = None
    keys: RobotKeys = field(default_factory=RobotKeys)
    rate: float | None = None  # mcap: the control rate frames are sampled at (Hz)
    episodes: Literal["file", "group"] = "file"  # hdf5: one episode per file, or per group under a group
    episode_group: str = "data"  # hdf5 with `episodes: group`: the group holding them (robomimic's data/)
    # where each episode was recorded (docs/design.md §24): a constant, {field: NAME} or a path pattern
    environment: str | EnvironmentField | None = None

    def check(self) -> None:
        if not _NAME.match(self.name):
            raise ValueError(f"dataset name {self.name!r} must match [a-z0-9_]+")
        if self.format not in ROBOT_FORMATS:
            close = difflib.get_close_matches(self.format, ROBOT_FORMATS, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ValueError(
                f"unknown format {self.format!r} for a {self.kind} dataset{hint}; known: {list(ROBOT_FORMATS)}"
            )
        if self.stride < 1:
            raise ValueError(f"stride must be >= 1, got {self.stride}")
        if self.keys.episode_id is not None and self.format != "rlds":
            raise ValueError(
                f"keys.episode_id is for rlds datasets; {self.format} episodes carry their own id already"
            )
        if not 0.0 <= self.val_fraction < 1.0:
            raise ValueError(f"val_fraction must be in [0, 1), got {self.val_fraction}")
        check_environment(self.environment, self.format)
        self._check_format_keys()

    def _check_format_keys(self) -> None:
        """What each format needs in `keys:` and which options are its own (a mistake is refused here,
        not read as something else)."""
        fmt, keys = self.format, self.keys
        topics = [k for k in (keys.state, keys.action, keys.instruction) if _has_topic(k)]
        if fmt == "mcap":
            if self.rate is None or not self.rate > 0:
                raise ValueError("format mcap needs `rate: HZ` (frames are sampled at the control rate)")
            for what in ("state", "action"):
                value = getattr(keys, what)
                if value is None or not _all_topics(value):
                    raise ValueError(
                        f"format mcap needs `keys: {{{what}: {{topic: ..., field: ...}}}}` (or a list of them)"
                    )
            if keys.instruction is not None and not isinstance(keys.instruction, TopicField):
                raise ValueError("format mcap: `keys: {instruction: {topic: ..., field: ...}}`")
            if keys.timestamp is not None:
                raise ValueError("format mcap takes times from the messages; `keys.timestamp` is for hdf5")
        else:
            if topics:
                raise ValueError(f"`{{topic, field}}` keys are for format mcap, not {fmt}")
            if self.rate is not None:
                raise ValueError(
                    f"`rate:` is for format mcap; a {fmt} dataset's rate is its embodiment's control_rate_hz"
                )
        if fmt in ("hdf5", "zarr") and not (keys.state and keys.action):
            raise ValueError(
                f"format {fmt} needs `keys: {{state: ..., action: ...}}` (its {'dataset paths' if fmt == 'hdf5' else 'array keys'})"
            )
        if fmt == "zarr" and not isinstance(keys.action, str):
            raise ValueError("format zarr: `keys: {action: KEY}` names one array")
        if keys.timestamp is not None and fmt != "hdf5":
            raise ValueError(f"keys.timestamp is for format hdf5; {fmt} has its own time base")
        if fmt != "hdf5" and (self.episodes != "file" or self.episode_group != "data"):
            raise ValueError("`episodes:` and `episode_group:` are for format hdf5")


def _has_topic(value: object) -> bool:
    return isinstance(value, TopicField) or (
        isinstance(value, list) and any(isinstance(v, TopicField) for v in value)
    )


def _all_topics(value: object) -> bool:
    return isinstance(value, TopicField) or (
        isinstance(value, list) and bool(value) and all(isinstance(v, TopicField) for v in value)
    )


@dataclass(frozen=True)
class AnnotationSource:
    """HL (subtask spans) or VI (verbal instructions) over the episodes of a robot dataset (docs/design.md §7)."""

    name: str
    kind: Literal["HL", "VI"]
    format: Literal["annotations_jsonl"]
    path: str
    dataset: str  # the robot dataset (a `name` in this file) the annotations point into
    stride: int = 1
    units: Literal["seconds", "frames"] = "seconds"  # what start/end/time count; a line may say its own
    license: str | None = None
    citation: str | None = None

    def check(self) -> None:
        if not _NAME.match(self.name):
            raise ValueError(f"dataset name {self.name!r} must match [a-z0-9_]+")
        if self.stride < 1:
            raise ValueError(f"stride must be >= 1, got {self.stride}")


@dataclass(frozen=True)
class WebAnnotations:
    """One annotation file set over a web dataset's images: COCO captions or boxes, or VQAv2."""

    format: Literal["coco_captions", "coco_detection", "vqav2"]
    path: str | None = None  # coco_*: the COCO JSON
    questions: str | None = None  # vqav2
    answers: str | None = None  # vqav2

    def check(self) -> None:
        if self.format == "vqav2" and not (self.questions and self.answers):
            raise ValueError("vqav2 needs `questions:` and `answers:` files")
        if self.format != "vqav2" and not self.path:
            raise ValueError(f"{self.format} needs `path:` (the COCO JSON)")


@dataclass(frozen=True)
class WebSource:
    """Web data (docs/design.md §9): COCO-style images + annotation files merged by image id, or a Hugging
    Face parquet with an image column and text columns."""

    name: str
    kind: Literal["WD"]
    images: str | None = None
    annotations: list[WebAnnotations] = field(default_factory=list)
    format: Literal["coco", "hf_parquet", "llava_json"] = "coco"
    # hf_parquet: a file, folder or glob of parquet files; llava_json: the conversations JSON (with `images:`)
    path: str | None = None
    # hf_parquet: `image` (default "image") and caption, question + answer, or all three (each gives turns)
    columns: dict[str, str] = field(default_factory=dict)
    split: Literal["train", "val", "test"] = "train"
    license: str | None = None
    citation: str | None = None
    # hf_parquet: `points` ([{x, y}] or [[x, y]] in pixels) with `label` or `question` gives pointing turns
    COLUMNS: ClassVar[tuple[str, ...]] = ("image", "caption", "question", "answer", "points", "label")

    def check(self) -> None:
        if not _NAME.match(self.name):
            raise ValueError(f"dataset name {self.name!r} must match [a-z0-9_]+")
        if self.format == "coco" and not (self.images and self.annotations):
            raise ValueError("a COCO-style web dataset needs `images:` and `annotations:`")
        if self.format == "hf_parquet" and not self.path:
            raise ValueError("format hf_parquet needs `path:`")
        if self.format == "llava_json":
            if not (self.path and self.images):
                raise ValueError(
                    "format llava_json needs `path:` (the conversations JSON) and `images:` (their folder)"
                )
            if self.annotations or self.columns:
                raise ValueError(
                    "format llava_json reads `path:` + `images:`; `annotations:`/`columns:` are for coco/hf_parquet"
                )
            return
        if self.format == "coco" and (self.columns or self.path):
            raise ValueError(
                "`columns:` and `path:` are for format hf_parquet; COCO reads `images:` + `annotations:`"
            )
        if self.format == "hf_parquet" and (self.images or self.annotations):
            raise ValueError(
                "`images:` and `annotations:` are for COCO; format hf_parquet reads `path:` + `columns:`"
            )
        unknown = sorted(set(self.columns) - set(self.COLUMNS))
        if unknown:
            hints = [difflib.get_close_matches(k, self.COLUMNS, n=1) for k in unknown]
            hint = "".join(
                f" (did you mean {h[0]!r} for {k!r}?)" for k, h in zip(unknown, hints, strict=True) if h
            )
            raise ValueError(f"unknown `columns:` keys {unknown}{hint}; known: {', '.join(self.COLUMNS)}")
        if self.format != "hf_parquet":
            return
        pointing = "points" in self.columns
        if pointing:
            self._check_pointing()
        elif "label" in self.columns:
            raise ValueError(
                f"`columns:` maps label ({self.columns['label']!r}) but not points: a label names what a "
                "pointing turn's points point at; add `points: <column>`"
            )
        for key, pair in (("question", "answer"), ("answer", "question")):
            if key in self.columns and pair not in self.columns and not pointing:
                raise ValueError(
                    f"`columns:` maps {key} ({self.columns[key]!r}) but not {pair}: a VQA turn needs both; "
                    f"add `{pair}: <column>`"
                )
        if not {"caption", "question", "points"} & set(self.columns):
            raise ValueError(
                "`columns:` maps no text column: map `caption: <column>`, or `question:` and `answer:`, or "
                f"`points:` with `label:` or `question:`, or several (have {dict(self.columns)})"
            )

    def _check_pointing(self) -> None:
        """`points` with `label` (prompt "point to {label}") or `question` (the prompt itself), not both;
        with `points`, `question` is the pointing prompt, so an `answer` column would be ambiguous."""
        prompts = [k for k in ("label", "question") if k in self.columns]
        if len(prompts) != 1:
            raise ValueError(
                f"`columns:` maps points ({self.columns['points']!r}) with "
                + ("neither label nor question" if not prompts else "both label and question")
                + ": a pointing turn's prompt comes from exactly one of them (`label: <column>` for "
                '"point to {label}", or `question: <column>`)'
            )
        if "answer" in self.columns:
            raise ValueError(
                "`columns:` maps points and answer: with points, `question:` is the pointing prompt and the "
                "points are its answer; put VQA columns in a second dataset entry over the same files"
            )


@dataclass(frozen=True)
class SourcesFile:
    path: Path
    datasets: list[RobotSource]
    annotations: list[AnnotationSource] = field(default_factory=list)
    web: list[WebSource] = field(default_factory=list)
    # dataset name -> why its configuration fails (its embodiment spec); only with load_sources(strict=False)
    problems: dict[str, str] = field(default_factory=dict)

    def robot(self, name: str) -> RobotSource:
        return next(s for s in self.datasets if s.name == name)

    @property
    def root(self) -> Path:
        return self.path.parent

    def embodiment_path(self, source: RobotSource) -> Path:
        """The spec file: a shipped one by name, or a YAML path relative to the sources file."""
        spec = Path(source.embodiment)
        if spec.suffix in (".yaml", ".yml"):
            return spec if spec.is_absolute() else self.root / spec
        return SHIPPED_DIR / f"{source.embodiment}.yaml"

    def embodiment(self, source: RobotSource) -> Embodiment:
        if not self.embodiment_path(source).is_file() and Path(source.embodiment).suffix not in (
            ".yaml",
            ".yml",
        ):
            return load_embodiment(source.embodiment)  # raises with the list of shipped specs
        return load_embodiment(self.embodiment_path(source))


def load_sources(path: str | Path, strict: bool = True) -> SourcesFile:
    """Load and validate a sources file; every error names the file and the entry. A dataset whose
    embodiment spec does not load is an error, or with `strict=False` a problem of that dataset alone
    (`SourcesFile.problems`): the ingest records it as failed and builds the others."""
    path = Path(path).resolve()
    data = load_yaml(path)
    if not isinstance(data, dict) or not isinstance(data.get("datasets"), list):
        raise ConfigError(f"{path}: expected a mapping with a `datasets:` list")
    extra = set(data) - {"datasets"}
    if extra:
        raise ConfigError(f"{path}: unknown top-level keys {sorted(extra)}; only `datasets:` is allowed")
    sources: list[RobotSource] = []
    annotations: list[AnnotationSource] = []
    web: list[WebSource] = []
    names: set[str] = set()
    for i, entry in enumerate(data["datasets"]):
        where = f"{path}: datasets[{i}]"
        kind = entry.get("kind") if isinstance(entry, dict) else None
        label = f"{where} ({entry.get('name', '?') if isinstance(entry, dict) else '?'})"
        src: RobotSource | AnnotationSource | WebSource
        if kind in ("MM", "ME", "CE"):
            src = from_mapping(RobotSource, entry, label)
            sources.append(src)
        elif kind in ("HL", "VI"):
            src = from_mapping(AnnotationSource, entry, label)
            annotations.append(src)
        elif kind == "WD":
            src = from_mapping(WebSource, entry, label)
            web.append(src)
        else:
            raise ConfigError(
                f"{where}: kind {kind!r} is not supported by this version of vlamix (MM, ME, CE, HL, VI, WD are)"
            )
        if src.name in names:
            raise ConfigError(f"{where}: dataset name {src.name!r} appears twice")
        names.add(src.name)
    robots = sorted(s.name for s in sources)
    for a in annotations:
        if a.dataset not in robots:
            hint = difflib.get_close_matches(a.dataset, robots, n=1)
            raise ConfigError(
                f"{path}: {a.kind} dataset {a.name!r} points into {a.dataset!r}, which is not a robot dataset of this file"
                + (f" (did you mean {hint[0]!r}?)" if hint else "")
            )
    out = SourcesFile(path, sources, annotations, web)
    for src in [*sources, *annotations, *web]:  # a refused URL fails the whole file, before any job
        for spec in locations(src):
            try:
                locate(out.root, spec)
            except ValueError as e:  # UnsupportedURL, OfflineHub: one line that never echoes a secret
                raise ConfigError(f"{path}: dataset {src.name!r}: {e}") from e
    for src in sources:  # fail before any job starts, not in a worker
        try:
            out.embodiment(src)
        except ConfigError as e:
            if strict:
                raise ConfigError(f"{path}: dataset {src.name!r}: {e}") from e
            out.problems[src.name] = str(e)
    return out


def locations(src: RobotSource | AnnotationSource | WebSource) -> list[str]:
    """Every file, folder or glob a dataset entry names: local paths and URLs (sources/location.py)."""
    if isinstance(src, WebSource):
        specs = [src.path, src.images]
        specs += [s for a in src.annotations for s in (a.path, a.questions, a.answers)]
        return [s for s in specs if s]
    return [src.path]


def _natural(p: Path) -> list:
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", p.name)]


def _natural_path(p: Path) -> list:
    return [_natural(Path(part)) for part in p.parts]


def _single_file(base: Location, suffixes: tuple[str, ...]) -> bool:
    """`base` names one file. Over HTTP a folder answers as a page too, so there a name is a file
    when it has one of the suffixes (and no trailing slash)."""
    if str(base).startswith(("http://", "https://")):
        return not str(base).endswith("/") and (not suffixes or base.suffix in suffixes)
    return is_file(base)


def resolve_files(root: Path, spec: str, suffixes: tuple[str, ...]) -> list[Location]:
    """A file, a folder (its files with these suffixes) or a glob, relative to `root` or at a URL
    (sources/location.py); natural order (episode_2 before episode_10), so episode indices are stable."""
    base = locate(root, spec)
    if not has_glob(spec) and _single_file(base, suffixes):
        return [base]
    if has_glob(spec):
        files = glob_files(base)
    else:
        files = [p for p in glob_files(base, "*") if not suffixes or p.suffix in suffixes]
    if not files:
        raise ConfigError(f"{spec!r} (under {root}) matches no {'/'.join(suffixes)} files")
    # natural order of the whole relative path, the raw path breaking ties (episode_0 / episode_00):
    # the same files list in the same order on every filesystem
    return sorted(files, key=lambda p: (_natural_path(p), str(p)))
