from __future__ import annotations

import itertools
import json

import numpy as np
import pytest

from vlamix.tokenizers.fast import FastTokenizer
from vlamix.tokenizers.text import train_text_tokenizer
from vlamix.tokenizers.tokenizer_set import FAST_DIR, TEXT_FILE, TokenizerSet, load_tokenizer_set
from vlamix.tokenizers.vocab import LAYOUT_FILE, VocabLayout


@pytest.fixture(scope="module")
def tokset() -> TokenizerSet:
    rng = np.random.default_rng(0)
    fast = FastTokenizer.fit(
        [rng.uniform(-1, 1, (200, 10, 7)), rng.uniform(-1, 1, (100, 5, 3))], scale=10.0, vocab_size=512
    )
    text = train_text_tokenizer(["pick up the cup", "a cat on a mat", "what color is the cup?"])
    return TokenizerSet(text, fast, VocabLayout(text=text.get_vocab_size(), fast=fast.vocab_size))


def test_ranges_are_disjoint_and_cover_every_id(tokset):
    r = tokset.ranges
    spans = sorted(v for v in r.values())
    assert spans[0][0] == 0 and all(a[1] == b[0] for a, b in itertools.pairwise(spans))
    assert r["loc"][1] - r["loc"][0] == 1024
    assert (
        r["fast"][0] >= r["loc"][1]
    )  # openpi maps FAST into the vocab tail, onto the <loc> ids; we never do


def test_sample_sequence_and_loss_mask(tokset):
    chunk = np.random.default_rng(1).uniform(-1, 1, (1, 10, 7))
    fast = tokset.fast_ids(tokset.fast.encode(chunk)[0])
    ids, mask = tokset.encode_sample("Task: pick up the cup, State: 1 2;\nAction: ", "pick up the cup", fast)
    r = tokset.ranges
    assert ids[0] == tokset.special("<bos>") and ids[-1] == tokset.special("<eos>")
    first_loss = mask.index(True)
    assert not any(mask[:first_loss]) and all(mask[first_loss:])
    assert ids[first_loss - 1] == tokset.special("<sep>")
    target = ids[first_loss : ids.index(tokset.special("<action>"))]
    text_part = [i - r["text"][0] for i in target if r["text"][0] <= i < r["text"][1]]
    assert tokset.text.decode(text_part) == "pick up the cup"
    got_fast = ids[ids.index(tokset.special("<action>")) + 1 : ids.index(tokset.special("<end_of_action>"))]
    assert got_fast == fast and all(r["fast"][0] <= i < r["fast"][1] for i in fast)
    back, ok = tokset.fast.decode([[i - r["fast"][0] for i in got_fast]], 10, 7)
    assert ok[0] and np.abs(back - chunk).max() <= 0.5 * np.sqrt(10) / 10.0


def test_location_tokens_become_location_ids(tokset):
    ids, _mask = tokset.encode_sample("detect cup", "<loc0010><loc0020><loc0500><loc1023> cup", None)
    r = tokset.ranges
    locs = [i - r["loc"][0] for i in ids if r["loc"][0] <= i < r["loc"][1]]
    assert locs == [10, 20, 500, 1023]
    assert tokset.special("<action>") not in ids


def test_save_load_and_hash(tokset, tmp_path):
    name, digest = tokset.save(tmp_path)
    assert (
        name == digest
        and (tmp_path / name / TEXT_FILE).is_file()
        and (tmp_path / name / FAST_DIR / "fast.json").is_file()
    )
    again, _ = tokset.save(tmp_path)
    assert again == name
    loaded = load_tokenizer_set(str(tmp_path / name))
    assert loaded.encode_sample("a cat", None, None) == tokset.encode_sample("a cat", None, None)
    layout = json.loads((tmp_path / name / LAYOUT_FILE).read_text())
    layout["text"] += 1
    (tmp_path / name / LAYOUT_FILE).write_text(json.dumps(layout))
    with pytest.raises(ValueError, match="does not match the tokenizers beside it"):
        load_tokenizer_set(str(tmp_path / name))


def test_a_set_is_loaded_from_a_local_folder_only(tokset, tmp_path):
    """No hidden cache and no network: a URL is refused (its fetch belongs to whoever holds the
    layout's store), and every load reads the folder as it is now."""
    with pytest.raises(ValueError, match=r"https://example\.org/tokenizers/abc: .* reads a local folder"):
        load_tokenizer_set("https://example.org/tokenizers/abc")
    name, _ = tokset.save(tmp_path)
    assert load_tokenizer_set(tmp_path / name) is not load_tokenizer_set(f"file://{tmp_path / name}")


def test_fast_encode_and_decode_transforms_invert(tokset):
    from vlamix.transforms.tokenize import FastEncode, TokenizeSample

    chunk = np.random.default_rng(3).uniform(-1, 1, (10, 7)).astype(np.float32)
    padded = np.zeros((50, 32), np.float32)
    padded[:10, :7] = chunk
    enc = FastEncode(tokset, 10, 7)
    out = enc({"actions": padded, "key": "d/000001/000002"})
    back = enc.inverse()(out)
    assert back["fast_valid"] and np.abs(back["actions"] - chunk).max() <= 0.5 * np.sqrt(10) / 10.0
    assert padded[0, 0] == chunk[0, 0]  # untouched input
    toks = TokenizeSample(tokset)({"prompt": "a cat", "target": None, "fast_ids": out["fast_ids"]})
    assert len(toks["input_ids"]) == len(toks["loss_mask"]) and set(out["fast_ids"]) <= set(toks["input_ids"])
    with pytest.raises(ValueError, match=r"d/000001/000002: .*outside the fitted range"):
        enc({"actions": padded * 9, "key": "d/000001/000002"})


def test_decode_gives_back_the_sequence_as_text(tokset):
    chunk = np.random.default_rng(2).uniform(-1, 1, (1, 10, 7))
    fast = tokset.fast_ids(tokset.fast.encode(chunk)[0])
    ids, mask = tokset.encode_sample("what color is the cup?", "a cup <loc0012><loc1023> on a mat", fast)
    prompt = tokset.decode([i for i, m in zip(ids, mask, strict=True) if not m])
    targets = tokset.decode([i for i, m in zip(ids, mask, strict=True) if m])
    assert prompt == "<bos>what color is the cup?<sep>"
    assert targets == f"a cup <loc0012><loc1023> on a mat<sep><action><fast x{len(fast)}><end_of_action><eos>"
    assert tokset.decode([10**7]) == "<out of range 10000000>"


def test_a_batch_encodes_as_one_chunk_at_a_time_and_names_the_first_refused_chunk(tmp_path):
    """encode_actions_batch (the build's one call per episode) gives each chunk's encode_actions ids; a
    chunk outside the fitted range is named by its key and its position is kept."""
    import numpy as np
    import pytest

    from vlamix.tokenizers.fast import FastRangeError, FastTokenizer
    from vlamix.tokenizers.text import train_text_tokenizer
    from vlamix.tokenizers.tokenizer_set import TokenizerSet
    from vlamix.tokenizers.vocab import VocabLayout
    from vlamix.transforms.chain import apply, apply_batch
    from vlamix.transforms.tokenize import FastEncode

    rng = np.random.default_rng(0)
    chunks = np.cumsum(rng.normal(0, 0.05, (40, 10, 3)), axis=1).astype(np.float32)
    fast = FastTokenizer.fit(chunks, vocab_size=200)
    text = train_text_tokenizer(["pick up the cube", "open the drawer"])
    layout = VocabLayout(
        text=text.get_vocab_size(), fast=fast.vocab_size, components={"text": "t", "fast": "f"}
    )
    tokset = TokenizerSet(text, fast, layout)
    names = [f"k{i}" for i in range(len(chunks))]
    assert tokset.encode_actions_batch(chunks, names) == [
        tokset.encode_actions(c, n) for c, n in zip(chunks, names, strict=True)
    ]
    chain = [FastEncode(tokset, 10, 3)]
    samples = [{"actions": c, "key": n} for c, n in zip(chunks, names, strict=True)]
    assert [s["fast_ids"] for s in apply_batch(chain, samples)] == [
        apply(chain, s)["fast_ids"] for s in samples
    ]
    bad = chunks.copy()
    bad[7] *= 1000.0
    with pytest.raises(FastRangeError, match="^k7: ") as info:
        tokset.encode_actions_batch(bad, names)
    assert info.value.first == 7
