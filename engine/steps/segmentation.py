"""Words per language: the word splitter FineWeb-2's rules need for each language, columnar where it can be.

datatrove splits words with a different tokenizer per language (its `tokenizer_assignment.csv`, shipped with the
FineWeb-2 configs as `LanguageConfig.tokenizer`). Each is reproduced here by a *backend*:

- ``spacy``: spaCy's rule-based tokenizer, for datatrove's SpaCyTokenizer (most languages), its
  WhitespaceTokenizer (spaCy's `xx`) and, as a stand-in, the Stanza tokenizers whose models cannot be fetched
  here: `engine.steps.spacy_tokenizer` runs spaCy's algorithm on each language's own rules (identical words);
  English (no language, or `en`) takes exactly FineWeb's English path (`engine.steps.text`).
- ``spacy_rules``: the polars regex approximation of those languages (`engine.steps.spacy_rules`): faster on
  words not seen before, not identical (Greek and French differ most); opt-in.
- ``indic``, ``indic_urdu``: IndicNLP's `trivial_tokenize` (datatrove's IndicNLPTokenizer) re-written as polars
  regular expressions over the whole batch: identical tokens.
- ``jieba``: jieba's segmentation (datatrove: spaCy `zh` with the jieba segmenter) by its Rust port (rjieba).
- ``sudachi``: SudachiPy split mode A (datatrove: spaCy `ja`, which calls Sudachi), without spaCy around it.
- ``kiwi``: Kiwi (datatrove's KiwiTokenizer, `sbg` model), as datatrove calls it.
- ``pyvi``: spaCy `vi`'s syllables joined into words by pyvi's model (datatrove's Vietnamese), without spaCy.
- ``pythainlp``: PyThaiNLP's `newmm-safe` (datatrove's ThaiTokenizer), as datatrove calls it.
- ``newmm``: the same algorithm by its Rust port nlpO3 on the same dictionary, with newmm-safe's chunking:
  faster, not identical (it treats non-Thai characters differently); opt-in.
- ``khmer``, ``lao``, ``burmese``: khmer-nltk, LaoNLP, pyidaungsu, as datatrove calls them.
- ``icu``: ICU's dictionary-based word break iterator (Thai, Lao, Khmer, Burmese, Chinese, Japanese), one
  library for every script, C++ speed: the default only for Tibetan (botok needs a download), opt-in elsewhere.

Which backend a language gets (`backend_for`) follows the measurements in benchmarks/RESULTS.md ("Word
segmentation per language"). Rows of a batch are grouped by backend; each group yields flat words, merged
back in row order as one `Pieces`.
"""

from __future__ import annotations

import os
import re
import string
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import cache, lru_cache
from typing import Any, Literal, get_args

import numpy as np
import polars as pl
import pyarrow as pa

from engine.batch import text_column
from engine.steps import spacy_rules, spacy_tokenizer
from engine.steps import text as tx
from engine.steps.languages import fineweb2_configs

Backend = Literal[
    "spacy",
    "spacy_rules",
    "indic",
    "indic_urdu",
    "jieba",
    "sudachi",
    "kiwi",
    "pyvi",
    "newmm",
    "pythainlp",
    "khmer",
    "lao",
    "burmese",
    "icu",
]
BACKENDS: tuple[Backend, ...] = get_args(Backend)

# datatrove tokenizer class (and spaCy language) -> our backend; the ICU locale where ICU segments.
_BY_TOKENIZER: dict[str, Backend] = {
    "SpaCyTokenizer:zh": "jieba",
    "SpaCyTokenizer:ja": "sudachi",
    "SpaCyTokenizer:vi": "pyvi",
    "KiwiTokenizer": "kiwi",
    "ThaiTokenizer": "pythainlp",
    "LaoTokenizer": "lao",
    "KhmerTokenizer": "khmer",
    "BurmeseTokenizer": "burmese",
    "TibetanTokenizer": "icu",
    "IndicNLPTokenizer:ur": "indic_urdu",
}
# The backends some language uses by default (the others are opt-in through `word_splitters`).
DEFAULT_BACKENDS: frozenset[Backend] = frozenset({"spacy", "indic", *_BY_TOKENIZER.values()})
ICU_LOCALES = {"Thai": "th", "Laoo": "lo", "Khmr": "km", "Mymr": "my", "Hani": "zh", "Jpan": "ja", "Hang": "ko"}

# Which pip extra brings each optional backend's library (named in the ImportError).
_EXTRA = "pip install 'corpus-engine[multilingual]'"


def backend_for(tokenizer: str | None) -> Backend:
    """Our backend for a datatrove tokenizer (`LanguageConfig.tokenizer`); None (English) is `spacy`."""
    if tokenizer is None:
        return "spacy"
    if tokenizer in _BY_TOKENIZER:
        return _BY_TOKENIZER[tokenizer]
    if tokenizer.startswith("IndicNLPTokenizer"):
        return "indic"
    return "spacy"


# --- IndicNLP's trivial_tokenize, as regular expressions over the batch --------------------------------------

# indicnlp.tokenize.indic_tokenize (MIT): string.punctuation plus the dandas and other Brahmic punctuation...
_INDIC_PUNCT = string.punctuation + "\u0964\u0965\uaaf1\uaaf0\uabeb\uabec\uabed\uabee\uabef\u1c7e\u1c7f"
# ... or, for Urdu, Arabic-script punctuation.
_URDU_PUNCT = string.punctuation + "\u0609\u060a\u060c\u061e\u066a\u066b\u066c\u066d\u06d4"
# Digit groups the Indic tokenizer glues back ("3 , 000" -> "3,000") once punctuation has been spaced out.
_NUMBER_SEQUENCE = re.compile(r"([0-9]+ [,.:/] )+[0-9]+")


def _indic_python(spaced: str) -> str:
    """IndicNLP's number re-gluing loop, verbatim in behaviour (a sequence at the very start stays split)."""
    glued, previous = "", 0
    for match in _NUMBER_SEQUENCE.finditer(spaced):
        start, end = match.start(), match.end()
        if start > previous:
            glued = glued + spaced[previous:start] + spaced[start:end].replace(" ", "")
            previous = end
    return glued + spaced[previous:]


def indic_words(texts: pl.Series, *, urdu: bool = False) -> pl.Series:
    """IndicNLP `trivial_tokenize` per document, tokens stripped and blanks dropped (datatrove's strip_strings).

    Only " " separates tokens (newlines stay inside a token, stripped at its ends, as in the reference).
    """
    punct = _URDU_PUNCT if urdu else _INDIC_PUNCT
    spaced = (
        texts.str.replace_all("\t", " ", literal=True)
        .str.replace_all("([" + re.escape(punct) + "])", " ${1} ")
        .str.replace_all(" +", " ")
        .str.strip_chars(" ")
    )
    if not urdu:
        # Glue "d , d" pairs twice (a pair whose left digit a previous pair consumed is glued on the second
        # pass); documents that start with such a sequence keep it split, as the reference does: done in Python.
        leading = tx.to_numpy(spaced.str.contains(r"^(?:[0-9]+ [,.:/] )+[0-9]+"), bool)
        glued = spaced
        for _ in range(2):
            glued = glued.str.replace_all(r"([0-9]) ([,.:/]) ([0-9])", "${1}${2}${3}")
        if leading.any():
            values = glued.to_list()
            originals = spaced.to_list()
            for row in np.flatnonzero(leading):
                values[row] = _indic_python(originals[row])
            glued = pl.Series(values, dtype=pl.String)
        spaced = glued
    tokens = spaced.str.split(" ")
    return tokens.list.eval(
        pl.element().str.strip_chars(tx.PY_SPACE).filter(pl.element().str.strip_chars(tx.PY_SPACE).str.len_bytes() > 0)
    )


# --- backends that run a library per document ----------------------------------------------------------------


@cache
def _import(module: str, what: str) -> Any:
    """The module, imported once (a failed import is retried, and says which extra brings it)."""
    try:
        return __import__(module, fromlist=["_"])
    except ImportError as error:
        msg = f"word segmentation for {what} needs the {module!r} package: {_EXTRA}"
        raise ImportError(msg) from error


_LOCAL = threading.local()  # per-thread segmenter objects (ICU break iterators and Sudachi are not thread-safe)


def _per_thread(key: str, make: Callable[[], Any]) -> Any:
    cache: dict[str, Any] = _LOCAL.__dict__.setdefault("cache", {})
    if key not in cache:
        cache[key] = make()
    return cache[key]


# What Python's `str.strip()` removes (datatrove strips every token with it), for polars' `strip_chars`, whose
# default (Unicode White_Space) keeps the information separators U+001C..U+001F that Python strips.
_PY_WHITESPACE = "".join(chr(c) for c in range(0x3001) if chr(c).isspace())


def _jieba(text: str) -> list[str]:
    rjieba = _import("rjieba", "Chinese (jieba)")
    return list(rjieba.cut(text))


def _sudachi(text: str) -> list[str]:
    def make() -> Any:
        dictionary = _import("sudachipy", "Japanese (Sudachi)").Dictionary()
        return dictionary.create(mode=_import("sudachipy", "Japanese (Sudachi)").SplitMode.A)

    tokenizer = _per_thread("sudachi", make)
    # spaCy's Japanese tokenizer (datatrove's) hands Sudachi at most 40,000 UTF-8 bytes at a time.
    return [m.surface() for chunk in _utf8_chunks(text, 40_000) for m in tokenizer.tokenize(chunk)]


def _utf8_chunks(text: str, limit: int) -> list[str]:
    """datatrove's `chunk_text_on_bytes`: consecutive pieces of at most `limit` UTF-8 bytes, cut where it cuts."""
    size = len(text.encode("utf-8"))
    if size <= limit:
        return [text]
    step = int(max(min(limit * 0.1, 10), 1))
    guess = int(max(limit * (len(text) / size) - 10, 1))
    chunks, rest = [], text
    while rest:
        part = rest[:guess]
        if len(part.encode("utf-8")) > limit:
            guess = max(guess - int(min(limit * 0.001, 10)), 1)
            continue
        cut = guess
        while len(part.encode("utf-8")) < limit and part != rest:
            cut = min(len(rest), cut + step)
            part = rest[:cut]
        if len(part.encode("utf-8")) > limit:
            cut -= step
        chunks.append(rest[:cut])
        rest = rest[cut:]
    return chunks


def _kiwi(text: str) -> list[str]:
    def make() -> Any:
        return _import("kiwipiepy", "Korean (Kiwi)").Kiwi(model_type="sbg")

    kiwi = _per_thread("kiwi", make)
    cleaned = re.sub("[0-9,]{20,}", "", text)  # datatrove's KiwiTokenizer.preprocess
    return [cleaned[t.start : t.end] for t in kiwi.tokenize(cleaned)]


# newmm-safe's chunking window (pythainlp.tokenize.newmm): texts of 140+ characters are cut near character 120.
_SCAN_BEGIN, _SCAN_END = 100, 140


@lru_cache(maxsize=1)
def _thai_dictionary() -> str:
    """PyThaiNLP's own word list (the one newmm uses), loaded into nlpO3 once per process."""
    nlpo3 = _import("nlpo3", "Thai (newmm)")
    pythainlp = _import("pythainlp", "Thai (newmm's dictionary)")
    nlpo3.load_dict(os.path.join(os.path.dirname(pythainlp.__file__), "corpus", "words_th.txt"), "engine_th")
    return "engine_th"


def _newmm_cut(text: str) -> list[str]:
    nlpo3 = _import("nlpo3", "Thai (newmm)")
    return list(nlpo3.segment(text, _thai_dictionary(), False, False))


def _pythainlp(text: str) -> list[str]:
    tokenize = _import("pythainlp.tokenize", "Thai (PyThaiNLP)").word_tokenize
    return list(tokenize(text, keep_whitespace=False, engine="newmm-safe"))


def _newmm(text: str) -> list[str]:
    """PyThaiNLP's newmm-safe: long texts cut where the reference cuts them, each part segmented alone."""
    if len(text) < _SCAN_END:
        return list(_newmm_cut(text))
    tokens: list[str] = []
    while len(text) >= _SCAN_END:
        sample = text[_SCAN_BEGIN:_SCAN_END]
        space = sample.rfind(" ")
        if space >= 0:
            cut = space + 1 + _SCAN_BEGIN
        else:
            pieces = _newmm_cut(sample)
            longest = max(range(len(pieces)), key=lambda i: (len(pieces[i]), i)) if pieces else 0
            cut = _SCAN_BEGIN + sum(len(p) for p in pieces[:longest])
        tokens.extend(_newmm_cut(text[:cut]))
        text = text[cut:]
    if text:
        tokens.extend(_newmm_cut(text))
    return list(tokens)


# spaCy's Vietnamese tokenizer (spacy/lang/vi, MIT, adapted from pyvi 0.1, MIT, Viet-Trung Tran): syllables and
# punctuation, whitespace kept, then pyvi's CRF joins syllables into words.
_VI_SYLLABLES = re.compile(
    r"(\s+|[A-ZĐ]+\.|Tp\.|Mr\.|Mrs\.|Ms\.|Dr\.|ThS\.|==>|->|\.\.\.|>>|\w+://[^\s]+"
    r"|([a-zA-Z0-9_.+-]+@([a-zA-Z0-9-]+\.)+[a-zA-Z0-9-]+)|\d+([\.,_]\d+)+|[^\w\s]|\w+)",
    re.UNICODE,
)


def vi_features(words: Sequence[str], bi_grams: set[str], tri_grams: set[str]) -> list[dict[str, Any]]:
    """pyvi's `ViTokenizer.sent2features(words, False)`: the same keys, values and order, each word's
    properties and each pair's and triple's dictionary look-up computed once instead of once per position
    that reads them (profiled: building them was more than half of Vietnamese word splitting)."""
    n = len(words)
    lower = [w.lower() for w in words]
    upper = [w.isupper() for w in words]
    title = [w.istitle() for w in words]
    pair = [f"{words[i]} {words[i + 1]}".lower() in bi_grams for i in range(n - 1)]
    triple = [f"{words[i]} {words[i + 1]} {words[i + 2]}".lower() in tri_grams for i in range(n - 2)]
    out = []
    for i in range(n):
        features: dict[str, Any] = {
            "bias": 1.0,
            "word.lower()": lower[i],
            "word.isupper()": upper[i],
            "word.istitle()": title[i],
            "word.isdigit()": words[i].isdigit(),
        }
        if i > 0:
            features["-1:word.lower()"] = lower[i - 1]
            features["-1:word.istitle()"] = title[i - 1]
            features["-1:word.isupper()"] = upper[i - 1]
            features["-1:word.bi_gram()"] = pair[i - 1]
            if i > 1:
                features["-2:word.tri_gram()"] = triple[i - 2]
        if i < n - 1:
            features["+1:word.lower()"] = lower[i + 1]
            features["+1:word.istitle()"] = title[i + 1]
            features["+1:word.isupper()"] = upper[i + 1]
            features["+1:word.bi_gram()"] = pair[i]
            if i < n - 2:
                features["+2:word.tri_gram()"] = triple[i]
        out.append(features)
    return out


def _pyvi(text: str) -> list[str]:
    """spaCy `vi` with pyvi (datatrove's Vietnamese): the same syllables, labels and joining rules."""
    if not text or text.isspace():
        return []
    model = _import("pyvi.ViTokenizer", "Vietnamese (pyvi)").ViTokenizer
    segments = [m.group(0) for m in _VI_SYLLABLES.finditer(text)]
    words, spaces = [], []
    for i, segment in enumerate(segments):
        if not segment.isspace():
            words.append(segment)
            spaces.append(segments[i - 1] if i > 0 and segments[i - 1].isspace() else "")
    labels = model.model.predict_single(vi_features(words, model.bi_grams, model.tri_grams))
    tokens, token = [], words[0]
    for i in range(1, len(labels)):
        if (
            labels[i] == "I_W"
            and words[i] not in string.punctuation
            and words[i - 1] not in string.punctuation
            and not words[i][0].isdigit()
            and not words[i - 1][0].isdigit()
            and not (words[i][0].istitle() and not words[i - 1][0].istitle())
        ):
            token = token + spaces[i] + words[i]
        else:
            tokens.append(token)
            token = words[i]
    tokens.append(token)
    return list(tokens)


def _khmer(text: str) -> list[str]:
    tokenize = _import("khmernltk", "Khmer (khmer-nltk)").word_tokenize
    return list(tokenize(text, return_tokens=True))


def _lao(text: str) -> list[str]:
    return list(_import("laonlp.tokenize", "Lao (LaoNLP)").word_tokenize(text))


def _burmese(text: str) -> list[str]:
    return list(_import("pyidaungsu", "Burmese (pyidaungsu)").tokenize(text, form="word"))


def _icu(locale: str) -> Callable[[str], list[str]]:
    def make() -> Any:
        icu = _import("icu", "Thai, Lao, Khmer, Burmese (ICU)")
        return icu.BreakIterator.createWordInstance(icu.Locale(locale))

    def cut(text: str) -> list[str]:
        iterator = _per_thread(f"icu:{locale}", make)
        iterator.setText(text)
        tokens, previous = [], 0
        for boundary in iterator:
            token = text[previous:boundary].strip()
            if token:
                tokens.append(token)
            previous = boundary
        return tokens

    return cut


def _python_words(texts: pl.Series, cut: Callable[[str], list[str]]) -> pl.Series:
    """`cut` on every text, each token stripped and blank ones dropped (datatrove's `strip_strings`), as a list
    column. The library's tokens go into one flat column and are stripped there at once: the per-token Python
    work is only the library's own (a batch's words are split once: `engine.steps.tokens` carries them)."""
    flat: list[str] = []
    ends = [0]
    for text in texts.to_list():
        flat.extend(cut(text))
        ends.append(len(flat))
    values = pl.Series(flat, dtype=pl.String).str.strip_chars(_PY_WHITESPACE)
    keep = tx.to_numpy(values.str.len_bytes() > 0, bool)
    kept_before = np.concatenate(([0], np.cumsum(keep, dtype=np.int64)))
    offsets = pa.array(kept_before[np.asarray(ends, dtype=np.int64)], type=pa.int64())
    lists = pa.LargeListArray.from_arrays(offsets, values.filter(pl.Series(keep)).to_arrow().cast(pa.large_string()))
    return pl.Series(texts.name, lists, dtype=pl.List(pl.String))


def backend_words(texts: pl.Series, backend: Backend, detail: str | None = None) -> pl.Series:
    """Each document's words (`list[str]`) with one backend.

    `detail` is the spaCy language for ``spacy`` (None or "en": the English path) and the script (ISO 15924)
    whose dictionary ICU uses for ``icu``.
    """
    if backend in ("spacy", "spacy_rules") and detail in (None, "en"):
        return tx.split_words(texts)
    if backend == "spacy":
        return spacy_tokenizer.split_words(texts, detail or "xx")
    if backend == "spacy_rules":
        return spacy_rules.split_words(texts, detail or "xx")
    if backend in ("indic", "indic_urdu"):
        return indic_words(texts, urdu=backend == "indic_urdu")
    if backend == "jieba":
        return _python_words(texts, _jieba)
    if backend == "sudachi":
        return _python_words(texts, _sudachi)
    if backend == "kiwi":
        return _python_words(texts, _kiwi)
    if backend == "newmm":
        return _python_words(texts, _newmm)
    if backend == "pythainlp":
        return _python_words(texts, _pythainlp)
    if backend == "pyvi":
        return _python_words(texts, _pyvi)
    if backend == "khmer":
        return _python_words(texts, _khmer)
    if backend == "lao":
        return _python_words(texts, _lao)
    if backend == "burmese":
        return _python_words(texts, _burmese)
    locale = ICU_LOCALES.get(detail or "", "und")
    return _python_words(texts, _icu(locale))


def language_lists(texts: pl.Series, segmenters: Sequence[tuple[Backend, str | None]]) -> pl.Series:
    """Each document's words (`list[str]`), each document split by its own (backend, script).

    One group per distinct segmenter; a batch whose rows all take the English path takes exactly `text.split_words`.
    """
    n = len(texts)
    if n == 0 or all(backend in ("spacy", "spacy_rules") and detail in (None, "en") for backend, detail in segmenters):
        return tx.split_words(texts)
    groups: dict[tuple[Backend, str | None], list[int]] = {}
    for row, key in enumerate(segmenters):
        groups.setdefault(key, []).append(row)
    parts, order = [], []
    for (backend, script), rows in groups.items():
        parts.append(backend_words(texts.gather(rows), backend, script))
        order.extend(rows)
    lists = pl.concat(parts) if len(parts) > 1 else parts[0]
    inverse = np.empty(n, dtype=np.int64)
    inverse[np.asarray(order, dtype=np.int64)] = np.arange(n, dtype=np.int64)
    return lists.gather(inverse)


def language_words(texts: pl.Series, segmenters: Sequence[tuple[Backend, str | None]]) -> tx.Pieces:
    """The words of every document, flat, each document split by its own (backend, script)."""
    return tx.flatten(language_lists(texts, segmenters))


def spacy_code(tokenizer: str) -> str:
    """The spaCy language whose rules split a language's words: its own, else `xx` (WhitespaceTokenizer is spaCy
    `xx`; Stanza's models cannot be fetched here, and `xx` stands in for them)."""
    if tokenizer.startswith("SpaCyTokenizer:"):
        return tokenizer.split(":", 1)[1]
    return "xx"


def row_segmenters(
    languages: Sequence[str | None], splitters: Mapping[str, Backend] | None = None
) -> list[tuple[Backend, str | None]]:
    """(backend, detail) for each document from its FineWeb-2 config name (None or unknown: English).

    `splitters` replaces the default backend of some languages (`{tha_Thai: icu}`).
    """
    configs = fineweb2_configs()
    chosen: dict[str | None, tuple[Backend, str | None]] = {}
    out = []
    for name in languages:
        if name not in chosen:
            config = configs.get(name) if name is not None else None
            if config is None:
                chosen[name] = ("spacy", None)
            else:
                backend = (splitters or {}).get(config.name) or backend_for(config.tokenizer)
                spacy = backend in ("spacy", "spacy_rules")
                chosen[name] = (backend, spacy_code(config.tokenizer) if spacy else config.script)
        out.append(chosen[name])
    return out


@dataclass(frozen=True)
class LanguageTokenizer:
    """FineWeb-2's word splitting as a tokenizer of `engine.steps.tokens`: each row split for the language named in
    its `column` (its FineWeb-2 config name; English where null or unknown), `splitters` replacing the default of
    some languages.

    A batch's words are split once and follow its rows from step to step (`engine.steps.tokens`), so a document
    is segmented once per batch whatever the number of steps that read its words. No line breaks are marked:
    the steps that judge per language read words, not the line each word is on.
    """

    column: str
    splitters: tuple[tuple[str, Backend], ...] = ()

    def split_batch(self, batch: pa.Table) -> pl.Series:
        texts = tx._texts(text_column(batch))
        if self.column not in batch.column_names:
            return tx.split_words(texts)
        languages = pl.Series(batch[self.column]).cast(pl.String).to_list()
        return language_lists(texts, row_segmenters(languages, dict(self.splitters)))


# The Python packages each optional backend needs (all in the `multilingual` extra).
LIBRARIES: dict[Backend, tuple[str, ...]] = {
    "jieba": ("rjieba",),
    "sudachi": ("sudachipy", "sudachidict_core"),
    "kiwi": ("kiwipiepy", "kiwipiepy_model"),
    "pythainlp": ("pythainlp",),
    "newmm": ("nlpo3", "pythainlp"),
    "pyvi": ("pyvi",),
    "khmer": ("khmernltk",),
    "lao": ("laonlp",),
    "burmese": ("pyidaungsu",),
    "icu": ("icu",),
}


def missing_libraries(backends: Sequence[Backend] = BACKENDS) -> dict[str, list[str]]:
    """For each backend whose packages are not installed here, the missing ones."""
    import importlib.util

    missing: dict[str, list[str]] = {}
    for backend in backends:
        absent = [m for m in LIBRARIES.get(backend, ()) if importlib.util.find_spec(m) is None]
        if absent:
            missing[backend] = absent
    return missing


def library_files(backends: Sequence[Backend]) -> dict[str, str]:
    """The installed metadata file (name, version...) of each package the backends use, by package name.

    A per-language step lists them as assets: a unit's reuse key then holds each one's content, so upgrading a
    word splitter (new dictionary, new model, other words) redoes the shards. Packages not installed are left
    out (`validate` reports them).
    """
    import importlib.metadata

    providers = importlib.metadata.packages_distributions()
    files: dict[str, str] = {}
    for module in sorted({m for backend in backends for m in LIBRARIES.get(backend, ())}):
        for name in providers.get(module, ()):
            distribution = importlib.metadata.distribution(name)
            metadata = [
                f for f in distribution.files or () if f.name == "METADATA" and f.parent.name.endswith(".dist-info")
            ]
            if metadata:
                files[name.lower()] = str(distribution.locate_file(metadata[0]))
    return files
