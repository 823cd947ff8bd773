"""The typed accessors every reader takes values through (sources/fields.py): each converts by its rule
or refuses with a reason, never by `str()` and never into zeros."""

from __future__ import annotations

import numpy as np
import pytest

from vlamix.sources.fields import (
    FieldError,
    numeric_matrix,
    per_step_text,
    scalar_text,
    text_list,
    vqa_answer,
)


@pytest.mark.parametrize(
    "value",
    [
        "pick up the red cup",
        b"pick up the red cup",
        np.bytes_(b"pick up the red cup"),
        np.array([b"pick up the red cup"]),
        np.array(b"pick up the red cup"),
        [b"pick up  the red cup"] * 3,
        np.array(["pick up the red cup"] * 4, dtype=object),
    ],
)
def test_one_text_in_every_form(value):
    assert scalar_text(value, "instruction") == "pick up the red cup"


@pytest.mark.parametrize("value", [None, float("nan"), "", "   ", np.array([], dtype=object)])
def test_null_and_empty_are_no_text(value):
    assert scalar_text(value, "caption") is None


@pytest.mark.parametrize("value", [7, 3.5, True, {"text": "a"}, [b"a", 5]])
def test_non_text_is_refused_naming_the_field(value):
    with pytest.raises(FieldError, match="caption"):
        scalar_text(value, "caption")


def test_different_texts_where_one_is_expected_are_refused():
    with pytest.raises(FieldError, match="2 different texts"):
        scalar_text(["open the drawer", "close the drawer"], "task")


def test_not_utf8_is_refused():
    with pytest.raises(FieldError, match="not UTF-8"):
        scalar_text(b"caf\xe9", "task")


def test_a_list_of_captions_is_each_caption():
    assert text_list(["a dog", None, "", "a  brown dog"], "caption") == ["a dog", "a brown dog"]
    assert text_list("one caption", "caption") == ["one caption"]
    assert text_list(None, "caption") == []
    with pytest.raises(FieldError, match=r"caption\[1\]"):
        text_list(["a dog", 5], "caption")


def test_per_step_text_keeps_changes_and_spreads_one_text():
    assert per_step_text(np.array([b"go"]), 3, "task") == ["go", "go", "go"]
    assert per_step_text([b"open", b"open", b"close"], 3, "task") == ["open", "open", "close"]
    assert per_step_text("go", 2, "task") == ["go", "go"]
    with pytest.raises(FieldError, match="holds 2 texts, the episode has 3 steps"):
        per_step_text(["a", "b"], 3, "task")


def test_numeric_rows_convert_or_refuse():
    assert numeric_matrix([[1, 2], [3, 4]], 2, "state").tolist() == [[1.0, 2.0], [3.0, 4.0]]
    assert numeric_matrix(np.arange(3), None, "action").shape == (3, 1)
    assert numeric_matrix(np.zeros(0), None, "action").shape == (0, 1)
    for bad, reason in (
        (np.array([[True, False]]), "booleans"),
        (np.array([["a", "b"]]), "not numbers"),
        ([[1, 2], [3]], "row 1 holds 1 values"),
        ([[1, 2], None], "row 1"),
        (np.float32(2.0), "not a list of numeric rows"),
    ):
        with pytest.raises(FieldError, match=reason):
            numeric_matrix(bad, None, "state")
    with pytest.raises(FieldError, match="has 2 rows, expected 3"):
        numeric_matrix([[1], [2]], 3, "state")


def test_the_vqa_answer_is_the_most_common_as_vqav2_compares_them():
    answers = ["Yes", "no", "yes.", "no", "YES", "maybe"]
    assert vqa_answer(answers) == "Yes"  # yes x3 (case and punctuation aside) beats no x2
    assert vqa_answer(["two", "2", "two", "2"]) == "two"  # a tie goes to the answer given first
    assert vqa_answer(["", "  "]) is None
