from __future__ import annotations

import pyarrow as pa
from hypothesis import example, given, settings
from hypothesis import strategies as st

from engine.dedup.normalise import normalise_texts, normalised_words


def norm(*texts: str | None, max_chars: int | None = None) -> list[str]:
    return normalise_texts(pa.array(list(texts), type=pa.large_string()), max_chars=max_chars).to_pylist()


def test_folds_case_punctuation_digits_whitespace_and_diacritics() -> None:
    assert norm("Héllo, WÖRLD!  It's 2024...\n\tCafé — naïve") == ["hello world it s 0000 cafe naive"]


def test_null_and_punctuation_only_texts_become_empty() -> None:
    assert norm(None, "", " ... !!! ", "\u200b") == ["", "", "", ""]


def test_every_unicode_digit_becomes_zero() -> None:
    assert norm("٣ 12 ５") == ["0 00 0"]


def test_max_chars_caps_the_text_before_normalising() -> None:
    assert norm("abcdef ghij", max_chars=4) == ["abcd"]


def test_accepts_string_and_chunked_columns() -> None:
    chunked = pa.chunked_array([pa.array(["A b"]), pa.array(["C, d"])])
    assert normalise_texts(chunked).to_pylist() == ["a b", "c d"]


@settings(max_examples=200, deadline=None)
@given(st.lists(st.text(), max_size=5))
@example(["ＡＢＣ", "ß", "İ"])
def test_normalising_twice_changes_nothing(texts: list[str]) -> None:
    once = normalise_texts(pa.array(texts, type=pa.large_string()))
    assert normalise_texts(once).to_pylist() == once.to_pylist()
    for value in once.to_pylist():
        assert value == value.strip(" ")
        assert "  " not in value


def words_of(texts: list[str | None]) -> list[list[str]]:
    words = normalised_words(pa.array(texts, type=pa.large_string()))
    vocabulary = words.vocabulary.to_pylist()
    o = words.offsets
    return [[vocabulary[i] for i in words.indices[o[d] : o[d + 1]]] for d in range(len(texts))]


def test_words_fold_case_digits_and_diacritics_per_word() -> None:
    assert words_of(["  Héllo, WÖRLD!  It's 2024...", None, "...", "ÉTÉ été"]) == [
        ["hello", "world", "it", "s", "0000"],
        [],
        [],
        ["ete", "ete"],
    ]


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.text(alphabet="aBcZÉè 19٣,.!-@_~\n\t\u00a0'\u0301\u200b\x85\u2028\u3000\u180e\ufeff\x0b\x1c\x1fﬁ"),
        max_size=6,
    )
)
def test_words_are_the_words_of_the_normalised_text(texts: list[str]) -> None:
    expected = [t.split(" ") if t else [] for t in norm(*texts)]
    assert words_of(texts) == expected


def test_characters_that_decompose_into_punctuation_stay_one_word() -> None:
    # The one documented difference with normalise_texts: NFKD turns ½ into 1⁄2 after the split.
    assert words_of(["a ½ b"]) == [["a", "00", "b"]]
    assert norm("a ½ b") == ["a 0 0 b"]


def test_short_and_long_chunks_are_grouped_apart_and_never_merge_across_texts() -> None:
    # Chunks of up to 8 bytes are grouped as integers, longer ones as strings: 8 and 9 bytes, multi-byte
    # characters on both sides of the limit, equal words in several texts, and texts whose edges touch.
    texts = ["abcdefgh abcdefghi", "ÀÀÀÀ ÀÀÀÀÀ abcdefgh", "abc", "def", "", "ABCDEFGH-abcdefghi", "x1234567 x12345678"]
    assert words_of(texts) == [
        ["abcdefgh", "abcdefghi"],
        ["aaaa", "aaaaa", "abcdefgh"],
        ["abc"],
        ["def"],
        [],
        ["abcdefgh", "abcdefghi"],
        ["x0000000", "x00000000"],
    ]
