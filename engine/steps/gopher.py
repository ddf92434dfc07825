"""Gopher's quality and repetition rules (Rae et al. 2021, "Scaling Language Models: Methods, Analysis & Insights
from Training Gopher", appendix A.1.1 and table A1), as implemented by datatrove 0.10.1 for FineWeb.

Both steps reproduce datatrove's `GopherQualityFilter` and `GopherRepetitionFilter` decisions (same thresholds,
same line/paragraph splitting, same ratios and denominators) over a whole batch at once. Words come from
`engine.steps.text.words`, an approximation of datatrove's spaCy English tokenizer; the agreement with
datatrove is measured by benchmarks/compare_datatrove_filters.py.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Mapping
from dataclasses import dataclass
from typing import ClassVar, Literal

import numpy as np
import numpy.typing as npt
import polars as pl
import pyarrow as pa
from pydantic import Field

from engine.batch import Verdict
from engine.steps import fineweb2 as fw2
from engine.steps import text as tx
from engine.steps.base import Decides, Measures, Step, register
from engine.steps.tokens import batch_words

STOP_WORDS = ("the", "be", "to", "of", "and", "that", "have", "with")

_NON_SYMBOL = "[^" + tx.char_class(tx.PUNCTUATION_SET) + "]"
_LINE_SPACE = r"[[\s\x1c-\x1f]&&[^\n]]"
_BULLET_LINE = rf"(?m)^{_LINE_SPACE}*[•\-]"
_ELLIPSIS_LINE = rf"(?m)(?:\.\.\.|…){_LINE_SPACE}*$"


def _ratio(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    """numerator / denominator, NaN where the denominator is 0 (datatrove would divide by zero there)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(denominator > 0, numerator / np.maximum(denominator, 1), np.nan)


@register
class GopherQuality(fw2.PerLanguageFilter):
    """Drop documents that fail Gopher's quality rules (datatrove `GopherQualityFilter`).

    Thresholds: Gopher paper appendix A.1.1 (Rae et al. 2021), as set by default in datatrove 0.10.1 and used
    for FineWeb: 50..100,000 words that are not pure symbols; mean word length 3..10; `#` and ellipses
    (`...` and `…`, counted in the raw text) at most 0.1 per word; at most 90% of lines (`str.splitlines`)
    starting with `•` or `-`; at most 30% of lines ending with an ellipsis; at least 80% of words containing an
    alphabetic character; at least 2 distinct stop words (case-sensitive, as in datatrove). Setting a bound to
    None disables that rule. Ratios per word use all tokens (symbols included), as datatrove does.

    Drops with: ``too_few_words``, ``too_many_words``, ``mean_word_length_low``, ``mean_word_length_high``,
    ``too_many_hashes``, ``too_many_ellipses``, ``too_many_bullet_lines``, ``too_many_ellipsis_lines``,
    ``too_few_alpha_words``, ``too_few_stop_words``.
    """

    type: Literal["gopher_quality"] = "gopher_quality"
    version: ClassVar[int] = 1
    min_doc_words: int | None = Field(50, ge=0)
    max_doc_words: int | None = Field(100_000, ge=0)
    min_avg_word_length: float | None = Field(3, ge=0)
    max_avg_word_length: float | None = Field(10, ge=0)
    max_symbol_word_ratio: float | None = Field(0.1, ge=0)
    max_bullet_lines_ratio: float | None = Field(0.9, ge=0, le=1)
    max_ellipsis_lines_ratio: float | None = Field(0.3, ge=0, le=1)
    min_alpha_words_ratio: float | None = Field(0.8, ge=0, le=1)
    min_stop_words: int | None = Field(2, ge=0)
    stop_words: tuple[str, ...] = STOP_WORDS
    stop_words_count: Literal["distinct", "occurrences"] = Field(
        "distinct",
        description="distinct: stop words present (datatrove >= 0.5.0); occurrences: stop-word tokens (<= 0.4.0, "
        "the rule FineWeb-2's published data was filtered with)",
    )
    parameters = {
        "min_doc_words": Decides(("words",)),
        "max_doc_words": Decides(("words",)),
        "min_avg_word_length": Decides(("mean_word_length",)),
        "max_avg_word_length": Decides(("mean_word_length",)),
        "max_symbol_word_ratio": Decides(("hash_ratio", "ellipsis_ratio")),
        "max_bullet_lines_ratio": Decides(("bullet_lines_ratio",)),
        "max_ellipsis_lines_ratio": Decides(("ellipsis_lines_ratio",)),
        "min_alpha_words_ratio": Decides(("alpha_words_ratio",)),
        "min_stop_words": Decides(("stop_words",)),
        "stop_words": Measures("is the word list counted into the `stop_words` score"),
        "stop_words_count": Measures("chooses what the `stop_words` score counts (distinct words or occurrences)"),
        # Its overrides of deciding fields decide (a language's threshold); its column, word splitters and overrides of
        # measuring fields measure: `redecide_refusal` refuses those (fw2.redecide_refusal).
        "per_language": Decides(),
    }

    def __call__(self, batch: pa.Table) -> Verdict:
        texts = tx._texts(batch)
        n = len(texts)
        words = batch_words(batch, fw2.tokenizer(self))
        n_words = words.counts.astype(np.float64)
        lengths = words.lengths()
        non_symbol = tx.to_numpy(words.values.str.contains(_NON_SYMBOL), bool)
        alpha = tx.to_numpy(words.values.str.contains(r"\p{L}"), bool)
        n_non_symbol = tx.per_row_sum(words.row, non_symbol, n)
        mean_length = _ratio(tx.per_row_sum(words.row, np.where(non_symbol, lengths, 0), n), n_non_symbol)
        hashes = tx.count_matches(texts, "#", literal=True)
        ellipses = tx.count_matches(texts, "...", literal=True) + tx.count_matches(texts, "…", literal=True)
        normalised = tx.splitlines_normalised(texts)
        n_lines = tx.splitlines_count(normalised)
        bullet_ratio = _ratio(tx.count_matches(normalised, _BULLET_LINE), n_lines)
        ellipsis_line_ratio = _ratio(tx.count_matches(normalised, _ELLIPSIS_LINE), n_lines)
        alpha_ratio = _ratio(tx.per_row_sum(words.row, alpha, n), n_words)
        settings = fw2.row_settings(self, batch)
        distinct = self.stop_words_count == "distinct"
        if settings is not None:
            stop_words = fw2.stop_word_counts(words, settings, "stop_words", distinct=distinct)
        else:
            stop_words = np.zeros(n, dtype=np.float64)
            for word in set(self.stop_words):
                hits = tx.to_numpy(words.values == word, bool)
                stop_words += (
                    (np.bincount(words.row[hits], minlength=n) > 0)
                    if distinct
                    else np.bincount(words.row[hits], minlength=n)
                )
        hash_ratio = _ratio(hashes, n_words)
        ellipsis_ratio = _ratio(ellipses, n_words)

        return self._decide(
            {
                "words": n_non_symbol,
                "mean_word_length": mean_length,
                "hash_ratio": hash_ratio,
                "ellipsis_ratio": ellipsis_ratio,
                "bullet_lines_ratio": bullet_ratio,
                "ellipsis_lines_ratio": ellipsis_line_ratio,
                "alpha_words_ratio": alpha_ratio,
                "stop_words": stop_words,
            },
            settings,
        )

    def decide(self, scores: Mapping[str, npt.NDArray[np.float64]]) -> Verdict:
        """The verdict from this step's measured scores and thresholds (rules in datatrove's order).

        With `per_language`, each row's thresholds are its language's (the `language` label the step stored).
        """
        return self._decide(fw2.measured_scores(scores), fw2.measured_settings(self, scores))

    def _decide(self, scores: Mapping[str, npt.NDArray[np.float64]], settings: fw2.RowSettings | None) -> Verdict:
        """The verdict with this step's thresholds, or each row's language's (`settings`)."""

        def above(name: str, field: str) -> np.ndarray:
            return fw2.above(scores[name], fw2.bound(self, settings, field))

        def below(name: str, field: str) -> np.ndarray:
            return fw2.below(scores[name], fw2.bound(self, settings, field))

        verdict = Verdict.from_rules(
            too_few_words=below("words", "min_doc_words"),
            too_many_words=above("words", "max_doc_words"),
            mean_word_length_low=below("mean_word_length", "min_avg_word_length"),
            mean_word_length_high=above("mean_word_length", "max_avg_word_length"),
            too_many_hashes=above("hash_ratio", "max_symbol_word_ratio"),
            too_many_ellipses=above("ellipsis_ratio", "max_symbol_word_ratio"),
            too_many_bullet_lines=above("bullet_lines_ratio", "max_bullet_lines_ratio"),
            too_many_ellipsis_lines=above("ellipsis_lines_ratio", "max_ellipsis_lines_ratio"),
            too_few_alpha_words=below("alpha_words_ratio", "min_alpha_words_ratio"),
            too_few_stop_words=below("stop_words", "min_stop_words"),
            scores=scores,
        )
        return fw2.labelled(verdict, settings)


@dataclass(frozen=True)
class _NGrams:
    """The n-grams of a batch grouped by (row, n-gram): one entry per group, plus which n-grams repeat one before."""

    row: np.ndarray  # per group
    count: np.ndarray  # per group
    first: np.ndarray  # per group: flat word index of the first occurrence
    later: np.ndarray  # flat word indices of occurrences that repeat an earlier one (in no particular order)
    repeated: np.ndarray  # flat word indices of every occurrence of an n-gram seen at least twice in its row
    in_repeat: np.ndarray  # per grouped position: is it in `repeated`


_MIX = np.uint64(0x9E3779B97F4A7C15)
_ROW_MIX = np.uint64(0xD6E8FEB86659FD93)


def _prefix_keys(hashes: np.ndarray, positions: np.ndarray, n: int, shorter: np.ndarray | None = None) -> np.ndarray:
    """The row-independent part of the key of each n-gram starting at `positions` (word hashes combined in
    order); from the keys of the (n-1)-grams at the same positions when `shorter` is given."""
    key = np.zeros(len(positions), dtype=np.uint64) if shorter is None else shorter
    with np.errstate(over="ignore"):
        for k in range(0 if shorter is None else n - 1, n):
            key = (key * _MIX) ^ (hashes[positions + k] + np.uint64(k + 1))
            key ^= key >> np.uint64(29)
    return key


def _ngram_keys(hashes: np.ndarray, word_row: np.ndarray, positions: np.ndarray, n: int) -> np.ndarray:
    """A 64-bit key per n-gram starting at `positions` (word hashes combined in order, mixed with the row)."""
    key: np.ndarray = _prefix_keys(hashes, positions, n) ^ (word_row[positions].astype(np.uint64) * _ROW_MIX)
    return key


def _group_ngrams(key: np.ndarray, word_row: np.ndarray, positions: np.ndarray) -> _NGrams:
    """Group the n-grams starting at `positions` (ascending) by `key`; keeps groups seen twice or more."""
    if len(positions) == 0:
        empty = np.zeros(0, dtype=np.int64)
        return _NGrams(empty, empty, empty, empty, empty, np.zeros(0, dtype=bool))
    # A stable sort: within a group, occurrences stay in position order, so a group's first one opens it.
    ordered = pl.DataFrame({"key": key}).with_row_index("at").sort("key", maintain_order=True)
    k = ordered["key"].to_numpy()
    order = ordered["at"].to_numpy()
    boundary = np.ones(len(k), dtype=bool)
    np.not_equal(k[1:], k[:-1], out=boundary[1:])
    group_start = np.flatnonzero(boundary)
    count = np.diff(np.append(group_start, len(k)))
    multi = count > 1
    first = positions[order[group_start[multi]]]
    # Back in position order: which n-grams repeat; the later occurrences are those that open no group.
    in_repeat = np.empty(len(k), dtype=bool)
    in_repeat[order] = np.repeat(multi, count)
    return _NGrams(
        word_row[first],
        count[multi],
        first,
        positions[order[~boundary]],
        positions[in_repeat],
        in_repeat,
    )


def _all_ngram_starts(word_row: np.ndarray, n: int) -> np.ndarray:
    """Flat indices of every word that starts an n-gram lying within its row."""
    total = len(word_row)
    if total < n:
        return np.zeros(0, dtype=np.int64)
    within: np.ndarray = np.flatnonzero(word_row[: total - n + 1] == word_row[n - 1 :])
    return within


def _extends(word_row: np.ndarray, positions: np.ndarray, n: int) -> np.ndarray:
    """Which of the (n-1)-gram starts `positions` also start an n-gram within the row."""
    last = np.minimum(positions + n - 1, len(word_row) - 1)
    within: np.ndarray = (positions + n - 1 < len(word_row)) & (word_row[positions] == word_row[last])
    return within


def _group_all_sizes(hashes: np.ndarray, word_row: np.ndarray, sizes: list[int]) -> dict[int, _NGrams]:
    """The n-grams of every size in `sizes`, grouped.

    An n-gram can only repeat where its (n-1)-gram prefix repeats: each size only groups the starts that
    repeated at the size below (sizes in increasing order), so only the smallest size sorts every word, and
    each key grows from the shorter n-gram's key by one word.
    """
    grouped: dict[int, _NGrams] = {}
    previous_size, previous, prefix = 0, None, np.zeros(0, dtype=np.uint64)
    for size in sorted(set(sizes)):
        if previous is not None and previous_size == size - 1:
            extends = _extends(word_row, previous.repeated, size)
            positions = previous.repeated[extends]
            prefix = _prefix_keys(hashes, positions, size, prefix[previous.in_repeat][extends])
        else:
            positions = _all_ngram_starts(word_row, size)
            prefix = _prefix_keys(hashes, positions, size)
        key = prefix ^ (word_row[positions].astype(np.uint64) * _ROW_MIX)
        grouped[size] = _group_ngrams(key, word_row, positions)
        previous_size, previous = size, grouped[size]
    return grouped


def _top_ngram_chars(grams: _NGrams, word_row: np.ndarray, cumulative: np.ndarray, n: int, n_rows: int) -> np.ndarray:
    """datatrove's `find_top_duplicate`: count x length of each row's most common n-gram (0 without n-grams).

    Ties go to the n-gram seen first, as `Counter.most_common` does; n-gram length is the words joined by spaces.
    Rows whose n-grams are all distinct score their first n-gram.
    """
    result = np.zeros(n_rows, dtype=np.float64)
    counts = np.bincount(word_row, minlength=n_rows)
    offsets = np.concatenate([[0], np.cumsum(counts)])
    best = np.where(counts >= n, 1, 0).astype(np.int64)
    earliest = offsets[:-1].copy()
    if len(grams.row):
        np.maximum.at(best, grams.row, grams.count)
        candidate = grams.count == best[grams.row]
        repeated_rows = np.unique(grams.row)
        earliest[repeated_rows] = np.iinfo(np.int64).max
        np.minimum.at(earliest, grams.row[candidate], grams.first[candidate])
    has = best > 0
    first = earliest[has]
    result[has] = best[has] * (cumulative[first + n] - cumulative[first] + (n - 1))
    return result


def _covered_chars(
    positions: np.ndarray, cumulative: np.ndarray, word_row: np.ndarray, n: int, n_rows: int
) -> np.ndarray:
    """Characters of the words covered by the n-word windows starting at `positions`, per row."""
    total = len(word_row)
    diff = np.zeros(total + 1, dtype=np.int64)
    np.add.at(diff, positions, 1)
    np.add.at(diff, positions + n, -1)
    covered = np.cumsum(diff[:-1]) > 0
    lengths = np.diff(cumulative)
    return tx.per_row_sum(word_row[covered], lengths[covered], n_rows)


def _first_jumps(grams: _NGrams, word_row: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Per row where the walk's jumps matter, the row and the position of its first such jump.

    The walk counts every later occurrence and jumps over the n-1 words after it. As long as no occurrence of a
    repeated n-gram starts inside such a jump, nothing is skipped: every later occurrence is counted and their
    windows do not overlap, so the walk's total is the characters under the later occurrences' windows
    (`_covered_chars`). The first later occurrence whose jump hides a repeated n-gram is where the walk must start
    walking; rows without one need no walk at all.
    """
    positions = grams.repeated
    empty = np.zeros(0, dtype=np.int64)
    if len(positions) < 2:
        return empty, empty
    is_later = np.zeros(len(word_row), dtype=bool)
    is_later[grams.later] = True
    current, following = positions[:-1], positions[1:]
    jump = is_later[current] & (word_row[current] == word_row[following]) & (following < current + n)
    at = current[jump]  # sorted: rows ascend, positions ascend within a row
    rows, first = np.unique(word_row[at], return_index=True)
    return rows, at[first]


def _walk_duplicates(
    grams: _NGrams,
    hashes: np.ndarray,
    word_row: np.ndarray,
    cumulative: np.ndarray,
    n: int,
    rows: np.ndarray,
    first_jump: np.ndarray,
    out: np.ndarray,
) -> None:
    """datatrove's `find_all_duplicate`, exactly, for `rows`: writes the repeated characters into `out[rows]`.

    The reference walks the n-grams left to right and, after a repeat, jumps n words ahead, so the result
    depends on order. Only n-grams seen at least twice can repeat, so the walk visits just those positions, and
    in each row only from its first jump that hides one (`first_jump`, from `_first_jumps`): before it every
    later occurrence counts and every n-gram is seen.
    """
    selected = np.zeros(len(out), dtype=bool)
    selected[rows] = True
    positions = grams.repeated[selected[word_row[grams.repeated]]]
    out[rows] = 0.0
    if len(positions) == 0:
        return
    jump_at = np.zeros(len(out), dtype=np.int64)
    jump_at[rows] = first_jump
    pos_row = word_row[positions]
    chars = cumulative[positions + n] - cumulative[positions]
    before = positions <= jump_at[pos_row]
    is_later = np.zeros(len(word_row), dtype=bool)
    is_later[grams.later] = True
    counted = before & is_later[positions]
    out[rows] = np.bincount(pos_row[counted], weights=chars[counted], minlength=len(out))[rows]
    keys = _ngram_keys(hashes, word_row, positions, n).tolist()
    starts = np.flatnonzero(np.concatenate([[True], pos_row[1:] != pos_row[:-1]]))
    ends = np.append(starts[1:], len(positions))
    resume = starts + np.add.reduceat(before.astype(np.int64), starts)  # first index after the jump, per row
    position_list, char_list = positions.tolist(), chars.tolist()
    for start, stop, first in zip(starts.tolist(), ends.tolist(), resume.tolist(), strict=True):
        row = int(pos_row[start])
        seen = set(keys[start:first])
        remember = seen.add
        total = float(out[row])
        i = bisect_left(position_list, int(jump_at[row]) + n, first, stop)  # the first position after the jump
        while i < stop:
            key = keys[i]
            if key in seen:
                total += char_list[i]
                i = bisect_left(position_list, position_list[i] + n, i + 1, stop)  # jump over the n-gram
            else:
                remember(key)
                i += 1
        out[row] = total


@register
class GopherRepetition(fw2.PerLanguageFilter):
    """Drop documents with too much repeated content (datatrove `GopherRepetitionFilter`).

    Thresholds: Gopher paper table A1 (Rae et al. 2021), datatrove 0.10.1 defaults, used for FineWeb.
    Paragraphs are `text.strip()` split on 2+ newlines; lines are `text` split on 1+ newlines; fractions of
    characters use `len(text)` as denominator. Top n-gram fractions count the most common n-gram (ties: the
    first seen) times its length (words joined by spaces); duplicate n-gram fractions follow the reference's
    greedy left-to-right walk exactly. Rules are checked in the reference's order. Every score is exact for
    every document (the score sidecar stores them, and what-if re-decides from them): the walk runs only for the
    documents where one of its jumps can skip a repeated n-gram; for the others its result is computed directly.

    Drops with: ``empty``, ``dup_para_frac``, ``dup_para_char_frac``, ``dup_line_frac``, ``dup_line_char_frac``,
    ``top_<n>_gram`` (n in `top_n_grams`), ``duplicated_<n>_n_grams`` (n in `dup_n_grams`).
    """

    type: Literal["gopher_repetition"] = "gopher_repetition"
    version: ClassVar[int] = 1
    dup_line_frac: float | None = Field(0.3, ge=0, le=1)
    dup_para_frac: float | None = Field(0.3, ge=0, le=1)
    dup_line_char_frac: float | None = Field(0.2, ge=0, le=1)
    dup_para_char_frac: float | None = Field(0.2, ge=0, le=1)
    top_n_grams: tuple[tuple[int, float], ...] = ((2, 0.2), (3, 0.18), (4, 0.16))
    dup_n_grams: tuple[tuple[int, float], ...] = (
        (5, 0.15),
        (6, 0.14),
        (7, 0.13),
        (8, 0.12),
        (9, 0.11),
        (10, 0.10),
    )
    parameters = {
        "dup_line_frac": Decides(("dup_line_frac",)),
        "dup_para_frac": Decides(("dup_para_frac",)),
        "dup_line_char_frac": Decides(("dup_line_char_frac",)),
        "dup_para_char_frac": Decides(("dup_para_char_frac",)),
        # (n, fraction) pairs: the fractions decide; the sizes n choose which n-grams are measured.
        "top_n_grams": Decides(),
        "dup_n_grams": Decides(),
        # Its overrides of deciding fields decide (a language's threshold); its column, word splitters and overrides of
        # measuring fields measure: `redecide_refusal` refuses those (fw2.redecide_refusal).
        "per_language": Decides(),
    }

    def thresholds(self) -> dict[str, list[tuple[str, float]]]:
        found = super().thresholds()
        for param, pairs, score in (
            ("top_n_grams", self.top_n_grams, "top_{}_gram"),
            ("dup_n_grams", self.dup_n_grams, "duplicated_{}_n_grams"),
        ):
            for size, fraction in pairs:
                if fraction:
                    found.setdefault(score.format(size), []).append((f"{param}[{size}]", float(fraction)))
        return found

    def _refusal_as_run(self, measured_by: Step) -> str | None:
        """Refuse a change of the n-gram sizes: they choose which fractions are measured."""
        if isinstance(measured_by, GopherRepetition):
            for param in ("top_n_grams", "dup_n_grams"):
                sizes, measured = (
                    sorted(n for n, _ in getattr(self, param)),
                    sorted(n for n, _ in getattr(measured_by, param)),
                )
                if sizes != measured:
                    return (
                        f"gopher_repetition.{param} changes the n-gram sizes measured ({measured} in the run, "
                        f"{sizes} asked); only the fractions can be re-decided"
                    )
        return super()._refusal_as_run(measured_by)

    def decide(self, measured: Mapping[str, npt.NDArray[np.float64]]) -> Verdict:
        """The rules from the stored fractions, in the order `__call__` applies them.

        `empty` is where the paragraph character fraction is NaN: its denominator, the text length, is 0. With
        `per_language`, each row's bounds are its language's (the `language` label the step stored).
        """
        return self._decide(measured, fw2.measured_settings(self, measured), scores=None)

    def _decide(
        self,
        measured: Mapping[str, npt.NDArray[np.float64]],
        settings: fw2.RowSettings | None,
        *,
        scores: dict[str, np.ndarray] | None,
    ) -> Verdict:
        """The verdict with this step's bounds, or each row's language's (`settings`)."""

        def score(name: str) -> np.ndarray:
            return np.asarray(measured[name], dtype=np.float64)

        rules: dict[str, np.ndarray] = {"empty": np.isnan(score("dup_para_char_frac"))}
        for name in ("dup_para_frac", "dup_para_char_frac", "dup_line_frac", "dup_line_char_frac"):
            rules[name] = fw2.above(score(name), fw2.bound(self, settings, name))
        for size, fraction in fw2.pairs(self, settings, "top_n_grams").items():
            rules[f"top_{size}_gram"] = fw2.above(score(f"top_{size}_gram"), fraction)
        for size, fraction in fw2.pairs(self, settings, "dup_n_grams").items():
            rules[f"duplicated_{size}_n_grams"] = fw2.above(score(f"duplicated_{size}_n_grams"), fraction)
        return fw2.labelled(Verdict.from_rules(scores=scores, **rules), settings)

    def __call__(self, batch: pa.Table) -> Verdict:
        texts = tx._texts(batch)
        n = len(texts)
        settings = fw2.row_settings(self, batch)
        length = tx.char_lengths(texts).astype(np.float64)
        scores: dict[str, np.ndarray] = {}

        paragraphs = tx.split_pieces(texts.str.strip_chars(tx.PY_SPACE).str.replace_all(r"\n{2,}", "\n\n"), "\n\n")
        para_dups, para_dup_chars = tx.duplicate_stats(paragraphs.row, paragraphs.hashes(), paragraphs.lengths(), n)
        scores["dup_para_frac"] = tx_ratio(para_dups, paragraphs.counts)
        scores["dup_para_char_frac"] = tx_ratio(para_dup_chars, length)

        lines = tx.split_pieces(texts.str.replace_all(r"\n+", "\n"), "\n")
        line_dups, line_dup_chars = tx.duplicate_stats(lines.row, lines.hashes(), lines.lengths(), n)
        scores["dup_line_frac"] = tx_ratio(line_dups, lines.counts)
        scores["dup_line_char_frac"] = tx_ratio(line_dup_chars, length)

        words = batch_words(batch, fw2.tokenizer(self))
        top_sizes = fw2.pairs(self, settings, "top_n_grams")
        dup_sizes = fw2.pairs(self, settings, "dup_n_grams")
        hashes = words.hashes()
        cumulative = np.concatenate([[0], np.cumsum(words.lengths())])
        grouped = _group_all_sizes(hashes, words.row, sorted({*top_sizes, *dup_sizes}))
        for size in top_sizes:
            chars = _top_ngram_chars(grouped[size], words.row, cumulative, size, n)
            scores[f"top_{size}_gram"] = tx_ratio(chars, length)
        for size in dup_sizes:
            grams = grouped[size]
            # Exact for every document (the sidecar stores it: a changed threshold re-decides as a rerun would): the
            # characters under the repeats' windows, which is what the walk counts unless one of its jumps skips a
            # repeated n-gram; only the documents where that can happen are walked.
            chars = _covered_chars(grams.later, cumulative, words.row, size, n)
            walk_rows, first_jump = _first_jumps(grams, words.row, size)
            _walk_duplicates(grams, hashes, words.row, cumulative, size, walk_rows, first_jump, chars)
            scores[f"duplicated_{size}_n_grams"] = tx_ratio(chars, length)
        return self._decide(scores, settings, scores=scores)


def tx_ratio(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    """numerator / denominator as floats, NaN where the denominator is 0."""
    return _ratio(np.asarray(numerator, dtype=np.float64), np.asarray(denominator, dtype=np.float64))
