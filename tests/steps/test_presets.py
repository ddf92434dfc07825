"""Presets expand to the published recipes' steps, in order, and validate as a job."""

from __future__ import annotations

import pytest

from engine.errors import SpecError
from engine.spec import parse_job
from engine.steps.base import known_step_types
from engine.steps.presets import PRESETS, expand_preset


def job(preset: str, steps: list[dict[str, object]] | None = None) -> dict[str, object]:
    return {"input": {"path": "in"}, "output": {"path": "out"}, "preset": preset, "steps": steps or []}


def test_fineweb_preset_order_and_settings() -> None:
    spec = parse_job(job("fineweb"))
    types = [s.type for s in spec.steps]
    expected = ["url_filter", "language_id", "gopher_repetition", "gopher_quality", "c4_quality", "fineweb_quality"]
    if "language_id" not in known_step_types():
        expected.remove("language_id")
    assert types == expected
    c4 = spec.steps[types.index("c4_quality")]
    assert c4.filter_no_terminal_punct is False  # type: ignore[attr-defined]


def test_language_id_listed_only_when_registered() -> None:
    steps = [s["type"] for s in expand_preset("fineweb")]
    assert ("language_id" in steps) == ("language_id" in known_step_types())
    assert any(s["type"] == "language_id" and s["languages"] == ["en"] for s in PRESETS["fineweb"])


def test_gopher_and_c4_presets() -> None:
    assert [s.type for s in parse_job(job("gopher")).steps] == ["gopher_repetition", "gopher_quality"]
    c4 = parse_job(job("c4")).steps
    assert [s.type for s in c4] == ["c4_quality", "c4_badwords"]
    assert c4[0].filter_no_terminal_punct is True  # type: ignore[attr-defined]


def test_preset_steps_come_before_job_steps() -> None:
    spec = parse_job(job("gopher", [{"type": "doc_length", "min_words": 3}]))
    assert [s.type for s in spec.steps][-1] == "doc_length"


def test_unknown_preset() -> None:
    with pytest.raises(SpecError, match="known presets: c4, fineweb, fineweb2, gopher"):
        expand_preset("nope")


def test_fineweb2_preset_order_and_settings() -> None:
    spec = parse_job(job("fineweb2"))
    types = [s.type for s in spec.steps]
    assert types == [
        "language_id",
        "fineweb2_language",
        "gopher_repetition",
        "fineweb_quality",
        "gopher_quality",
        "normalise",
        "pii",
        "symbol_lines",
    ]
    repetition, fineweb, quality = spec.steps[2], spec.steps[3], spec.steps[4]
    assert (repetition.dup_para_frac, repetition.dup_para_char_frac, repetition.dup_line_char_frac) == (0, 0, 0)  # type: ignore[attr-defined]
    assert (fineweb.short_line_thr, fineweb.char_duplicates_ratio) == (None, 0.1)  # type: ignore[attr-defined]
    assert quality.min_stop_words == 2  # type: ignore[attr-defined]
    assert all(s.per_language is not None for s in (repetition, fineweb, quality))  # type: ignore[attr-defined]
    assert spec.steps[0].min_score == 0.0  # type: ignore[attr-defined]
    assert spec.partition_column() == "language"


def test_preset_parameters_are_overridable_in_the_job() -> None:
    preset = {
        "name": "fineweb2",
        "language_id": {"model": "glotlid.bin"},
        "fineweb2_language": {"languages": ["tha_Thai"]},
        "gopher_quality": {"min_doc_words": 30, "per_language": {"overrides": {"tha_Thai": {"min_stop_words": 3}}}},
    }
    spec = parse_job({"input": {"path": "in"}, "output": {"path": "out"}, "preset": preset})
    assert spec.steps[0].model == "glotlid.bin"  # type: ignore[attr-defined]
    assert spec.steps[1].languages == ("tha_Thai",)  # type: ignore[attr-defined]
    quality = spec.steps[4]
    assert quality.min_doc_words == 30  # type: ignore[attr-defined]
    assert quality.per_language.overrides == {"tha_Thai": {"min_stop_words": 3}}  # type: ignore[attr-defined]
    with pytest.raises(SpecError, match="has no such step; its steps: language_id, fineweb2_language"):
        parse_job({"input": {"path": "in"}, "output": {"path": "out"}, "preset": {"name": "fineweb2", "c4": {}}})
    with pytest.raises(SpecError, match=r"preset.name: missing"):
        parse_job({"input": {"path": "in"}, "output": {"path": "out"}, "preset": {"gopher_quality": {}}})
