"""C4's cleaning rules (Raffel et al. 2020, "Exploring the Limits of Transfer Learning with a Unified
Text-to-Text Transformer", section 2.2; TFDS c4_utils), as implemented by datatrove 0.10.1 and used for FineWeb.

`c4_quality` rewrites `text` line by line and drops whole documents; `c4_badwords` drops documents that contain
a word of the LDNOOBW list for their language (lists shipped in engine/data/ldnoobw, see SOURCE.md there).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from typing import ClassVar, Literal

import numpy as np
import polars as pl
import pyarrow as pa
from pydantic import Field

from engine.batch import Verdict
from engine.schema import ID, LANGUAGE, TEXT
from engine.steps import text as tx
from engine.steps.base import Decides, Filter, Measures, Step, Transform, register
from engine.steps.tokens import Deferred, Tokens, peek_tokens, remember_tokens, splice

CITATION = r"\[\d*]|\[edit]|\[citation needed]"
END_PUNCTUATION = (".", "?", "!", '"', "'")
POLICY_SUBSTRINGS = (
    "terms of use",
    "privacy policy",
    "cookie policy",
    "uses cookies",
    "use of cookies",
    "use cookies",
)
_WORD = r"[^\s\x1c-\x1f]+"
_IS_PUNCT = r"^\p{P}+$"
_SENTENCE_PUNCT = "^[" + tx.char_class(tx.SENTENCE_PUNCT) + "]$"
_MAYBE_BREAK = "[" + tx.char_class(tx.SENTENCE_PUNCT) + r"][\s\p{P}]*[^\s\p{P}]"
_LINES_MEASURED = "changes which lines are kept, hence the rewritten text and the sentence count the run measured"


def sentence_counts(lines: pl.Series) -> np.ndarray:
    """Sentences per line as spaCy's rule-based `sentencizer` counts them (datatrove's `split_into_sentences`).

    A new sentence starts at each token that is neither punctuation nor a sentence-ending character and follows
    a sentence-ending token (`.`, `!`, `?`, ...) since the previous such token.
    """
    # A break needs a sentence-ending character followed, after spaces and punctuation, by something else;
    # other non-empty lines are one sentence, without tokenising them.
    maybe = tx.to_numpy(lines.str.contains(_MAYBE_BREAK), bool)
    result = (tx.to_numpy(lines.str.len_bytes(), np.int64) > 0).astype(np.int64)
    if not maybe.any():
        return result
    rows = np.flatnonzero(maybe)
    result[rows] = _sentence_counts_tokenised(lines.gather(rows))
    return result


def _sentence_counts_tokenised(lines: pl.Series) -> np.ndarray:
    words = tx.words(lines)
    return count_sentences(words.values, words.row, len(lines))


def count_sentences(words: pl.Series, group: np.ndarray, n_groups: int) -> np.ndarray:
    """Sentences per group of consecutive words (`group` non-decreasing) as spaCy's sentencizer counts them."""
    if len(words) == 0:
        return np.zeros(n_groups, dtype=np.int64)
    ends = tx.to_numpy(words.str.contains(_SENTENCE_PUNCT), bool)
    punct = tx.to_numpy(words.str.contains(_IS_PUNCT), bool)
    normal = ~ends & ~punct
    ends_before = np.concatenate([[0], np.cumsum(ends)])  # ends_before[k]: sentence ends among tokens < k
    counts = np.bincount(group, minlength=n_groups)
    offsets = np.concatenate([[0], np.cumsum(counts)])
    idx = np.flatnonzero(normal)
    row = group[idx]
    previous = np.empty(len(idx), dtype=np.int64)
    if len(idx):
        previous[0] = offsets[row[0]]
        previous[1:] = np.where(row[1:] == row[:-1], idx[:-1] + 1, offsets[row[1:]])
    breaks = (ends_before[idx] - ends_before[previous]) > 0
    sentences = np.bincount(row[breaks], minlength=n_groups) + (counts > 0)
    return sentences.astype(np.int64)


def _has_long_word(lines: pl.Series, max_length: int) -> np.ndarray:
    """Lines with a whitespace-separated word longer than `max_length` characters (only long lines are split)."""
    result = np.zeros(len(lines), dtype=bool)
    long_lines = np.flatnonzero(tx.to_numpy(lines.str.len_chars(), np.int64) > max_length)
    if len(long_lines):
        candidates = lines.gather(long_lines)
        longest = candidates.str.extract_all(_WORD).list.eval(pl.element().str.len_chars()).list.max()
        result[long_lines] = tx.to_numpy(longest, np.int64) > max_length
    return result


@register
class C4Quality(Transform):
    """Clean documents line by line and drop documents as C4 does (datatrove `C4QualityFilter`).

    Line rules (in this order, on each `str.splitlines()` line, stripped): drop a line with a word (whitespace
    split) longer than `max_word_length`; remove Wikipedia citation markers (`[1]`, `[edit]`,
    `[citation needed]`); optionally drop lines not ending in terminal punctuation (`filter_no_terminal_punct`,
    **off by default, as in FineWeb**); drop lines with fewer than `min_words_per_line` words (counted before
    citation removal, as in datatrove); drop the document on "lorem ipsum"; drop lines mentioning "javascript";
    drop the document on `{`; drop lines with a cookie/terms-of-use phrase. Then drop documents with fewer than
    `min_num_sentences` sentences (spaCy sentencizer, approximated) in the kept lines. Kept documents get the kept
    lines joined by newlines; dropped documents keep their original text.
    Thresholds: C4 paper section 2.2 and TFDS c4_utils, datatrove 0.10.1 defaults, FineWeb's settings.

    Drops with: ``lorem_ipsum``, ``curly_bracket``, ``too_few_sentences``.
    """

    type: Literal["c4_quality"] = "c4_quality"
    version: ClassVar[int] = 1
    remove_citations: bool = True
    filter_no_terminal_punct: bool = False
    min_num_sentences: int = Field(5, ge=-1, description="-1 disables the rule")
    min_words_per_line: int = Field(3, ge=-1, description="-1 disables the rule")
    max_word_length: int = Field(1000, ge=-1, description="-1 disables the rule")
    filter_lorem_ipsum: bool = True
    filter_javascript: bool = True
    filter_curly_bracket: bool = True
    filter_policy: bool = True
    parameters = {
        "remove_citations": Measures(_LINES_MEASURED),
        "filter_no_terminal_punct": Measures(_LINES_MEASURED),
        "min_num_sentences": Decides(("sentences",)),
        "min_words_per_line": Measures(_LINES_MEASURED),
        "max_word_length": Measures(_LINES_MEASURED),
        "filter_lorem_ipsum": Measures(_LINES_MEASURED),
        "filter_javascript": Measures(_LINES_MEASURED),
        "filter_curly_bracket": Measures(_LINES_MEASURED),
        "filter_policy": Measures(_LINES_MEASURED),
    }

    def redecide_refusal(self, measured_by: Step) -> str | None:
        if isinstance(measured_by, C4Quality) and measured_by.min_num_sentences == -1 != self.min_num_sentences:
            return "c4_quality.min_num_sentences was -1 in the run, so sentences were not counted (NaN in the sidecar)"
        return super().redecide_refusal(measured_by)

    def decide(self, measured: Mapping[str, np.ndarray]) -> Verdict:
        """The document rules from the stored scores, in the order `__call__` applies them."""
        sentences = np.asarray(measured["sentences"], dtype=np.float64)
        with np.errstate(invalid="ignore"):
            too_few = sentences < self.min_num_sentences
        return Verdict.from_rules(
            lorem_ipsum=np.asarray(measured["lorem_ipsum"]) == 1,
            curly_bracket=np.asarray(measured["curly_bracket"]) == 1,
            too_few_sentences=too_few,
        )

    def __call__(self, batch: pa.Table) -> tuple[pa.Table, Verdict]:
        texts = tx._texts(batch)
        n = len(texts)
        normalised = tx.splitlines_normalised(texts)
        # str.splitlines() does not yield a last empty line after a trailing break.
        trimmed = pl.select(
            pl.when(normalised.str.ends_with("\n"))
            .then(normalised.str.slice(0, normalised.str.len_chars() - 1))
            .otherwise(normalised)
        ).to_series()
        pieces = tx.split_pieces(trimmed, "\n")
        raw = pieces.values.str.strip_chars(tx.PY_SPACE)
        n_words = tx.to_numpy(raw.str.count_matches(_WORD))
        keep = np.ones(len(raw), dtype=bool)
        if self.max_word_length != -1:
            keep &= ~_has_long_word(raw, self.max_word_length)
        line = raw.str.replace_all(CITATION, "") if self.remove_citations else raw
        if self.filter_no_terminal_punct:
            ends = pl.select(
                pl.any_horizontal([line.str.ends_with(p) for p in END_PUNCTUATION]) & ~line.str.ends_with("...")
            ).to_series()
            keep &= tx.to_numpy(ends, bool)
        keep &= n_words >= self.min_words_per_line
        lower = line.str.to_lowercase()
        no_index = np.iinfo(np.int64).max
        line_index = np.arange(len(raw), dtype=np.int64)

        def first_line(mask: np.ndarray) -> np.ndarray:
            first = np.full(n, no_index, dtype=np.int64)
            np.minimum.at(first, pieces.row[mask], line_index[mask])
            return first

        lorem = (
            keep & tx.to_numpy(lower.str.contains("lorem ipsum", literal=True), bool)
            if self.filter_lorem_ipsum
            else np.zeros(len(raw), bool)
        )
        first_lorem = first_line(lorem)
        if self.filter_javascript:
            keep &= ~(tx.to_numpy(lower.str.contains("javascript", literal=True), bool) & ~lorem)
        curly = (
            keep & ~lorem & tx.to_numpy(line.str.contains("{", literal=True), bool)
            if self.filter_curly_bracket
            else np.zeros(len(raw), bool)
        )
        first_curly = first_line(curly)
        if self.filter_policy:
            policy = tx.to_numpy(lower.str.contains_any(list(POLICY_SUBSTRINGS)), bool)
            keep &= ~(policy & ~lorem & ~curly)
        keep &= ~lorem & ~curly

        kept_lines = line.filter(pl.Series(keep))
        kept_row = pieces.row[keep]
        kept_index = np.flatnonzero(keep)
        # Words already split for this text (by an earlier step) give the sentences of most lines for free.
        tokens = peek_tokens(batch)
        words = None
        if tokens is not None:
            changed = (
                tx.to_numpy(raw.str.contains(CITATION), bool) if self.remove_citations else np.zeros(len(raw), bool)
            )
            words = _LineWords.of(tokens, pieces, texts, changed)
        sentences = np.full(n, np.nan)
        if self.min_num_sentences != -1:
            per_line = _kept_line_sentences(kept_lines, kept_index, words)
            sentences = np.bincount(kept_row, weights=per_line, minlength=n).astype(np.float64)
        lorem_doc = first_lorem < first_curly
        curly_doc = first_curly < first_lorem
        with np.errstate(invalid="ignore"):
            too_few = sentences < self.min_num_sentences
        verdict = Verdict.from_rules(
            lorem_ipsum=lorem_doc,
            curly_bracket=curly_doc,
            too_few_sentences=too_few,
            scores={
                "sentences": sentences,
                "lines": pieces.counts.astype(np.float64),
                "kept_lines": np.bincount(kept_row, minlength=n).astype(np.float64),
                "lorem_ipsum": lorem_doc.astype(np.float64),
                "curly_bracket": curly_doc.astype(np.float64),
            },
        )
        final = _rewritten_texts(texts, verdict.keep, kept_lines, kept_row)
        column = final.to_arrow().cast(pa.large_string())
        out = batch.set_column(batch.schema.get_field_index(TEXT), TEXT, column)
        if words is not None:
            remember_tokens(out, words.rewritten(keep, line, verdict.keep, final))
        return out, verdict


def _rewritten_texts(texts: pl.Series, keep_rows: np.ndarray, kept_lines: pl.Series, kept_row: np.ndarray) -> pl.Series:
    """Kept rows: their kept lines joined by newlines, stripped; dropped rows: their original text."""
    joined = (
        pl.DataFrame({"row": kept_row, "line": kept_lines})
        .group_by("row", maintain_order=True)
        .agg(pl.col("line").str.join("\n"))
    )
    cleaned = pl.repeat("", len(texts), eager=True, dtype=pl.String).scatter(
        joined["row"], joined["line"].str.strip_chars(tx.PY_SPACE)
    )
    return pl.select(pl.when(pl.Series(keep_rows)).then(cleaned).otherwise(texts)).to_series()


@dataclass(frozen=True)
class _LineWords:
    """An earlier step's words of the batch, placed on C4's lines (`line`: flat index into the line pieces).

    The tokenizer numbers lines at every `str.splitlines()` break but \x1c-\x1e and splits unstripped lines,
    so words of rows holding \x1c-\x1f (not `clean`) get line -1: their lines are split again where needed,
    as are lines whose citation removal `changed` them.
    """

    tokens: Tokens
    pieces: tx.Pieces
    line: np.ndarray
    clean: np.ndarray  # per row
    changed: np.ndarray  # per line

    @classmethod
    def of(cls, tokens: Tokens, pieces: tx.Pieces, texts: pl.Series, changed: np.ndarray) -> _LineWords:
        row = tokens.words.row
        clean = ~tx.to_numpy(texts.str.contains("[\x1c-\x1f]"), bool)
        clean[row[tokens.line >= pieces.counts[row]]] = False
        line = np.where(clean[row], pieces.offsets[row] + tokens.line, -1)
        return cls(tokens, pieces, line, clean, changed)

    @property
    def matched(self) -> np.ndarray:
        """The lines whose words these are exactly."""
        matched: np.ndarray = self.clean[self.pieces.row] & ~self.changed
        return matched

    def on_lines(self, lines: np.ndarray) -> np.ndarray:
        """Which words are on the lines where `lines` (one bool per line) is true."""
        on: np.ndarray = (self.line >= 0) & lines[np.maximum(self.line, 0)]
        return on

    def rewritten(self, kept: np.ndarray, lines: pl.Series, keep_rows: np.ndarray, final: pl.Series) -> Deferred:
        """The tokens of the rewritten text: a kept row is its kept `lines` joined, a dropped row keeps its text.

        Kept lines changed by citation removal are split again, and so is the whole new text of a row that is
        not clean or keeps an empty line (stripping the joined text would move its lines).
        """
        row = self.tokens.words.row
        n = len(keep_rows)
        line_row = self.pieces.row
        empty = kept & tx.to_numpy(lines.str.len_bytes() == 0, bool)
        whole = keep_rows & (~self.clean | (np.bincount(line_row[empty], minlength=n) > 0))
        by_line = keep_rows & ~whole
        unchanged = ~keep_rows[row]
        select = unchanged | (by_line[row] & self.on_lines(kept & ~self.changed))
        kept_before = np.concatenate([[0], np.cumsum(kept)])
        rank = kept_before[:-1] - kept_before[self.pieces.offsets[line_row]]  # of a kept line among its row's
        new_line = np.where(unchanged, self.tokens.line, rank[np.maximum(self.line, 0)])
        again = np.flatnonzero(kept & self.changed & by_line[line_row])
        redo = np.flatnonzero(whole)
        texts = pl.concat([lines.gather(again), final.gather(redo)])
        text_row = np.concatenate([line_row[again], redo])
        text_line = np.concatenate([rank[again], np.zeros(len(redo), dtype=np.int64)])
        return splice(self.tokens, select, new_line, texts, text_row, text_line)


def _kept_line_sentences(kept_lines: pl.Series, kept_index: np.ndarray, words: _LineWords | None) -> np.ndarray:
    """Sentences of every kept line: counted on the known words where possible, else on the line split again."""
    if words is None:
        return sentence_counts(kept_lines)
    result = (tx.to_numpy(kept_lines.str.len_bytes(), np.int64) > 0).astype(np.int64)
    maybe = tx.to_numpy(kept_lines.str.contains(_MAYBE_BREAK), bool)
    known = maybe & words.matched[kept_index]
    again = maybe & ~known
    if again.any():
        result[again] = _sentence_counts_tokenised(kept_lines.filter(pl.Series(again)))
    if known.any():
        lines = np.zeros(len(words.matched), dtype=bool)
        lines[kept_index[known]] = True
        on = words.on_lines(lines)
        group = (np.cumsum(lines) - 1)[words.line[on]]
        result[known] = count_sentences(words.tokens.words.values.filter(pl.Series(on)), group, int(known.sum()))
    return result


# LDNOOBW languages (datatrove's _BADWORDS_LANGS); the lists are shipped in engine/data/ldnoobw/<lang>.txt.
BADWORDS_LANGUAGES = (
    "ar", "cs", "da", "de", "en", "eo", "es", "fa", "fi", "fil", "fr", "fr-CA-u-sd-caqc", "hi", "hu", "it",
    "ja", "kab", "ko", "nl", "no", "pl", "pt", "ru", "sv", "th", "tlh", "tr", "zh",
)  # fmt: skip
# datatrove removes these common subwords (an allowlist meant for ja and zh) from every language's list.
_ALLOWLIST = frozenset({"sm", "グロ", "女の子", "性"})
_NO_WORD_BOUNDARY = frozenset({"ja", "th", "zh"})
_BADWORDS_DIR = resources.files("engine") / "data" / "ldnoobw"


@lru_cache(maxsize=64)
def badwords_pattern(language: str) -> str | None:
    """The regex datatrove builds for a language's LDNOOBW list (None if there is no list)."""
    if language not in BADWORDS_LANGUAGES:
        return None
    path = _BADWORDS_DIR / f"{language}.txt"
    words = {line.strip() for line in path.read_text(encoding="utf-8").splitlines()} - _ALLOWLIST
    words.discard("")
    import re

    alternatives = "|".join(re.escape(w) for w in sorted(words))
    if language in _NO_WORD_BOUNDARY:
        return alternatives
    return rf"(?:\W|^)({alternatives})(?:\W|$)"


@register
class C4BadWords(Filter):
    """Drop documents containing a word of the LDNOOBW list for their language (datatrove `C4BadWordsFilter`).

    The language comes from the `language` column (from `language_id`), else `default_language`. Matching is on
    lowercased text, flanked by non-word characters except for ja, th and zh, as in C4 and datatrove. Documents
    in a language without a list pass (`missing_language: keep`) or are dropped (`drop`); datatrove raises by
    default instead. `keep_fraction` keeps that share of matching documents, chosen by a hash of `id` and
    `seed` so the choice does not depend on batching.
    Source: C4 paper section 2.2; LDNOOBW lists (CC-BY-4.0), see engine/data/ldnoobw/SOURCE.md.

    Drops with: ``badwords``, ``missing_language``.
    """

    type: Literal["c4_badwords"] = "c4_badwords"
    version: ClassVar[int] = 1
    default_language: str = "en"
    keep_fraction: float = Field(0.0, ge=0, le=1)
    seed: int = 0
    missing_language: Literal["keep", "drop"] = "keep"
    parameters = {
        "default_language": Measures("chooses the word list of documents without a language, which was matched"),
        "keep_fraction": Decides(("badwords_draw",)),
        "seed": Measures("changes the per-document draws the run stored"),
        "missing_language": Decides(),
    }

    def assets(self) -> dict[str, str]:
        return {f"ldnoobw/{code}": str(_BADWORDS_DIR / f"{code}.txt") for code in BADWORDS_LANGUAGES}

    def __call__(self, batch: pa.Table) -> Verdict:
        texts = tx._texts(batch)
        n = len(texts)
        if LANGUAGE in batch.column_names:
            languages = pl.Series(batch[LANGUAGE]).cast(pl.String).fill_null(self.default_language)
        else:
            languages = pl.Series([self.default_language] * n, dtype=pl.String)
        lower = texts.str.to_lowercase()
        found = np.zeros(n, dtype=bool)
        missing = np.zeros(n, dtype=bool)
        lang_values = languages.to_numpy()
        for language in languages.unique().to_list():
            rows = lang_values == language
            pattern = badwords_pattern(language)
            if pattern is None:
                missing |= rows
                continue
            found[rows] = tx.to_numpy(lower.filter(pl.Series(rows)).str.contains(pattern), bool)
        # The draw that spares a matching document when below keep_fraction: a hash of (seed, id), so it does not
        # depend on batching; drawn for matching documents only (NaN elsewhere: nothing to spare).
        draws = np.full(n, np.nan)
        if found.any():
            ids = batch[ID].to_pylist() if ID in batch.column_names else [str(i) for i in range(n)]
            draws[found] = [
                int.from_bytes(hashlib.blake2b(f"{self.seed}:{ids[i]}".encode(), digest_size=8).digest()) / 2**64
                for i in np.flatnonzero(found)
            ]
        badwords = np.where(missing, np.nan, found.astype(np.float64))
        return self.decide({"badwords": badwords, "badwords_draw": draws})

    def decide(self, measured: Mapping[str, np.ndarray]) -> Verdict:
        """`badwords` is 1 where the document's list matched, 0 where not, NaN where its language has no list."""
        badwords = np.asarray(measured["badwords"], dtype=np.float64)
        draws = np.asarray(measured["badwords_draw"], dtype=np.float64)
        with np.errstate(invalid="ignore"):
            spared = draws < self.keep_fraction if self.keep_fraction > 0 else np.zeros(len(draws), dtype=bool)
        return Verdict.from_rules(
            badwords=(badwords == 1) & ~spared,
            missing_language=np.isnan(badwords) & (self.missing_language == "drop"),
            scores={"badwords": badwords, "badwords_draw": draws},
        )
