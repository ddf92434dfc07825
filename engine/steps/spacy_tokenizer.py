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
one dictionary look-up per chunk once its vocabulary has been seen.
"""

from __future__ import annotations

import gzip
import json
import re
import threading
from collections.abc import Callable
from functools import lru_cache
from importlib import resources
from typing import Any

import polars as pl

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


class SpacyTokenizer:
    """One spaCy language's blank tokenizer: `words(text)` gives what `[t.text for t in nlp(text)]` gives, with
    whitespace tokens left out and each token stripped (datatrove's `strip_strings`)."""

    def __init__(self, code: str) -> None:
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
        self.cache: dict[str, tuple[str, ...]] = {}

    def _prefix(self, text: str) -> int:
        found = self.prefix.search(text) if self.prefix is not None else None
        return found.end() - found.start() if found is not None else 0

    def _suffix(self, text: str) -> int:
        found = self.suffix.search(text) if self.suffix is not None else None
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
        while text and len(text) != last:
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
        if text:
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

    def chunk_words(self, chunk: str) -> tuple[str, ...]:
        """The words of one whitespace-free chunk, remembered."""
        words = self.cache.get(chunk)
        if words is None:
            pieces = self._rejoin(self._chunk(chunk, with_specials=True))
            words = tuple(w for w in (p.strip() for p in pieces) if w)
            if len(self.cache) >= CACHE_SIZE:
                self.cache.clear()
            self.cache[chunk] = words
        return words

    def words(self, text: str) -> list[str]:
        """One document's words."""
        cache, split = self.cache, self.chunk_words
        out: list[str] = []
        for chunk in text.split():
            words = cache.get(chunk)
            out.extend(words if words is not None else split(chunk))
        return out


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
    """Each document's words (`list[str]`) as spaCy language `code`'s blank tokenizer splits them."""
    cut: Callable[[str], list[str]] = tokenizer(code).words
    return pl.Series([cut(text) for text in texts.to_list()], dtype=pl.List(pl.String))
