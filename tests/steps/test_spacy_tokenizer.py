"""spaCy's tokenizer re-run on each language's shipped rules: the words datatrove's SpaCyTokenizer gives.

Each expected split below is what spaCy 3.8's blank pipeline gives (datatrove 0.10.1's SpaCyTokenizer, checked
with benchmarks/compare_fineweb2.py), one test per rule the regular-expression approximation
(`engine.steps.spacy_rules`) got wrong and that changed FineWeb-2 decisions in Greek and French.
"""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.batch import make_batch
from engine.steps import spacy_rules
from engine.steps import spacy_tokenizer as sp
from engine.steps.fineweb2 import PerLanguage
from engine.steps.gopher import GopherQuality
from engine.steps.segmentation import backend_words

FIXTURE = Path(__file__).parent / "fixtures" / "fineweb2_spacy_words.jsonl"


def words(code: str, text: str) -> list[str]:
    return sp.split_words(pl.Series([text]), code).to_list()[0]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # Greek prefix rule: one to three Greek letters and an apostrophe are one word (elision)
        ("Υπάρχουν μόνο τρία απ' αυτά.", ["Υπάρχουν", "μόνο", "τρία", "απ'", "αυτά", "."]),
        ("Ο Τζακ δεν είν' εδώ.", ["Ο", "Τζακ", "δεν", "είν'", "εδώ", "."]),
        # Greek suffix rules: a number's final dot and an acronym's last dot are split off, a percent stays on
        ("Ιδρύθηκε το 1935.", ["Ιδρύθηκε", "το", "1935", "."]),
        ("Αύξηση 80-90% στο Ε.Μ.Π.", ["Αύξηση", "80-90%", "στο", "Ε.Μ.Π", "."]),
        # Greek: a hyphen after a Greek word is a suffix
        ("της Κοπεγχάγης- και", ["της", "Κοπεγχάγης", "-", "και"]),
    ],
)
def test_greek_affix_rules(text: str, expected: list[str]) -> None:
    assert words("el", text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # French token match: hyphenated words with a known first part stay whole (the suffix comma does not)
        (
            "Les États-Unis, mon grand-père et la non-pensée.",
            ["Les", "États-Unis", ",", "mon", "grand-père", "et", "la", "non-pensée", "."],
        ),
        ("rendez-vous à Saint-Michel", ["rendez-vous", "à", "Saint-Michel"]),
        # French suffixes: "+" after a digit is split off; "n°" is a special case
        ("Les ions Cu2+ du n° 5.", ["Les", "ions", "Cu2", "+", "du", "n°", "5", "."]),
        # a final dot after ";" is no suffix in French: the HTML entity word stays whole
        ("Le haut est d&#233;centr&#233;. Fin", ["Le", "haut", "est", "d&#233;centr&#233;.", "Fin"]),
    ],
)
def test_french_token_match_and_suffixes(text: str, expected: list[str]) -> None:
    assert words("fr", text) == expected


@pytest.mark.parametrize(
    ("code", "chunk", "expected"),
    [
        # spaCy's special matcher: pieces the affix rules split are joined back into a special case
        ("de", "(1999):", ["(", "1999", "):"]),
        ("de", "z.B", ["z.", "B"]),
        ("fr", "n°3", ["n°", "3"]),
        ("uk", "зрозуміло:)", ["зрозуміло", ":)"]),
    ],
)
def test_special_cases_split_by_affixes_are_rejoined(code: str, chunk: str, expected: list[str]) -> None:
    assert words(code, chunk) == expected
    assert sp.SpacyTokenizer(code)._chunk(chunk, with_specials=True) != expected  # the matcher made the difference


def test_real_documents_the_approximation_dropped_are_kept() -> None:
    """Greek and French documents datatrove keeps, which the approximation's words dropped (too few alphabetic
    words: "είν" + "'", "grand" + "-" + "père"); with spaCy's words every decision is datatrove's."""
    docs = [json.loads(line) for line in FIXTURE.read_text(encoding="utf-8").splitlines()]
    batch = make_batch({"text": [d["text"] for d in docs], "language": [d["language"] for d in docs]})
    exact = GopherQuality(min_stop_words=2, per_language=PerLanguage())(batch)
    assert [None if d["gopher_quality"] == "keep" else d["gopher_quality"] for d in docs] == list(exact.reason)
    rules = PerLanguage(word_splitters={"ell_Grek": "spacy_rules", "fra_Latn": "spacy_rules"})
    approximate = GopherQuality(min_stop_words=2, per_language=rules)(batch)
    assert set(approximate.reason) == {"too_few_alpha_words"}


def test_backends_choose_exact_or_approximate_rules() -> None:
    text = pl.Series(["Ο Τζακ δεν είν' εδώ."])
    assert backend_words(text, "spacy", "el").to_list() == [["Ο", "Τζακ", "δεν", "είν'", "εδώ", "."]]
    assert backend_words(text, "spacy_rules", "el").to_list() == spacy_rules.split_words(text, "el").to_list()
    assert backend_words(text, "spacy", "zz").to_list() == backend_words(text, "spacy", "xx").to_list()


def test_cache_gives_the_same_words_and_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    tokenizer = sp.SpacyTokenizer("fr")
    text = "L'homme a dit-il: «aujourd'hui, 3,5% des États-Unis...»"
    first = tokenizer.words(text)
    assert tokenizer.words(text) == first == sp.SpacyTokenizer("fr").words(text)
    monkeypatch.setattr(sp, "CACHE_SIZE", 3)
    tokenizer.words("un deux trois quatre cinq six")
    assert len(tokenizer.cache) <= 3


@settings(max_examples=200, deadline=None)
@given(text=st.text(alphabet=st.sampled_from(list("aé Ω'’-.,:;()%°+1\n\t«»&#/")), max_size=40))
def test_nothing_is_lost_or_added(text: str) -> None:
    """Tokens only cut the text: joined they are the text without its whitespace, in every language's rules."""
    for code in ("el", "fr", "de", "xx"):
        found = words(code, text)
        assert "".join(found) == "".join(text.split())
        assert all(w and w == w.strip() for w in found)


def test_empty_and_blank_texts() -> None:
    assert sp.split_words(pl.Series(["", " \n\t "]), "fr").to_list() == [[], []]
    assert {"el", "fr", "xx"} <= set(sp.languages())
