"""Shared text helpers for the heuristic filters: words, lines, duplicates and n-grams, vectorised over a batch.

Words follow datatrove 0.10.1's English word splitter (`split_into_words`, a blank spaCy `en` tokenizer whose
whitespace tokens are dropped), reproduced with two regular expressions run by polars (Rust `regex`) over the
whole batch: one pass inserts spaces where spaCy splits *inside* a whitespace-delimited chunk (infixes such as
`well-known`, `hello.World`, `a,b`, `x=y`, contractions `do|n't`, `it|'s`, ellipses, pictographs), and one pass
extracts the tokens (abbreviation exceptions such as `U.S.`/`Dr.`, URLs, single prefix/suffix punctuation, and
"cores" that keep inner punctuation such as `3.14`, `1,000`, `R&D`, `O'Neil`, `-5`). The approximation and its
measured agreement are described in benchmarks/RESULTS.md ("Heuristic filters").

Everything here works on flat arrays: a batch of documents becomes one flat polars Series of pieces (words or
lines) plus a NumPy array giving each piece's row. Nothing builds a Python object per document or per word.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

import numpy as np
import numpy.typing as npt
import polars as pl
import pyarrow as pa

from engine.batch import text_column

IntArray = npt.NDArray[np.int64]
UIntArray = npt.NDArray[np.uint64]
BoolArray = npt.NDArray[np.bool_]

# --- character classes -------------------------------------------------------------------------------------

# datatrove.utils.text.PUNCTUATION (0.10.1): a token made only of these characters (or TERMINAL_PUNCTUATION) is
# a "symbol" and does not count as a word in Gopher's word-count and mean-length rules.
_DT_PUNCTUATION = "!/—”:％１〈&(、━\\【#%「」，】；+^]~“《„';’{|∶´[=-`*．（–？！：$～«〉,><》)?）。…@_.\"}►»" + "".join(
    chr(x) for a, b in ((0, 9), (11, 13), (13, 32), (127, 160)) for x in range(a, b)
)

# datatrove.utils.text.TERMINAL_PUNCTUATION (0.10.1): the stop characters of FineWeb's line-punctuation rule.
TERMINAL_PUNCTUATION = frozenset(
    "᪩？⁈𑩂．꩞𑅃﹗𑂾\u1b7d፧𑅂꡶꘎⁉࠾᪨𑊩𑱂᱿𖩮᥅\U00011f43\U00011f44﹒𑈹𑈸።܂؞꛳\U00010f88𑗍𐩖𑙂\u061d꩟᠉\u1b7e𑗗᰼𑻸؟𑪜꧉𑗉𐽙𖫵𖬷܀꓿᜵𑗏𑁇𑗓𑥄៖𑥆"
    "𑗑𑗒꯫۔𐩗\U00010f86꡷\u2e54｡៕߹⸮.𑇅࠹𛲟꫰꤯𐽗᭞𑜼፨𑃁꣏𑇟𖬸𑪛𑜾࠷𝪈?𑃀𑗃！։꣎॥𑗖᭛᠃!၊𖺘⁇𑗌𑑋𖭄᭟𑅁𑙁⸼꩝𑗋。꧈꫱𑜽𐽖𑂿᙮។꛷\U00010f89៚᥄𑗕"
    "𑗎᪪᭚࠽𑇞𑗊𐽘\u2e53𑗔𖩯𑇍𑻷𐽕𑩃।𑗂𑇆𑁈။᱾𑱁꘏܁᜶‼𑈻‽᪫﹖𑑌𑈼\U00010f87𑗐៙᰻"
)
PUNCTUATION_SET = frozenset(_DT_PUNCTUATION) | TERMINAL_PUNCTUATION

# spaCy's Sentencizer.default_punct_chars (3.x): a token equal to one of these ends a sentence.
SENTENCE_PUNCT = frozenset(
    "!.?։؟۔܀܁܂߹।॥၊။።፧፨᙮᜵᜶᠃᠉᥄᥅᪨᪩᪪᪫᭚᭛᭞᭟᰻᰼᱾᱿‼‽⁇⁈⁉⸮⸼꓿꘎꘏꛳꛷꡶꡷꣎꣏꤯꧈꧉꩝꩞꩟꫰꫱꯫﹒﹖﹗！．？𐩖𐩗"
    "𑁇𑁈𑂾𑂿𑃀𑃁𑅁𑅂𑅃𑇅𑇆𑇍𑇞𑇟𑈸𑈹𑈻𑈼𑊩𑑋𑑌𑗂𑗃𑗉𑗊𑗋𑗌𑗍𑗎𑗏𑗐𑗑𑗒𑗓𑗔𑗕𑗖𑗗𑙁𑙂𑜼𑜽𑜾𑩂𑩃𑪛𑪜𑱁𑱂𖩮𖩯𖫵𖬷𖬸𖭄𛲟𝪈｡。"
)


def char_class(chars: frozenset[str] | str) -> str:
    """A regex character class body (no brackets) matching exactly `chars`."""
    return "".join(re.escape(c) if c not in "\n" else "\\n" for c in sorted(set(chars)))


# spaCy English prefix/suffix punctuation (spacy.lang.punctuation: LIST_PUNCT, LIST_QUOTES, LIST_CURRENCY,
# "§ % = — –"): split off at either end of a chunk, kept inside it ("R&D", "foo_bar").
_EDGE = (
    ",:;!?¿؟¡()\\[\\]{}<>_#*&。？！，、；：～·।،۔؛٪…"
    "'\"”“`‘´’‚„»«「」『』（）〔〕【】《》〈〉⟦⟧"
    "$£€¥฿₽﷼₴₠₡₢₣₤₥₦₧₨₩₪₫₭₮₯₰₱₲₳₵₶₷₸₹₺₻₼₾₿"
    "§%=—–"
)
# Abbreviations spaCy keeps whole (its English tokenizer exceptions ending in ".", and letter.letter. forms).
_ABBREVIATIONS = (
    "Mt|Ak|Ala|Apr|Ariz|Ark|Aug|Calif|Colo|Conn|Dec|Del|Feb|Fla|Ga|Ia|Id|Ill|Ind|Jan|Jul|Jun|Kan|Kans|Ky|La|"
    "Mar|Mass|Mich|Minn|Miss|Neb|Nebr|Nev|Nov|Oct|Okla|Ore|Pa|Sep|Sept|Tenn|Va|Wash|Wis|Adm|Bros|co|Co|Corp|"
    "Dr|Gen|Gov|Inc|Jr|Ltd|Md|Messrs|Mo|Mont|Mr|Mrs|Ms|Prof|Rep|Rev|Sen|St|vs"
)
_URL = (
    r"(?:[a-zA-Z][a-zA-Z0-9+.\-]*://|www\.|[\p{L}0-9\-]+(?:\.[\p{L}0-9\-]+)*\.[a-zA-Z]{2,6}/)"
    r"\S*[^\s.,;:!?'\")\]}>]"
)
_UNITS = "km|km²|km³|m|m²|m³|cm|mm|ha|nm|yd|in|ft|kg|g|mg|lb|oz|mph|hPa|mb|MB|kb|KB|gb|GB|tb|TB|K|M|G|T"

# spaCy's ALPHA_LOWER class (spacy.lang.char_classes, MIT licence): a final "." is split off after these.
_ALPHA_LOWER = (resources.files("engine") / "data" / "spacy_alpha_lower.txt").read_text(encoding="utf-8").strip()
# spaCy's ALPHA class (same module): hyphen and comma infixes split only between these letters.
_ALPHA = (resources.files("engine") / "data" / "spacy_alpha.txt").read_text(encoding="utf-8").strip()
# Pass 1: spaces where spaCy splits inside a chunk. Each rule is (left context, split-off part, right context);
# all rules run as one alternation whose replacement concatenates every rule's groups (only the matching rule's
# are non-empty) as "left part right". A URL alternative comes first and is put back unchanged.
_SPLIT_RULES: tuple[tuple[str, str, str], ...] = (
    (r"[\p{Ll}'\"”’]", r"\.", r"[\p{Lu}'\"“‘]"),  # lower.Upper ("hello.World")
    (f"[{_ALPHA}]", ",", f"[{_ALPHA}]"),  # alpha,alpha (spaCy's ALPHA: no Armenian, Georgian...)
    (f"[{_ALPHA}0-9]", "--?-?|[–—~:<>=/]", f"[{_ALPHA}]"),  # hyphens and :<>=/ before a letter ("well-known")
    (r"[0-9]", r"[+\-*^]", r"[0-9\-]"),  # arithmetic between digits ("5+3")
    (r"[\p{L}\p{N}]", r"[nN]['’][tT]|['’](?:[sSmMdD]|re|ve|ll|RE|VE|LL)", r"[^\p{L}\p{N}_]|$"),  # "do n't"
    (r"[0-9]", _UNITS, r"[^\p{L}\p{N}_]|$"),  # units after digits ("10 km")
    (r"(?:^|[^\p{L}\p{N}_])[Cc]an", "not", r"[^\p{L}\p{N}_]|$"),  # spaCy exceptions without apostrophe
    (r"(?:^|[^\p{L}\p{N}_])[Gg]o[nt]", "na|ta", r"[^\p{L}\p{N}_]|$"),
    (
        r"(?:^|[^\p{L}\p{N}_])(?:[Dd]o|[Dd]oes|[Dd]id|[Ii]s|[Ww]as|[Aa]re|[Ww]ere|[Hh]as|[Hh]ave|[Hh]ad|[Ww]o|[Cc]ould|[Ss]hould"
        r"|[Ww]ould|[Mm]ust|[Aa]i|[Cc]a)",
        "nt",
        r"[^\p{L}\p{N}_]|$",
    ),
    (r"(?:^|[^\p{L}\p{N}_])[Ii]", "m", r"[^\p{L}\p{N}_]|$"),
    (r"(?:^|[^\p{L}\p{N}_.])(?:1[0-2]|[1-9])", r"[ap]\.m\.|[ap]m", r"[^\p{L}\p{N}_]|$"),  # "9 am"
    ("", r"\.\.+|…|\p{So}", ""),  # ellipses and pictographs are tokens wherever they are
)
# URLs are protected only where spaCy would see them whole: at the start of a chunk or after opening punctuation.
_SPLIT_INSIDE = f"(?P<url>(?:^|[\\s(\\[{{<\"'“‘«])(?:{_URL})|and/or|Ph\\.D\\.)|" + "|".join(
    f"(?P<a{i}>{left})(?P<s{i}>{part})(?P<b{i}>{right})" for i, (left, part, right) in enumerate(_SPLIT_RULES)
)
_SPLIT_INSIDE_REPLACEMENT = (
    "${url}"
    + "".join(f"${{a{i}}}" for i in range(len(_SPLIT_RULES)))
    + " "
    + "".join(f"${{s{i}}}" for i in range(len(_SPLIT_RULES)))
    + " "
    + "".join(f"${{b{i}}}" for i in range(len(_SPLIT_RULES)))
)
# spaCy emoticon exceptions that are made only of punctuation (split off even at the end of a word).
_EMOTICONS = r"\):|:\)+|;\)|:-\)|:\(+|:-\(|;-\)|\(:|:'\(|=\)|<3|:-/|\^_\^|-_-|:-?[DPp]|8\)"

_EDGE_CLASS = "[" + _EDGE + "]"
_CORE_CHAR = r"[^\s" + _EDGE + ".]"
_SEP = "[" + _EDGE + ".]"
# A core ending in "." that spaCy keeps whole: the "." follows a character that is none of lowercase (as spaCy
# defines it), digit, %²-+, punctuation, quote; or a single uppercase letter ("PhD.").
_KEEP_DOT = rf"[^\s{_EDGE}.0-9%²\-+\p{{Lu}}{_ALPHA_LOWER}]"
# Pass 2: the tokens, leftmost first.
WORD_PATTERN = (
    rf"{_URL}"
    rf"|(?:{_ABBREVIATIONS})\.|Ph\.D\.|(?:\p{{L}}\.){{2,}}"
    r"|[nN]['’][tT]|['’](?:[sSmMdD]|re|ve|ll|RE|VE|LL)"
    rf"|\.\.+|{_EMOTICONS}"
    rf"|{_EDGE_CLASS}"
    rf"|(?:{_CORE_CHAR}+{_SEP}+)*{_CORE_CHAR}*{_KEEP_DOT}\."
    rf"|(?:{_CORE_CHAR}+{_SEP}+)*{_CORE_CHAR}*[^\s\p{{Lu}}]\p{{Lu}}\."
    # "." is no prefix in spaCy (".ru", ".5" stay whole); inner punctuation stays ("3.14", "a.b", "R&D")
    rf"|\.?{_CORE_CHAR}+(?:{_SEP}+{_CORE_CHAR}+)+"
    r"|\p{Lu}\.|[a-zäöü]\."  # single-letter exceptions ("A.", "b.") only as whole chunks
    rf"|\.?{_CORE_CHAR}+"
    r"|\."
)


def _texts(batch_or_texts: pa.Table | pa.ChunkedArray | pa.Array) -> pl.Series:
    """The text column as a polars String series (nulls as "")."""
    column = text_column(batch_or_texts) if isinstance(batch_or_texts, pa.Table) else batch_or_texts
    series = pl.Series("text", column)
    if series.dtype != pl.String:
        series = series.cast(pl.String)
    return series.fill_null("")


def to_numpy(series: pl.Series, dtype: type = np.int64) -> npt.NDArray[Any]:
    """A polars series as a NumPy array of `dtype` (nulls become 0)."""
    return series.fill_null(0).to_numpy().astype(dtype, copy=False)


# Line breaks of `str.splitlines()` that the word patterns see as whitespace (all but \x1c-\x1e), as one "\n".
_TOKEN_LINE_BREAK = "\r\n|[\r\x0b\x0c\x85\u2028\u2029]"
LINE_BREAK_TOKEN = "\n"


def split_words(texts: pl.Series, *, line_breaks: bool = False) -> pl.Series:
    """Each document's words as a `list[str]` series (datatrove's English `split_into_words`, approximated).

    With `line_breaks`, a "\n" token also marks every line break (`str.splitlines()` boundaries except
    \x1c-\x1e, which are no whitespace to the word patterns), so each word's line can be found; the words are
    the same either way (a break is whitespace, never part of a word).
    """
    if line_breaks:
        texts = texts.str.replace_all(_TOKEN_LINE_BREAK, LINE_BREAK_TOKEN)
    spaced = texts.str.replace_all(_SPLIT_INSIDE, _SPLIT_INSIDE_REPLACEMENT)
    # A second pass catches splits whose context overlapped an earlier split (`a-b-c`).
    spaced = spaced.str.replace_all(_SPLIT_INSIDE, _SPLIT_INSIDE_REPLACEMENT)
    tokens = spaced.str.extract_all(WORD_PATTERN + "|\n" if line_breaks else WORD_PATTERN)
    return tokens.fill_null(pl.Series([[]], dtype=pl.List(pl.String)))


@dataclass(frozen=True)
class Pieces:
    """Flat pieces (words or lines) of a batch: `values[k]` belongs to row `row[k]`, rows in order.

    Per-piece lengths and hashes are computed once per `Pieces` (several steps ask for them) and carried by
    `take`.
    """

    values: pl.Series
    row: IntArray
    counts: IntArray  # pieces per row
    _memo: dict[str, npt.NDArray[Any]] = field(default_factory=dict, compare=False, repr=False)

    @property
    def offsets(self) -> IntArray:
        """Start of each row's pieces in `values` (length rows + 1)."""
        return np.concatenate([[0], np.cumsum(self.counts)]).astype(np.int64)

    def lengths(self) -> IntArray:
        """Characters (code points) per piece."""
        if "lengths" not in self._memo:
            self._memo["lengths"] = to_numpy(self.values.str.len_chars())
        return self._memo["lengths"]

    def hashes(self) -> UIntArray:
        """A 64-bit hash per piece (equal pieces, equal hashes, within one process)."""
        if "hashes" not in self._memo:
            self._memo["hashes"] = to_numpy(self.values.hash(seed=0x5EED), np.uint64)
        return self._memo["hashes"]

    def take(self, rows: BoolArray) -> Pieces:
        """The pieces of the rows where `rows` is true, renumbered as those rows are in the smaller batch."""
        return self.select(rows[self.row], rows)

    def select(self, pieces: BoolArray, rows: BoolArray) -> Pieces:
        """Only the pieces where `pieces` is true, of the rows where `rows` is true (its pieces' rows)."""
        new_row = np.cumsum(rows) - 1
        kept_row = new_row[self.row[pieces]]
        counts = np.bincount(kept_row, minlength=int(rows.sum())).astype(np.int64)
        memo = {name: values[pieces] for name, values in self._memo.items()}
        return Pieces(self.values.filter(pl.Series(pieces)), kept_row, counts, memo)


def flatten(lists: pl.Series) -> Pieces:
    """Flatten a `list[str]` series into `Pieces` (empty lists contribute no pieces)."""
    counts = to_numpy(lists.list.len())
    values = lists.explode()
    row = np.repeat(np.arange(len(counts), dtype=np.int64), counts)
    if len(values) != len(row):  # explode keeps a null for each empty list
        values = values.filter(values.is_not_null())
    return Pieces(values.fill_null(""), row, counts.astype(np.int64))


def words(texts: pl.Series) -> Pieces:
    """The words of every document, flat."""
    return flatten(split_words(texts))


def per_row_sum(row: IntArray, values: npt.ArrayLike, n_rows: int) -> npt.NDArray[np.float64]:
    """Sum of `values` grouped by `row` (0 for rows without pieces)."""
    sums = np.bincount(row, weights=np.asarray(values, dtype=np.float64), minlength=n_rows)
    return np.asarray(sums, dtype=np.float64)


def duplicate_stats(row: IntArray, hashes: UIntArray, lengths: IntArray, n_rows: int) -> tuple[IntArray, IntArray]:
    """datatrove's `find_duplicates` per row: (pieces equal to an earlier piece, their characters).

    Equal pieces have equal lengths, so a group of `c` equal pieces contributes `c - 1` duplicates and
    `(c - 1) * length` duplicate characters, whatever the order.
    """
    if len(row) == 0:
        return np.zeros(n_rows, dtype=np.int64), np.zeros(n_rows, dtype=np.int64)
    order = np.lexsort((hashes, row))
    r, h = row[order], hashes[order]
    same_as_previous = np.empty(len(r), dtype=bool)
    same_as_previous[0] = False
    same_as_previous[1:] = (r[1:] == r[:-1]) & (h[1:] == h[:-1])
    dup_count = np.bincount(r[same_as_previous], minlength=n_rows).astype(np.int64)
    dup_chars = np.bincount(
        r[same_as_previous], weights=lengths[order][same_as_previous].astype(np.float64), minlength=n_rows
    ).astype(np.int64)
    return dup_count, dup_chars


_MIX = np.uint64(0x9E3779B97F4A7C15)


def ngram_hashes(hashes: UIntArray, row: IntArray, n: int) -> tuple[UIntArray, IntArray, IntArray]:
    """Hashes of every word n-gram that lies within one row: (hashes, row, start index into the flat words)."""
    total = len(hashes)
    if total < n:
        empty = np.zeros(0, dtype=np.int64)
        return np.zeros(0, dtype=np.uint64), empty, empty
    starts = np.arange(total - n + 1, dtype=np.int64)
    valid = row[starts] == row[starts + n - 1]
    starts = starts[valid]
    combined = np.zeros(len(starts), dtype=np.uint64)
    with np.errstate(over="ignore"):
        for k in range(n):
            # Rotate-and-mix so that the order of the words matters.
            h = hashes[starts + k]
            combined = (combined * _MIX) ^ (h + np.uint64(k + 1))
            combined ^= combined >> np.uint64(29)
    return combined, row[starts], starts


# Characters Python's str.isspace() accepts (what datatrove's strip()/split() remove); Rust's \s lacks \x1c-\x1f.
PY_SPACE = (
    "\t\n\x0b\x0c\r\x1c\x1d\x1e\x1f \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009"
    "\u200a\u2028\u2029\u202f\u205f\u3000"
)
PY_SPACE_CLASS = r"[\s\x1c-\x1f]"
# Python's str.splitlines() boundaries.
SPLITLINES_BREAK = r"\r\n|[\n\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029]"


def count_matches(texts: pl.Series, pattern: str, *, literal: bool = False) -> IntArray:
    """Non-overlapping matches of `pattern` per document."""
    return to_numpy(texts.str.count_matches(pattern, literal=literal))


def char_lengths(texts: pl.Series) -> IntArray:
    """Characters (code points, as Python's len) per document."""
    return to_numpy(texts.str.len_chars())


def splitlines_normalised(texts: pl.Series) -> pl.Series:
    """Text with every `str.splitlines()` boundary replaced by a single "\\n"."""
    return texts.str.replace_all(SPLITLINES_BREAK, "\n")


def splitlines_count(normalised: pl.Series) -> IntArray:
    """len(text.splitlines()) for text already passed through `splitlines_normalised`."""
    breaks = count_matches(normalised, "\n", literal=True)
    open_last = (normalised.str.len_bytes() > 0) & ~normalised.str.ends_with("\n")
    counts: IntArray = breaks + to_numpy(open_last.cast(pl.Int64))
    return counts


def split_pieces(texts: pl.Series, separator: str) -> Pieces:
    """Split every document on a literal separator (like Python's str.split(sep)), flat."""
    return flatten(texts.str.split(separator, literal=True))  # type: ignore[call-arg]
