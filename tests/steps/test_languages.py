"""FineWeb-2's shipped configs and the lid.176 -> FineWeb-2 table: complete, faithful, resolved by script."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest
import yaml

from engine.errors import SpecError
from engine.models.loader import check_model, default_lid_model
from engine.steps.languages import config_names, fineweb2_config, fineweb2_configs, label_candidates, lid176_table

UNMAPPED = {"en", "sh"}


def test_every_config_shipped_with_its_datatrove_tokenizer() -> None:
    configs = fineweb2_configs()
    assert len(configs) == 1929
    thai = configs["tha_Thai"]
    assert thai.language_score == 0.9
    assert thai.stopwords[:3] == ("ใน", "ที่", "และ")
    assert thai.top_n_grams == ((2, 0.221), (3, 0.197), (4, 0.162))
    assert thai.tokenizer == "ThaiTokenizer"
    assert configs["cmn_Hani"].tokenizer == "SpaCyTokenizer:zh"
    assert configs["hin_Deva"].tokenizer == "IndicNLPTokenizer:hi"


def test_shipped_values_equal_the_published_yaml(shared_corpora: Path) -> None:
    folder = shared_corpora / "fineweb2-filter-configs" / "configs"
    for name in ("cmn_Hani", "jpn_Jpan", "tha_Thai", "arb_Arab", "rus_Cyrl", "hin_Deva", "swh_Latn", "deu_Latn"):
        published = yaml.safe_load((folder / f"{name}.yml").read_text(encoding="utf-8"))
        shipped = fineweb2_config(name).as_dict()
        for key, value in published.items():
            assert shipped[key] == value, (name, key)
    assert {p.stem for p in folder.glob("*.yml")} == set(fineweb2_configs())


def test_unknown_config_name_suggests_close_ones() -> None:
    with pytest.raises(SpecError, match="did you mean tha_Thai"):
        fineweb2_config("tha_thai")


def test_every_lid176_label_is_in_the_table() -> None:
    labels = set(check_model(default_lid_model()))
    table = lid176_table()
    assert set(table) == labels
    assert {label for label, (names, _) in table.items() if not names} == UNMAPPED
    configs = fineweb2_configs()
    for label, (names, how) in table.items():
        assert all(name in configs for name in names), label
        assert how


@pytest.mark.parametrize(
    ("label", "expected"),
    [
        ("zh", ("cmn_Hani",)),
        ("ja", ("jpn_Jpan",)),
        ("ar", ("arb_Arab", "arb_Latn")),
        ("sw", ("swh_Latn",)),
        ("fa", ("fas_Arab",)),
        ("als", ("gsw_Latn",)),  # Alemannic, not GlotLID's als (Tosk Albanian)
        ("sq", ("als_Latn",)),
        ("no", ("nob_Latn",)),
        ("sr", ("srp_Cyrl", "srp_Latn")),
        ("tha_Thai", ("tha_Thai",)),  # a GlotLID label is a config name
        ("en", ()),
        ("eng_Latn", ()),
        ("xx", ()),
    ],
)
def test_label_candidates(label: str, expected: tuple[str, ...]) -> None:
    assert label_candidates(label) == expected


def test_config_names_resolve_scripts_and_user_mapping() -> None:
    texts = pl.Series(["Ово је текст на српском.", "Ovo je tekst na srpskom.", "中文", "English", "", "Ovo je"])
    labels = ["sr", "sr", "zh", "en", None, "sh"]
    assert config_names(labels, texts) == ["srp_Cyrl", "srp_Latn", "cmn_Hani", None, None, None]
    assert config_names(labels, texts, {"sh": "hrv_Latn"})[-1] == "hrv_Latn"
