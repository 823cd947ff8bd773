"""The bundled ingest writes the bytes it wrote before the ingest core was redesigned (issue 19): the
manifest recorded then names every shard, index and statistics file by its sha256, with the accounting.
A change that alters the output on purpose re-records `data/bundled_manifest.json` in the same commit
(and says why)."""

from __future__ import annotations

import json
from pathlib import Path

from conftest import files_of

RECORDED = Path(__file__).parent / "data" / "bundled_manifest.json"


def test_bundled_ingest_matches_the_recorded_manifest(bundled):
    recorded = json.loads(RECORDED.read_text())
    now = json.loads((bundled / "manifest.json").read_text())
    assert files_of(now) == files_of(recorded)  # the shard, index and stats bytes, named one by one
    assert now == recorded  # and everything else: accounting, tokenizer set, versions
