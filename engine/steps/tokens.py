"""Tokenise once per batch: the words (and the line of each word) that the heuristic steps share.

gopher_repetition, gopher_quality, c4_quality and fineweb_quality all read a batch's words, and splitting
words is the costliest part of each. `batch_tokens(batch)` splits the batch's text once and remembers the
result for that text column. The result follows the batch through the pipeline instead of being recomputed:

- rows dropped by a step: `process_batch` calls `carry_tokens(before, after, keep)`, which filters the
  remembered words by row and files them under the smaller batch's text column;
- text rewritten by a transform (c4_quality): the rewritten column is a new array, so nothing remembered
  applies to it; the transform may hand over the words of its new text with `remember_tokens`, otherwise
  the next step splits the new text itself.

Entries are keyed on the identity of the text column's buffers (address, size, offset, length) and hold a
reference to the column, so the addresses cannot be reused by another array while an entry lives. Only a
few entries are kept (one batch in flight per process), so memory stays bounded by the batch size.

A tokenizer is a function from a text series to a `list[str]` series: each text's words in order, with a
`LINE_BREAK_TOKEN` at every line break (see `engine.steps.text.split_words`). The default is the English
word splitter. A tokenizer that also reads other columns of the batch (`BatchTokenizer`: FineWeb-2's words per
row language, `engine.steps.segmentation.LanguageTokenizer`) splits the whole batch with `split_batch`; it is
part of the cache key like any tokenizer, and its words follow the rows the same way (the columns it reads must
not change while the text stays the same: a row's language is set once, before any step splits per language).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np
import polars as pl
import pyarrow as pa

from engine.batch import BoolArray, text_column
from engine.steps import text as tx

Tokenizer = Callable[[pl.Series], pl.Series]


@runtime_checkable
class BatchTokenizer(Protocol):
    """A tokenizer that reads more of the batch than its text (hashable: it is part of the cache key)."""

    def split_batch(self, batch: pa.Table) -> pl.Series:
        """Each row's words (`list[str]`), in row order, with `LINE_BREAK_TOKEN`s where it marks lines."""
        ...


AnyTokenizer = Tokenizer | BatchTokenizer


def english_words(texts: pl.Series) -> pl.Series:
    """The default tokenizer: datatrove's English word splitter (approximated), with line-break tokens."""
    return tx.split_words(texts, line_breaks=True)


@dataclass(frozen=True)
class Tokens:
    """The words of a batch, flat (`words`), and the line (`str.splitlines()` index in its row) of each word.

    Line numbers count every `str.splitlines()` boundary except \\x1c-\\x1e (which no tokenizer sees as
    whitespace): a step that needs exact line numbers checks rows holding those characters itself.
    """

    words: tx.Pieces
    line: tx.IntArray

    def take(self, rows: BoolArray) -> Tokens:
        """The tokens of the rows where `rows` is true."""
        return self.select(rows[self.words.row], rows)

    def select(self, words: BoolArray, rows: BoolArray) -> Tokens:
        """Only the words where `words` is true, of the rows where `rows` is true."""
        return Tokens(self.words.select(words, rows), self.line[words])


def splice(
    base: Tokens,
    keep: BoolArray,
    line: tx.IntArray,
    texts: pl.Series,
    text_row: tx.IntArray,
    text_line: tx.IntArray,
    tokenizer: Tokenizer = english_words,
) -> Deferred:
    """Tokens made of `base`'s words where `keep` is true (on lines `line`) and the words of `texts`, split here.

    Text `k` goes to row `text_row[k]`, its first line at `text_line[k]`. Rows and lines are placed in order;
    no line may get words from both sources. The rows are `base`'s rows. Only `texts` are split now: the
    words are put together when a step asks for them (the count per row is known at once).
    """
    n_rows = len(base.words.counts)
    extra = tokenise(texts, tokenizer)
    extra_row = text_row[extra.words.row]
    counts = np.bincount(base.words.row[keep], minlength=n_rows) + np.bincount(extra_row, minlength=n_rows)

    def build() -> Tokens:
        kept = Tokens(base.words.select(keep, np.ones(n_rows, dtype=bool)), line[keep])
        if len(extra.line) == 0:
            return kept
        extra_line = text_line[extra.words.row] + extra.line
        order = np.lexsort((extra_line, extra_row))  # stable: words of one line stay in order
        extra_key = _line_key(extra_row[order], extra_line[order])
        # Merge two sorted runs: each extra word lands after the kept words on earlier lines.
        at = np.searchsorted(_line_key(kept.words.row, kept.line), extra_key) + np.arange(len(order))
        total = len(kept.line) + len(order)
        from_kept = np.ones(total, dtype=bool)
        from_kept[at] = False
        source = np.empty(total, dtype=np.int64)
        source[from_kept] = np.arange(len(kept.line))
        source[at] = len(kept.line) + order
        values = pl.concat([kept.words.values, extra.words.values]).gather(source)
        row = np.concatenate([kept.words.row, extra_row])[source]
        return Tokens(tx.Pieces(values, row, counts.astype(np.int64)), np.concatenate([kept.line, extra_line])[source])

    return Deferred(counts.astype(np.int64), build)


def _line_key(row: tx.IntArray, line: tx.IntArray) -> tx.IntArray:
    return (row.astype(np.int64) << 32) + line


def tokenise(texts: pl.Series, tokenizer: Tokenizer = english_words) -> Tokens:
    """Split `texts` into words, recording the line of each word."""
    return _tokens(tokenizer(texts))


def _tokens(lists: pl.Series) -> Tokens:
    """Tokens from each row's words, recording the line of each word (0 where no line breaks are marked)."""
    flat = tx.flatten(lists)
    is_break = tx.to_numpy(flat.values == tx.LINE_BREAK_TOKEN, bool)
    breaks_before = np.concatenate([[0], np.cumsum(is_break)])
    line = breaks_before[:-1] - breaks_before[flat.offsets[flat.row]]
    is_word = ~is_break
    return Tokens(flat.select(is_word, np.ones(len(flat.counts), dtype=bool)), line[is_word])


@dataclass(frozen=True)
class Deferred:
    """Tokens known by a recipe and built only when a step asks for the words; their count per row is known.

    Rows carried through a step that drops some, or the words of a text a transform wrote: often nobody asks
    for them (the last step's survivors are carried too), or only for the counts (fineweb_quality).
    """

    counts: tx.IntArray
    build: Callable[[], Tokens]

    @staticmethod
    def of_rows(tokens: Tokens | Deferred, rows: BoolArray) -> Deferred:
        """The tokens of the rows where `rows` is true."""
        counts = (tokens.words.counts if isinstance(tokens, Tokens) else tokens.counts)[rows]
        return Deferred(counts, lambda: _resolved(tokens).take(rows))


def _resolved(tokens: Tokens | Deferred) -> Tokens:
    return tokens if isinstance(tokens, Tokens) else tokens.build()


_ColumnKey = tuple[int, ...]
_Key = tuple[AnyTokenizer, _ColumnKey]
_ENTRIES: OrderedDict[_Key, tuple[pa.ChunkedArray, Tokens | Deferred]] = OrderedDict()
_LOCK = threading.Lock()
_MAX_ENTRIES = 2


def _column_key(column: pa.ChunkedArray) -> _ColumnKey:
    """The identity of a column's data: its buffers' addresses and sizes, offsets and lengths."""
    return (
        len(column),
        column.null_count,
        *(
            value
            for chunk in column.chunks
            for value in (
                chunk.offset,
                len(chunk),
                *(part for buffer in chunk.buffers() if buffer is not None for part in (buffer.address, buffer.size)),
            )
        ),
    )


def _store(column: pa.ChunkedArray, tokenizer: AnyTokenizer, tokens: Tokens | Deferred) -> None:
    with _LOCK:
        _ENTRIES[(tokenizer, _column_key(column))] = (column, tokens)
        while len(_ENTRIES) > _MAX_ENTRIES:
            _ENTRIES.popitem(last=False)


def _entry(column: pa.ChunkedArray, tokenizer: AnyTokenizer) -> Tokens | Deferred | None:
    key = (tokenizer, _column_key(column))
    with _LOCK:
        entry = _ENTRIES.get(key)
        if entry is not None:
            _ENTRIES.move_to_end(key)
    return None if entry is None else entry[1]


def _lookup(column: pa.ChunkedArray, tokenizer: AnyTokenizer) -> Tokens | None:
    found = _entry(column, tokenizer)
    if isinstance(found, Deferred):
        found = found.build()
        _store(column, tokenizer, found)
    return found


def batch_tokens(batch: pa.Table, tokenizer: AnyTokenizer = english_words) -> Tokens:
    """The tokens of a batch's text column: remembered if this column was split (or carried) before."""
    column = text_column(batch)
    tokens = _lookup(column, tokenizer)
    if tokens is None:
        if isinstance(tokenizer, BatchTokenizer):
            tokens = _tokens(tokenizer.split_batch(batch))
        else:
            tokens = tokenise(tx._texts(column), tokenizer)
        _store(column, tokenizer, tokens)
    return tokens


def peek_tokens(batch: pa.Table, tokenizer: AnyTokenizer = english_words) -> Tokens | None:
    """The tokens of a batch's text column if they are known already (None: nobody split this text yet)."""
    return _lookup(text_column(batch), tokenizer)


def batch_words(batch: pa.Table, tokenizer: AnyTokenizer = english_words) -> tx.Pieces:
    """The words of a batch's text column (see `batch_tokens`)."""
    return batch_tokens(batch, tokenizer).words


def batch_word_counts(batch: pa.Table, tokenizer: AnyTokenizer = english_words) -> tx.IntArray:
    """Words per row of a batch's text column, without putting carried words together when they are known."""
    found = _entry(text_column(batch), tokenizer)
    if isinstance(found, Deferred):
        return found.counts
    return batch_words(batch, tokenizer).counts


def remember_tokens(batch: pa.Table, tokens: Tokens | Deferred, tokenizer: AnyTokenizer = english_words) -> None:
    """File `tokens` as the tokens of `batch`'s text (a transform that knows the words of the text it wrote)."""
    counts = tokens.words.counts if isinstance(tokens, Tokens) else tokens.counts
    if len(counts) != batch.num_rows:
        msg = f"tokens for {len(counts)} rows filed for a batch of {batch.num_rows}"
        raise ValueError(msg)
    _store(text_column(batch), tokenizer, tokens)


def carry_tokens(source: pa.Table, target: pa.Table, rows: BoolArray) -> None:
    """`target` is `source` keeping the rows where `rows` is true: file the source's tokens under it.

    The source's entries are dropped (the pipeline moves on to the smaller batch); the filtering itself
    happens when a step asks for the target's words.
    """
    source_key = _column_key(text_column(source))
    target_column = text_column(target)
    if _column_key(target_column) == source_key:  # the same column: nothing to carry
        return
    with _LOCK:
        found = [(key[0], _ENTRIES.pop(key)[1]) for key in list(_ENTRIES) if key[1] == source_key]
    for tokenizer, tokens in found:
        _store(target_column, tokenizer, Deferred.of_rows(tokens, rows.copy()))
