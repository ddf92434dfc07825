"""doc_length: every reason code triggers and passes, plus the shared property checks."""

from __future__ import annotations

import pytest

from engine.batch import make_batch
from engine.steps.length import DocLength
from tests.steps.property_checks import check_step_properties


@pytest.mark.parametrize(
    ("params", "text", "passing", "reason"),
    [
        ({"min_chars": 5}, "abc", "abcde", "too_few_chars"),
        ({"max_chars": 5}, "abcdef", "ab cd", "too_many_chars"),
        ({"min_words": 3}, "one two", "one two three", "too_few_words"),
        ({"max_words": 2}, "one two three", "one two", "too_many_words"),
    ],
)
def test_doc_length_reasons(params: dict[str, int], text: str, passing: str, reason: str) -> None:
    step = DocLength(**params)
    verdict = step(make_batch({"text": [text, passing]}))
    assert list(verdict.keep) == [False, True]
    assert verdict.reason[0] == reason
    assert set(verdict.scores) == {"chars", "words"}


def test_doc_length_properties() -> None:
    check_step_properties(DocLength(min_words=2, max_chars=500))


@pytest.mark.parametrize(
    "text",
    [" one two three ", "\n\none two three", "one two three\t\n", "one  two \u00a0 three", "  one two three  "],
)
def test_words_are_counted_as_str_split_counts_them_12(text: str) -> None:
    """Edge whitespace is no word: Arrow's split yields empty tokens at either end (issue 12, found by what-if)."""
    verdict = DocLength(min_words=3, max_words=3)(make_batch({"text": [text]}))
    assert verdict.scores["words"].tolist() == [len(text.split())] == [3]
    assert verdict.keep.tolist() == [True]


def test_blank_text_has_no_word_12() -> None:
    verdict = DocLength(min_chars=0, min_words=0)(make_batch({"text": ["", "   ", "\n"]}))
    assert verdict.scores["words"].tolist() == [0, 0, 0]
