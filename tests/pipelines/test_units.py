"""Engine-free unit tests of the ingest core (pipelines/): every work unit on a tiny layout, in this
process: extract (robot, web), the annotation read, stats, tokenizers, build (robot, HL, web), spill and
shard group, resume, the index step's accounting and the gates' rows. The end-to-end ingests prove the
engines run the same units; these prove what the units do."""

from __future__ import annotations

import dataclasses
import io
import json
import shutil
import tarfile
import zlib

import numpy as np
import pyarrow.parquet as pq
import pytest
from units_kit import FRAMES, SPANS, build_in_process, extract_in_process, write_tiny_sources

from vlamix.pipelines.annotation_kind import AnnotationDataset
from vlamix.pipelines.datasets import kinds_of
from vlamix.pipelines.index_step import write_index_and_manifest
from vlamix.pipelines.options import IngestOptions
from vlamix.pipelines.robot_kind import RobotDataset, RobotOutcome
from vlamix.pipelines.web_kind import WebDataset
from vlamix.pipelines.web_tasks import ItemsExtract
from vlamix.pipelines.work_units import spill_unit
from vlamix.schemas.quarantine import BadRecord, QuarantineRecord
from vlamix.shards.members import npy_array
from vlamix.shards.workdir import WorkDir
from vlamix.sources.config import load_sources


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> IngestOptions:
    """The tiny layout extracted and built in this process (no engine), and its manifest written."""
    root = tmp_path_factory.mktemp("units")
    opts = IngestOptions(sources=write_tiny_sources(root), out=root / "out", samples_per_shard=8)
    sources = extract_in_process(opts)
    build_in_process(opts, sources)
    write_index_and_manifest(opts.work, sources)
    return opts


@pytest.fixture
def scratch(built, tmp_path) -> IngestOptions:
    """A copy of the built layout, for tests that plan or build again (planning clears what it replaces)."""
    shutil.copytree(built.store.local(), tmp_path / "out")
    return dataclasses.replace(built, out=tmp_path / "out")


def _kind(opts: IngestOptions, name: str):
    return next(k for k in kinds_of(load_sources(opts.sources)) if k.name == name)


def _units(opts: IngestOptions, name: str) -> list:
    return _kind(opts, name).extract_units(
        dataclasses.replace(opts, out=opts.store.local().parent / "scratch")
    )


# ---- extract ---------------------------------------------------------------------------------------


def test_an_episode_unit_writes_its_frames_and_says_so(built):
    unit = _units(built, "mm")[0]
    extraction = unit.extract("quarantine")
    (e,) = extraction.results
    assert (e.dataset, e.episode, e.frames, e.frames_path) == ("mm", 0, FRAMES, WorkDir.frames("mm", 0))
    assert extraction.counters == {"episodes_read": 1, "episodes_extracted": 1, "frames_read": FRAMES}
    assert unit.expected_frames is None  # an ALOHA listing does not open the episodes (progress: no total)
    table = pq.read_table(WorkDir.at(unit.out).store.local() / e.frames_path)
    assert table.num_rows == FRAMES and table.column("frame").to_pylist() == list(range(FRAMES))


def test_the_frame_gate_refuses_an_episode_with_a_nan_and_leaves_no_file(built):
    unit = _units(built, "mm")[1]
    extraction = unit.extract("quarantine")
    (q,) = extraction.quarantined
    assert not extraction.results and (q.episode, q.frame, q.source_file) == (1, 2, "eps/episode_1.hdf5")
    assert q.reason.startswith("quality gate: ") and q.frames == FRAMES
    assert extraction.counters["episodes_quarantined"] == 1
    assert not (WorkDir.at(unit.out).store.local() / WorkDir.frames("mm", 1)).exists()


def test_the_error_policy_quarantines_or_raises_an_unexpected_exception(built):
    good = _units(built, "mm")[0]
    broken = dataclasses.replace(good, source=dataclasses.replace(good.source, format="no_such_format"))
    (q,) = broken.extract("quarantine").quarantined
    assert q.reason.startswith("unexpected ") and q.episode == 0
    with pytest.raises(Exception) as raised:
        broken.extract("raise")
    assert not isinstance(raised.value, BadRecord)


def test_a_web_unit_writes_its_items_and_quarantines_the_undecodable_one(built):
    (unit,) = _units(built, "photos")
    assert isinstance(unit, ItemsExtract)
    extraction = unit.extract("quarantine")
    assert sorted(i.item for i in extraction.results) == [0, 1, 2, 4]
    (q,) = extraction.quarantined
    assert (q.item, q.field) == (3, "image") and "does not decode" in q.reason
    assert extraction.counters == {"items_read": 5, "items_quarantined": 1}
    assert unit.expected_frames == 5


# ---- driver-side outcomes ------------------------------------------------------------------------------


def test_robot_outcome_keeps_the_first_of_exact_duplicates(built):
    outcome = RobotOutcome.read(built.work, "mm")
    assert [e.episode for e in outcome.kept] == [0]
    assert [e.episode for e in outcome.duplicates] == [2]
    assert [q.episode for q in outcome.quarantined] == [1] and outcome.late == []


def test_annotation_lines_are_read_against_the_written_episodes(built):
    work = built.work
    spans = work.read_spans("mm_hl")
    assert [(s.text, s.start, s.end) for s in spans[0]] == [
        (t, round(a * 50), round(b * 50)) for t, a, b in SPANS
    ]
    reasons = sorted(q.reason for q in work.quarantined("mm_hl"))
    assert len(reasons) == 2 and any("quarantined" in r for r in reasons)  # the line on the refused episode
    assert work.span_lines_read("mm_hl") == 4


# ---- stats and tokenizers ----------------------------------------------------------------------------


def test_stats_cover_every_step_of_every_chunk_of_the_kept_episode(built):
    doc = built.store.read_json("stats/mm.json")
    emb = _kind(built, "mm").embodiment
    assert doc["frames"] == FRAMES and not doc["subsampled"]
    assert doc["actions"]["count"] == FRAMES * emb.chunk_horizon
    assert doc["state"]["count"] == FRAMES and len(doc["state"]["mean"]) == emb.state_dim


def test_the_tokenizer_set_is_recorded_and_knows_the_span_texts(built):
    from vlamix.tokenizers.tokenizer_set import load_tokenizer_set

    rec = built.work.tokenizer_set()
    tok = load_tokenizer_set(str(built.store.local() / rec["path"]))
    assert rec["path"].endswith(rec["sha256"])
    ids = tok.text.encode(SPANS[0][0]).ids  # a span text is one of the corpus' own: few tokens
    assert len(ids) <= 4


# ---- build ---------------------------------------------------------------------------------------------


def test_an_episode_build_places_typed_samples(scratch):
    (unit,) = RobotDataset(
        load_sources(scratch.sources), load_sources(scratch.sources).datasets[0]
    ).build_units(dataclasses.replace(scratch, fresh=True))
    placed = list(unit.samples())
    assert len(placed) == unit.extracted.samples == unit.expected_frames > 0
    assert all(0 <= shard < unit.shards for shard, _, _ in placed)
    _, _, s = placed[0]
    assert (s.kind, s.dataset, s.embodiment, s.episode) == ("MM", "mm", "mobile_aloha", 0)
    members = s.members()
    assert npy_array(members["actions.npy"]).shape == np.asarray(s.actions).shape
    assert json.loads(members["meta.json"])["key"] == s.key == members["__key__"]
    assert s.index_row()["input_tokens"] == len(s.input_ids)


def test_an_hl_build_targets_the_span_texts(scratch):
    sources = load_sources(scratch.sources)
    (unit,) = AnnotationDataset(sources, sources.annotations[0]).build_units(
        dataclasses.replace(scratch, fresh=True)
    )
    samples = [s for _, _, s in unit.samples()]
    assert {s.target for s in samples} == {t for t, _, _ in SPANS}
    assert all(s.kind == "HL" and s.dataset == "mm_hl" and "stack the cubes" in s.prompt for s in samples)
    assert len(samples) == sum(round(b * 50) - round(a * 50) for _, a, b in SPANS) == unit.expected_frames


def test_a_web_build_gives_one_sample_per_kept_item(scratch):
    sources = load_sources(scratch.sources)
    units = WebDataset(sources, sources.web[0]).build_units(dataclasses.replace(scratch, fresh=True))
    samples = [s for u in units for _, _, s in u.samples()]
    assert sorted(s.item for s in samples) == [0, 1, 2]  # 3 broke, 4 duplicates 0
    assert sum(u.expected_frames for u in units) == 3
    s = samples[0]
    assert s.kind == "WD" and s.record()["image_mask"] == [True, False, False, False]
    assert json.loads(s.members()["turns.json"])[0]["kind"] == "caption"


def test_shards_and_index_parts_agree_byte_for_byte(built):
    store = built.store.local()
    summaries = built.work.shard_summaries("mm")
    assert sum(s["samples"] for s in summaries) == RobotOutcome.read(built.work, "mm").kept[0].samples
    for n, summary in enumerate(summaries):
        tar_bytes = (store / summary["path"]).read_bytes()
        assert len(tar_bytes) == summary["bytes"]
        rows = pq.read_table(store / WorkDir.index_part("mm", n)).to_pylist()
        with tarfile.open(fileobj=io.BytesIO(tar_bytes)) as tar:
            keys = sorted({m.name.split(".", 1)[0] for m in tar.getmembers()})
        assert sorted(r["key"] for r in rows) == keys
        for r in rows:
            assert zlib.crc32(tar_bytes[r["offset"] : r["offset"] + r["length"]]) == r["crc32"]
    assert not (store / WorkDir.SPILL).exists() or not any((store / WorkDir.SPILL).rglob("*.arrow"))


def test_every_build_unit_leaves_its_progress_marker(built):
    """spill_unit (whatever the engine) leaves `work/progress/build/<dataset>-<unit>.json` with the
    samples it handed on and its seconds per stage: what the driver's progress poller counts; each shard
    merge leaves one too, marked as no unit, with its tar write time."""
    store = built.store
    markers = {rel: store.read_json(rel) for rel in store.glob(f"{WorkDir.progress('build')}/*.json")}
    marks = {rel: m["frames"] for rel, m in markers.items() if m.get("unit", True)}
    merges = [m for m in markers.values() if m.get("unit") is False]
    assert merges and all(m["stages"].get("tar write", 0) > 0 and m["seconds"] > 0 for m in merges)
    robot = markers[WorkDir.progress("build", "mm-mm-000000")]
    assert {"chain", "assembly", "spill", "frame parquet"} <= set(robot["stages"])
    assert sum(robot["stages"].values()) <= robot["seconds"]
    assert marks == {
        WorkDir.progress("build", "mm-mm-000000"): RobotOutcome.read(built.work, "mm").kept[0].samples,
        WorkDir.progress("build", "mm_hl-mm-000000"): 20,
        WorkDir.progress("build", "photos-000000"): 3,
    }


@dataclasses.dataclass(frozen=True)
class _Refused:
    """A build unit whose samples the gate refuses."""

    out: str
    dataset: str = "mm"
    unit: str = "mm-000009"

    def samples(self):
        raise BadRecord(QuarantineRecord("mm", "eps/x.hdf5", "quality gate: refused", 9, frames=5))
        yield


def test_a_refused_build_unit_spills_nothing_and_leaves_its_record(tmp_path):
    out = str(tmp_path / "out")
    assert spill_unit(out, _Refused(out)) == []
    assert WorkDir.at(out).store.read_json(WorkDir.progress("build", "mm-mm-000009"))["frames"] == 0
    (q,) = WorkDir.at(out).build_quarantined("mm")
    assert (q.episode, q.reason) == (9, "quality gate: refused")


def test_a_replan_resumes_from_the_finished_shards(scratch):
    robot = _kind(scratch, "mm")
    assert robot.build_units(scratch) == []  # the same plan with every shard finished: nothing to build
    shards = len(scratch.work.shard_summaries("mm"))
    assert shards == 3  # 24 samples, 8 per shard
    scratch.store.rm(WorkDir.shard_summary("mm", 1))  # as if a kill came before shard 1's summary
    (unit,) = robot.build_units(scratch)
    assert unit.skip == {0, 2} and not scratch.store.exists("shards/mm/mm-000001.tar")
    assert unit.expected_frames is None  # which samples fall on shard 1 is known once they are built
    (unit,) = robot.build_units(dataclasses.replace(scratch, seed=1))  # another plan starts over
    assert unit.skip == frozenset() and scratch.work.shard_summaries("mm") == []


# ---- index and gates ---------------------------------------------------------------------------------


def test_the_manifest_accounts_for_every_unit(built):
    manifest = built.store.read_json("manifest.json")
    mm = manifest["datasets"]["mm"]["accounting"]
    assert (mm["read"], mm["written"], mm["quarantined"], mm["duplicates"]) == (3, 1, 1, 1)
    assert mm["frames_read"] == 3 * FRAMES
    hl = manifest["datasets"]["mm_hl"]["accounting"]
    assert (hl["read"], hl["written"], hl["quarantined"]) == (4, 2, 2)
    web = manifest["datasets"]["photos"]["accounting"]
    assert (web["read"], web["written"], web["quarantined"], web["duplicates"]) == (5, 3, 1, 1)
    for name, entry in manifest["datasets"].items():
        assert entry["samples"] == sum(s["samples"] for s in entry["shards"]), name
        lines = (built.store.local() / entry["quarantine"]).read_text().splitlines()
        assert len(lines) == entry["accounting"]["quarantined"], name


def test_gate_rows_name_every_unit_and_whether_it_passed(built):
    work = built.work
    rows = {k.name: k.gate_rows(work) for k in kinds_of(load_sources(built.sources))}
    assert rows["mm_hl"] is None  # annotation lines have no row-level gate
    mm = dict(zip(rows["mm"]["id"], rows["mm"]["passed"], strict=True))
    assert mm == {"episode 0": True, "episode 2": True, "episode 1": False}
    assert rows["photos"]["passed"].all() and len(rows["photos"]) == 4  # undecodable is not a gate failure


def test_the_tokenizers_step_reads_no_frame_file(scratch):
    """Statistics, FAST-fit chunks and the frames' texts come from the stats step's one pass: with the
    frames gone, the tokenizers step fits the same set."""
    from vlamix.pipelines.fit_tokenizers import step_tokenizers

    before = scratch.work.tokenizer_set()
    shutil.rmtree(scratch.store.local() / WorkDir.frames("mm"))
    step_tokenizers(scratch, load_sources(scratch.sources))
    assert scratch.work.tokenizer_set() == before
