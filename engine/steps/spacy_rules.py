"""spaCy's rule-based word splitting for each language FineWeb-2 tokenizes with it, as polars regular expressions.

`engine.steps.text` approximates spaCy's *English* tokenizer (datatrove's `split_into_words` for FineWeb). The
other spaCy languages (and `xx`, which datatrove's WhitespaceTokenizer uses for ~1,000 FineWeb-2 languages) share
its prefix, suffix and infix machinery but not its English exceptions ("do|n't", "I|m", "can|not", "9|am",
"Mr."), and differ from each other in a few ways measured from spaCy itself by
benchmarks/build_fineweb2_data.py and shipped as engine/data/fineweb2/spacy_rules.json.gz (spaCy's data, MIT):

- which dotted abbreviations stay whole (German "bzw.", "z.B.", Russian "г."),
- which words with an apostrophe or a hyphen stay whole (French "aujourd'hui", Indonesian "orang-orang"), and
  which words are split into given pieces (Persian "مادرم" -> "مادر", "م"),
- whether a hyphen splits words ("well-known": yes in `xx`, no in German) and numbers ("2020-2021"),
- whether "'s" is split off ("auf's": no in German) and whether elisions are ("l'homme" -> "l'", "homme"),
- whether a number keeps a final dot (German ordinals "11.") or a percent sign (Greek "60%"),
- which words keep their hyphen when split off (French "dit-il" -> "dit", "-il").

Everything else is the English approximation's, so the measured agreement (benchmarks/RESULTS.md) carries over.
"""

from __future__ import annotations

import gzip
import json
import re
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources

import numpy as np
import polars as pl

from engine.steps import text as tx

# Put after an elision's apostrophe ("l'" + MARK + " homme") so that it stays on the word, then removed.
_MARK = "\ue000"
_NOT_WORD = r"[^\p{L}\p{N}_]|$"


@dataclass(frozen=True)
class SpacyRules:
    """How one spaCy language's tokenizer differs from the English approximation."""

    abbreviations: tuple[str, ...]
    apostrophe_words: tuple[str, ...]
    hyphen_words: tuple[str, ...]
    split_words: dict[str, tuple[str, ...]]
    split_letter_hyphen: bool
    split_digit_hyphen: bool
    split_possessive: bool
    split_elision: bool
    number_dot: bool
    number_percent: bool
    hyphen_pronouns: tuple[str, ...]


@lru_cache(maxsize=1)
def _profiles() -> dict[str, SpacyRules]:
    data = (resources.files("engine") / "data" / "fineweb2" / "spacy_rules.json.gz").read_bytes()
    raw = json.loads(gzip.decompress(data))
    return {
        code: SpacyRules(
            abbreviations=tuple(p["abbreviations"]),
            apostrophe_words=tuple(p["apostrophe_words"]),
            hyphen_words=tuple(p["hyphen_words"]),
            split_words={word: tuple(pieces) for word, pieces in p["split_words"].items()},
            split_letter_hyphen=bool(p["split_letter_hyphen"]),
            split_digit_hyphen=bool(p["split_digit_hyphen"]),
            split_possessive=bool(p["split_possessive"]),
            split_elision=bool(p["split_elision"]),
            number_dot=bool(p["number_dot"]),
            number_percent=bool(p["number_percent"]),
            hyphen_pronouns=tuple(p["hyphen_pronouns"]),
        )
        for code, p in raw.items()
    }


def spacy_languages() -> list[str]:
    """The spaCy language codes with shipped rules."""
    return sorted(_profiles())


def _alternation(words: tuple[str, ...]) -> str:
    return "|".join(re.escape(w) for w in sorted(words, key=len, reverse=True))


@dataclass(frozen=True)
class Patterns:
    """The regular expressions of one language: elision and hyphen-pronoun passes, the split pass, words."""

    elision: str | None
    pronouns: str | None
    number_dot: bool
    split: str
    replacement: str
    words: str


@lru_cache(maxsize=64)
def patterns(code: str) -> Patterns:
    """The patterns for spaCy language `code` (unknown codes use `xx`, spaCy's multi-language rules)."""
    rules = _profiles().get(code) or _profiles()["xx"]
    hyphen = "--?-?|" if rules.split_letter_hyphen else ""
    split_rules: list[tuple[str, str, str]] = [
        (r"[\p{Ll}'\"”’]", r"\.", r"[\p{Lu}'\"“‘]"),  # lower.Upper
        (f"[{tx._ALPHA}]", ",", f"[{tx._ALPHA}]"),  # alpha,alpha
        (f"[{tx._ALPHA}0-9]", f"{hyphen}[–—~:<>=/]", f"[{tx._ALPHA}]"),  # (hyphens and) :<>=/ before a letter
        (r"[0-9]", r"[+\-*^]" if rules.split_digit_hyphen else r"[+*^]", r"[0-9\-]"),  # arithmetic
        (r"[0-9]", tx._UNITS, _NOT_WORD),  # units after digits
        ("", r"\.\.+|…|\p{So}", ""),  # ellipses and pictographs
    ]
    if rules.split_possessive:
        split_rules.insert(4, (r"[\p{L}\p{N}]", r"['’][sS]", _NOT_WORD))
    kept_whole = _alternation((*rules.apostrophe_words, *rules.abbreviations))
    protected = "|".join(p for p in (tx._URL, kept_whole) if p)
    split = f"(?P<url>(?:^|[\\s(\\[{{<\"'“‘«])(?:{protected}))|" + "|".join(
        f"(?P<a{i}>{left})(?P<s{i}>{part})(?P<b{i}>{right})" for i, (left, part, right) in enumerate(split_rules)
    )
    replacement = (
        "${url}"
        + "".join(f"${{a{i}}}" for i in range(len(split_rules)))
        + " "
        + "".join(f"${{s{i}}}" for i in range(len(split_rules)))
        + " "
        + "".join(f"${{b{i}}}" for i in range(len(split_rules)))
    )
    elision = None
    if rules.split_elision:
        keep = _alternation(rules.apostrophe_words)
        elision = (f"(?P<keep>{keep})|" if keep else "") + r"(?P<e>\p{L}['’])(?P<f>\p{L})"
    pronouns = None
    if rules.hyphen_pronouns:
        pronouns = rf"(?P<w>\p{{L}})-(?P<p>(?:{_alternation(rules.hyphen_pronouns)}))(?P<n>{_NOT_WORD}|-)"
    abbreviations = _alternation(rules.abbreviations)
    words = (
        rf"{tx._URL}"
        + (rf"|(?:{abbreviations})" if abbreviations else "")
        + (f"|{_alternation(rules.apostrophe_words)}" if rules.apostrophe_words else "")
        + (r"|['’][sS]" if rules.split_possessive else "")
        + (rf"|[0-9]+\.{_MARK}" if rules.number_dot else "")
        + (r"|[0-9]+(?:[.,][0-9]+)*%" if rules.number_percent else "")
        + (rf"|-(?:{_alternation(rules.hyphen_pronouns)}){_MARK}" if rules.hyphen_pronouns else "")
        + rf"|[^\s{tx._EDGE}.]*\p{{L}}['’]{_MARK}"
        + rf"|\.\.+|{tx._EMOTICONS}"
        + rf"|{tx._EDGE_CLASS}"
        + rf"|(?:{tx._CORE_CHAR}+{tx._SEP}+)*{tx._CORE_CHAR}*{tx._KEEP_DOT}\."
        + rf"|(?:{tx._CORE_CHAR}+{tx._SEP}+)*{tx._CORE_CHAR}*[^\s\p{{Lu}}]\p{{Lu}}\."
        + rf"|\.?{tx._CORE_CHAR}+(?:{tx._SEP}+{tx._CORE_CHAR}+)+"
        + r"|\p{Lu}\.|[a-zäöü]\."
        + rf"|\.?{tx._CORE_CHAR}+"
        + r"|\."
    )
    return Patterns(elision, pronouns, rules.number_dot, split, replacement, words)


def split_words(texts: pl.Series, code: str) -> pl.Series:
    """Each document's words (`list[str]`) as spaCy language `code`'s blank tokenizer would give them."""
    found = patterns(code)
    spaced = texts
    if found.elision is not None:
        keep = "${keep}" if "(?P<keep>" in found.elision else ""
        spaced = spaced.str.replace_all(found.elision, keep + "${e}" + _MARK + " ${f}")
    if found.number_dot:  # "11." keeps its dot where a word ends
        spaced = spaced.str.replace_all(r"(?P<d>[0-9])\.(?P<z>\s|$)", "${d}." + _MARK + "${z}")
    if found.pronouns is not None:  # "dit-il" -> "dit -il" (twice: "a-t-il" -> "a -t -il")
        for _ in range(2):
            spaced = spaced.str.replace_all(found.pronouns, "${w} -${p}" + _MARK + "${n}")
    spaced = spaced.str.replace_all(found.split, found.replacement)
    spaced = spaced.str.replace_all(found.split, found.replacement)
    tokens = spaced.str.extract_all(found.words).fill_null(pl.Series([[]], dtype=pl.List(pl.String)))
    if found.elision is not None or found.pronouns is not None or found.number_dot:
        unmarked = pl.element().str.replace_all(_MARK, "", literal=True)
        tokens = tokens.list.eval(unmarked.filter(unmarked.str.len_bytes() > 0))
    rules = _profiles().get(code) or _profiles()["xx"]
    if rules.hyphen_words:
        tokens = _join_hyphen_words(tokens, frozenset(rules.hyphen_words))
    if rules.split_words:
        tokens = _split_exceptions(tokens, rules.split_words)
    return tokens


def _join_hyphen_words(tokens: pl.Series, words: frozenset[str]) -> pl.Series:
    """ "a", "-", "b" back into "a-b" where spaCy keeps "a-b" whole (Indonesian "orang-orang").

    A run such as "a-b-a-b" that holds two overlapping such words keeps only the first.
    """
    flat = pl.DataFrame({"row": pl.int_range(len(tokens), eager=True), "token": tokens}).explode("token")
    flat = flat.filter(pl.col("token").is_not_null())
    token, row = flat["token"], flat["row"].to_numpy()
    joined = token + token.shift(-1).fill_null("") + token.shift(-2).fill_null("")
    same_row = np.zeros(len(row), dtype=bool)
    same_row[:-2] = row[:-2] == row[2:]
    start = tx.to_numpy((token.shift(-1) == "-").fill_null(False) & joined.is_in(list(words)), bool) & same_row
    if not start.any():
        return tokens
    start[2:] &= ~start[:-2]
    covered = start.copy()
    covered[1:] |= start[:-1]
    covered[2:] |= start[:-2]
    keep = start | ~covered
    values = pl.select(pl.when(pl.Series(start)).then(joined).otherwise(token)).to_series().filter(pl.Series(keep))
    rebuilt = pl.DataFrame({"row": row[keep], "token": values}).group_by("row").agg("token")
    every_row = pl.DataFrame({"row": pl.int_range(len(tokens), eager=True)}).join(rebuilt, on="row", how="left")
    return every_row.sort("row")["token"].fill_null(pl.lit([], dtype=pl.List(pl.String))).alias(tokens.name)


def _split_exceptions(tokens: pl.Series, pieces: dict[str, tuple[str, ...]]) -> pl.Series:
    """Tokens that are one of spaCy's splitting exceptions replaced by its pieces (Persian "مادرم" -> "مادر", "م")."""
    flat = pl.DataFrame({"row": pl.int_range(len(tokens), eager=True), "token": tokens}).explode("token")
    flat = flat.with_row_index("position")
    table = pl.DataFrame(
        {"token": list(pieces), "pieces": [list(p) for p in pieces.values()]},
        schema={"token": pl.String, "pieces": pl.List(pl.String)},
    )
    joined = flat.join(table, on="token", how="left").sort("position")
    joined = joined.with_columns(
        pl.when(pl.col("pieces").is_null()).then(pl.concat_list("token")).otherwise("pieces").alias("pieces")
    )
    rebuilt = joined.explode("pieces").group_by("row").agg(pl.col("pieces").drop_nulls())
    every_row = pl.DataFrame({"row": pl.int_range(len(tokens), eager=True)}).join(rebuilt, on="row", how="left")
    empty = pl.lit([], dtype=pl.List(pl.String))
    return every_row.sort("row")["pieces"].fill_null(empty).alias(tokens.name)
