"""FineWeb's own quality rules (Penedo et al. 2024, "The FineWeb Datasets", section 3.4), as implemented by
datatrove 0.10.1's `FineWebQualityFilter`."""

from __future__ import annotations

from collections.abc import Mapping
from typing import ClassVar, Literal

import numpy as np
import numpy.typing as npt
import pyarrow as pa
from pydantic import Field

from engine.batch import Verdict
from engine.steps import fineweb2 as fw2
from engine.steps import text as tx
from engine.steps.base import Decides, Measures, register
from engine.steps.gopher import tx_ratio
from engine.steps.tokens import batch_word_counts


@register
class FineWebQuality(fw2.PerLanguageFilter):
    """Drop documents failing FineWeb's line-level quality rules (datatrove `FineWebQualityFilter`).

    Lines are `text.split("\\n")` without blank lines. Thresholds from the FineWeb paper (section 3.4) and
    datatrove 0.10.1 defaults: at least 12% of lines end in terminal punctuation (datatrove's
    TERMINAL_PUNCTUATION, checked on the unstripped line); at most 67% of lines have 30 characters or fewer;
    characters in duplicated lines (each line seen before counts) at most 1% of the characters that are not
    newlines; at most 0.3 newlines per word.

    Drops with: ``empty``, ``line_punct_ratio``, ``short_line_ratio``, ``char_dup_ratio``, ``list_ratio``.
    """

    type: Literal["fineweb_quality"] = "fineweb_quality"
    version: ClassVar[int] = 1
    line_punct_thr: float = Field(0.12, ge=0, le=1)
    line_punct_exclude_zero: bool = False
    stop_chars: tuple[str, ...] | None = Field(
        None, description="Line-ending characters; default: TERMINAL_PUNCTUATION"
    )
    short_line_thr: float | None = Field(0.67, ge=0, le=1, description="None turns the rule off (FineWeb-2).")
    short_line_length: int = Field(30, ge=0)
    char_duplicates_ratio: float = Field(0.01, ge=0, le=1)
    new_line_ratio: float = Field(0.3, ge=0)
    parameters = {
        "line_punct_thr": Decides(("line_punct_ratio",)),
        "line_punct_exclude_zero": Decides(),
        "stop_chars": Measures("chooses which line endings count into `line_punct_ratio`"),
        "short_line_thr": Decides(("short_line_ratio",)),
        "short_line_length": Measures("chooses which lines count as short into `short_line_ratio`"),
        "char_duplicates_ratio": Decides(("char_dup_ratio",)),
        "new_line_ratio": Decides(("list_ratio",)),
        # Its overrides of deciding fields decide (a language's threshold); its column, word splitters and overrides of
        # measuring fields measure: `redecide_refusal` refuses those (fw2.redecide_refusal).
        "per_language": Decides(),
    }

    def __call__(self, batch: pa.Table) -> Verdict:
        texts = tx._texts(batch)
        n = len(texts)
        lines = tx.split_pieces(texts, "\n")
        non_blank = tx.to_numpy(lines.values.str.strip_chars(tx.PY_SPACE).str.len_bytes() > 0, bool)
        row = lines.row[non_blank]
        values = lines.values.filter(lines.values.str.strip_chars(tx.PY_SPACE).str.len_bytes() > 0)
        n_lines = np.bincount(row, minlength=n).astype(np.float64)
        stop = self.stop_chars if self.stop_chars is not None else tuple(tx.TERMINAL_PUNCTUATION)
        ends_class = "(?:" + "|".join(_escape(s) for s in sorted(stop, key=len, reverse=True)) + ")$"
        punct = tx.to_numpy(values.str.contains(ends_class), bool)
        punct_ratio = tx_ratio(np.bincount(row[punct], minlength=n), n_lines)
        lengths = tx.to_numpy(values.str.len_chars())
        short_ratio = tx_ratio(np.bincount(row[lengths <= self.short_line_length], minlength=n), n_lines)
        _, dup_chars = tx.duplicate_stats(row, tx.to_numpy(values.hash(seed=0x5EED), np.uint64), lengths, n)
        newlines = tx.count_matches(texts, "\n", literal=True)
        dup_ratio = tx_ratio(dup_chars, tx.char_lengths(texts) - newlines)
        list_ratio = tx_ratio(newlines, batch_word_counts(batch, fw2.tokenizer(self)))
        return self._decide(
            {
                "lines": n_lines,
                "line_punct_ratio": punct_ratio,
                "short_line_ratio": short_ratio,
                "char_dup_ratio": dup_ratio,
                "list_ratio": list_ratio,
            },
            fw2.row_settings(self, batch),
        )

    def decide(self, scores: Mapping[str, npt.NDArray[np.float64]]) -> Verdict:
        """The verdict from this step's measured scores and thresholds (rules in datatrove's order).

        With `per_language`, each row's thresholds are its language's (the `language` label the step stored).
        """
        return self._decide(fw2.measured_scores(scores), fw2.measured_settings(self, scores))

    def _decide(self, scores: Mapping[str, npt.NDArray[np.float64]], settings: fw2.RowSettings | None) -> Verdict:
        """The verdict with this step's thresholds, or each row's language's (`settings`); None turns a rule off."""

        def bound(field: str) -> float | npt.NDArray[np.float64]:
            return fw2.bound(self, settings, field, off=np.inf)

        punct_ratio = np.asarray(scores["line_punct_ratio"], dtype=np.float64)
        with np.errstate(invalid="ignore"):
            exclude_zero = bound("line_punct_exclude_zero") > 0
            low_punct = (punct_ratio < bound("line_punct_thr")) & ~((punct_ratio == 0) & exclude_zero)
            verdict = Verdict.from_rules(
                empty=np.asarray(scores["lines"]) == 0,
                line_punct_ratio=low_punct,
                short_line_ratio=np.asarray(scores["short_line_ratio"]) > bound("short_line_thr"),
                char_dup_ratio=np.asarray(scores["char_dup_ratio"]) > bound("char_duplicates_ratio"),
                list_ratio=np.asarray(scores["list_ratio"]) > bound("new_line_ratio"),
                scores=scores,
            )
        return fw2.labelled(verdict, settings)


def _escape(chars: str) -> str:
    import re

    return re.escape(chars)
