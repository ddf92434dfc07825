"""Shared property checks every filter (and transform/annotator) gets.

Call `check_step_properties(step)` from a test module, e.g.

    def test_properties():
        check_step_properties(GopherQuality())

It runs hypothesis over batches of arbitrary unicode (pinned cases: emoji, RTL, CJK without spaces, control
characters, escaped lone surrogates, empty and whitespace-only documents, nulls) and checks:
one verdict entry per row, row-permutation equivariance (keep, reason and scores follow their rows), kept rows
pass again (for transforms: the rewritten kept rows, when the step is idempotent), and the empty batch.
"""

from __future__ import annotations

import math
import re
from typing import Any

import numpy as np
import pyarrow as pa
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from engine.batch import Verdict, make_batch
from engine.schema import TEXT
from engine.steps.base import Step

PINNED_TEXTS: list[str | None] = [
    "",
    "   \n\t \r\n  ",
    "Hello 👋🏽 world 🎉🎉 — family 👨‍👩‍👧 flags 🇫🇷🇯🇵.",
    "مرحبا بالعالم. هذا نص عربي من اليمين إلى اليسار.\nשלום עולם, זה טקסט בעברית.",
    "日本語のテキストは空白なしで書かれます。中文文本也没有空格。한국어 문장입니다.",
    "control\x00chars\x01\x02\x1b[0m\x7f\x85\u2028line\u2029sep\x0b\x0c\x1c\x1d\x1e\x1f end",
    "escaped lone surrogates: \\ud800 \\udfff and replacement \ufffd\ufffd",
    "\u200b\u200d\ufeff zero-width and BOM \u00ad soft hyphen",
    None,
    "The cat sat on the mat. " * 30,
    "- item\n- item\n- item\n...\n…\n# # # #\n{ } [1] [edit] lorem ipsum javascript",
]

_texts = st.lists(
    st.one_of(st.text(max_size=400), st.sampled_from(PINNED_TEXTS), st.none()),
    min_size=1,
    max_size=12,
)


def _run(step: Step, batch: pa.Table) -> tuple[pa.Table, Verdict]:
    out, verdict = step.apply(batch)
    assert isinstance(verdict, Verdict)
    assert len(verdict) == batch.num_rows, f"{step.type}: {len(verdict)} verdicts for {batch.num_rows} rows"
    assert out.num_rows == batch.num_rows, f"{step.type}: {out.num_rows} rows out for {batch.num_rows} in"
    assert verdict.keep.dtype == bool
    for i in np.flatnonzero(~verdict.keep):
        reason = verdict.reason[i]
        assert isinstance(reason, str), f"{step.type}: dropped row {i} has no reason"
        assert re.fullmatch(r"[a-z0-9_]+", reason), f"{step.type}: reason {reason!r} is not snake_case"
    assert all(r is None for r in verdict.reason[verdict.keep])
    return out, verdict


def _same_float(a: float, b: float) -> bool:
    return (math.isnan(a) and math.isnan(b)) or a == b


def check_batch(step: Step, texts: list[str | None], *, idempotent: bool = True, **columns: list[Any]) -> None:
    """All the properties on one batch (usable directly for hand-picked batches)."""
    batch = make_batch({TEXT: texts, **columns})
    out, verdict = _run(step, batch)

    # Row-permutation equivariance: reverse the rows and rotate them.
    n = batch.num_rows
    for perm in (np.arange(n)[::-1], np.roll(np.arange(n), 1)):
        permuted = batch.take(pa.array(perm))
        out_p, verdict_p = _run(step, permuted)
        assert np.array_equal(verdict_p.keep, verdict.keep[perm]), f"{step.type}: keep depends on row order"
        assert list(verdict_p.reason) == list(verdict.reason[perm]), f"{step.type}: reason depends on row order"
        assert out_p[TEXT].to_pylist() == [out[TEXT].to_pylist()[i] for i in perm]
        for name, values in verdict.scores.items():
            assert all(_same_float(a, b) for a, b in zip(verdict_p.scores[name], values[perm], strict=True)), (
                f"{step.type}: score {name} depends on row order"
            )

    # Kept rows pass again (the output text for transforms, when the step is idempotent on its output).
    if idempotent and verdict.keep.any():
        again_batch = out.filter(pa.array(verdict.keep))
        _, again = _run(step, again_batch)
        assert again.keep.all(), f"{step.type}: kept rows dropped on a second pass: {list(again.reason)}"


def check_empty_batch(step: Step, **columns: list[Any]) -> None:
    """A batch without rows gives an empty verdict and an empty batch."""
    arrays = {"id": pa.array([], pa.string()), TEXT: pa.array([], pa.large_string())}
    arrays.update({name: pa.array(values, pa.string()) for name, values in columns.items()})
    batch = pa.table(arrays)
    out, verdict = _run(step, batch)
    assert len(verdict) == 0
    assert out.num_rows == 0


def check_step_properties(step: Step, *, idempotent: bool = True, max_examples: int = 40) -> None:
    """Run the shared hypothesis property checks on `step` (text-only batches)."""
    check_empty_batch(step)
    for text in PINNED_TEXTS:  # every pinned case alone, then all together
        check_batch(step, [text], idempotent=idempotent)
    check_batch(step, list(PINNED_TEXTS), idempotent=idempotent)

    @settings(
        max_examples=max_examples,
        deadline=None,
        derandomize=True,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(texts=_texts)
    @example(texts=PINNED_TEXTS)
    @example(texts=["", ""])
    @example(texts=["\U0001f600" * 200])
    def run(texts: list[str | None]) -> None:
        check_batch(step, texts, idempotent=idempotent)

    run()
