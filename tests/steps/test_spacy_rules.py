"""spaCy's word rules per language: what differs from English, checked against spaCy's own output."""

from __future__ import annotations

import polars as pl
import pytest

from engine.steps import spacy_rules
from engine.steps import text as tx

# Expected tokens: spaCy 3.8's blank pipeline of each language on the same text (datatrove's word tokenizer).
CASES = [
    ("xx", "don't it's I'm cannot dont im 9am", ["don't", "it", "'s", "I'm", "cannot", "dont", "im", "9am"]),
    ("xx", "well-known 2020-2021 10km", ["well", "-", "known", "2020", "-", "2021", "10", "km"]),
    ("de", "Er war im Haus, z.B. am 11. Mai.", ["Er", "war", "im", "Haus", ",", "z.B.", "am", "11.", "Mai", "."]),
    ("de", "Max-Ernst-Kabinett auf's bzw. 3-4", ["Max-Ernst-Kabinett", "auf's", "bzw.", "3", "-", "4"]),
    ("fr", "C'est l'homme, dit-il aujourd'hui.", ["C'", "est", "l'", "homme", ",", "dit", "-il", "aujourd'hui", "."]),
    ("fr", "a-t-il dont qu'il", ["a", "-t", "-il", "dont", "qu'", "il"]),
    ("ru", "Я знаю, что он был в г. Москве.", ["Я", "знаю", ",", "что", "он", "был", "в", "г.", "Москве", "."]),
]


@pytest.mark.parametrize(("code", "text", "expected"), CASES)
def test_language_rules_match_spacy(code: str, text: str, expected: list[str]) -> None:
    assert spacy_rules.split_words(pl.Series([text]), code).to_list() == [expected]


def test_english_only_rules_stay_english() -> None:
    text = "I'm sure they don't im cannot"
    assert tx.split_words(pl.Series([text])).to_list() == [
        ["I", "'m", "sure", "they", "do", "n't", "i", "m", "can", "not"]
    ]
    assert spacy_rules.split_words(pl.Series([text]), "xx").to_list() == [
        ["I'm", "sure", "they", "don't", "im", "cannot"]
    ]


def test_unknown_code_uses_the_multi_language_rules() -> None:
    text = pl.Series(["well-known it's"])
    assert spacy_rules.split_words(text, "zz").to_list() == spacy_rules.split_words(text, "xx").to_list()
    assert "de" in spacy_rules.spacy_languages()


def test_nulls_and_empty_texts() -> None:
    assert spacy_rules.split_words(pl.Series(["", " \n "]), "fr").to_list() == [[], []]
