"""A tokenizer set targeting a backbone's vocabulary (tokenizers/backbone.py): text and `<loc>` ids are
the backbone's own, our missing specials and FAST ids come after its whole embedding table, so no string
and no location can produce them, at the real PaliGemma size too (openpi maps FAST onto the tail of the
text vocabulary, which at a 2048-token vocabulary lands on `<loc>`)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from backbone_snapshot import tiny_snapshot, tiny_tokenizer

from vlamix.tokenizers.backbone import BackboneVocab, read_backbone_vocab
from vlamix.tokenizers.fast import FastTokenizer
from vlamix.tokenizers.tokenizer_set import TokenizerSet, load_tokenizer_set
from vlamix.tokenizers.vocab import LAYOUT_FILE, VocabLayout


def _overlap(a: list[int], b: list[int]) -> bool:
    return a[0] < b[1] and b[0] < a[1]


@pytest.mark.parametrize("rows", [257_152, 257_216])  # the tokenizer's size; the 3B config's table
def test_the_ranges_are_disjoint_at_the_real_paligemma_size(rows):
    gemma = {"<pad>": 0, "<eos>": 1, "<bos>": 2, "<unk>": 3, "<sep>": 108}
    if rows > 257_152:
        gemma["<image>"] = 257_152
    b = BackboneVocab("paligemma-3b-pt-224", rows, "0" * 64, 256_000, gemma)
    layout = VocabLayout(text=257_152, fast=1024, backbone=b)
    r, ids = layout.ranges(), layout.special_ids()
    assert r["text"] == [0, rows] and r["loc"] == [256_000, 257_024]
    assert r["fast"][0] >= rows and r["fast"][1] - r["fast"][0] == 1024
    for name in ("text", "loc", "specials"):
        assert not _overlap(r["fast"], r[name]), name
    assert not _overlap(r["specials"], r["text"]) and r["specials"][1] == r["fast"][0]
    assert len(set(ids.values())) == len(ids) == 8  # every special its own id
    assert {i for name, i in ids.items() if name not in gemma} == set(range(*r["specials"]))
    assert {k: ids[k] for k in gemma} == gemma  # the backbone's own where it has them
    assert max(span[1] for span in r.values()) == rows + (8 - len(gemma)) + 1024


@pytest.fixture(scope="module")
def snapshot(tmp_path_factory):
    return tiny_snapshot(tmp_path_factory.mktemp("snapshot"))


@pytest.fixture(scope="module")
def tokset(snapshot) -> TokenizerSet:
    text, target = read_backbone_vocab(snapshot)
    rng = np.random.default_rng(0)
    fast = FastTokenizer.fit([rng.uniform(-1, 1, (200, 10, 7))], scale=10.0, vocab_size=300)
    layout = VocabLayout(text=text.get_vocab_size(), fast=fast.vocab_size, backbone=target)
    return TokenizerSet(text, fast, layout)


def test_the_snapshot_is_read_as_its_own_vocabulary(snapshot, tokset):
    tok, b = tiny_tokenizer(), tokset.layout.backbone
    config = json.loads((snapshot / "config.json").read_text())
    assert b.vocab == config["text_config"]["vocab_size"] > tok.get_vocab_size()  # the padded table
    assert b.loc_start == tok.token_to_id("<loc0000>")
    assert b.specials["<sep>"] == tok.encode("\n", add_special_tokens=False).ids[0]
    for name in ("<pad>", "<eos>", "<bos>", "<unk>", "<image>"):
        assert tokset.special(name) == tok.token_to_id(name)
    # ids as the backbone's own tokenizer gives them (its <bos> is ours to place, not its post-processor's)
    text = "pick up <loc0012><loc1023> the cube\nAction: 5 12"
    assert tokset.text_ids(text) == tok.encode(text, add_special_tokens=False).ids


def test_no_string_reaches_a_fast_id_or_an_appended_special(tokset):
    r = tokset.ranges
    rng = np.random.default_rng(1)
    alphabet = [*"abcxyz <>/\n0123456789,.;:!?é中🤖", "<loc0001>", "<action>", "<fast>", "<seg003>"]
    texts = ["".join(rng.choice(alphabet, size=int(rng.integers(1, 40)))) for _ in range(300)]
    ids = {i for t in texts for i in tokset.text_ids(t)}
    assert ids and max(ids) < r["text"][1] <= r["specials"][0] < r["fast"][0]
    chunk = rng.uniform(-1, 1, (1, 10, 7))
    fast = tokset.fast_ids(tokset.fast.encode(chunk)[0])
    seq, _ = tokset.encode_sample("Task: pick up, State: 3;\nAction: ", "grasp <loc0100><loc0200>", fast)
    assert seq[0] == tokset.special("<bos>") and seq[-1] == tokset.special("<eos>")
    assert all(r["fast"][0] <= i < r["fast"][1] for i in fast)
    tail = f"grasp <loc0100><loc0200>\n<action><fast x{len(fast)}><end_of_action><eos>"
    assert tokset.decode(seq).endswith(tail)


def test_the_set_saves_and_loads_with_its_target(tokset, tmp_path):
    name, _ = tokset.save(tmp_path)
    loaded = load_tokenizer_set(tmp_path / name)
    assert loaded.layout == tokset.layout and loaded.ranges == tokset.ranges
    saved = json.loads((tmp_path / name / LAYOUT_FILE).read_text())
    assert saved["version"] == 2 and saved["backbone"]["vocab"] == tokset.layout.backbone.vocab
    assert saved["special_ids"]["<action>"] == tokset.special("<action>")
    own = json.loads(VocabLayout(text=1000, fast=1024).to_json())  # our own vocabulary: as before
    assert own["version"] == 1 and "backbone" not in own and "special_ids" not in own


def test_a_folder_that_is_not_a_paligemma_snapshot_is_refused(tmp_path):
    with pytest.raises(FileNotFoundError, match="no tokenizer.json: --backbone takes"):
        read_backbone_vocab(tmp_path)
    tok = tiny_tokenizer()
    data = json.loads(tok.to_str())
    data["added_tokens"] = [t for t in data["added_tokens"] if not t["content"].startswith("<loc")]
    (tmp_path / "tokenizer.json").write_text(json.dumps(data))
    with pytest.raises(ValueError, match="no consecutive <loc0000> .. <loc1023>"):
        read_backbone_vocab(tmp_path)
    tok.save(str(tmp_path / "tokenizer.json"))  # the tokenizer alone: the table's size is unknown
    with pytest.raises(FileNotFoundError, match="no config.json: the backbone's embedding table size"):
        read_backbone_vocab(tmp_path)
