"""The bad-input corpus (tests/reliability/corpus.py) through the readers.

- Each case at the work-unit level: the per-episode / per-item-batch function both engines run
  (pipelines/work_units.py extract_task; for annotations the span reader the driver runs): bad input is
  quarantined with its reason, field and frame, and a record naming its file and episode, item or line;
  a legitimate oddity is written.
- The failure policy for exceptions that are not BadRecord (a reader bug), and the caps on decoded sizes.
- One real `vlamix ingest` over all cases mixed with good data: every case quarantined, everything else
  written, the accounting adds up; with the default --max-bad-share the gate fails the run, after the
  manifest, the quarantine and the reports are written.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from conftest import REPO, as_written
from corpus import (
    ANNOTATION_READERS,
    CASES,
    DATASETS,
    FORMATS,
    ROBOT_READERS,
    UNIT_TARGET,
    WEB_READERS,
    write_corpus,
    write_single,
)
from corpus_kit import Data

from vlamix.schemas.quarantine import BadRecord
from vlamix.shards.inspect import lint_layout
from vlamix.shards.store import Store
from vlamix.shards.workdir import WorkDir


def _extract(
    sources_path: Path, out: Path, dataset: str = "ds", policy: str = "quarantine"
) -> tuple[list, list, list[dict]]:
    """(extracted, quarantined, frame rows of the extracted episodes) of one dataset of a sources file,
    one work unit at a time, under the error policy given."""
    from vlamix.pipelines.robot_extract import EpisodeExtract
    from vlamix.pipelines.web_tasks import ItemsExtract
    from vlamix.sources.annotations_jsonl import EpisodeInfo, read_spans
    from vlamix.sources.config import load_sources
    from vlamix.sources.readers import reader_for
    from vlamix.sources.web import list_items

    sources = load_sources(sources_path)
    tasks = []
    for src in (s for s in sources.datasets if s.name == dataset):
        emb = sources.embodiment(src)
        tasks += [
            EpisodeExtract(r, src, emb, str(out)) for r in reader_for(src.format).list_episodes(sources, src)
        ]
    for w in (w for w in sources.web if w.name == dataset):
        tasks += [ItemsExtract(b) for b in list_items(sources, w, str(out))]
    results, bad = [], []
    for task in tasks:
        extraction = task.extract(policy)
        results += extraction.results
        bad += extraction.quarantined
    t = UNIT_TARGET
    infos = {e: EpisodeInfo(t.frames, t.fps, "written") for e in t.written}
    infos[t.quarantined] = EpisodeInfo(t.frames, t.fps, "quarantined: non-finite value (NaN or inf) in state")
    for a in (a for a in sources.annotations if a.name == dataset):
        spans, lines, _ = read_spans(sources, a, infos)
        results += spans
        bad += lines
    rows = [
        r
        for e in results
        if hasattr(e, "frames_path")
        for r in pq.read_table(out / e.frames_path).to_pylist()
    ]
    return results, bad, rows


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_each_case_at_the_work_unit_level(case, tmp_path):
    sources, dataset, source_file = write_single(tmp_path / "in", case)
    results, quarantined, rows = _extract(sources, tmp_path / "out", dataset)
    if isinstance(case.expect, Data):  # a legitimate oddity: data, written
        assert not quarantined, [q.describe() for q in quarantined]
        assert results and rows
        case.expect.check(rows)
        return
    mine = [q for q in quarantined if q.source_file == source_file]  # the record names the file
    assert len(mine) == 1, [q.describe() for q in quarantined]
    (q,) = mine
    assert re.search(case.expect.reason, q.reason), q.describe()
    assert (q.field, q.frame) == (case.expect.field, case.expect.frame), q.describe()
    assert q.dataset == dataset and not q.reason.startswith("unexpected ")
    if case.reader in ROBOT_READERS:  # ... and the record: the episode, the item, or the line
        assert q.episode == 0 and q.item is None
    elif case.reader in WEB_READERS:
        assert q.item is not None and q.episode is None
    else:
        assert re.fullmatch(r".+\.jsonl:\d+", q.source_file)
    if case.reader not in ANNOTATION_READERS:
        assert not results  # the case was alone in its dataset


def test_the_corpus_covers_every_reader_and_the_oddities():
    bad = [c for c in CASES if c.bad]
    assert len(bad) >= 30
    assert {c.reader for c in bad} == set(FORMATS)
    assert len({c.name for c in CASES}) == len(CASES)
    data = {c.name for c in CASES if not c.bad}
    assert {"data_single_frame", "data_camera_missing_here", "data_rlds_absent_wrist_camera"} <= data
    assert {"data_rlds_empty_instruction", "data_v21_empty_task"} <= data


def _good_hdf5(tmp_path: Path) -> Path:
    from corpus_hdf5 import FORMAT

    FORMAT.write(tmp_path, "eps", [], 1)
    return _sources_file(tmp_path, FORMAT.entry("ds", "eps", None))


def _sources_file(root: Path, *entries: str) -> Path:
    path = root / "sources.yaml"
    path.write_text("datasets:\n" + "".join(f"  - {e}\n" for e in entries))
    return path


def test_an_unexpected_exception_quarantines_its_episode_unless_debug(tmp_path, monkeypatch):
    import vlamix.sources.aloha_hdf5 as aloha

    def bug(*args, **kwargs):
        raise KeyError("image_base_9")

    monkeypatch.setattr(aloha, "frame_row", bug)  # a reader bug, deep inside one episode
    sources = _good_hdf5(tmp_path)
    results, quarantined, _ = _extract(sources, tmp_path / "out")
    (q,) = quarantined
    assert not results and (q.source_file, q.episode) == ("eps/good_0.hdf5", 0)
    assert q.reason == (
        "unexpected KeyError: 'image_base_9' (a reader bug? re-run with --debug for the traceback)"
    )
    assert not list((tmp_path / "out").rglob("*.parquet"))  # nothing half-written is left
    with pytest.raises(KeyError, match="image_base_9"):  # `vlamix --debug`
        _extract(sources, tmp_path / "out", policy="raise")


def test_an_unexpected_exception_quarantines_its_item_alone_unless_debug(tmp_path, monkeypatch):
    from corpus_web import COCO

    import vlamix.sources.web as web

    files = COCO.write(tmp_path, "web", [], 3)
    real = web.decode_jpeg
    second = (tmp_path / "web" / "images" / "good_1.jpg").read_bytes()

    def flaky(data: bytes):
        if data == second:
            raise ZeroDivisionError("division by zero")
        return real(data)

    monkeypatch.setattr(web, "decode_jpeg", flaky)
    sources = _sources_file(tmp_path, COCO.entry("ds", "web", None))
    results, quarantined, _ = _extract(sources, tmp_path / "out")
    (q,) = quarantined
    assert (q.source_file, q.item) == (files["good_1"], 1) and len(results) == 2
    assert q.reason.startswith("unexpected ZeroDivisionError: division by zero (a reader bug?")
    with pytest.raises(ZeroDivisionError):
        _extract(sources, tmp_path / "out", policy="raise")


def test_video_frames_and_parquet_sizes_are_capped_before_decoding(tmp_path, monkeypatch):
    """The caps hold for any input: lowered here, a normal 32x32 video and a small parquet are refused
    from their headers, before anything is decoded."""
    from corpus_lerobot import FORMAT_V30

    import vlamix.schemas.image_codec as image
    import vlamix.sources.frames as frames
    from vlamix.sources.config import load_sources
    from vlamix.sources.lerobot import _info, list_episodes, read_episode

    FORMAT_V30.write(tmp_path, "ds", [], 1)
    _info.cache_clear()
    sources = load_sources(_sources_file(tmp_path, FORMAT_V30.entry("ds", "ds", None)))
    src = sources.datasets[0]
    (ref,) = list_episodes(sources, src)

    def refused(match: str) -> BadRecord:
        with pytest.raises(BadRecord, match=match) as info:
            as_written(read_episode(ref, src, sources.embodiment(src)))
        return info.value

    monkeypatch.setattr(image, "MAX_IMAGE_PIXELS", 1000)
    bad = refused(r"video file-000\.mp4 of 32x32 pixels \(0\.0 MP\), above the cap")
    assert bad.record.field == "observation.images.top"
    monkeypatch.setattr(frames, "MAX_READ_BYTES", 100)
    refused(r"data/chunk-000/file-000\.parquet declares [\d,]+ bytes uncompressed, above the cap of 100")


def _ingest(sources: Path, out: Path, *extra: str) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "vlamix.cli", "ingest", "--sources", str(sources), "--out", str(out)]
    return subprocess.run([*cmd, "--workers", "1", *extra], capture_output=True, text=True, cwd=REPO)


def _check_dataset(out: Path, manifest: dict, dataset: str, cases: list, files: dict[str, str]) -> None:
    acc = manifest["datasets"][dataset]["accounting"]
    assert acc["read"] == acc["written"] + acc["quarantined"] + acc["duplicates"], acc
    if "frames_read" in acc:  # robot and annotation datasets (web items have turns, not frames)
        parts = ("written", "quarantined", "duplicates", "filtered")
        assert acc["frames_read"] == sum(acc[f"frames_{p}"] for p in parts), acc
    lines = [json.loads(x) for x in (out / "quarantine" / f"{dataset}.jsonl").read_text().splitlines()]
    by_file = {q["source_file"]: q for q in lines}
    for case in (c for c in cases if c.bad):
        q = by_file.get(files[case.name])
        assert q is not None, f"{dataset}: {case.name} ({files[case.name]}) is not in the quarantine"
        assert re.search(case.expect.reason, q["reason"]), (case.name, q)
        assert (q.get("field"), q.get("frame")) == (case.expect.field, case.expect.frame), (case.name, q)
    good = [n for n in files if n.startswith("good_")] + [c.name for c in cases if not c.bad]
    assert (acc["quarantined"], acc["written"], acc["duplicates"]) == (len(lines), len(good), 0), acc
    assert len(lines) == sum(c.bad for c in cases), [q["reason"] for q in lines]
    if DATASETS[dataset][0] in ROBOT_READERS:  # the episodes written are the good ones, by file
        extracted = (out / WorkDir.outcomes("extracted", dataset)).read_text().splitlines()
        assert {json.loads(x)["source_file"] for x in extracted} == {files[n] for n in good}


@pytest.mark.slow
def test_one_ingest_quarantines_every_case_and_writes_the_rest(tmp_path):
    corpus = write_corpus(tmp_path / "corpus")
    out = tmp_path / "out"
    done = _ingest(corpus.sources, out, "--max-bad-share", "1")
    assert done.returncode == 0, done.stderr[-3000:]
    manifest = json.loads((out / "manifest.json").read_text())
    assert set(manifest["datasets"]) == set(corpus.cases)
    for dataset, cases in corpus.cases.items():
        _check_dataset(out, manifest, dataset, cases, corpus.source_files[dataset])
    assert lint_layout(Store(out)) == []  # `inspect --lint` proves the accounting from the files alone

    # The default share: corpus_mm's gated episode is 1 of 5 rows and corpus_coco's item 1 of 3, above 10%.
    # The gate fails the run with one line, after the manifest, quarantine and reports are written.
    for stale in ("manifest.json", "quarantine", "reports", "README.md"):
        path = out / stale
        shutil.rmtree(path) if path.is_dir() else path.unlink()
    failed = _ingest(corpus.sources, out, "--only", "index")
    assert failed.returncode == 1, failed.stderr[-3000:]
    (line,) = [x for x in failed.stderr.splitlines() if x.startswith("error: ")]  # log lines aside
    assert line.startswith("error: quality gate failed: ") and "corpus_mm: 1 of 5 rows failed" in line
    assert "corpus_coco: 1 of 3 rows failed" in line and "Traceback" not in failed.stderr
    again = json.loads((out / "manifest.json").read_text())
    assert again["datasets"] == manifest["datasets"]
    for kept in ("quarantine/corpus_mm.jsonl", "reports/ingest.json", "reports/quality/index.html"):
        assert (out / kept).is_file(), kept
    quality = json.loads((out / "reports" / "ingest.json").read_text())["quality"]
    assert quality["corpus_mm"]["success"] is False and quality["corpus_rlds"]["success"] is True
