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
