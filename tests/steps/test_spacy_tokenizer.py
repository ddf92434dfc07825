"""spaCy's tokenizer re-run on each language's shipped rules: the words datatrove's SpaCyTokenizer gives.

Each expected split below is what spaCy 3.8's blank pipeline gives (datatrove 0.10.1's SpaCyTokenizer, checked
with benchmarks/compare_fineweb2.py), one test per rule the regular-expression approximation
(`engine.steps.spacy_rules`) got wrong and that changed FineWeb-2 decisions in Greek and French.
"""

from __future__ import annotations

import itertools
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


# Pieces of text that reach every branch of the algorithm, in groups drawn equally often: letters of several
# scripts (and those some languages' prefixes start with: "USD", "Rp", "US$"), punctuation (elisions,
# apostrophes, hyphens, brackets, quotes, dots), numbers and units, URLs, e-mails, emoji and a combining accent,
# whitespace, and each language's own special cases.
FRAGMENT_GROUPS = [
    [*"aeéZßıİΩλΓжЖאñçαάşğ", "Rp", "USD", "IDR", "km", "kg", "ΗΠΑ", "nya", "aujourd", "grand", "États", "Flynn"],
    [*"'’ʼ`´-–—‐/\\.,:;!?¿¡()[]{}\"«»„“”‚‘…%$€£°+*=&@#_^~|<>", "..", "...", "n°", "US$", "C$"],
    [*"0123456789½²٣", "35", "1935", "3,5", "80-90", "10.000"],
    ["http://", "https://www.", "example.com", "/path?q=1", "a@b.org", "😀", "👍🏽", "\u0301", "\u200b"],
    [" ", " ", "\n", "\t"],
]


def tricky_texts(code: str) -> st.SearchStrategy[str]:
    specials = sorted(orth for orth in sp.SpacyTokenizer(code).specials if not orth.isspace())
    pieces = st.one_of(*(st.sampled_from(group) for group in [*FRAGMENT_GROUPS, specials]))
    return st.lists(pieces, max_size=10).map("".join)


@pytest.mark.parametrize("code", ["el", "fr", "de", "id", "tr", "hu", "ro", "pl", "ru", "he", "xx"])
def test_fast_paths_give_the_full_algorithms_words(code: str) -> None:
    """The fast paths (plain words, prefixes skipped before letters, a suffix looked for at the last character
    only) are proven from each language's rules; on texts built from every kind of piece the rules handle they
    give exactly the words of the full algorithm, new chunks and remembered ones alike."""
    fast, full = sp.SpacyTokenizer(code), sp.SpacyTokenizer(code, fast=False)

    @settings(max_examples=200, deadline=None, derandomize=True)
    @given(text=tricky_texts(code))
    def check(text: str) -> None:
        assert fast.words(text) == full.words(text)
        assert fast.words(text) == full.words(text)  # remembered

    check()


@pytest.mark.parametrize(
    ("code", "text", "expected"),
    [
        # Indonesian prefixes include the letters "Rp", "USD", "IDR": a word starting with them is no plain word
        ("id", "Rp5000 USDnya Rpku rumahnya.", ["Rp", "5000", "USD", "nya", "Rp", "ku", "rumahnya", "."]),
        # every language's currency prefixes: "US$" and "C$" start with a letter
        ("de", "US$5 C$3 Haus.", ["US$", "5", "C$", "3", "Haus", "."]),
        # a suffix only after a digit: "km" stays on a word, is split from a number
        ("ru", "5km km.", ["5", "km", "km", "."]),
        # Greek elision prefix: letters and an apostrophe
        ("el", "απ' τ'αυτιά", ["απ'", "τ'", "αυτιά"]),
    ],
)
def test_letters_that_start_rules_are_not_plain_words(code: str, text: str, expected: list[str]) -> None:
    assert words(code, text) == expected
    assert sp.SpacyTokenizer(code, fast=False).words(text) == expected


def test_fast_paths_are_proven_where_the_rules_allow() -> None:
    """Which shortcuts each language may take, as proven from its rules (the fast paths are what make the
    tokenizer fast; a rule change that disables them shows here)."""
    proofs = {code: sp.SpacyTokenizer(code) for code in ("de", "id", "el", "hu")}
    assert all(t.plain_words for t in proofs.values())
    assert proofs["de"].prefix_first == frozenset("UCA")  # "US$", "C$", "A$"
    assert {"R", "U", "I", "S"} <= set(proofs["id"].prefix_first or ())
    assert "α" in (proofs["el"].prefix_first or ())
    assert sp._suffix_only_at_last("de", ",")
    assert sp._suffix_only_at_last("fr", ".")


# Every chunk of one to three of these atoms (9,723 chunks): each rule the fast paths reason about (a prefix
# starting with a letter, a suffix after a digit or starting with a letter, an infix between letters and
# digits, elisions) meets each neighbour it can have. Breaking any of the three proofs fails this test.
ATOMS = ["a", "Γ", "Flynn", "Rp", "US", "km", "\u0301", "😀", *"'-.,()\":/%$+", "5"]


@pytest.mark.parametrize("code", ["el", "de", "id", "ru", "tr"])
def test_fast_paths_on_every_chunk_of_up_to_three_atoms(code: str) -> None:
    fast, full = sp.SpacyTokenizer(code), sp.SpacyTokenizer(code, fast=False)
    chunks = ["".join(parts) for size in (1, 2, 3) for parts in itertools.product(ATOMS, repeat=size)]
    different = [c for c in chunks if fast.chunk_words(c) != full.chunk_words(c)]
    assert different == []
