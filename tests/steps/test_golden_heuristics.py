"""Golden decisions: our heuristic steps give datatrove 0.10.1's exact decisions on real documents.

The fixture (tests/steps/fixtures/SOURCE.md) pins, for 80 real web documents, datatrove's keep/drop decision and
reason for every step, and the text C4's line cleaning leaves. Any change to tokenisation, line splitting or a
threshold that moves one of these decisions fails here.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import random
from pathlib import Path

import pytest

from engine.batch import make_batch
from engine.steps import build_step
from engine.steps.base import Step

FIXTURE = Path(__file__).parent / "fixtures" / "heuristics_golden.jsonl.gz"

# datatrove's reason names where ours differ
DATATROVE_REASON = {
    "too_few_words": "gopher_short_doc",
    "too_many_words": "gopher_long_doc",
    "mean_word_length_low": "gopher_below_avg_threshold",
    "mean_word_length_high": "gopher_above_avg_threshold",
    "too_many_hashes": "gopher_too_many_hashes",
    "too_many_ellipses": "gopher_too_many_ellipsis",
    "too_many_bullet_lines": "gopher_too_many_bullets",
    "too_many_ellipsis_lines": "gopher_too_many_end_ellipsis",
    "too_few_alpha_words": "gopher_below_alpha_threshold",
    "too_few_stop_words": "gopher_enough_stop_words",
    "badwords": "document_removed_with_badwords",
}
STEPS = {
    "gopher_repetition": {"type": "gopher_repetition"},
    "gopher_quality": {"type": "gopher_quality"},
    "c4_quality": {"type": "c4_quality", "filter_no_terminal_punct": False},
    "fineweb_quality": {"type": "fineweb_quality"},
    "c4_badwords": {"type": "c4_badwords"},
}


def load() -> list[dict[str, object]]:
    with gzip.open(FIXTURE, "rt", encoding="utf-8") as f:
        return [json.loads(line) for line in f]


def decisions(step: Step, docs: list[dict[str, object]]) -> tuple[list[str], list[str]]:
    batch = make_batch({"id": [d["id"] for d in docs], "text": [d["text"] for d in docs]})
    out, verdict = step.apply(batch)
    named = ["keep" if k else DATATROVE_REASON.get(r, r) for k, r in zip(verdict.keep, verdict.reason, strict=True)]
    return named, out["text"].to_pylist()


@pytest.mark.parametrize("name", sorted(STEPS))
def test_golden_decisions(name: str) -> None:
    docs = load()
    got, texts = decisions(build_step(STEPS[name]), docs)
    mismatches = [(d["id"], d["expected"][name], g) for d, g in zip(docs, got, strict=True) if d["expected"][name] != g]  # type: ignore[index]
    assert not mismatches
    if name == "c4_quality":
        for d, text, g in zip(docs, texts, got, strict=True):
            if g == "keep":
                assert hashlib.sha1(text.encode()).hexdigest() == d["c4_text_sha1"], d["id"]


def test_golden_decisions_do_not_depend_on_batching() -> None:
    docs = load()
    rng = random.Random(11)
    shuffled = docs[:]
    rng.shuffle(shuffled)
    for name, params in STEPS.items():
        step = build_step(params)
        whole, _ = decisions(step, shuffled)
        halves = decisions(step, shuffled[:33])[0] + decisions(step, shuffled[33:])[0]
        assert whole == halves, f"{name} (seed 11)"
        assert whole == [d["expected"][name] for d in shuffled]  # type: ignore[index]


def test_golden_covers_every_reason_seen_in_the_corpora() -> None:
    seen = {(name, d["expected"][name]) for d in load() for name in STEPS}  # type: ignore[index]
    assert ("gopher_repetition", "top_2_gram") in seen
    assert ("c4_quality", "curly_bracket") in seen
    assert len({r for s, r in seen if s == "gopher_repetition"}) >= 12
