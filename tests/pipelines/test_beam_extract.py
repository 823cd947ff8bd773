"""The extract DoFn on Beam's TestPipeline: good episodes out the main output, bad ones out the dead letter."""

from __future__ import annotations

import apache_beam as beam
from apache_beam.testing import test_pipeline
from apache_beam.testing.util import assert_that, equal_to
from conftest import nan_at

from vlamix.pipelines.beam_jobs import QUARANTINE_TAG, ExtractUnits
from vlamix.pipelines.robot_extract import EpisodeExtract
from vlamix.shards.workdir import WorkDir
from vlamix.sources.aloha_hdf5 import list_episodes
from vlamix.sources.config import load_sources


def test_dead_letter_output_gets_the_bad_episode(tmp_path, write_sources, make_aloha_episode):
    make_aloha_episode(tmp_path / "eps" / "episode_0.hdf5", frames=6)
    make_aloha_episode(tmp_path / "eps" / "episode_1.hdf5", frames=6, mutate=nan_at("action", 2))
    sources = load_sources(
        write_sources(
            tmp_path,
            "datasets:\n  - {name: mm, kind: MM, format: aloha_hdf5, path: eps, embodiment: mobile_aloha, task: stack the cubes}\n",
        )
    )
    src = sources.datasets[0]
    tasks = [
        EpisodeExtract(ref, src, sources.embodiment(src), str(tmp_path / "out"))
        for ref in list_episodes(sources, src)
    ]
    with test_pipeline.TestPipeline() as p:
        res = (
            p
            | beam.Create(tasks)
            | beam.ParDo(ExtractUnits("quarantine")).with_outputs(QUARANTINE_TAG, main="extracted")
        )
        good = res.extracted | "Good" >> beam.Map(lambda e: (e.dataset, e.episode, e.frames, e.frames_path))
        bad = res[QUARANTINE_TAG] | "Bad" >> beam.Map(lambda q: (q.source_file, q.episode, q.frame, q.field))
        assert_that(good, equal_to([("mm", 0, 6, WorkDir.frames("mm", 0))]), label="CheckGood")
        assert_that(bad, equal_to([("eps/episode_1.hdf5", 1, 2, "action")]), label="CheckBad")
    assert (tmp_path / "out" / WorkDir.frames("mm", 0)).is_file()
    assert not (tmp_path / "out" / WorkDir.frames("mm", 1)).exists()


def test_counters_match_the_outcome_files(tmp_path, write_sources, make_aloha_episode):
    from apache_beam.metrics.metric import MetricsFilter

    from vlamix.pipelines.beam_jobs import beam_options, run_extract
    from vlamix.pipelines.beam_jobs import counters as counters_of

    make_aloha_episode(tmp_path / "eps" / "episode_0.hdf5", frames=5)
    make_aloha_episode(tmp_path / "eps" / "episode_1.hdf5", frames=7, seed=3)
    (tmp_path / "eps" / "episode_2.hdf5").write_bytes(b"garbage")
    sources = load_sources(
        write_sources(
            tmp_path,
            "datasets:\n  - {name: mm, kind: MM, format: aloha_hdf5, path: eps, embodiment: mobile_aloha, task: stack the cubes}\n",
        )
    )
    src = sources.datasets[0]
    out = str(tmp_path / "out")
    tasks = [EpisodeExtract(ref, src, sources.embodiment(src), out) for ref in list_episodes(sources, src)]
    result = run_extract(tasks, out, beam_options(1, []))
    counters = {
        m.key.metric.name: m.committed
        for m in result.metrics().query(MetricsFilter().with_namespace("vlamix.mm"))["counters"]
    }
    assert counters_of(result) == {"mm": counters}  # what the ingest saves to reports/ingest.json
    extracted = (tmp_path / "out" / WorkDir.outcomes("extracted", "mm")).read_text().splitlines()
    quarantined = (tmp_path / "out" / WorkDir.outcomes("quarantined", "mm")).read_text().splitlines()
    assert counters["episodes_read"] == 3 == len(extracted) + len(quarantined)
    assert counters["episodes_extracted"] == len(extracted) == 2
    assert counters["episodes_quarantined"] == len(quarantined) == 1
    assert counters["frames_read"] == 12
