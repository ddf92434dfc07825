"""Tokenise once per batch: the words carried through row filtering and C4's rewrite equal a fresh split."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from hypothesis import example, given, settings
from hypothesis import strategies as st

from engine.batch import make_batch
from engine.pipeline import process_batch
from engine.steps import build_step
from engine.steps import text as tx
from engine.steps.tokens import Tokens, batch_tokens, peek_tokens, tokenise

LINE = "The council met on Tuesday and agreed that the library should open again in spring."


def fresh(batch: pa.Table) -> Tokens:
    return tokenise(tx._texts(batch))


def assert_same(got: Tokens | None, expected: Tokens) -> None:
    assert got is not None
    assert got.words.values.to_list() == expected.words.values.to_list()
    assert got.words.row.tolist() == expected.words.row.tolist()
    assert got.words.counts.tolist() == expected.words.counts.tolist()
    assert got.line.tolist() == expected.line.tolist()


def test_lines_are_counted_per_row_at_every_splitlines_break() -> None:
    tokens = fresh(make_batch({"text": ["a b\nc\r\n\nd", "", "x\u2028y\x0bz", "one\x1ctwo"]}))
    assert tokens.words.values.to_list() == ["a", "b", "c", "d", "x", "y", "z", "one\x1ctwo"]
    assert tokens.words.row.tolist() == [0, 0, 0, 0, 2, 2, 2, 3]
    assert tokens.line.tolist() == [0, 0, 1, 3, 0, 1, 2, 0]  # \x1c: no whitespace to the word patterns


def test_take_keeps_the_rows_words_and_lines() -> None:
    batch = make_batch({"text": ["a b\nc", "d", "e\nf g", ""]})
    keep = np.array([True, False, True, True])
    assert_same(fresh(batch).take(keep), fresh(batch.filter(pa.array(keep))))


PARTS = ["a", "B", " ", "\n", "\r", ".", ",", "'", "-", "[1]", "x\x1c", "{", "don't", LINE]
texts = st.lists(st.lists(st.sampled_from(PARTS), max_size=40).map("".join), max_size=12)


@settings(max_examples=60, deadline=None)
@given(texts=texts)
@example(texts=[LINE + "[1] " + LINE + "\n\n" + LINE, "lorem ipsum " + LINE, "\x1f" + LINE + "\n" + LINE])
def test_words_after_the_chain_equal_a_fresh_split(texts: list[str]) -> None:
    # Rows dropped by each step (twice in a row by steps that read no words: doc_length) and text rewritten
    # by c4_quality: the words that follow the batch (carried, handed over by C4) are those of what comes out.
    batch = make_batch({"text": texts})
    steps = [
        build_step({"type": "gopher_repetition"}),
        build_step({"type": "doc_length", "min_chars": 20}),
        build_step({"type": "doc_length", "max_chars": 400}),
        build_step({"type": "gopher_quality", "min_doc_words": 3, "min_stop_words": 0}),
        build_step({"type": "c4_quality", "min_num_sentences": 1, "min_words_per_line": 2}),
    ]
    result = process_batch(batch, steps)
    if batch.num_rows:  # an empty batch meets no step
        assert_same(peek_tokens(result.kept), fresh(result.kept))


@settings(max_examples=60, deadline=None)
@given(texts=texts, min_words=st.integers(-1, 3))
def test_c4_hands_over_the_words_of_the_text_it_wrote(texts: list[str], min_words: int) -> None:
    batch = make_batch({"text": texts})
    batch_tokens(batch)
    out, _ = build_step({"type": "c4_quality", "min_words_per_line": min_words, "min_num_sentences": -1})(batch)
    assert_same(peek_tokens(out), fresh(out))


def test_c4_decisions_do_not_depend_on_known_words() -> None:
    texts = [LINE + " [2]\n" + LINE + "\n" + LINE, "Short.\nLine two. Three!", "\x1c" + LINE + " " + LINE]
    step = build_step({"type": "c4_quality", "min_num_sentences": 2})
    cold_out, cold = step(make_batch({"text": texts}))
    warm_batch = make_batch({"text": texts})
    batch_tokens(warm_batch)
    warm_out, warm = step(warm_batch)
    assert cold.reason.tolist() == warm.reason.tolist()
    assert np.array_equal(cold.scores["sentences"], warm.scores["sentences"])
    assert cold_out["text"].to_pylist() == warm_out["text"].to_pylist()


def test_rewritten_text_is_not_served_stale_words() -> None:
    # A transform that rewrites text without handing over words: the next step splits the new text.
    batch = make_batch({"text": ["aaa bbb", "ccc"]})
    batch_tokens(batch)
    rewritten = batch.set_column(batch.schema.get_field_index("text"), "text", pc.utf8_upper(batch["text"]))
    assert peek_tokens(rewritten) is None
    assert batch_tokens(rewritten).words.values.to_list() == ["AAA", "BBB", "CCC"]
