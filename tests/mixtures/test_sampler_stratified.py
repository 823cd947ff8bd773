"""Stratified batches: every block of B draws is within one draw of each entry's share, long-run shares
are exact, and the once-per-epoch and resume guarantees still hold (synthetic index rows, no layout)."""

from __future__ import annotations

import collections

import pyarrow as pa
import pytest

from vlamix.mixtures.resolve import Entry, Resolved
from vlamix.mixtures.sampler import MixtureSampler
from vlamix.mixtures.spec import Component, MixtureSpec

B = 20
SIZES = {"a": (7, 0.5), "b": (100, 0.3), "c": (3, 0.15), "d": (50, 0.05)}


@pytest.fixture
def res() -> Resolved:
    entries = []
    for name, (n, share) in SIZES.items():
        rows = pa.table(
            {
                "key": [f"{name}/{i:04d}" for i in range(n)],
                "shard": ["s.tar"] * n,
                "offset": list(range(n)),
                "length": [1] * n,
            }
        )
        entries.append(Entry(name, "CE", "layout", None, share, share, rows))
    return Resolved(MixtureSpec("t", "pretrain", [Component(dataset="a")]), entries, {})


def test_each_block_holds_the_shares(res):
    s = MixtureSampler(res, seed=1, stratified=B)
    draws = s.take(2000)
    blocks: dict[int, collections.Counter] = collections.defaultdict(collections.Counter)
    for d in draws:
        blocks[s._stratified_block(d.step)][d.dataset] += 1
    for k, counts in list(blocks.items())[:-1]:  # the last block may be cut by take()
        for name, (_, share) in SIZES.items():
            assert abs(counts[name] - B * share) <= 1, (k, counts)
    total = collections.Counter(d.dataset for d in draws)
    assert {k: v / 2000 for k, v in total.items()} == {k: v for k, (_, v) in SIZES.items()}
    assert (
        collections.Counter(d.dataset for d in MixtureSampler(res, seed=1).take(2000)) != total
    )  # i.i.d. differs


def test_stratified_readers_cover_each_epoch_once_and_resume(res):
    readers = [MixtureSampler(res, seed=2, rank=r, world=3, stratified=B) for r in range(3)]
    draws = [d for r in readers for d in r.take(700)]
    assert sorted(d.step for d in draws) == list(range(2100))
    for name, (n, _) in SIZES.items():
        epoch0 = [d.key for d in draws if d.dataset == name and d.epoch == 0]
        assert sorted(epoch0) == [f"{name}/{i:04d}" for i in range(n)]
    first = MixtureSampler(res, seed=2, stratified=B)
    head = first.take(333)
    again = MixtureSampler(res, seed=2, stratified=B)
    again.load_state_dict(first.state_dict())
    assert head + again.take(100) == MixtureSampler(res, seed=2, stratified=B).take(433)
    with pytest.raises(ValueError, match="another run"):
        MixtureSampler(res, seed=2).load_state_dict(
            first.state_dict()
        )  # i.i.d. cannot resume a stratified run
