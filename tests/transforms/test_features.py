from __future__ import annotations

import numpy as np
import pytest

from vlamix.schemas.embodiment import load_embodiment, shipped_embodiments
from vlamix.transforms.chain import apply, build_chain
from vlamix.transforms.chunk import ChunkActions
from vlamix.transforms.features import ChainError, chain_features, check_chain, input_features, written
from vlamix.transforms.pad import PadDims
from vlamix.transforms.stats import compute_stats


class _UnusedSet:
    """A tokenizer set that is never asked for tokens: declaring fields needs none."""

    def __getattr__(self, name):
        raise AssertionError(f"the chain's fields were worked out with the set's {name}")


_NO_SET = _UnusedSet()


def _stats(n: int):
    return compute_stats(np.random.default_rng(n).normal(size=(20, n)))


@pytest.mark.parametrize("name", shipped_embodiments())
def test_every_shipped_chain_produces_the_sample_shapes(name):
    emb = load_embodiment(name)
    fields = check_chain(
        build_chain(emb, _stats(emb.state_dim), _stats(emb.action_dim), tokenizers=_NO_SET), emb
    )
    assert fields["actions"] == (50, 32) and fields["input_ids"] == ("n",)
    # ...and what it declares is what it does on data.
    chain = build_chain(emb, _stats(emb.state_dim), _stats(emb.action_dim))
    out = apply(
        chain,
        {
            "state": np.zeros(emb.state_dim),
            "episode_actions": np.zeros((9, emb.action_dim)),
            "frame": 3,
            "task": "t",
        },
    )
    declared = chain_features(chain, input_features(emb))
    for key in ("state", "actions", "action_is_pad", "state_dim_mask", "action_dim_mask"):
        assert np.asarray(out[key]).shape == declared[key]


def test_mismatched_statistics_and_missing_fields_fail_before_any_data():
    emb = load_embodiment("mobile_aloha")
    with pytest.raises(ChainError, match="state has 14 dims, the statistics 16"):
        check_chain(build_chain(emb, _stats(16), _stats(16)), emb)
    with pytest.raises(ChainError, match="PadDims needs field 'actions'"):
        chain_features([PadDims("actions", "mask", 32)], {"state": (14,)})
    with pytest.raises(ChainError, match="the sample schema needs"):
        check_chain([ChunkActions(50)], emb)


@pytest.mark.parametrize("name", shipped_embodiments())
def test_each_transform_names_the_fields_it_writes(name):
    """`written` (transforms/native.py derives the inverse chain from it) holds at least every field a
    transform adds or reshapes."""
    emb = load_embodiment(name)
    fields = input_features(emb)
    for t in build_chain(emb, _stats(emb.state_dim), _stats(emb.action_dim), tokenizers=_NO_SET):
        after = chain_features([t], fields)
        changed = {k for k, shape in after.items() if fields.get(k) != shape}
        assert changed <= set(written(t)), f"{t}: writes {written(t)}, changes {sorted(changed)}"
        fields = after
