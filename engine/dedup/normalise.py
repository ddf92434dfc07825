r"""Text normalisation before shingling or exact hashing, vectorised with `pyarrow.compute` (RE2 regexes).

Steps, in order: cap to `max_chars` characters, NFKD + strip combining marks (diacritics), lowercase, every Unicode
digit to `0`, every run of punctuation, symbols, separators and whitespace to one space, trimmed.

This follows datatrove's `simplify_text` (FineWeb's MinHash stage) in intent, not character for character.
datatrove 0.10.1 lowercases, replaces each number (`\p{Nd}+` with at most one decimal part: `2019`, `3.14`) by one
`0`, turns a fixed list of characters (ASCII punctuation and control characters, some CJK and typographic marks:
its `PUNCTUATION`) into spaces, collapses whitespace, then applies NFD and strips combining marks; its MinHash then
splits the text with the language's word tokenizer. The engine differs in four ways:

- Digits: each digit becomes `0` (`2019` -> `0000`, `15th` -> `00th`); datatrove folds a whole number to one `0`.
- Symbols: every Unicode punctuation (P*) and symbol (S*) character separates words (`•`, `·`, `©`, `°`, `€`,
  `¿`, curly quotes, emoji, U+FFFD); datatrove keeps the characters missing from its list inside words (`£5` is
  one word `£0` there, `0` here).
- Compatibility forms: NFKD instead of NFD, so ligatures, full-width letters, superscripts and `º` fold to plain
  letters and digits (`km²` -> `km0`; datatrove keeps `km²`).
- Words: the normalised text is split on whitespace; datatrove uses a word tokenizer per language (spaCy for
  English). In scripts written without spaces (Chinese, Japanese, Thai) a whole run of text is one word here, so
  5-word shingles are coarse and only long identical runs make such documents near-duplicates.

Why: each rule is one vectorised pass over a whole batch (for shingling, the per-character folding runs on the
batch's distinct words only, see `normalised_words`), a Unicode category covers every script where a fixed list
covers mostly ASCII, and the broader folding only merges texts that differ in formatting (symbols, digit values,
compatibility forms), which raises near-duplicate recall. Measured on real text (benchmarks/compare_normalisation.py,
line in benchmarks/results/normalisation.jsonl): the words equal `simplify_text(text).split()` for 96 of 670
dolma Common Crawl pages and 83 of 1,381 Dragnet articles; the median Jaccard of the two 5-word shingle sets is
0.79 and 0.87. The clusters both pipelines find on the same documents are compared in benchmarks/RESULTS.md
("MinHash dedup", agreement with datatrove's clusters).

`normalised_words` gives the words of the same normalised text faster, for shingling: the text is cut at
ASCII separators on its bytes, the batch's distinct chunks that hold other characters are split on runs of
Unicode punctuation, symbols and whitespace, and the per-character folding (NFKD, diacritics, case, digits)
runs on the pieces of the batch's distinct chunks only (ASCII letters and digits on their bytes). The two agree
except for the rare characters that NFKD turns into punctuation (`½` is one word `00` there, two words `0 0` in
`normalise_texts`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

_DIACRITICS = r"\p{Mn}+"
_DIGITS = r"\p{Nd}"
# Punctuation, symbols and whitespace in one pass: a run of them becomes one space.
_SEPARATORS = r"[\p{P}\p{S}\p{Z}\p{Cc}\s\x{180e}\x{200b}\x{feff}]+"
# Bytes a chunk is made of (`_ascii_separated_chunks`): ASCII letters and digits, and every byte of a multi-byte
# UTF-8 character; every other ASCII byte separates words.
_BYTES = np.arange(256)
_CHUNK_BYTE = (
    ((_BYTES >= ord("a")) & (_BYTES <= ord("z")))
    | ((_BYTES >= ord("A")) & (_BYTES <= ord("Z")))
    | ((_BYTES >= ord("0")) & (_BYTES <= ord("9")))
    | (_BYTES >= 128)
)


def _capped(texts: pa.Array | pa.ChunkedArray, max_chars: int | None) -> pa.Array:
    """One large_string array, nulls as "", each text cut to its first `max_chars` characters."""
    if isinstance(texts, pa.ChunkedArray):
        texts = texts.combine_chunks() if texts.num_chunks else pa.array([], type=pa.large_string())
    if texts.type != pa.large_string():
        texts = texts.cast(pa.large_string())
    texts = pc.fill_null(texts, "")
    # A text of at most `max_chars` bytes has at most that many characters: most batches need no copy.
    if max_chars is not None and len(texts) and (pc.max(pc.binary_length(texts)).as_py() or 0) > max_chars:
        texts = pc.utf8_slice_codeunits(texts, 0, max_chars)
    return texts


def normalise_texts(texts: pa.Array | pa.ChunkedArray, *, max_chars: int | None = None) -> pa.Array:
    """Normalised copies of `texts` (nulls become empty strings), one large_string per input row.

    Args:
        texts: string or large_string values.
        max_chars: keep only the first `max_chars` characters before normalising (None: all), so that one
            giant document cannot collide with everything.
    """
    texts = _capped(texts, max_chars)
    texts = pc.utf8_normalize(texts, "NFKD")
    texts = pc.replace_substring_regex(texts, _DIACRITICS, "")
    texts = pc.utf8_lower(texts)
    texts = pc.replace_substring_regex(texts, _DIGITS, "0")
    texts = pc.replace_substring_regex(texts, _SEPARATORS, " ")
    return pc.utf8_trim(texts, " ")


@dataclass(frozen=True)
class Words:
    """The normalised words of a batch, dictionary-encoded (a word may appear more than once in `vocabulary`).

    Word `k` of document `d` is `vocabulary[indices[offsets[d] + k]]`.
    """

    vocabulary: pa.Array
    indices: npt.NDArray[np.int64]
    offsets: npt.NDArray[np.int64]


def fold_words(words: pa.Array) -> pa.Array:
    """The per-character part of the normalisation, for single words (no separators left inside).

    ASCII letters and digits are folded byte by byte first (the same result: NFKD leaves them alone and
    never combines them with what follows); only words with other characters go through the Unicode steps.
    """
    words, has_ascii_separator = _fold_ascii_bytes(words)
    is_ascii = np.asarray(pc.string_is_ascii(words).to_numpy(zero_copy_only=False), dtype=bool)
    ascii_rows, other = np.flatnonzero(is_ascii), np.flatnonzero(~is_ascii)
    ascii_part = words.take(ascii_rows) if len(other) else words
    if has_ascii_separator:  # every ASCII character but a letter or digit is a separator
        ascii_part = pc.replace_substring_regex(ascii_part, "[^a-z0-9]+", "")
    if len(other) == 0:
        return ascii_part
    folded = pa.concat_arrays([ascii_part, _fold_unicode(words.take(other))])
    order = np.empty(len(words), dtype=np.int64)
    order[ascii_rows] = np.arange(len(ascii_rows))
    order[other] = len(ascii_rows) + np.arange(len(other))
    return folded.take(pa.array(order))


def _fold_ascii_bytes(words: pa.Array) -> tuple[pa.Array, bool]:
    """ASCII capitals to lowercase and ASCII digits to `0`, on the bytes (UTF-8 never has them inside a
    multi-byte character); and whether any ASCII byte is neither a letter nor a digit."""
    words = words.cast(pa.large_string())
    validity, offsets, data = words.buffers()
    if len(words) == 0 or data is None:
        return words, False
    raw = np.frombuffer(data, dtype=np.uint8).copy()
    raw[(raw >= 65) & (raw <= 90)] += 32
    raw[(raw >= 49) & (raw <= 57)] = 48
    alnum = ((raw >= 97) & (raw <= 122)) | (raw == 48) | (raw >= 128)
    folded = pa.LargeStringArray.from_buffers(
        len(words), offsets, pa.py_buffer(raw), validity, words.null_count, words.offset
    )
    return folded, not bool(alnum.all())


def _fold_unicode(words: pa.Array) -> pa.Array:
    words = pc.utf8_normalize(words, "NFKD")
    words = pc.replace_substring_regex(words, _DIACRITICS, "")
    words = pc.utf8_lower(words)
    words = pc.replace_substring_regex(words, _DIGITS, "0")
    return pc.replace_substring_regex(words, _SEPARATORS, "")


def normalised_words(texts: pa.Array | pa.ChunkedArray, *, max_chars: int | None = None) -> Words:
    """The words of every normalised text of a batch (see the module docstring).

    The text is cut at ASCII separators on its bytes (fast, no regex); only the batch's distinct chunks that
    hold other characters are then split on Unicode punctuation, symbols and spaces; their pieces are
    folded, and every occurrence of a chunk expands into its pieces.
    """
    texts = _capped(texts, max_chars)
    chunks, doc_offsets = _ascii_separated_chunks(texts)
    distinct, occurrences = _encode_chunks(chunks)

    # Pieces of each distinct chunk between separators, empty pieces dropped.
    flat_pieces, piece_first, piece_count = _split_on_separators(distinct)
    non_empty = np.asarray(pc.greater(pc.binary_length(flat_pieces), 0).to_numpy(zero_copy_only=False), bool)
    before = _prefix_counts(non_empty)
    token_first = before[piece_first]
    token_count = before[piece_first + piece_count] - token_first
    # The pieces are the vocabulary as they are: pieces of distinct chunks repeat only where a chunk with
    # non-ASCII characters splits into a word found elsewhere, and equal words hash alike anyway.
    vocabulary = fold_words(flat_pieces.filter(pa.array(non_empty)))

    # Every occurrence of a chunk becomes its pieces' words.
    counts = token_count[occurrences]
    occurrence_offsets = _prefix_counts(counts)
    total = int(occurrence_offsets[-1])
    first = np.repeat(token_first[occurrences], counts)
    within = np.arange(total, dtype=np.int64) - np.repeat(occurrence_offsets[:-1], counts)
    indices = first + within
    offsets = occurrence_offsets[doc_offsets]

    vanished = np.asarray(pc.equal(vocabulary, "").to_numpy(zero_copy_only=False), dtype=bool)
    if vanished.any():  # words made only of combining marks fold to nothing
        keep = ~vanished[indices]
        indices, offsets = indices[keep], _prefix_counts(keep)[offsets]
    return Words(vocabulary, indices, offsets)


def _ascii_separated_chunks(texts: pa.Array) -> tuple[pa.Array, npt.NDArray[np.int64]]:
    """Every text cut at its ASCII separators, flat, and where each text's chunks start (texts + 1 entries).

    Every ASCII character but a letter or digit is a separator, so this is a first cut on the bytes (UTF-8
    never has an ASCII byte inside a multi-byte character); chunks may still hold Unicode separators.
    """
    n = len(texts)
    offsets = np.frombuffer(texts.buffers()[1], dtype=np.int64)[texts.offset : texts.offset + n + 1]
    data = texts.buffers()[2]
    raw = np.frombuffer(data, dtype=np.uint8)[offsets[0] : offsets[-1]] if data is not None else np.zeros(0, np.uint8)
    offsets = offsets - offsets[0]
    kept = _CHUNK_BYTE[raw]
    # +1 where a run of kept bytes starts, -1 just after one ends; a text boundary inside a run cuts it.
    edges = np.diff(kept.view(np.int8), prepend=np.int8(0), append=np.int8(0))
    is_start, is_end = edges == 1, edges == -1
    inner = offsets[(offsets > 0) & (offsets < len(raw))]
    cut = inner[kept[inner - 1] & kept[inner]]
    is_start[cut] = True
    is_end[cut] = True
    starts, ends = np.flatnonzero(is_start), np.flatnonzero(is_end)
    chunk_offsets = _prefix_counts(ends - starts)
    chunks = pa.LargeStringArray.from_buffers(len(starts), pa.py_buffer(chunk_offsets), pa.py_buffer(raw[kept]))
    return chunks, np.searchsorted(starts, offsets).astype(np.int64)


def _encode_chunks(chunks: pa.Array) -> tuple[pa.Array, npt.NDArray[np.int64]]:
    """The distinct chunks and, per chunk, its index among them (`pc.dictionary_encode`, in another order).

    Chunks of at most 8 bytes (most words) are grouped as the 64-bit integers their bytes spell, which hash
    much faster than strings; a chunk holds no zero byte, so the zero padding cannot make two chunks equal.
    """
    n = len(chunks)
    offsets = np.frombuffer(chunks.buffers()[1], dtype=np.int64)[chunks.offset : chunks.offset + n + 1]
    data = chunks.buffers()[2]
    raw = np.frombuffer(data, dtype=np.uint8) if data is not None and n else np.zeros(0, np.uint8)
    lengths = np.diff(offsets)
    short = lengths <= 8
    padded = np.zeros(len(raw) + 8, dtype=np.uint8)
    padded[: len(raw)] = raw
    # The 8 bytes starting at every byte, read as a little-endian integer; the bytes past a chunk are masked off.
    at_byte = np.ndarray(shape=(len(raw) + 1,), dtype="<u8", buffer=padded, strides=(1,))
    drop = (np.uint64(8) - lengths[short].astype(np.uint64)) * np.uint64(8)
    packed = (at_byte[offsets[:-1][short]] << drop) >> drop
    encoded_short = pc.dictionary_encode(pa.array(packed, type=pa.uint64()))
    short_values = np.asarray(encoded_short.dictionary.to_numpy(), dtype="<u8").view(np.uint8).reshape(-1, 8)
    value_bytes = short_values != 0
    short_distinct = pa.LargeStringArray.from_buffers(
        len(short_values),
        pa.py_buffer(_prefix_counts(value_bytes.sum(axis=1))),
        pa.py_buffer(short_values[value_bytes]),
    )
    occurrences = np.empty(n, dtype=np.int64)
    occurrences[short] = np.asarray(encoded_short.indices.to_numpy(), dtype=np.int64)
    long_rows = np.flatnonzero(~short)
    if len(long_rows) == 0:
        return short_distinct, occurrences
    encoded_long = pc.dictionary_encode(chunks.take(pa.array(long_rows)))
    occurrences[long_rows] = len(short_values) + np.asarray(encoded_long.indices.to_numpy(), dtype=np.int64)
    return pa.concat_arrays([short_distinct, encoded_long.dictionary.cast(pa.large_string())]), occurrences


def _split_on_separators(tokens: pa.Array) -> tuple[pa.Array, npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """The pieces of every chunk between separators, flat, and where each chunk's pieces start and how many.

    An ASCII chunk has no separator left (`_ascii_separated_chunks`): it is its own piece. The others go
    through the regex.
    """
    is_ascii = np.asarray(pc.string_is_ascii(tokens).to_numpy(zero_copy_only=False), dtype=bool)
    ascii_rows, other = np.flatnonzero(is_ascii), np.flatnonzero(~is_ascii)
    split = pc.split_pattern_regex(tokens.take(other), _SEPARATORS)
    offsets = np.asarray(split.offsets.to_numpy(), dtype=np.int64)
    offsets = offsets - offsets[0]
    ascii_pieces = tokens.take(ascii_rows).cast(pa.large_string())
    flat = pa.concat_arrays([ascii_pieces, pc.list_flatten(split).cast(pa.large_string())])
    first = np.empty(len(tokens), dtype=np.int64)
    count = np.empty(len(tokens), dtype=np.int64)
    first[ascii_rows], count[ascii_rows] = np.arange(len(ascii_rows)), 1
    first[other], count[other] = len(ascii_rows) + offsets[:-1], np.diff(offsets)
    return flat, first, count


def _prefix_counts(values: npt.NDArray[np.bool_] | npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
    """`[0, v0, v0 + v1, ...]`: maps positions before filtering/expanding to positions after."""
    out = np.zeros(len(values) + 1, dtype=np.int64)
    np.cumsum(values, out=out[1:])
    return out
