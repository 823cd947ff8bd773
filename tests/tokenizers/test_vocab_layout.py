from __future__ import annotations

import itertools
import json

from vlamix.tokenizers.vocab import LAYOUT_FILE, VocabLayout, hash_tokenizer_dir, write_tokenizer_set


def test_ranges_are_disjoint_and_ordered():
    r = VocabLayout(text=1000, fast=1024).ranges()
    spans = [r[k] for k in ("specials", "text", "loc", "fast")]
    assert all(a[1] == b[0] for a, b in itertools.pairwise(spans))
    assert r["loc"][1] - r["loc"][0] == 1024


def test_set_folder_is_named_by_its_hash_and_stable(tmp_path):
    name, digest = write_tokenizer_set(tmp_path, VocabLayout())
    again, _ = write_tokenizer_set(tmp_path, VocabLayout())
    assert name == again == digest == hash_tokenizer_dir(tmp_path / name)
    other, _ = write_tokenizer_set(tmp_path, VocabLayout(text=10))
    assert other != name
    assert json.loads((tmp_path / name / LAYOUT_FILE).read_text())["ranges"]["text"] is None
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([name, other])  # no temp folders left
