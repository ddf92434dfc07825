from __future__ import annotations

from typing import Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from engine.batch import Verdict, make_batch
from engine.io.documents import canonical_batch
from engine.pipeline import StepContractError, output_schema, process_batch
from engine.steps.base import Filter, Transform, build_step


class Shout(Transform):
    """Test transform: upper-cases text, drops documents containing 'x' (reason `has_x`)."""

    type: Literal["shout_test"] = "shout_test"

    def __call__(self, batch: pa.Table) -> tuple[pa.Table, Verdict]:
        has_x = pc.fill_null(pc.match_substring(batch["text"], "x"), False).to_numpy(zero_copy_only=False)
        rewritten = batch.set_column(batch.schema.get_field_index("text"), "text", pc.utf8_upper(batch["text"]))
        return rewritten, Verdict.from_rules(has_x=np.asarray(has_x, dtype=bool))


class Broken(Filter):
    type: Literal["broken_test"] = "broken_test"

    def __call__(self, batch: pa.Table) -> Verdict:
        return Verdict.keep_all(batch.num_rows + 1)


def outcomes(batch: pa.Table, steps: list) -> dict[str, str | None]:
    """id -> None (kept) or reason, after checking that every row is accounted for exactly once."""
    raw = pa.RecordBatch.from_pylist(batch.to_pylist(), schema=batch.schema)
    canonical, verdict = canonical_batch(
        raw, text_column="text", id_column="id", rel="r", first_row=0, max_text_bytes=10_000
    )
    result = process_batch(canonical, steps, input_verdict=verdict)
    stats = result.stats
    assert stats.docs_in == batch.num_rows
    assert stats.is_conserved()
    assert result.kept.num_rows == stats.docs_kept
    assert result.rejected.num_rows == stats.docs_dropped
    ids = result.kept["id"].to_pylist() + result.rejected["id"].to_pylist()
    assert sorted(ids) == sorted(batch["id"].to_pylist())
    outcome: dict[str, str | None] = dict.fromkeys(result.kept["id"].to_pylist())
    outcome.update(zip(result.rejected["id"].to_pylist(), result.rejected["reason"].to_pylist(), strict=True))
    return outcome


texts = st.lists(st.one_of(st.none(), st.text(max_size=60)), max_size=30)


@settings(max_examples=60, deadline=None)
@given(texts=texts, min_words=st.integers(0, 6), seed=st.integers(0, 2**16))
@example(texts=[], min_words=1, seed=0)
@example(texts=[None, "", " ", "x y z", "\U0001f600 \u05e9\u05dc\u05d5\u05dd", "\ud7ff"], min_words=2, seed=1)
def test_nothing_is_lost_and_order_does_not_matter(texts: list[str | None], min_words: int, seed: int) -> None:
    steps = [build_step({"type": "doc_length", "min_words": min_words}), Shout()]
    batch = make_batch({"text": texts, "id": [f"d{i}" for i in range(len(texts))]})
    first = outcomes(batch, steps)
    order = np.random.default_rng(seed).permutation(len(texts))
    assert outcomes(batch.take(pa.array(order, type=pa.int64())), steps) == first


def test_rejected_rows_carry_the_text_their_step_saw(tiny_batch) -> None:
    result = process_batch(tiny_batch(["one two x", "three four"]), [Shout()])
    assert result.kept["text"].to_pylist() == ["THREE FOUR"]
    assert result.rejected["text"].to_pylist() == ["one two x"]
    assert result.rejected["reason"].to_pylist() == ["shout_test/has_x"]


def test_step_named_twice_reports_under_its_name(tiny_batch) -> None:
    steps = [build_step({"type": "doc_length", "min_words": 2, "name": "short_first"})]
    result = process_batch(tiny_batch(["one", "one two"]), steps)
    assert result.rejected["reason"].to_pylist() == ["short_first/too_few_words"]
    assert result.stats.step_docs["short_first"] == 2


def test_a_step_that_breaks_the_contract_is_reported(tiny_batch) -> None:
    with pytest.raises(StepContractError, match="broken_test"):
        process_batch(tiny_batch(["a"]), [Broken()])


def test_exceptions_name_the_step(tiny_batch) -> None:
    class Exploding(Filter):
        type: Literal["exploding_test"] = "exploding_test"

        def __call__(self, batch: pa.Table) -> Verdict:
            msg = "boom"
            raise ZeroDivisionError(msg)

    with pytest.raises(ZeroDivisionError) as caught:
        process_batch(tiny_batch(["a"]), [Exploding()])
    assert "in step 'exploding_test'" in caught.value.__notes__


def test_output_schema_includes_step_columns(tiny_batch) -> None:
    schema = output_schema(tiny_batch(["a"]).schema, [Shout()])
    assert schema.names == ["text", "id"]


def test_score_sheet_has_every_row_and_step(tiny_batch) -> None:
    steps = [build_step({"type": "doc_length", "min_words": 2}), Shout()]
    result = process_batch(tiny_batch(["one", "one two", "x y z"]), steps, keep_scores=True)
    sheet = result.scores.to_pydict()
    assert sheet["id"] == ["0", "1", "2"]
    assert sheet["reason"] == ["doc_length/too_few_words", None, "shout_test/has_x"]
    assert sheet["doc_length.words"] == [1.0, 2.0, 3.0]


def test_decide_from_scores_matches_the_step(tiny_batch) -> None:
    batch = tiny_batch(["one", "one two three", ""])
    step = build_step({"type": "doc_length", "min_words": 2, "max_chars": 10})
    verdict = step(batch)
    again = step.decide(verdict.scores)
    assert again.reason.tolist() == verdict.reason.tolist()
