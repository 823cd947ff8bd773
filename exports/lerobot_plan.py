"""The plan of a LeRobot v3.0 export of one robot dataset, made before anything is written: the episodes in
export order with their global frame offsets, the tasks (and subtasks) with their indices, the cameras, and
the file groups. A file group is a run of whole episodes of about `frames_per_file` frames: one data
parquet, one mp4 per camera and one `meta/episodes/` parquet, all at the same chunk and file index. A group
is the unit of resuming: its files are renamed into place, then its marker is written.

The plan's fingerprint (every choice that changes a byte, and each episode's content hash) names the
staging folder, so a re-run of the same command resumes and a changed one starts afresh.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass

import pyarrow.compute as pc

from vlamix.exports.layout_source import ExportError, RobotData
from vlamix.exports.lerobot_language import LANGUAGE_FORMS, language_of
from vlamix.schemas.frame import image_column
from vlamix.schemas.outcome import ExtractedEpisode

__all__ = ["CHUNKS_SIZE", "ExportPlan", "Group", "camera_keys", "plan_export", "present_slots"]

CHUNKS_SIZE = 1000  # files per chunk folder, LeRobot's DEFAULT_CHUNK_SIZE
FRAMES_PER_FILE = 20_000  # ~100-200 MB of 224x224 video per camera per file


@dataclass(frozen=True)
class Group:
    number: int  # 0, 1, ... over the dataset
    first: int  # position of its first episode in the plan's episodes
    count: int  # episodes in it

    @property
    def chunk(self) -> int:
        return self.number // CHUNKS_SIZE

    @property
    def file(self) -> int:
        return self.number % CHUNKS_SIZE

    def rel(self, pattern: str, **kw) -> str:
        return pattern.format(chunk_index=self.chunk, file_index=self.file, **kw)


@dataclass(frozen=True)
class ExportPlan:
    dataset: str
    fps: int
    codec: str
    language: str
    gr00t: bool
    cameras: tuple[tuple[str, str], ...]  # (LeRobot video key, the layout's camera slot)
    tasks: tuple[str, ...]
    subtasks: tuple[str, ...]  # subtask-index form only
    starts: tuple[int, ...]  # per episode: its first frame's global `index`
    groups: tuple[Group, ...]
    hashes: tuple[str, ...]  # per episode: the layout's content hash

    @property
    def frames(self) -> int:
        return self.starts[-1]

    def fingerprint(self) -> str:
        return hashlib.blake2b(json.dumps(asdict(self), sort_keys=True).encode(), digest_size=8).hexdigest()


def camera_keys(data: RobotData, present: list[str]) -> tuple[tuple[str, str], ...]:
    """LeRobot video keys for the slots the frames hold: `observation.images.<the source's camera name>`
    (the embodiment's name for that slot), in the layout's slot order."""
    by_slot = {slot: native for native, slot in data.embodiment.cameras.items() if slot is not None}
    return tuple((f"observation.images.{by_slot.get(s, s)}", s) for s in present)


def present_slots(data: RobotData, ep: ExtractedEpisode, slots: list[str]) -> list[str]:
    table = data.frames(ep, columns=[image_column(s) for s in slots])
    present = []
    for s in slots:
        nulls = table.column(image_column(s)).null_count
        if 0 < nulls < table.num_rows:
            raise ExportError(
                f"{data.store.url_of(ep.frames_path)}: camera {s!r} is missing on {nulls} of {table.num_rows} "
                "frames; a video needs every frame (re-ingest: the extract writes a slot on all frames or none)"
            )
        if nulls == 0:
            present.append(s)
    return present


def plan_export(
    data: RobotData, codec: str, language: str, gr00t: bool, frames_per_file: int = FRAMES_PER_FILE
) -> ExportPlan:
    from vlamix.schemas.embodiment import CAMERA_SLOTS

    if language not in LANGUAGE_FORMS:
        raise ExportError(f"--language {language!r}: choose one of {', '.join(LANGUAGE_FORMS)}")
    episodes = data.episodes
    if not episodes:
        raise ExportError(f"{data.store.url}: {data.name!r} has no written episode to export")
    fps = data.embodiment.control_rate_hz
    if fps != int(fps):
        raise ExportError(f"{data.name}: LeRobot stores an integer fps; the embodiment's rate is {fps} Hz")
    if language == "subtask-index" and data.spans["VI"]:
        vi = ", ".join(k for k, v in data.annotators.items() if v == "VI")
        raise ExportError(
            f"{data.name}: --language subtask-index has no place for verbal instructions ({vi}); "
            "use --language columns (LeRobot 0.6+) or --language none"
        )
    slots = present_slots(data, episodes[0], list(CAMERA_SLOTS))
    tasks: dict[str, None] = {}
    subtasks: dict[str, None] = {}
    starts, total = [], 0
    has_language = False
    for ep in episodes:
        cols = data.frames(ep, columns=["task", "subtask", "verbal_instruction"])
        task = cols.column("task")
        if task.null_count:
            frame = pc.index(pc.is_null(task), True).as_py()
            raise ExportError(
                f"{data.store.url_of(ep.frames_path)}: frame {frame} has no task, and LeRobot needs one per frame; "
                f"give {data.name!r} a `task:` in the sources file and re-ingest"
            )
        tasks.update(dict.fromkeys(task.to_pylist()))
        spoken = (
            cols.column("subtask").null_count < ep.frames
            or cols.column("verbal_instruction").null_count < ep.frames
        )
        has_language = has_language or spoken or any(ep.episode in data.spans[k] for k in ("HL", "VI"))
        if language == "subtask-index":
            lang = language_of(
                ep.frames,
                data.spans["HL"].get(ep.episode, ()),
                (),
                cols.column("subtask").to_pylist(),
                [None] * ep.frames,
            )
            if None in lang.subtask:
                raise ExportError(
                    f"{data.store.url_of(ep.frames_path)}: frame {lang.subtask.index(None)} has no subtask, and "
                    "--language subtask-index needs one on every frame; use --language columns"
                )
            subtasks.update(dict.fromkeys(lang.subtask))
        starts.append(total)
        total += ep.frames
    groups, first, frames = [], 0, 0
    for i, ep in enumerate(episodes):
        frames += ep.frames
        if frames >= frames_per_file or i == len(episodes) - 1:
            groups.append(Group(len(groups), first, i + 1 - first))
            first, frames = i + 1, 0
    return ExportPlan(
        dataset=data.name,
        fps=int(fps),
        codec=codec,
        language=language if has_language else "none",  # no empty language columns: LeRobot < 0.6 reads it
        gr00t=gr00t,
        cameras=camera_keys(data, slots),
        tasks=tuple(tasks),
        subtasks=tuple(subtasks),
        starts=(*starts, total),
        groups=tuple(groups),
        hashes=tuple(e.episode_hash for e in episodes),
    )
