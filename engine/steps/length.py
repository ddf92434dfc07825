"""Document length filter: the simplest real filter, and a cheap first pass before costlier steps."""

from __future__ import annotations

from collections.abc import Mapping
from typing import ClassVar, Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from pydantic import Field

from engine.batch import Verdict, text_column, utf8_lengths
from engine.steps.base import Decides, Filter, register


def whitespace_word_counts(batch: pa.Table) -> np.ndarray:
    """Whitespace-separated tokens per document (0 for null or blank), as Python's `str.split()` counts them.

    Arrow's split yields an empty token for leading or trailing whitespace (and one for an empty string), so the
    text is trimmed first and blank texts count 0.
    """
    trimmed = pc.utf8_trim_whitespace(text_column(batch))
    counts = pc.list_value_length(pc.utf8_split_whitespace(trimmed))
    counts = pc.if_else(pc.equal(trimmed, ""), 0, counts)
    return np.asarray(pc.fill_null(counts, 0).to_numpy(zero_copy_only=False), dtype=np.int64)


@register
class DocLength(Filter):
    """Drop documents outside a character and whitespace-word length range.

    Defaults keep everything with at least one word; set bounds to taste (e.g. `min_words: 50` as in
    Gopher's quality rules).
    Drops with: ``too_few_chars``, ``too_many_chars``, ``too_few_words``, ``too_many_words``.
    """

    type: Literal["doc_length"] = "doc_length"
    version: ClassVar[int] = 2  # 2: words no longer counts an empty token at either end of the text
    min_chars: int = Field(1, ge=0)
    max_chars: int | None = Field(None, ge=1)
    min_words: int = Field(1, ge=0)
    max_words: int | None = Field(None, ge=1)
    parameters = {
        "min_chars": Decides(("chars",)),
        "max_chars": Decides(("chars",)),
        "min_words": Decides(("words",)),
        "max_words": Decides(("words",)),
    }

    def __call__(self, batch: pa.Table) -> Verdict:
        return self.decide({"chars": utf8_lengths(batch), "words": whitespace_word_counts(batch)})

    def decide(self, scores: Mapping[str, np.ndarray]) -> Verdict:
        chars, words = scores["chars"], scores["words"]
        max_chars = self.max_chars if self.max_chars is not None else np.iinfo(np.int64).max
        max_words = self.max_words if self.max_words is not None else np.iinfo(np.int64).max
        return Verdict.from_rules(
            too_few_chars=chars < self.min_chars,
            too_many_chars=chars > max_chars,
            too_few_words=words < self.min_words,
            too_many_words=words > max_words,
            scores={"chars": chars, "words": words},
        )
