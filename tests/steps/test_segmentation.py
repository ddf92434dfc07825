"""Words per language: backend choice, IndicNLP's tokens, groups merged in row order, English path unchanged."""

from __future__ import annotations

import importlib.util

import numpy as np
import polars as pl
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from engine.batch import make_batch, take
from engine.steps import segmentation as seg
from engine.steps import text as tx
from engine.steps import tokens


def has(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


@pytest.mark.parametrize(
    ("tokenizer", "backend"),
    [
        (None, "spacy"),
        ("SpaCyTokenizer:xx", "spacy"),
        ("SpaCyTokenizer:ru", "spacy"),
        ("StanzaTokenizer:kmr", "spacy"),
        ("WhitespaceTokenizer", "spacy"),
        ("IndicNLPTokenizer:hi", "indic"),
        ("IndicNLPTokenizer:ur", "indic_urdu"),
        ("SpaCyTokenizer:zh", "jieba"),
        ("SpaCyTokenizer:ja", "sudachi"),
        ("SpaCyTokenizer:vi", "pyvi"),
        ("KiwiTokenizer", "kiwi"),
        ("ThaiTokenizer", "pythainlp"),
        ("LaoTokenizer", "lao"),
        ("KhmerTokenizer", "khmer"),
        ("TibetanTokenizer", "icu"),
    ],
)
def test_backend_for_datatrove_tokenizer(tokenizer: str | None, backend: str) -> None:
    assert seg.backend_for(tokenizer) == backend


# Expected tokens are what indicnlp 0.92's trivial_tokenize gives (then stripped, blanks dropped, as datatrove).
@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("मेरे दादा ओसाका के हैं। भूल गयी?", ["मेरे", "दादा", "ओसाका", "के", "हैं", "।", "भूल", "गयी", "?"]),
        ("कीमत 3,000 रुपये, 5:18 am", ["कीमत", "3,000", "रुपये", ",", "5:18", "am"]),
        ("12 . 5 और 1 , 2 , 3", ["12", ".", "5", "और", "1,2,3"]),  # a number sequence at the start stays split
        ("a1 ,2 b", ["a1,2", "b"]),
        ("पंक्ति\nदूसरी\tतीसरी", ["पंक्ति\nदूसरी", "तीसरी"]),  # only spaces (and tabs) separate tokens
        ("", []),
    ],
)
def test_indic_words_are_indicnlp_tokens(text: str, expected: list[str]) -> None:
    assert seg.indic_words(pl.Series([text])).to_list() == [expected]


def test_urdu_punctuation() -> None:
    words = seg.indic_words(pl.Series(["میں آج بازار جا رہا ہوں۔ کیا، ہاں"]), urdu=True).to_list()
    assert words == [["میں", "آج", "بازار", "جا", "رہا", "ہوں", "۔", "کیا", "،", "ہاں"]]


def test_whitespace_languages_take_the_english_path() -> None:
    texts = pl.Series(["Der Hund, der bellt.", "Привет, мир!", ""])
    pieces = seg.language_words(texts, seg.row_segmenters(["deu_Latn", "rus_Cyrl", None]))
    english = tx.words(texts)
    assert pieces.values.to_list() == english.values.to_list()
    assert list(pieces.row) == list(english.row)


def test_groups_are_merged_back_in_row_order() -> None:
    texts = pl.Series(["नमस्ते दुनिया।", "Hello world.", "फिर से।"])
    pieces = seg.language_words(texts, seg.row_segmenters(["hin_Deva", "eng_Latn", "hin_Deva"]))
    assert pieces.values.to_list() == ["नमस्ते", "दुनिया", "।", "Hello", "world", ".", "फिर", "से", "।"]
    assert list(pieces.row) == [0, 0, 0, 1, 1, 1, 2, 2, 2]
    assert list(pieces.counts) == [3, 3, 3]


def test_a_language_can_take_another_splitter() -> None:
    assert seg.row_segmenters(["tha_Thai", "cmn_Hani"]) == [("pythainlp", "Thai"), ("jieba", "Hani")]
    assert seg.row_segmenters(["tha_Thai", "cmn_Hani"], {"tha_Thai": "icu"}) == [("icu", "Thai"), ("jieba", "Hani")]


def test_missing_libraries_are_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(seg.LIBRARIES, "icu", ("icu", "no_such_module_here"))
    assert seg.missing_libraries(["icu"]) == {
        "icu": ["no_such_module_here"] if has("icu") else ["icu", "no_such_module_here"]
    }
    assert seg.missing_libraries(["spacy", "indic"]) == {}


def test_language_tokenizer_is_a_cache_key_of_the_batch_words() -> None:
    batch = make_batch({"text": ["नमस्ते दुनिया।", "Hello"], "language": ["hin_Deva", None]})
    first = tokens.batch_words(batch, seg.LanguageTokenizer("language"))
    assert tokens.batch_words(batch, seg.LanguageTokenizer("language")) is first  # equal tokenizers, one entry
    assert first.values.to_list() == ["नमस्ते", "दुनिया", "।", "Hello"]
    other = seg.LanguageTokenizer("language", (("hin_Deva", "spacy"),))
    assert tokens.batch_words(batch, other) is not first
    no_column = tokens.batch_words(batch.drop_columns(["language"]), seg.LanguageTokenizer("language"))
    assert no_column.values.to_list() == tx.words(pl.Series(["नमस्ते दुनिया।", "Hello"])).values.to_list()


def test_utf8_chunks_as_spacy_japanese_cuts_them() -> None:
    text = "日本語の文章です。" * 3000  # 81,000 bytes: datatrove's Japanese tokenizer cuts at 40,000 bytes
    chunks = seg._utf8_chunks(text, 40_000)
    assert "".join(chunks) == text
    assert all(len(chunk.encode()) <= 40_000 for chunk in chunks)
    assert len(chunks) == 3


@pytest.mark.skipif(not has("rjieba"), reason="needs corpus-engine[multilingual]")
def test_chinese_words_are_jieba_words() -> None:
    words = seg.backend_words(pl.Series(["我们试试看！今天天气很好。"]), "jieba").to_list()
    assert words == [["我们", "试试看", "！", "今天天气", "很", "好", "。"]]


@pytest.mark.skipif(not has("sudachipy"), reason="needs corpus-engine[multilingual]")
def test_japanese_words_are_sudachi_mode_a() -> None:
    words = seg.backend_words(pl.Series(["校長先生は生徒を叱りました。"]), "sudachi").to_list()
    assert words == [["校長", "先生", "は", "生徒", "を", "叱り", "まし", "た", "。"]]


@pytest.mark.skipif(not has("pythainlp"), reason="needs corpus-engine[multilingual]")
def test_thai_words_are_newmm_safe_words() -> None:
    text = "เหลือเวลาอีกกี่ชั่วโมงกว่าจะเดินทางไปถึง? มีอะไรที่เธอต้องการจะซื้อไหม"
    words = seg.backend_words(pl.Series([text]), "pythainlp").to_list()[0]
    assert words[:8] == ["เหลือ", "เวลา", "อีก", "กี่", "ชั่วโมง", "กว่า", "จะ", "เดินทาง"]
    assert "?" in words


@pytest.mark.skipif(not has("kiwipiepy"), reason="needs corpus-engine[multilingual]")
def test_korean_words_are_kiwi_morphemes() -> None:
    words = seg.backend_words(pl.Series(["나는 그의 모자가 싫다."]), "kiwi").to_list()
    assert words == [["나", "는", "그", "의", "모자", "가", "싫", "다", "."]]


@pytest.mark.skipif(not has("icu"), reason="needs corpus-engine[multilingual]")
def test_icu_splits_lao_khmer_burmese() -> None:
    texts = pl.Series(["ສະບາຍດີ ຂ້ອຍມາຈາກປະເທດລາວ", "ខ្ញុំចង់ទៅផ្សារ។", "မင်္ဂလာပါ။"])
    words = [
        seg.backend_words(texts[i : i + 1], "icu", script).to_list()[0]
        for i, script in enumerate(["Laoo", "Khmr", "Mymr"])
    ]
    assert words[0][:2] == ["ສະບາຍດີ", "ຂ້ອຍ"]
    assert "។" in words[1]
    assert words[2][-1] == "။"


def test_rows_kept_by_a_step_carry_their_words_and_changed_texts_do_not() -> None:
    texts = ["नमस्ते दुनिया।", "Der Hund, der bellt.", "फिर से।", "Привет, мир!"]
    languages = ["hin_Deva", "deu_Latn", "hin_Deva", "rus_Cyrl"]
    batch = make_batch({"id": ["a", "b", "c", "d"], "text": texts, "language": languages})
    tokenizer = seg.LanguageTokenizer("language")
    tokens.batch_words(batch, tokenizer)
    keep = np.array([True, False, True, True])
    kept = take(batch, keep)
    assert tokens.peek_tokens(kept, tokenizer) is None  # a new text column: nothing known for it yet
    tokens.carry_tokens(batch, kept, keep)  # what process_batch does after a step drops rows
    reused = tokens.peek_tokens(kept, tokenizer)
    assert reused is not None  # known without splitting again
    fresh = seg.language_words(
        pl.Series([texts[0], texts[2], texts[3]]), seg.row_segmenters([languages[0], languages[2], languages[3]])
    )
    assert reused.words.values.to_list() == fresh.values.to_list()
    assert list(reused.words.row) == list(fresh.row)
    assert list(reused.words.counts) == list(fresh.counts)
    # a transform rewrote a text: a new column, split again
    rewritten = make_batch({"id": ["a", "c"], "text": ["नमस्ते।", texts[2]], "language": ["hin_Deva", "hin_Deva"]})
    assert tokens.batch_words(rewritten, tokenizer).values.to_list() == ["नमस्ते", "।", "फिर", "से", "।"]


VI_WORDS = ["Hà", "Nội", "là", "thủ", "đô", "VIỆT", "Nam", "2024", ",", "của", "ΑΣ"]


@pytest.mark.skipif(not has("pyvi"), reason="needs corpus-engine[multilingual] (pyvi)")
@settings(deadline=None)  # the first call loads pyvi's model
@given(words=st.lists(st.sampled_from(VI_WORDS), max_size=12))
@example(words=[])
@example(words=["Hà", "Nội", "là", "thủ", "đô", "của", "Việt", "Nam", "."])
def test_vietnamese_features_are_pyvi_features(words: list[str]) -> None:
    """The CRF sees what pyvi's own `sent2features` builds (keys, values, order): the same labels follow."""
    from pyvi.ViTokenizer import ViTokenizer

    expected = ViTokenizer.sent2features(words, False)
    actual = seg.vi_features(words, ViTokenizer.bi_grams, ViTokenizer.tri_grams)
    assert actual == expected
    assert [list(f) for f in actual] == [list(f) for f in expected]


@pytest.mark.skipif(not has("pyvi"), reason="needs corpus-engine[multilingual] (pyvi)")
def test_vietnamese_words_are_spacy_pyvi_words() -> None:
    text = "Hà Nội là thủ đô của Việt Nam. Tôi đang học tiếng Việt ở trường đại học."
    words = seg.backend_words(pl.Series([text]), "pyvi").to_list()[0]
    assert "Hà Nội" in words
    assert "thủ đô" in words
    assert "." in words


def test_library_tokens_are_stripped_as_datatrove_strips_them() -> None:
    """Each token stripped with Python's whitespace (U+001C..U+001F and U+3000 included), blank ones dropped,
    every document keeping its own list (empty ones too)."""
    texts = pl.Series(["a| b\x1c|\u3000|  ", "", "|||", "c|\x85d\u2029"])
    lists = seg._python_words(texts, lambda text: text.split("|"))
    expected = [[t.strip() for t in text.split("|") if t.strip()] for text in texts.to_list()]
    assert lists.to_list() == expected == [["a", "b"], [], [], ["c", "d"]]
