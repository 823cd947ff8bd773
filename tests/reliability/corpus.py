"""The bad-input corpus: every case of every reader in one registry, and the writer of the mixed corpus
(all cases beside good episodes and items, one dataset per reader) that the end-to-end test ingests.

A case (corpus_kit.Case) names its reader, writes its input by breaking a good sample in one way, and
says what must happen: quarantined with a reason, field and frame (Quarantined), or written (Data: a
legitimate oddity). The cases live beside their writers: corpus_hdf5, corpus_lerobot, corpus_rlds,
corpus_web, corpus_annotations."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import corpus_annotations
import corpus_hdf5
import corpus_lerobot
import corpus_rlds
import corpus_web
from corpus_kit import Case, Format, Target

__all__ = [
    "ANNOTATION_READERS",
    "CASES",
    "DATASETS",
    "FORMATS",
    "ROBOT_READERS",
    "UNIT_TARGET",
    "WEB_READERS",
    "Corpus",
    "write_corpus",
    "write_single",
]

FORMATS: dict[str, Format] = {
    f.name: f
    for f in (
        corpus_hdf5.FORMAT,
        corpus_lerobot.FORMAT_V21,
        corpus_lerobot.FORMAT_V30,
        corpus_rlds.FORMAT,
        corpus_web.COCO,
        corpus_web.HF,
        corpus_annotations.HL,
        corpus_annotations.VI,
    )
}
ROBOT_READERS = ("aloha_hdf5", "lerobot_v21", "lerobot_v30", "rlds")
WEB_READERS = ("web_coco", "web_hf_parquet")
ANNOTATION_READERS = ("HL", "VI")
CASES: list[Case] = [
    *corpus_hdf5.CASES,
    *corpus_lerobot.CASES,
    *corpus_rlds.CASES,
    *corpus_web.CASES,
    *corpus_annotations.CASES,
]

# The mixed corpus: dataset name -> (reader, good episodes or items beside the cases)
DATASETS: dict[str, tuple[str, int]] = {
    "corpus_mm": ("aloha_hdf5", 2),
    "corpus_v21": ("lerobot_v21", 1),
    "corpus_v30": ("lerobot_v30", 1),
    "corpus_rlds": ("rlds", 1),
    "corpus_coco": ("web_coco", 2),
    "corpus_hf": ("web_hf_parquet", 2),
    "corpus_hl": ("HL", 0),  # one good line per written corpus_mm episode
    "corpus_vi": ("VI", 0),
}
ROBOT_OF_ANNOTATIONS = "corpus_mm"
# What annotation cases point at when tested alone: two written episodes of 10 frames at 50 Hz
UNIT_TARGET = Target(written=(0, 1), frames=corpus_hdf5.FRAMES, fps=corpus_hdf5.FPS, quarantined=2)


@dataclass(frozen=True)
class Corpus:
    sources: Path
    cases: dict[str, list[Case]]  # dataset -> its cases
    source_files: dict[str, dict[str, str]]  # dataset -> {case name or good_<k>: source_file}


def _rel(dataset: str, reader: str) -> str:
    return f"{dataset}.jsonl" if reader in ANNOTATION_READERS else dataset


def write_single(root: Path, case: Case) -> tuple[Path, str, str]:
    """One case alone in a dataset `ds` (annotations: over an empty robot dataset `robot`):
    (sources.yaml, the dataset's name, the source_file the case's record must carry)."""
    fmt = FORMATS[case.reader]
    rel = _rel("ds", case.reader)
    if case.reader in ANNOTATION_READERS:
        (root / "robot").mkdir(parents=True, exist_ok=True)
        files = fmt.write(root, rel, [case], 0, target=UNIT_TARGET, robot="robot")
        entries = [corpus_hdf5.FORMAT.entry("robot", "robot", None), fmt.entry("ds", rel, "robot")]
    else:
        files = fmt.write(root, rel, [case], 0)
        entries = [fmt.entry("ds", rel, None)]
    return _sources(root, entries), "ds", files[case.name]


def _sources(root: Path, entries: list[str]) -> Path:
    path = root / "sources.yaml"
    path.write_text("datasets:\n" + "".join(f"  - {e}\n" for e in entries))
    return path


def _target(root: Path, files: dict[str, str]) -> Target:
    """Where corpus_mm's good and quarantined episodes landed (episode indices follow file order)."""
    from vlamix.sources.aloha_hdf5 import list_episodes
    from vlamix.sources.config import load_sources

    sources = load_sources(_sources(root, [corpus_hdf5.FORMAT.entry(ROBOT_OF_ANNOTATIONS, "corpus_mm")]))
    index = {r.source_file: r.index for r in list_episodes(sources, sources.datasets[0])}
    written = tuple(index[files[n]] for n in sorted(files) if n.startswith("good_"))
    return Target(written, corpus_hdf5.FRAMES, corpus_hdf5.FPS, index[files["hdf5_nan_qpos"]])


def write_corpus(root: Path) -> Corpus:
    """Every case, one dataset per reader, beside good episodes and items: the sources.yaml to ingest."""
    cases = {d: [c for c in CASES if c.reader == reader] for d, (reader, _) in DATASETS.items()}
    files, entries, target = {}, [], None
    for dataset, (reader, goods) in DATASETS.items():
        fmt, rel = FORMATS[reader], _rel(dataset, reader)
        if reader in ANNOTATION_READERS:
            target = target or _target(root, files[ROBOT_OF_ANNOTATIONS])
            files[dataset] = fmt.write(
                root, rel, cases[dataset], goods, target=target, robot=ROBOT_OF_ANNOTATIONS
            )
        else:
            files[dataset] = fmt.write(root, rel, cases[dataset], goods)
        entries.append(fmt.entry(dataset, rel, ROBOT_OF_ANNOTATIONS))
    return Corpus(_sources(root, entries), cases, files)
