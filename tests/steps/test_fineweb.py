"""fineweb_quality: every reason code, the measured ratios, shared properties."""

from __future__ import annotations

import pytest

from engine.batch import make_batch
from engine.steps.fineweb import FineWebQuality
from tests.steps.property_checks import check_step_properties

GOOD = (
    "The museum opens at nine in the morning and closes at six in the evening.\n"
    "Visitors can buy tickets online, at the door, or from the tourist office nearby.\n"
    "Guided tours start every hour from the main hall and last about forty minutes."
)


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("   \n\n \t\n", "empty"),
        (GOOD.replace(".", ""), "line_punct_ratio"),
        (GOOD + "\nMenu\nHome\nAbout us\nContact\nShop\nBlog\nLogin", "short_line_ratio"),
        (GOOD + "\n" + GOOD.split("\n")[0], "char_dup_ratio"),
        ("\n\n\n\n\n\n\n\n\n\n".join(GOOD.split("\n")), "list_ratio"),
    ],
)
def test_fineweb_reasons(text: str, reason: str) -> None:
    verdict = FineWebQuality()(make_batch({"text": [text, GOOD]}))
    assert verdict.reason[0] == reason
    assert verdict.keep[1]


def test_fineweb_scores() -> None:
    text = "First line ends well.\nsecond line does not\n\nthird."
    verdict = FineWebQuality()(make_batch({"text": [text]}))
    assert verdict.scores["line_punct_ratio"][0] == pytest.approx(2 / 3)
    assert verdict.scores["short_line_ratio"][0] == pytest.approx(1.0)
    assert verdict.scores["char_dup_ratio"][0] == 0
    assert verdict.scores["list_ratio"][0] == pytest.approx(3 / 11)  # 3 newlines, 11 tokens (punctuation counts)


def test_fineweb_line_punct_exclude_zero() -> None:
    text = GOOD.replace(".", "")
    verdict = FineWebQuality(line_punct_exclude_zero=True)(make_batch({"text": [text]}))
    assert verdict.keep[0]


def test_fineweb_properties() -> None:
    check_step_properties(FineWebQuality())


def test_fineweb_decide_reproduces_the_verdict_from_scores() -> None:
    batch = make_batch({"text": [GOOD, GOOD.replace(".", ""), "", GOOD + "\nMenu\nHome\nAbout\nShop\nBlog\nLogin"]})
    verdict = FineWebQuality()(batch)
    assert list(FineWebQuality().decide(verdict.scores).reason) == list(verdict.reason)
    relaxed = FineWebQuality(line_punct_thr=0.0, short_line_thr=1.0).decide(verdict.scores)
    assert list(relaxed.keep) == [True, True, False, True]
