"""FineWeb-2 per language: the language step (every reason), per-row thresholds and stop words, overrides."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

from engine.batch import make_batch
from engine.errors import SpecError
from engine.steps.base import build_step
from engine.steps.fineweb import FineWebQuality
from engine.steps.fineweb2 import FineWeb2Language, PerLanguage, resolved_languages
from engine.steps.gopher import GopherQuality, GopherRepetition
from engine.steps.languages import fineweb2_config
from tests.steps.property_checks import check_batch, check_empty_batch

GERMAN = (
    "Der Hund und die Katze wohnen in dem Haus von meinem Onkel. Er hat den Garten mit Blumen bepflanzt, "
    "und im Sommer sitzen wir dort gern. Die Kinder spielen im Garten, und der Hund bellt, wenn die Katze "
    "auf den Baum klettert. Das ist ein schöner Ort für die ganze Familie, und wir kommen gern wieder."
)


def language_batch(texts: list[str | None], languages: list[str | None], scores: list[float] | None = None):  # type: ignore[no-untyped-def]
    return make_batch({"text": texts, "language": languages, "language_score": scores or [0.99] * len(texts)})


def test_language_step_maps_labels_and_applies_each_cut() -> None:
    step = FineWeb2Language()
    texts = ["中文文本", "Ово је текст", "Ovo je tekst", "English text", "   ", "Kiswahili", "Kiswahili"]
    labels = ["zh", "sr", "sr", "en", None, "sw", "swh_Latn"]
    scores = [0.70, 0.95, 0.95, 0.99, 0.0, 0.29, 0.31]
    out, verdict = step(language_batch(texts, labels, scores))
    assert out["language"].to_pylist() == ["cmn_Hani", "srp_Cyrl", "srp_Latn", None, None, "swh_Latn", "swh_Latn"]
    assert out["language_label"].to_pylist() == labels
    # cmn_Hani's cut is 0.692, swh_Latn's 0.3 (FineWeb-2's configs), kept when score >= cut
    assert list(verdict.reason) == [None, None, None, "no_config", "no_language", "low_score", None]
    assert step.output_partition() == "language"


def test_language_step_pins_languages_and_overrides_cuts() -> None:
    texts = ["中文", "Kiswahili", "ภาษาไทย"]
    batch = language_batch(texts, ["zh", "sw", "th"], [0.5, 0.5, 0.5])
    _, verdict = FineWeb2Language(languages=("tha_Thai", "swh_Latn"), min_scores={"tha_Thai": 0.4})(batch)
    assert list(verdict.reason) == ["not_in_languages", None, None]
    _, verdict = FineWeb2Language(min_score=0.6)(batch)
    assert list(verdict.reason) == ["low_score", "low_score", "low_score"]
    with pytest.raises(ValueError, match="did you mean tha_Thai"):
        FineWeb2Language(languages=("tha_thai",))


def test_language_step_needs_language_id_first() -> None:
    with pytest.raises(SpecError, match="language_id"):
        FineWeb2Language()(make_batch({"text": ["x"]}))


def test_gopher_quality_judges_each_row_with_its_language() -> None:
    # Same text, two languages: German settings (stop words der/und/die...) keep it; Swahili's drop it.
    step = GopherQuality(min_stop_words=2, per_language=PerLanguage())
    verdict = step(language_batch([GERMAN, GERMAN], ["deu_Latn", "swh_Latn"]))
    assert list(verdict.reason) == [None, "too_few_stop_words"]
    assert list(verdict.scores["stop_words"]) == [10.0, 0.0]  # "im" included: German rules keep it whole
    # Without per_language the English defaults apply to both: no English stop word at all.
    english = GopherQuality()(language_batch([GERMAN, GERMAN], ["deu_Latn", "swh_Latn"]))
    assert list(english.reason) == ["too_few_stop_words", "too_few_stop_words"]


def test_stop_words_distinct_or_occurrences() -> None:
    nouns = "Haus Garten Blume Sonne Baum Wasser Feld Tisch Stuhl Fenster Wolke Straße".split()
    text = " ".join(nouns * 5) + " der Hund der Katze."  # one German stop word, used twice
    distinct = GopherQuality(per_language=PerLanguage())
    occurrences = GopherQuality(per_language=PerLanguage(), stop_words_count="occurrences")
    a = distinct(language_batch([text], ["deu_Latn"]))
    b = occurrences(language_batch([text], ["deu_Latn"]))
    assert list(a.reason) == ["too_few_stop_words"]
    assert list(b.reason) == [None]
    assert (a.scores["stop_words"][0], b.scores["stop_words"][0]) == (1.0, 2.0)
    english = GopherQuality(stop_words_count="occurrences")(make_batch({"text": [text.replace("der", "the")]}))
    assert list(english.reason) == [None]  # the same choice without per_language


def test_per_row_thresholds_in_repetition_and_fineweb_quality() -> None:
    lines = "\n".join(f"Zeile {i} ohne Punkt am Ende" for i in range(12))
    batch = language_batch([lines, lines], ["deu_Latn", "rus_Cyrl"])
    # line_punct_thr: deu_Latn 0.0 (rule off), rus_Cyrl 0.231
    verdict = FineWebQuality(short_line_thr=None, per_language=PerLanguage())(batch)
    assert verdict.reason[1] == "line_punct_ratio"
    assert verdict.reason[0] != "line_punct_ratio"
    repeated = "\n".join(["Ein Satz, der sich wiederholt und wiederholt."] * 4 + [GERMAN])
    # dup_line_frac: deu_Latn 0.263, hin_Deva 0.206; 3 duplicates of 5 lines -> 0.6 > both; 1 of 4 -> 0.25
    once = "\n".join(["Ein Satz, der sich wiederholt.", "Ein Satz, der sich wiederholt.", GERMAN, "Noch einer."])
    step = GopherRepetition(dup_para_frac=0, dup_line_char_frac=0, dup_para_char_frac=0, per_language=PerLanguage())
    verdict = step(language_batch([repeated, once, once], ["deu_Latn", "deu_Latn", "hin_Deva"]))
    assert list(verdict.reason) == ["dup_line_frac", None, "dup_line_frac"]
    assert np.allclose(verdict.scores["dup_line_frac"], [0.6, 0.25, 0.25])


def test_overrides_for_one_language_or_all() -> None:
    batch = language_batch([GERMAN, GERMAN], ["deu_Latn", "fra_Latn"])
    step = GopherQuality(
        per_language=PerLanguage(overrides={"fra_Latn": {"stop_words": ["Hund"], "min_stop_words": 1}})
    )
    verdict = step(batch)
    assert list(verdict.reason) == [None, None]
    everyone = GopherQuality(per_language=PerLanguage(overrides={"*": {"min_doc_words": 1000}}))
    verdict = everyone(batch)
    assert list(verdict.reason) == ["too_few_words", "too_few_words"]


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"tha_thai": {"min_doc_words": 3}}, "did you mean tha_Thai"),
        ({"tha_Thai": {"min_words": 3}}, "unknown field"),
        ({"*": {"min_alpha_words_ratio": 3}}, "less than or equal to 1"),
    ],
)
def test_bad_overrides_fail_when_the_job_is_read(overrides: dict[str, object], message: str) -> None:
    with pytest.raises(SpecError, match=message):
        build_step({"type": "gopher_quality", "per_language": {"overrides": overrides}}, "steps[3]")


def test_resolved_languages_show_what_a_language_gets() -> None:
    steps = [
        FineWeb2Language(min_scores={"tha_Thai": 0.5}),
        GopherQuality(per_language=PerLanguage(overrides={"tha_Thai": {"min_doc_words": 30}})),
    ]
    table = resolved_languages(steps, ["tha_Thai", "cmn_Hani"])
    thai = table["tha_Thai"]
    assert thai["fineweb2_language.min_language_score"] == 0.5
    assert thai["gopher_quality"]["min_doc_words"] == 30
    assert thai["gopher_quality"]["stop_words"] == list(fineweb2_config("tha_Thai").stopwords)
    assert table["cmn_Hani"]["fineweb2_language.min_language_score"] == 0.692
    assert "min_doc_words" not in table["cmn_Hani"]["gopher_quality"]


def test_per_language_properties() -> None:
    texts = [GERMAN, "Kiswahili ni lugha ya Afrika Mashariki na ya kati.", "", None, "- a\n- b"]
    languages = ["deu_Latn", "swh_Latn", "deu_Latn", None, "unknown_Xxxx"]
    for step in (
        GopherQuality(per_language=PerLanguage()),
        GopherRepetition(per_language=PerLanguage()),
        FineWebQuality(short_line_thr=None, per_language=PerLanguage()),
    ):
        check_empty_batch(step, language=[])
        check_batch(step, texts, language=languages)


@pytest.mark.skipif(not importlib.util.find_spec("pythainlp"), reason="needs corpus-engine[multilingual]")
def test_word_splitter_versions_are_part_of_the_reuse_key() -> None:
    """A per-language step names the installed splitters' metadata as assets: a new version redoes the shards."""
    import importlib.metadata

    assets = build_step({"type": "gopher_quality", "per_language": {}}).assets()
    metadata = assets["word_splitter/pythainlp"]
    assert f"Version: {importlib.metadata.version('pythainlp')}" in Path(metadata).read_text(encoding="utf-8")
    assert {"fineweb2/configs", "fineweb2/spacy_rules"} <= set(assets)
    # An opt-in splitter's package counts only when the job chooses it.
    assert "word_splitter/nlpo3" not in assets
    chosen = build_step({"type": "gopher_quality", "per_language": {"word_splitters": {"tha_Thai": "newmm"}}})
    assert "word_splitter/nlpo3" in chosen.assets()
    assert build_step({"type": "gopher_quality"}).assets() == {}
