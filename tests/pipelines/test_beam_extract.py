"""The extract DoFn on Beam's TestPipeline: good episodes out the main output, bad ones out the dead letter."""

from __future__ import annotations

import apache_beam as beam
from apache_beam.testing import test_pipeline
from apache_beam.testing.util import assert_that, equal_to
from conftest import nan_at

from vlamix.pipelines.beam_jobs import QUARANTINE_TAG, ExtractEpisode
from vlamix.pipelines.steps import ExtractTask
from vlamix.sources.aloha_hdf5 import list_episodes
from vlamix.sources.config import load_sources


def test_dead_letter_output_gets_the_bad_episode(tmp_path, write_sources, make_aloha_episode):
    make_aloha_episode(tmp_path / "eps" / "episode_0.hdf5", frames=6)
    make_aloha_episode(tmp_path / "eps" / "episode_1.hdf5", frames=6, mutate=nan_at("action", 2))
    sources = load_sources(
        write_sources(
            tmp_path,
            "datasets:\n  - {name: mm, kind: MM, format: aloha_hdf5, path: eps, embodiment: mobile_aloha}\n",
        )
    )
    src = sources.datasets[0]
    tasks = [
        ExtractTask(ref, src, sources.embodiment(src), str(tmp_path / "out"))
        for ref in list_episodes(sources, src)
    ]
    with test_pipeline.TestPipeline() as p:
        res = (
            p
            | beam.Create(tasks)
            | beam.ParDo(ExtractEpisode()).with_outputs(QUARANTINE_TAG, main="extracted")
        )
        good = res.extracted | "Good" >> beam.Map(lambda e: (e.dataset, e.episode, e.frames, e.frames_path))
        bad = res[QUARANTINE_TAG] | "Bad" >> beam.Map(lambda q: (q.source_file, q.episode, q.frame, q.field))
        assert_that(good, equal_to([("mm", 0, 6, "work/frames/mm/000000.parquet")]), label="CheckGood")
        assert_that(bad, equal_to([("eps/episode_1.hdf5", 1, 2, "action")]), label="CheckBad")
    assert (tmp_path / "out" / "work/frames/mm/000000.parquet").is_file()
    assert not (tmp_path / "out" / "work/frames/mm/000001.parquet").exists()
