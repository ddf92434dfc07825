"""Remove lines made only of symbols (`type: symbol_lines`): FineWeb-2's fix for table artifacts.

Trafilatura renders HTML tables as lines such as `| | |` or `|---|---|`. FineWeb-2's last stage runs datatrove
0.10.1's `SymbolLinesFormatter(symbols_to_remove=["|"], replace_char="\\n")`: every line (Python `splitlines`)
that is not blank and consists only of those symbols and spaces is removed, and each run of such lines becomes
one `replace_char` line (an empty line with the default "\\n", i.e. a paragraph break). Like the reference, the
text is re-joined with "\\n": other line breaks (`\\r\\n`, `\\u2028`...) become "\\n" and a final line break is
dropped. Defaults are FineWeb-2's; datatrove's own defaults are `symbols: null` (its PUNCTUATION_SET) and
`replace_char: ""`.

Drops with: ``empty`` (nothing but symbol lines was left; the reference would keep an empty document).
"""

from __future__ import annotations

from typing import ClassVar, Literal

import numpy as np
import polars as pl
import pyarrow as pa
from pydantic import Field

from engine.batch import Verdict, text_column
from engine.schema import TEXT
from engine.steps import text as tx
from engine.steps.base import Measures, Transform, register


@register
class SymbolLines(Transform):
    """Replace runs of lines made only of `symbols` (and spaces) by one `replace_char` (datatrove
    `SymbolLinesFormatter`, as FineWeb-2 configured it).

    Scores: ``lines_removed`` per document.
    Drops with: ``empty``.
    """

    type: Literal["symbol_lines"] = "symbol_lines"
    version: ClassVar[int] = 1
    symbols: tuple[str, ...] | None = Field(
        ("|",), description="Characters a removed line is made of; null: datatrove's PUNCTUATION_SET."
    )
    replace_char: str = Field("\n", description="Put in place of each run of removed lines ('' removes them).")
    parameters = {
        "symbols": Measures("changes which lines are removed, and so the text every later step measured"),
        "replace_char": Measures("changes the text every later step measured"),
    }

    def __call__(self, batch: pa.Table) -> tuple[pa.Table, Verdict]:
        texts = tx._texts(batch)
        n = len(texts)
        # "\n".join(text.splitlines()): one kind of line break, and no final one.
        normalised = tx.splitlines_normalised(texts).str.replace(r"\n\z", "")
        symbols = frozenset(self.symbols) if self.symbols is not None else tx.PUNCTUATION_SET
        lines = tx.split_pieces(normalised, "\n")
        symbol_only = lines.values.str.contains("^[" + tx.char_class(symbols | {" "}) + "]+$")
        is_symbol = tx.to_numpy(symbol_only & lines.values.str.contains(r"[^\s\x1c-\x1f]"), bool)
        removed = np.bincount(lines.row[is_symbol], minlength=n).astype(np.float64)
        rows = np.flatnonzero(removed > 0)
        if len(rows):
            follows_symbol = np.zeros(len(is_symbol), dtype=bool)
            follows_symbol[1:] = is_symbol[:-1] & (lines.row[1:] == lines.row[:-1])
            starts_run = is_symbol & ~follows_symbol
            kept = np.isin(lines.row, rows) & (~is_symbol | (starts_run & bool(self.replace_char)))
            values = lines.values.scatter(np.flatnonzero(starts_run), self.replace_char)
            rebuilt = (
                pl.DataFrame({"row": lines.row[kept], "value": values.filter(pl.Series(kept))})
                .group_by("row", maintain_order=True)
                .agg(pl.col("value").str.join("\n"))
            )
            normalised = normalised.scatter(rows, "").scatter(rebuilt["row"].to_numpy(), rebuilt["value"])
        empty = (removed > 0) & ~tx.to_numpy(normalised.str.contains(r"[^\s\x1c-\x1f]"), bool)
        is_null = pl.Series(text_column(batch)).is_null()
        result = pl.select(pl.when(is_null).then(None).otherwise(normalised)).to_series() if n else normalised
        column = pa.array(result.to_arrow(), type=pa.large_string())
        new_batch = batch.set_column(batch.schema.get_field_index(TEXT), TEXT, column)
        return new_batch, Verdict.from_rules(empty=empty, scores={"lines_removed": removed})
