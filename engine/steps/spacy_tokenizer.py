"""spaCy's tokenizer algorithm in Python, on each language's own rules shipped as data: spaCy's words, exactly.

`engine.steps.spacy_rules` approximates spaCy's blank tokenizers with a few batch-wide regular expressions, which
is fast and right for most languages, but some languages write their own affix rules and token matches (Greek
keeps "απ'" and "είν'" whole and splits "1935." in two; French keeps "grand-père" and "États-Unis" whole through
a token match), which no small set of switches reproduces. Here spaCy's `Tokenizer` is re-run as written in
spacy/tokenizer.pyx (3.8): the text is cut at whitespace, each chunk loses prefixes and suffixes until a token
match or a special case stops it, the rest is split at infixes, and the special cases whose text the affix rules
would split are re-joined (spaCy's special matcher, within a chunk). The regular expressions, matches and
special cases are spaCy's own (engine/data/fineweb2/spacy_tokenizers.json.gz, built by
benchmarks/build_fineweb2_data.py from spaCy 3.8, MIT licence), compiled with Python's `re` as spaCy compiles
them.

Words repeat, so each distinct chunk is split once and remembered (as spaCy's own cache does): a document costs
one dictionary look-up per chunk once its vocabulary has been seen. A chunk not seen yet is mostly a plain word
("Haus") or a word and one punctuation mark ("Haus,"): fast paths proven once per language from the rules' parse
trees (`engine.steps.regex_reach`) split those with a check or one anchored match instead of the full algorithm's
dozen regular-expression calls, with the same tokens (tests/steps/test_spacy_tokenizer.py compares both on
tricky text; benchmarks/check_spacy_tokenizer.py compares with spaCy itself).
"""

from __future__ import annotations

import gzip
import json
import re
import threading
from functools import cache, lru_cache
from importlib import resources
from itertools import chain
from typing import Any

import polars as pl
import pyarrow as pa

from engine.steps import regex_reach

# Chunks remembered per language before the memory starts again (spaCy keeps 10,000 per tokenizer).
CACHE_SIZE = 200_000


@lru_cache(maxsize=1)
def _data() -> dict[str, dict[str, Any]]:
    raw = (resources.files("engine") / "data" / "fineweb2" / "spacy_tokenizers.json.gz").read_bytes()
    data: dict[str, dict[str, Any]] = json.loads(gzip.decompress(raw))
    return data


def languages() -> list[str]:
    """The spaCy language codes whose tokenizers are shipped."""
    return sorted(_data())


def _compiled(entry: list[Any] | None) -> re.Pattern[str] | None:
    return None if entry is None else re.compile(entry[0], entry[1])


@cache
def _proofs(code: str) -> tuple[bool, frozenset[str] | None, list[regex_reach.Node] | None]:
    """What the fast paths need of language `code`'s rules, proven once per process (`engine.steps.regex_reach`):
    whether plain words of letters are single tokens (no suffix or infix can match inside letters), the letters a
    prefix can start with (None: any), and the suffix's parse tree (for `_suffix_only_at_last`)."""
    data = _data().get(code) or _data()["xx"]
    patterns = {name: _compiled(data[name]) for name in ("prefix", "suffix", "infix")}
    trees = {name: None if p is None else regex_reach.parse(p) for name, p in patterns.items()}
    if any(trees[name] is None and patterns[name] is not None for name in trees):
        return False, None, None  # a case-insensitive rule: not modelled, the full algorithm only
    letters = regex_reach.Alphabet()
    prefix, suffix, infix = trees["prefix"], trees["suffix"], trees["infix"]
    prefix_first = frozenset() if prefix is None else regex_reach.first_letters(prefix)
    plain_words = (
        prefix_first is not None
        and (suffix is None or not regex_reach.widths(suffix, letters)[1])
        and (infix is None or regex_reach.widths(infix, letters) == (False, False))
    )
    return plain_words, prefix_first, suffix


@cache
def _suffix_only_at_last(code: str, char: str) -> bool:
    """Whether, in a string of letters followed by the non-letter `char`, language `code`'s suffix can only be
    found at `char`: no suffix match starts with a letter and none is empty (proven once per character)."""
    tree = _proofs(code)[2]
    alphabet = regex_reach.Alphabet(char)
    return (
        tree is not None
        and regex_reach.first_letters(tree, alphabet) == frozenset()
        and not regex_reach.widths(tree, alphabet)[0]
    )


class SpacyTokenizer:
    """One spaCy language's blank tokenizer: `words(text)` gives what `[t.text for t in nlp(text)]` gives, with
    whitespace tokens left out and each token stripped (datatrove's `strip_strings`).

    Fast paths, each proven once per language from the rules' parse trees (`engine.steps.regex_reach`), give the
    same tokens as the full algorithm with fewer regular expressions run (`fast=False`: the full algorithm only):
    a prefix is not searched for before a letter no prefix starts with (`prefix_first`); a chunk of letters is
    one token when no suffix or infix can match inside letters (`plain_words`); a word followed by one other
    character is searched for a suffix at that character only, when no suffix can start at a letter there; and
    such a word and character are two tokens when the suffix rules split the character off.
    """

    def __init__(self, code: str, *, fast: bool = True) -> None:
        data = _data().get(code) or _data()["xx"]
        self.prefix = _compiled(data["prefix"])
        self.suffix = _compiled(data["suffix"])
        self.infix = _compiled(data["infix"])
        self.token_match = _compiled(data["token_match"])
        self.url_match = _compiled(data["url_match"])
        self.specials: dict[str, tuple[str, ...]] = {orth: tuple(p) for orth, p in data["rules"].items()}
        self.faster_heuristics = bool(data["faster_heuristics"])
        self.longest = max((len(orth) for orth in self.specials), default=0)
        self.matched: dict[str, tuple[str, ...] | None] = {}
        self.code, self.fast = (code if code in _data() else "xx"), fast
        self.plain_words, self.prefix_first = _proofs(self.code)[:2] if fast else (False, None)
        self.cache = _Remembered(self)

    def _prefix(self, text: str) -> int:
        if self.prefix is None:
            return 0
        if self.prefix_first is not None and text[:1].isalpha() and text[0] not in self.prefix_first:
            return 0
        found = self.prefix.search(text)
        return found.end() - found.start() if found is not None else 0

    def _suffix(self, text: str) -> int:
        if self.suffix is None:
            return 0
        if self.plain_words and text.isalpha():
            return 0
        last = len(text) - 1
        if self.fast and last > 0 and text[:last].isalpha() and _suffix_only_at_last(self.code, text[last]):
            found = self.suffix.match(text, last)
        else:
            found = self.suffix.search(text)
        return found.end() - found.start() if found is not None else 0

    def _infixes(self, text: str) -> list[re.Match[str]]:
        return list(self.infix.finditer(text)) if self.infix is not None else []

    def _matches(self, text: str) -> bool:
        return self.token_match is not None and self.token_match.match(text) is not None

    def _chunk(self, text: str, *, with_specials: bool) -> list[str]:
        """spaCy's `_split_affixes` then `_attach_tokens` on one chunk (no whitespace in it)."""
        specials = self.specials if with_specials else {}
        if text in specials:
            return list(specials[text])
        prefixes: list[str] = []
        suffixes: list[str] = []
        last = 0
        whole = False
        while text and len(text) != last:
            if self.plain_words and text.isalpha() and text not in specials and not self._prefix(text):
                whole = True  # no affix, and then no infix: the full algorithm keeps it whole too
                break
            if self._matches(text) or text in specials:
                break
            last = len(text)
            pre = self._prefix(text)
            if pre:
                prefix, minus_pre = text[:pre], text[pre:]
                if minus_pre and minus_pre in specials:
                    text = minus_pre
                    prefixes.append(prefix)
                    break
            suf = self._suffix(text[pre:])
            if suf:
                suffix, minus_suf = text[-suf:], text[:-suf]
                if minus_suf and minus_suf in specials:
                    text = minus_suf
                    suffixes.append(suffix)
                    break
            if pre and suf and pre + suf <= len(text):
                text = text[pre:-suf]
                prefixes.append(prefix)
                suffixes.append(suffix)
            elif pre:
                text = minus_pre
                prefixes.append(prefix)
            elif suf:
                text = minus_suf
                suffixes.append(suffix)
        tokens = prefixes
        if whole:
            tokens.append(text)
        elif text:
            if text in specials:
                tokens.extend(specials[text])
            elif self._matches(text) or (self.url_match is not None and self.url_match.match(text)):
                tokens.append(text)
            else:
                tokens.extend(self._split_infixes(text))
        tokens.extend(reversed(suffixes))
        return tokens

    def _split_infixes(self, text: str) -> list[str]:
        matches = self._infixes(text)
        if not matches:
            return [text]
        tokens, start = [], 0
        for match in matches:
            infix_start, infix_end = match.start(), match.end()
            if infix_start == 0:
                continue
            if infix_start != start:
                tokens.append(text[start:infix_start])
            if infix_start != infix_end:
                tokens.append(text[infix_start:infix_end])
            start = infix_end
        if text[start:]:
            tokens.append(text[start:])
        return tokens

    def _pattern(self, orth: str) -> tuple[str, ...] | None:
        """The pieces spaCy's special matcher looks for to re-join special case `orth`, or None if it does not
        (with `faster_heuristics`, only special cases the affix rules would split; with a space: across chunks,
        which is not done here, and no FineWeb-2 language has one that a chunk could hold)."""
        if orth not in self.matched:
            eligible = " " not in orth and (
                not self.faster_heuristics or self._prefix(orth) or self._suffix(orth) or self._infixes(orth)
            )
            self.matched[orth] = tuple(self._chunk(orth, with_specials=False)) if eligible else None
        return self.matched[orth]

    def _rejoin(self, tokens: list[str]) -> list[str]:
        """spaCy's special matcher within a chunk: runs of tokens that are a special case's affix-split pieces
        become the special case's own pieces, the longest run first, then the leftmost."""
        if len(tokens) < 2:
            return tokens  # the whole chunk, which is no special case (those are looked up first)
        found = []
        for start in range(len(tokens)):
            joined = ""
            for end in range(start + 1, len(tokens) + 1):
                joined += tokens[end - 1]
                if len(joined) > self.longest:
                    break
                if joined in self.specials and self._pattern(joined) == tuple(tokens[start:end]):
                    found.append((start, end, joined))
        if not found:
            return tokens
        taken: set[int] = set()
        chosen = []
        for start, end, orth in sorted(found, key=lambda m: (m[1] - m[0], -m[0]), reverse=True):
            if start not in taken and end - 1 not in taken:
                chosen.append((start, end, orth))
            taken.update(range(start, end))
        out, position = [], 0
        for start, end, orth in sorted(chosen):
            out.extend(tokens[position:start])
            out.extend(self.specials[orth])
            position = end
        out.extend(tokens[position:])
        return out

    def split_chunk(self, chunk: str) -> tuple[str, ...]:
        """The words of one whitespace-free chunk, not remembered (the full algorithm, with its fast paths)."""
        if self.plain_words and chunk not in self.specials and not self._prefix(chunk):
            if chunk.isalpha():
                return (chunk,)
            last = len(chunk) - 1
            if last > 0 and chunk[:last].isalpha() and self._suffix(chunk) == 1 and not self._matches(chunk):
                word = chunk[:last]  # a word and one character the suffix rules split off: "Haus," "дом."
                if word not in self.specials and not self._prefix(word):
                    return (word, chunk[last])
        pieces = self._rejoin(self._chunk(chunk, with_specials=True))
        return tuple(w for w in (p.strip() for p in pieces) if w)

    def chunk_words(self, chunk: str) -> tuple[str, ...]:
        """The words of one whitespace-free chunk, remembered."""
        return self.cache[chunk]

    def words(self, text: str) -> list[str]:
        """One document's words."""
        return list(chain.from_iterable(map(self.cache.__getitem__, text.split())))


class _Remembered(dict[str, tuple[str, ...]]):
    """Chunk -> words, a dictionary look-up in C for a chunk seen before; a new one is split and remembered
    (a plain word without calling into the tokenizer: most new chunks are)."""

    def __init__(self, tokenizer: SpacyTokenizer) -> None:
        super().__init__()
        self.plain = tokenizer.plain_words
        self.prefix_first = tokenizer.prefix_first or frozenset()
        self.specials = tokenizer.specials
        self.split = tokenizer.split_chunk

    def __missing__(self, chunk: str) -> tuple[str, ...]:
        if self.plain and chunk.isalpha() and chunk[0] not in self.prefix_first and chunk not in self.specials:
            words: tuple[str, ...] = (chunk,)
        else:
            words = self.split(chunk)
        if len(self) >= CACHE_SIZE:
            self.clear()
        self[chunk] = words
        return words


_LOCAL = threading.local()


def tokenizer(code: str) -> SpacyTokenizer:
    """This thread's tokenizer for spaCy language `code` (its cache is not shared between threads)."""
    made: dict[str, SpacyTokenizer] = _LOCAL.__dict__.setdefault("tokenizers", {})
    if code not in made:
        made[code] = SpacyTokenizer(code)
    return made[code]


def forget_words() -> None:
    """Empty this thread's remembered chunks (a benchmark starting cold); the compiled rules stay."""
    for made in _LOCAL.__dict__.get("tokenizers", {}).values():
        made.cache.clear()


def split_words(texts: pl.Series, code: str) -> pl.Series:
    """Each document's words (`list[str]`) as spaCy language `code`'s blank tokenizer splits them: all the
    batch's words in one flat column and the documents' offsets into it (one Arrow list array, no list per
    document)."""
    words_of = tokenizer(code).cache.__getitem__
    flat: list[str] = []
    ends = [0]
    for text in texts.to_list():
        flat.extend(chain.from_iterable(map(words_of, text.split())))
        ends.append(len(flat))
    values = pl.Series(flat, dtype=pl.String).to_arrow().cast(pa.large_string())
    lists = pa.LargeListArray.from_arrays(pa.array(ends, type=pa.int64()), values)
    return pl.Series(texts.name, lists, dtype=pl.List(pl.String))
