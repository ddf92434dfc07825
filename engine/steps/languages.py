"""FineWeb-2's per-language filter settings, and which of them a language label selects.

FineWeb-2 (Penedo et al. 2025) tuned its thresholds and stop words per language-script, keyed by GlotLID labels
(`cmn_Hani`, `tha_Thai`); the 1,929 published configs ship in `engine/data/fineweb2/` (Apache-2.0, source in
SOURCE.md there). A document's label comes from the language-id model: a GlotLID label is a config name as it
is; a lid.176 label (`zh`, `sr`) maps through the shipped table `lid176.tsv`, and where a language is written in
several scripts (`sr` -> `srp_Cyrl` or `srp_Latn`) the script most of the document's letters are in decides.
Labels without a config (lid.176's `en` and `sh`, GlotLID labels FineWeb-2 did not keep) map to None.
"""

from __future__ import annotations

import difflib
import gzip
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from typing import Any

import numpy as np
import polars as pl

from engine.errors import SpecError

_DATA = resources.files("engine") / "data" / "fineweb2"

# ISO 15924 script code -> the Unicode script name regular expressions know (`\p{Cyrillic}`).
SCRIPT_NAMES = {
    "Arab": "Arabic",
    "Armn": "Armenian",
    "Beng": "Bengali",
    "Cyrl": "Cyrillic",
    "Deva": "Devanagari",
    "Ethi": "Ethiopic",
    "Geor": "Georgian",
    "Grek": "Greek",
    "Gujr": "Gujarati",
    "Guru": "Gurmukhi",
    "Hang": "Hangul",
    "Hani": "Han",
    "Hebr": "Hebrew",
    "Khmr": "Khmer",
    "Knda": "Kannada",
    "Laoo": "Lao",
    "Latn": "Latin",
    "Mlym": "Malayalam",
    "Mymr": "Myanmar",
    "Orya": "Oriya",
    "Sinh": "Sinhala",
    "Taml": "Tamil",
    "Telu": "Telugu",
    "Thaa": "Thaana",
    "Thai": "Thai",
    "Tibt": "Tibetan",
}
# Characters of a document looked at to find its main script (enough to decide, bounded cost).
SCRIPT_SAMPLE_CHARS = 2_000


@dataclass(frozen=True)
class LanguageConfig:
    """One language-script's FineWeb-2 settings, as published (names kept from the YAML files).

    `max_non_alpha_words_ratio` is, despite its name (datatrove's), the *minimum* share of words that contain a
    letter; `tokenizer` is the word tokenizer datatrove 0.10.1 uses for the language (`SpaCyTokenizer:xx`).
    """

    name: str
    language_score: float
    dup_line_frac: float
    top_n_grams: tuple[tuple[int, float], ...]
    dup_n_grams: tuple[tuple[int, float], ...]
    new_line_ratio: float
    line_punct_thr: float
    max_non_alpha_words_ratio: float
    min_avg_word_length: float
    max_avg_word_length: float
    stopwords: tuple[str, ...]
    tokenizer: str

    @property
    def script(self) -> str:
        """The ISO 15924 script code (`Hani` in `cmn_Hani`)."""
        return self.name.split("_", 1)[1]

    def as_dict(self) -> dict[str, Any]:
        """The settings as plain values (lists for the n-gram pairs), e.g. for `validate --resolved`."""
        return {
            "name": self.name,
            "language_score": self.language_score,
            "dup_line_frac": self.dup_line_frac,
            "top_n_grams": [list(pair) for pair in self.top_n_grams],
            "dup_n_grams": [list(pair) for pair in self.dup_n_grams],
            "new_line_ratio": self.new_line_ratio,
            "line_punct_thr": self.line_punct_thr,
            "max_non_alpha_words_ratio": self.max_non_alpha_words_ratio,
            "min_avg_word_length": self.min_avg_word_length,
            "max_avg_word_length": self.max_avg_word_length,
            "stopwords": list(self.stopwords),
            "tokenizer": self.tokenizer,
        }


def _pairs(value: Sequence[Sequence[float]]) -> tuple[tuple[int, float], ...]:
    return tuple((int(n), float(fraction)) for n, fraction in value)


@lru_cache(maxsize=1)
def fineweb2_configs() -> Mapping[str, LanguageConfig]:
    """Every shipped FineWeb-2 config by name (loaded once per process, ~50 ms)."""
    raw: dict[str, dict[str, Any]] = json.loads(gzip.decompress((_DATA / "configs.json.gz").read_bytes()))
    return {
        name: LanguageConfig(
            name=name,
            language_score=float(c["language_score"]),
            dup_line_frac=float(c["dup_line_frac"]),
            top_n_grams=_pairs(c["top_n_grams"]),
            dup_n_grams=_pairs(c["dup_n_grams"]),
            new_line_ratio=float(c["new_line_ratio"]),
            line_punct_thr=float(c["line_punct_thr"]),
            max_non_alpha_words_ratio=float(c["max_non_alpha_words_ratio"]),
            min_avg_word_length=float(c["min_avg_word_length"]),
            max_avg_word_length=float(c["max_avg_word_length"]),
            stopwords=tuple(c["stopwords"]),
            tokenizer=str(c["tokenizer"]),
        )
        for name, c in raw.items()
    }


def fineweb2_config(name: str) -> LanguageConfig:
    """The config called `name` (`tha_Thai`).

    Raises:
        SpecError: for a name FineWeb-2 has no config for, with the closest names.
    """
    configs = fineweb2_configs()
    try:
        return configs[name]
    except KeyError:
        close = difflib.get_close_matches(name, list(configs), n=4, cutoff=0.5)
        hint = f" (did you mean {', '.join(close)}?)" if close else ""
        msg = (
            f"{name!r} is not a FineWeb-2 language{hint}; names are GlotLID labels, ISO 639-3 code and ISO 15924 "
            f"script (`cmn_Hani`, `tha_Thai`, `deu_Latn`); lid.176 codes map through engine/data/fineweb2/lid176.tsv"
        )
        raise SpecError(msg) from None


@lru_cache(maxsize=1)
def lid176_table() -> Mapping[str, tuple[tuple[str, ...], str]]:
    """lid.176 label -> (config names, default script first; empty when there is none) and why."""
    table: dict[str, tuple[tuple[str, ...], str]] = {}
    lines = (_DATA / "lid176.tsv").read_text(encoding="utf-8").splitlines()
    for line in lines[1:]:
        label, names, how = line.split("\t")
        table[label] = (tuple(n for n in names.split(",") if n), how)
    return table


def label_candidates(label: str, language_map: Mapping[str, str] | None = None) -> tuple[str, ...]:
    """The configs a model label can select: a user mapping first, then a config name, then lid.176's table."""
    if language_map and label in language_map:
        return (language_map[label],)
    if label in fineweb2_configs():
        return (label,)
    entry = lid176_table().get(label)
    return entry[0] if entry else ()


def dominant_scripts(texts: pl.Series, scripts: Sequence[str]) -> np.ndarray:
    """Index into `scripts` of the script most letters of each text are written in (ties: the earlier one)."""
    sample = texts.str.slice(0, SCRIPT_SAMPLE_CHARS)
    counts = np.stack(
        [
            sample.str.count_matches(rf"\p{{{SCRIPT_NAMES[s]}}}" if s in SCRIPT_NAMES else r"\p{L}")
            .fill_null(0)
            .to_numpy()
            for s in scripts
        ]
    )
    return np.asarray(np.argmax(counts, axis=0), dtype=np.int64)


def config_names(
    labels: Sequence[str | None], texts: pl.Series, language_map: Mapping[str, str] | None = None
) -> list[str | None]:
    """The FineWeb-2 config of each document from its language label (None: no label or no config).

    Labels with configs in several scripts are resolved per document by `dominant_scripts`.
    """
    result: list[str | None] = [None] * len(labels)
    by_label: dict[str, list[int]] = {}
    for row, label in enumerate(labels):
        if label is not None:
            by_label.setdefault(label, []).append(row)
    for label, rows in by_label.items():
        candidates = label_candidates(label, language_map)
        if len(candidates) == 1:
            for row in rows:
                result[row] = candidates[0]
        elif candidates:
            scripts = [name.split("_", 1)[1] for name in candidates]
            chosen = dominant_scripts(texts.gather(rows), scripts)
            for row, index in zip(rows, chosen.tolist(), strict=True):
                result[row] = candidates[index]
    return result
