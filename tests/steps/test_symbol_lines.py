"""symbol_lines: FineWeb-2's table-artifact fix (datatrove SymbolLinesFormatter), every reason, properties."""

from __future__ import annotations

from engine.batch import make_batch
from engine.steps.symbol_lines import SymbolLines
from tests.steps.property_checks import check_step_properties

# Expected outputs below were produced by datatrove 0.10.1's SymbolLinesFormatter on the same inputs.
TEXTS: list[str | None] = [
    "a\n| | |\n|---|\nb\n",
    "x\r\ny\n",
    "| |\n|",
    None,
    "",
    "a\n\n| |\n\n| |\nb",
    "c  |\n |  \n",
]


def run(step: SymbolLines, texts: list[str | None]) -> tuple[list[str | None], list[str | None], list[float]]:
    out, verdict = step(make_batch({"text": texts}))
    return out["text"].to_pylist(), list(verdict.reason), list(verdict.scores["lines_removed"])


def test_fineweb2_settings_replace_each_run_by_an_empty_line() -> None:
    texts, reasons, removed = run(SymbolLines(), TEXTS)
    assert texts == ["a\n\n\n|---|\nb", "x\ny", "\n", None, "", "a\n\n\n\n\n\n\nb", "c  |\n\n"]
    assert reasons == [None, None, "empty", None, None, None, None]
    assert removed == [1.0, 0.0, 2.0, 0.0, 0.0, 2.0, 1.0]


def test_removing_without_replacement_and_datatrove_defaults() -> None:
    texts, _, _ = run(SymbolLines(replace_char=""), TEXTS)
    assert texts == ["a\n|---|\nb", "x\ny", "", None, "", "a\n\n\nb", "c  |"]
    texts, _, removed = run(SymbolLines(symbols=None, replace_char=""), TEXTS)
    assert texts == ["a\nb", "x\ny", "", None, "", "a\n\n\nb", "c  |"]
    assert removed[0] == 2.0  # "|---|" is punctuation too


def test_table_rows_with_words_are_kept() -> None:
    text = "Name | Age\n| --- | --- |\nAnna | 30\n|  |  |\nBen | 41"
    texts, reasons, _ = run(SymbolLines(symbols=("|", "-")), [text])
    assert texts == ["Name | Age\n\n\nAnna | 30\n\n\nBen | 41"]  # the empty line, joined by newlines
    assert reasons == [None]


def test_symbol_lines_properties() -> None:
    check_step_properties(SymbolLines())
