"""The tokenizer set as a job's processes get it: from the folder or URL a task carries, once per process."""

from __future__ import annotations

import numpy as np
import pytest
from servers import http_server

from vlamix.pipelines.tokenizer_cache import tokenizer_set_at
from vlamix.tokenizers.fast import FastTokenizer
from vlamix.tokenizers.text import train_text_tokenizer
from vlamix.tokenizers.tokenizer_set import TokenizerSet
from vlamix.tokenizers.vocab import VocabLayout


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    fast = FastTokenizer.fit(
        [np.random.default_rng(0).uniform(-1, 1, (50, 10, 3))], scale=10.0, vocab_size=300
    )
    text = train_text_tokenizer(["pick up the cup", "a cat on a mat"])
    parent = tmp_path_factory.mktemp("site") / "tokenizers"
    name, _ = TokenizerSet(text, fast, VocabLayout(text=text.get_vocab_size(), fast=fast.vocab_size)).save(
        parent
    )
    return parent / name


def test_a_local_set_is_loaded_once_per_process(saved):
    tokset = tokenizer_set_at(str(saved))
    assert tokenizer_set_at(str(saved)) is tokset
    assert tokenizer_set_at(f"file://{saved}").encode_sample("a cat", None, None) == tokset.encode_sample(
        "a cat", None, None
    )


def test_a_remote_set_is_fetched_into_the_cache_and_verified(saved, tmp_path, monkeypatch):
    monkeypatch.setenv("VLAMIX_CACHE", str(tmp_path / "cache"))
    with http_server(saved.parents[1]) as base:
        tokset = tokenizer_set_at(f"{base}/tokenizers/{saved.name}")
    assert (tmp_path / "cache" / "tokenizers" / saved.name / "text.json").is_file()
    assert tokset.encode_sample("a cat", None, None) == tokenizer_set_at(str(saved)).encode_sample(
        "a cat", None, None
    )
