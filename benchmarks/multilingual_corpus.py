"""Seeded multilingual documents from real sentences in ../shared/corpora, labelled with FineWeb-2 config names.

Two sources of real text per language, joined into documents (nothing downloaded, nothing committed):

- **Tatoeba** (`laser-tatoeba-v1/tatoeba.<iso3>-eng.<iso3>`): human-translated everyday sentences, the closest
  thing here to FLORES-style translated text. CC-BY 2.0 FR.
- **Leipzig web sentences** (`lingua-langid-testdata/language-testdata/sentences/<iso1>.txt`): sentences drawn
  from arbitrary web pages (Wortschatz corpora), the closest thing here to web text in many languages.
- OSCAR documents (`hf-datasets-dummy/oscar`) where a language has nothing else (Lao, Burmese).

A document is a seeded run of consecutive sentences from one source (8 to 40 sentences, in paragraphs of 1 to 5
sentences separated by a newline; CJK sentences are joined without spaces). Every fifth document is a seeded
variant that puts it near or past a filter threshold, so both sides of each decision are exercised: one sentence
per line (newline ratio), a short document (word count), repeated paragraphs (duplicate lines and n-grams),
menu and table-artifact lines (punctuation, symbol lines). The kind is recorded with each document.
"""

from __future__ import annotations

import gzip
import io
import os
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

CORPORA = Path(os.environ.get("CORPORA", Path(__file__).resolve().parents[2] / "shared" / "corpora"))

# FineWeb-2 config name -> (Tatoeba ISO 639-3 file code, Leipzig ISO 639-1 file code, OSCAR config code).
LANGUAGES: dict[str, tuple[str | None, str | None, str | None]] = {
    "cmn_Hani": ("cmn", "zh", None),
    "jpn_Jpan": ("jpn", "ja", None),
    "kor_Hang": ("kor", "ko", None),
    "tha_Thai": ("tha", "th", None),
    "arb_Arab": ("ara", "ar", None),
    "rus_Cyrl": ("rus", "ru", None),
    "hin_Deva": ("hin", "hi", None),
    "swh_Latn": ("swh", "sw", None),
    "deu_Latn": ("deu", "de", None),
    "fra_Latn": ("fra", "fr", None),
    "vie_Latn": ("vie", "vi", None),
    "tur_Latn": ("tur", "tr", None),
    "khm_Khmr": ("khm", None, "km"),
    "lao_Laoo": (None, None, "lo"),
    "mya_Mymr": (None, None, "my"),
    "urd_Arab": ("urd", "ur", None),
    "fas_Arab": ("pes", "fa", None),
    "ben_Beng": ("ben", "bn", None),
    "tam_Taml": ("tam", "ta", None),
    "ell_Grek": ("ell", "el", None),
    "heb_Hebr": ("heb", "he", None),
    "ukr_Cyrl": ("ukr", "uk", None),
    "pol_Latn": ("pol", "pl", None),
    "spa_Latn": ("spa", "es", None),
    "ind_Latn": ("ind", "id", None),
    "tat_Cyrl": ("tat", None, None),
}
NO_SPACE_SCRIPTS = ("Hani", "Jpan")

# Language families for speed tables: how the words of a language are found.
FAMILIES = {
    "whitespace": (
        "rus_Cyrl",
        "swh_Latn",
        "deu_Latn",
        "fra_Latn",
        "vie_Latn",
        "tur_Latn",
        "ell_Grek",
        "ukr_Cyrl",
        "pol_Latn",
        "spa_Latn",
        "ind_Latn",
        "tat_Cyrl",
        "hin_Deva",
        "ben_Beng",
        "tam_Taml",
        "heb_Hebr",
    ),
    "cjk": ("cmn_Hani", "jpn_Jpan", "kor_Hang"),
    "thai_lao_khmer_burmese": ("tha_Thai", "lao_Laoo", "khm_Khmr", "mya_Mymr"),
    "arabic_script": ("arb_Arab", "urd_Arab", "fas_Arab"),
}

KINDS = ("clean", "lines", "short", "repeated", "menu")


@dataclass(frozen=True)
class Document:
    """One benchmark document: id, text, gold FineWeb-2 language, source and variant kind."""

    id: str
    text: str
    language: str
    source: str
    kind: str


def tatoeba_sentences(code: str) -> list[str]:
    """Tatoeba sentences of one language (ISO 639-3 file code), in file order."""
    path = CORPORA / "laser-tatoeba-v1" / f"tatoeba.{code}-eng.{code}"
    return [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def leipzig_sentences(code: str) -> list[str]:
    """Leipzig web sentences of one language (ISO 639-1 file code), in file order."""
    path = CORPORA / "lingua-langid-testdata" / "language-testdata" / "sentences" / f"{code}.txt"
    return [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def oscar_sentences(code: str) -> list[str]:
    """The lines of OSCAR's sample documents of one language (original and deduplicated configs)."""
    lines: list[str] = []
    for config in ("original", "deduplicated"):
        path = CORPORA / "hf-datasets-dummy" / "oscar" / "dummy" / f"unshuffled_{config}_{code}" / "1.0.0"
        with zipfile.ZipFile(path / "dummy_data.zip") as archive:
            for name in sorted(archive.namelist()):
                if name.endswith(".txt.gz"):
                    raw = gzip.open(io.BytesIO(archive.read(name))).read().decode("utf-8", "replace")
                    lines.extend(line.strip() for line in raw.splitlines() if line.strip())
    return lines


def _join(sentences: list[str], language: str, rng: np.random.Generator) -> str:
    """Sentences as paragraphs of 1-5 sentences, one paragraph a line."""
    glue = "" if language.endswith(NO_SPACE_SCRIPTS) else " "
    paragraphs, i = [], 0
    while i < len(sentences):
        size = int(rng.integers(1, 6))
        paragraphs.append(glue.join(sentences[i : i + size]))
        i += size
    return "\n".join(paragraphs)


_MENU = ("Home | About | Contact", "| | |", "Share", "Log in", "—", "© 2024", "| --- | --- |", "Next »")


def _document(sentences: list[str], language: str, kind: str, rng: np.random.Generator) -> str:
    """One document of `kind` from a run of sentences."""
    if kind == "lines":
        return "\n".join(sentences)
    if kind == "short":
        return _join(sentences[: int(rng.integers(1, 5))], language, rng)
    text = _join(sentences, language, rng)
    if kind == "repeated":
        paragraphs = text.split("\n")
        repeat = paragraphs[int(rng.integers(len(paragraphs)))]
        for _ in range(int(rng.integers(2, 6))):
            paragraphs.insert(int(rng.integers(len(paragraphs) + 1)), repeat)
        return "\n".join(paragraphs)
    if kind == "menu":
        paragraphs = text.split("\n")
        for _ in range(int(rng.integers(3, 12))):
            paragraphs.insert(int(rng.integers(len(paragraphs) + 1)), str(rng.choice(_MENU)))
        return "\n".join(paragraphs)
    return text


def language_documents(language: str, docs: int, *, seed: int = 0) -> list[Document]:
    """`docs` seeded documents of one language, alternating between its sources."""
    tatoeba, leipzig, oscar = LANGUAGES[language]
    sources = [
        (name, sentences)
        for name, sentences in (
            ("tatoeba", tatoeba_sentences(tatoeba) if tatoeba else []),
            ("leipzig", leipzig_sentences(leipzig) if leipzig else []),
            ("oscar", oscar_sentences(oscar) if oscar else []),
        )
        if sentences
    ]
    rng = np.random.default_rng([seed, sum(map(ord, language))])
    out = []
    for k in range(docs):
        name, sentences = sources[k % len(sources)]
        size = min(len(sentences), int(rng.integers(8, 41)))
        start = int(rng.integers(0, len(sentences) - size + 1))
        kind = KINDS[0] if k % 5 else KINDS[1 + (k // 5) % (len(KINDS) - 1)]
        text = _document(sentences[start : start + size], language, kind, rng)
        out.append(Document(f"{language}/{name}/{k}", text, language, name, kind))
    return out


def documents(languages: list[str] | None = None, *, per_language: int = 400, seed: int = 0) -> list[Document]:
    """Documents for every language in `languages` (default: all of LANGUAGES)."""
    return [doc for lang in languages or list(LANGUAGES) for doc in language_documents(lang, per_language, seed=seed)]


def translated_documents(language: str, *, sentences_per_doc: int = 20) -> list[str]:
    """Tatoeba's sentences of a language joined, in file order, into clean documents (no variants)."""
    code = LANGUAGES[language][0]
    if code is None:
        return []
    sentences = tatoeba_sentences(code)
    rng = np.random.default_rng(0)
    return [
        _join(sentences[i : i + sentences_per_doc], language, rng)
        for i in range(0, len(sentences) - sentences_per_doc + 1, sentences_per_doc)
    ]
