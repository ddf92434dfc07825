"""Every heuristic step on very large documents: a decision for every row, no crash, bounded memory and time."""

from __future__ import annotations

import random

import pytest

from engine.batch import make_batch
from engine.steps import build_step

STEPS = [
    {"type": "gopher_repetition"},
    {"type": "gopher_quality"},
    {"type": "c4_quality"},
    {"type": "fineweb_quality"},
    {"type": "c4_badwords"},
    {"type": "url_filter"},
    {"type": "normalise"},
]


def big_document(chars: int, seed: int) -> str:
    """Prose-like text of about `chars` characters: sentences from a seeded vocabulary, some long lines."""
    rng = random.Random(seed)
    letters = "abcdefghijklmnopqrstuvwxyz"
    vocabulary = ["".join(rng.choice(letters) for _ in range(rng.randint(2, 9))) for _ in range(20_000)]
    vocabulary += ["the", "of", "and", "to", "with", "that"]
    lines, size = [], 0
    while size < chars:
        line = " ".join(rng.choice(vocabulary) for _ in range(rng.randint(4, 60))) + rng.choice([".", "!", "", ","])
        lines.append(line)
        size += len(line) + 1
    return "\n".join(lines)[:chars]


def check(text: str) -> None:
    batch = make_batch({"text": [text, "", "A short one.", "x" * 100_000], "url": ["http://a.org/"] * 4})
    for params in STEPS:
        out, verdict = build_step(params).apply(batch)
        assert len(verdict) == 4, params
        assert out.num_rows == 4, params


def test_large_documents() -> None:
    check(big_document(3_000_000, seed=1))


def test_single_line_without_spaces() -> None:
    check("あ" * 1_000_000)


@pytest.mark.slow
def test_fifty_megabyte_document() -> None:
    check(big_document(50_000_000, seed=2))
