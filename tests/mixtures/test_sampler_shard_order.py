"""The sampler's shard-aware order: each epoch of a dataset takes its shards `shard_block` at a time (all
rows of a block before the next block starts), covers every row exactly once, is seeded, and leaves the
mixture's shares alone; `shard_block=0` is the whole-dataset permutation (synthetic index rows)."""

from __future__ import annotations

import collections

import pyarrow as pa
import pytest

from vlamix.mixtures.resolve import Entry, Resolved
from vlamix.mixtures.sampler import MixtureSampler
from vlamix.mixtures.spec import Component, MixtureSpec

SIZES = {"a": (240, 0.7, 12), "b": (90, 0.3, 9)}  # rows, share, shards (rows dealt round-robin)


@pytest.fixture
def res() -> Resolved:
    entries = []
    for name, (n, share, shards) in SIZES.items():
        rows = pa.table(
            {
                "key": [f"{name}/{i:04d}" for i in range(n)],
                "shard": [f"{name}-{i % shards:06d}.tar" for i in range(n)],
                "offset": list(range(n)),
                "length": [1] * n,
            }
        )
        entries.append(Entry(name, "CE", "layout", None, share, share, rows))
    return Resolved(MixtureSpec("t", "pretrain", [Component(dataset="a")]), entries, {})


def _epochs(draws, name):
    by_epoch = collections.defaultdict(list)
    for d in draws:
        if d.dataset == name:
            by_epoch[d.epoch].append(d)
    return by_epoch


@pytest.mark.parametrize("block", [1, 3])
def test_an_epoch_goes_block_by_block_and_covers_every_row_once(res, block):
    draws = MixtureSampler(res, seed=4, shard_block=block).take(2000)
    for name, (n, _, shards) in SIZES.items():
        epochs = _epochs(draws, name)
        for epoch in sorted(epochs)[:-1]:  # the last one is cut by take()
            rows = epochs[epoch]
            assert sorted(d.key for d in rows) == [f"{name}/{i:04d}" for i in range(n)]
            # consecutive draws stay inside a block of `block` shards until it is used up
            size = block * n // shards
            assert all(len({d.shard for d in rows[i : i + size]}) == block for i in range(0, n, size))
        orders = [tuple(dict.fromkeys(d.shard for d in epochs[e])) for e in sorted(epochs)[:2]]
        assert orders[0] != orders[1]  # each epoch its own seeded shard order


def test_shares_and_determinism_do_not_depend_on_the_block(res):
    a = MixtureSampler(res, seed=9, shard_block=1).take(3000)
    b = MixtureSampler(res, seed=9, shard_block=0).take(3000)
    assert [d.dataset for d in a] == [d.dataset for d in b]  # the same datasets, draw by draw
    assert [d.key for d in a] != [d.key for d in b]  # another order of rows
    assert [d.key for d in a] == [d.key for d in MixtureSampler(res, seed=9, shard_block=1).take(3000)]
    shards_per_window = [
        len({d.shard for d in a[i : i + 50] if d.dataset == "a"}) for i in range(0, 3000, 50)
    ]
    blind = [len({d.shard for d in b[i : i + 50] if d.dataset == "a"}) for i in range(0, 3000, 50)]
    assert max(shards_per_window) <= 4 and min(blind) >= 8  # a few shards at a time (an epoch may end in a
    # window), against most of them


def test_a_state_of_another_block_is_refused(res):
    state = MixtureSampler(res, seed=1, shard_block=2).state_dict()
    with pytest.raises(ValueError, match="sampler state of another run"):
        MixtureSampler(res, seed=1, shard_block=1).load_state_dict(state)
    old = {k: v for k, v in state.items() if k != "shard_block"}  # from before the option: all rows at once
    MixtureSampler(res, seed=1, shard_block=0).load_state_dict(old)
    with pytest.raises(ValueError, match="shard_block"):
        MixtureSampler(res, seed=1, shard_block=-1)
