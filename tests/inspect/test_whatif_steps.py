"""what-if for every step with a `decide`, against a real rerun of the changed job, document by document (issue 12).

Each case runs a job with the score sidecar over the sample corpus (697 real documents), asks what-if about a
changed deciding parameter, reruns the changed job, and checks every document: where what-if says it knows the
new fate, the rerun agrees exactly; where it says the fate is unknown, the rerun drops the document at the step
what-if names or later (or keeps it). Measuring parameters are refused, naming the parameter and why.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from engine.batch import Verdict
from engine.errors import SpecError
from engine.inspect.run_outputs import iter_score_batches, load_run_job, score_files
from engine.inspect.whatif import KEPT_LABEL, WhatIf, apply_settings, parse_setting, redecide, what_if
from engine.steps.base import Filter, register
from engine.steps.presets import expand_preset
from engine.steps.segmentation import missing_libraries
from tests.fasttext_fixtures import TinyModel, tiny_fasttext_model  # noqa: F401  (a fixture)
from tests.inspect.test_whatif import copy_sample, run_units

FINEWEB = expand_preset("fineweb")  # url_filter, language_id [en], gopher_repetition, gopher_quality, c4, fineweb
URL = {"type": "url_filter", "soft_banned_words": ["news", "blog", "forum", "shop"]}
LANGUAGE = {"type": "language_id", "languages": ["en"]}
HEURISTICS = [
    {"type": "gopher_repetition"},
    {"type": "gopher_quality"},
    {"type": "c4_quality"},
    {"type": "fineweb_quality"},
]


@pytest.fixture(scope="module")
def sample_input(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Every shard of the sample corpus (697 documents of real Common Crawl text, several languages)."""
    from tests.conftest import SAMPLE_DIR

    return copy_sample(
        SAMPLE_DIR, tmp_path_factory.mktemp("whatif-steps") / "in", tuple(f"part-00{i}" for i in range(4))
    )


def changed_steps(steps: list[dict[str, Any]], settings: list[str]) -> list[dict[str, Any]]:
    """The rerun's steps: `settings` applied to the step mappings (a step found by its name, else its type)."""
    result = [dict(step) for step in steps]
    for setting in settings:
        label, param, value = parse_setting(setting)
        (index,) = [i for i, s in enumerate(result) if s.get("name", s["type"]) == label]
        result[index][param] = value
    return result


def reasons(out: Path) -> dict[str, str | None]:
    table = pa.concat_tables(pq.read_table(f) for f in score_files(str(out)))
    return dict(zip(table["id"].to_pylist(), table["reason"].to_pylist(), strict=True))


def predicted(out: Path, settings: list[str]) -> tuple[dict[str, str | None], dict[str, str]]:
    """what-if's new reason per document whose fate it knows, and the next step of those it does not."""
    raw, job = load_run_job(str(out))
    new_job, changes = apply_settings(raw, job, settings)
    known: dict[str, str | None] = {}
    unknown: dict[str, str] = {}
    for table in iter_score_batches(score_files(str(out))):
        fates = redecide(table, job.steps, new_job.steps, {c.index for c in changes})
        for doc, reason, at in zip(table["id"].to_pylist(), fates.reason, fates.unknown_at, strict=True):
            if at is None:
                known[doc] = reason
            else:
                unknown[doc] = at
    return known, unknown


def compare_with_rerun(
    src: Path, tmp: Path, steps: list[dict[str, Any]], settings: list[str], *, batch_rows: int | None = None
) -> tuple[WhatIf, dict[str, str], dict[str, str | None]]:
    """Run `steps`, ask what-if, rerun the changed job; assert every document agrees. (result, unknown, rerun)."""
    input_options = {"batch_rows": batch_rows} if batch_rows else {}
    run_units(src, tmp / "run", steps, input_options=input_options)
    result = what_if(str(tmp / "run"), settings)
    assert result.changes, "the settings change nothing: the case tests nothing"
    run_units(src, tmp / "rerun", changed_steps(steps, settings), input_options=input_options)
    actual = reasons(tmp / "rerun")
    known, unknown = predicted(tmp / "run", settings)
    assert len(known) + len(unknown) == len(actual) == result.docs
    wrong = {doc: (reason, actual[doc]) for doc, reason in known.items() if actual[doc] != reason}
    assert not wrong, f"{len(wrong)} documents differ from the rerun, e.g. {sorted(wrong.items())[:3]}"
    labels = [s.get("name", s["type"]) for s in steps]
    for doc, next_step in unknown.items():
        reason = actual[doc]
        assert reason is None or labels.index(reason.split("/")[0]) >= labels.index(next_step), (doc, reason)
    rerun_stats = json.loads((tmp / "rerun" / "stats.json").read_text())
    low, high = result.kept_range
    assert low <= rerun_stats["docs_kept"] <= high
    if not unknown:
        assert low == high == rerun_stats["docs_kept"]
    return result, unknown, actual


# (steps of the run, settings, whether some fates are unknown). Each changed step is last in its job unless the
# case is about later steps, so loosening a threshold is answered in full.
CASES: dict[str, tuple[list[dict[str, Any]], list[str], bool]] = {
    "language_id.min_score up": ([URL, LANGUAGE], ["language_id.min_score=0.9"], False),
    "language_id.min_score down": ([URL, LANGUAGE], ["language_id.min_score=0.3"], False),
    "language_id.languages": ([URL, LANGUAGE], ["language_id.languages=[en, es, de]"], False),
    "language_id.languages any": ([URL, LANGUAGE], ["language_id.languages=null", "language_id.min_score=0.8"], False),
    "language_id in the fineweb chain": (FINEWEB, ["language_id.min_score=0.4"], True),
    "url_filter.soft_word_threshold": ([URL], ["url_filter.soft_word_threshold=1"], False),
    "gopher_repetition.dup_line_frac": ([HEURISTICS[0]], ["gopher_repetition.dup_line_frac=0.1"], False),
    "gopher_repetition loosened": (
        [HEURISTICS[0]],
        ["gopher_repetition.dup_line_frac=0.6", "gopher_repetition.dup_para_frac=0.6"],
        False,
    ),
    "gopher_repetition.top_n_grams": (
        [HEURISTICS[0]],
        ["gopher_repetition.top_n_grams=[[2, 0.1], [3, 0.08], [4, 0.3]]"],
        False,
    ),
    "gopher_quality.min_doc_words": (HEURISTICS[:2], ["gopher_quality.min_doc_words=150"], False),
    "gopher_quality loosened": (
        HEURISTICS[:2],
        ["gopher_quality.min_alpha_words_ratio=0.5", "gopher_quality.min_stop_words=null"],
        False,
    ),
    "gopher_quality.max_symbol_word_ratio": (HEURISTICS[:2], ["gopher_quality.max_symbol_word_ratio=0.01"], False),
    "c4_quality.min_num_sentences up": (HEURISTICS[:3], ["c4_quality.min_num_sentences=12"], False),
    "c4_quality.min_num_sentences down": (HEURISTICS[:3], ["c4_quality.min_num_sentences=2"], False),
    "c4_quality before fineweb_quality": (HEURISTICS, ["c4_quality.min_num_sentences=1"], True),
    "fineweb_quality.line_punct_thr": (HEURISTICS, ["fineweb_quality.line_punct_thr=0.4"], False),
    "fineweb_quality loosened": (
        HEURISTICS,
        ["fineweb_quality.char_duplicates_ratio=0.2", "fineweb_quality.short_line_thr=0.9"],
        False,
    ),
    "fineweb_quality.new_line_ratio": (HEURISTICS, ["fineweb_quality.new_line_ratio=0.1"], False),
    "c4_badwords.keep_fraction": ([{"type": "c4_badwords"}], ["c4_badwords.keep_fraction=0.5"], False),
    "c4_badwords.missing_language": (
        [{"type": "language_id"}, {"type": "c4_badwords"}],
        ["c4_badwords.missing_language=drop"],
        False,
    ),
}


# FineWeb-2: the language steps, then each per-language step as `preset: fineweb2` configures it.
FW2_LANGUAGE = [{"type": "language_id", "min_score": 0.0}, {"type": "fineweb2_language"}]
FW2 = {step["type"]: step for step in expand_preset("fineweb2") if "per_language" in step}
FW2_CASES: dict[str, tuple[list[dict[str, Any]], list[str], bool]] = {
    "fineweb2_language.min_score": (FW2_LANGUAGE, ["fineweb2_language.min_score=0.9"], False),
    "fineweb2_language.languages": (FW2_LANGUAGE, ["fineweb2_language.languages=[deu_Latn, fra_Latn]"], False),
    "fineweb2_language.min_scores loosened": (
        FW2_LANGUAGE,
        ["fineweb2_language.min_scores={rus_Cyrl: 0.1, deu_Latn: 0.1, spa_Latn: 0.1}"],
        False,
    ),
    "gopher_repetition per language": (
        [*FW2_LANGUAGE, FW2["gopher_repetition"]],
        ["gopher_repetition.dup_para_frac=0.2", "gopher_repetition.dup_para_char_frac=0.1"],
        False,
    ),
    "gopher_quality per language": (
        [*FW2_LANGUAGE, FW2["gopher_quality"]],
        ["gopher_quality.min_doc_words=200", "gopher_quality.min_stop_words=4"],
        False,
    ),
    "fineweb_quality per language": (
        [*FW2_LANGUAGE, FW2["fineweb_quality"]],
        ["fineweb_quality.char_duplicates_ratio=0.02", "fineweb_quality.short_line_thr=0.5"],
        False,
    ),
    "gopher_quality per-language override": (
        [*FW2_LANGUAGE, FW2["gopher_quality"]],
        ["gopher_quality.per_language={overrides: {'*': {min_alpha_words_ratio: 0.6}, rus_Cyrl: {min_stop_words: 6}}}"],
        False,
    ),
    "gopher_repetition per-language override": (
        [*FW2_LANGUAGE, FW2["gopher_repetition"]],
        ["gopher_repetition.per_language={overrides: {'*': {top_n_grams: [[2, 0.1], [3, 0.1], [4, 0.1]]}}}"],
        False,
    ),
    "fineweb2_language in the fineweb2 chain": (
        [*FW2_LANGUAGE, FW2["gopher_repetition"], FW2["fineweb_quality"], FW2["gopher_quality"]],
        ["fineweb2_language.min_score=0.0"],
        True,
    ),
}
_MISSING = missing_libraries()
needs_multilingual = pytest.mark.skipif(
    bool(_MISSING), reason=f"splits words per language: needs corpus-engine[multilingual] (missing: {sorted(_MISSING)})"
)


@pytest.mark.parametrize("case", sorted(CASES))
def test_what_if_equals_a_real_rerun(case: str, sample_input: Path, tmp_path: Path) -> None:
    steps, settings, has_unknown = CASES[case]
    result, unknown, _ = compare_with_rerun(sample_input, tmp_path, steps, settings)
    assert result.moves or result.unknown, f"{case}: no document changes fate, so the case proves nothing"
    assert bool(unknown) == has_unknown


@pytest.fixture(scope="module")
def fineweb2_input(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two shards of the sample (about 30 languages): splitting words per language is the costly part."""
    from tests.conftest import SAMPLE_DIR

    return copy_sample(SAMPLE_DIR, tmp_path_factory.mktemp("whatif-fineweb2") / "in", ("part-000", "part-001"))


@pytest.mark.parametrize(
    "case",
    [pytest.param(c, marks=needs_multilingual) if "per" in c or "chain" in c else c for c in sorted(FW2_CASES)],
)
def test_fineweb2_what_if_equals_a_real_rerun(case: str, fineweb2_input: Path, tmp_path: Path) -> None:
    steps, settings, has_unknown = FW2_CASES[case]
    result, unknown, _ = compare_with_rerun(fineweb2_input, tmp_path, steps, settings)
    assert result.moves or result.unknown, f"{case}: no document changes fate, so the case proves nothing"
    assert bool(unknown) == has_unknown


QUALITY_STEPS: list[dict[str, Any]] = [{"type": "doc_length", "min_words": 30}, {"type": "quality_classifier"}]


def quality_steps(model: str, **quality: Any) -> list[dict[str, Any]]:
    return [QUALITY_STEPS[0], {**QUALITY_STEPS[1], "model": model, **quality}]


@pytest.mark.parametrize(
    ("quality", "settings", "has_unknown"),
    [
        ({"min_score": 0.5}, ["quality_classifier.min_score=0.2"], False),
        ({"min_score": 0.5}, ["quality_classifier.min_score=null", "quality_classifier.keep_top_fraction=0.3"], False),
        ({"keep_top_fraction": 0.5}, ["quality_classifier.keep_top_fraction=0.2"], False),
        # The batch's top fraction is taken again when an earlier step changes who reaches it ...
        ({"keep_top_fraction": 0.5}, ["doc_length.min_words=120"], False),
        # ... and is unknown for a batch holding a document the change lets through unmeasured.
        ({"keep_top_fraction": 0.5}, ["doc_length.min_words=5"], True),
    ],
)
def test_quality_classifier_what_if_equals_a_real_rerun(
    quality: dict[str, Any],
    settings: list[str],
    has_unknown: bool,  # noqa: FBT001
    sample_input: Path,
    tmp_path: Path,
    tiny_fasttext_model: TinyModel,  # noqa: F811
) -> None:
    steps = quality_steps(tiny_fasttext_model.path, **quality)
    # 40 rows per batch: the sample's shards are read in several batches, each ranked apart.
    result, unknown, _ = compare_with_rerun(sample_input, tmp_path, steps, settings, batch_rows=40)
    assert result.moves or result.unknown
    assert bool(unknown) == has_unknown


def test_whole_run_top_fraction_is_the_min_score_to_rerun_with(
    sample_input: Path,
    tmp_path: Path,
    tiny_fasttext_model: TinyModel,  # noqa: F811
) -> None:
    steps = quality_steps(tiny_fasttext_model.path, keep_top_fraction=0.5)
    _, _, per_batch = compare_with_rerun(
        sample_input, tmp_path, steps, ["quality_classifier.keep_top_fraction=0.25"], batch_rows=40
    )
    result = what_if(str(tmp_path / "run"), ["quality_classifier.keep_top_fraction=0.25"])
    (cut,) = result.whole_run_cuts
    assert cut.label == "quality_classifier"
    assert cut.fraction == 0.25
    assert cut.kept >= np.ceil(0.25 * cut.reaching)
    rerun = changed_steps(
        steps, ["quality_classifier.keep_top_fraction=null", f"quality_classifier.min_score={cut.min_score!r}"]
    )
    run_units(sample_input, tmp_path / "global", rerun, input_options={"batch_rows": 40})
    kept = [doc for doc, reason in reasons(tmp_path / "global").items() if reason is None]
    assert len(kept) == cut.kept
    # The whole-run cut is not the per-batch one: ranking each batch apart keeps other documents.
    assert set(kept) != {doc for doc, reason in per_batch.items() if reason is None}
    from engine.inspect.whatif import format_what_if

    assert f"--set quality_classifier.min_score={cut.min_score!r}" in format_what_if(result)


# A measuring parameter is refused, naming it and why: the stored scores were measured with the old value.
REFUSED = [
    (HEURISTICS[:2], "gopher_quality.stop_words=[zzz]", "gopher_quality.stop_words is the word list counted"),
    (HEURISTICS, "fineweb_quality.short_line_length=200", "fineweb_quality.short_line_length chooses which lines"),
    (HEURISTICS, "fineweb_quality.stop_chars=['!']", "fineweb_quality.stop_chars chooses which line endings"),
    (HEURISTICS[:3], "c4_quality.min_words_per_line=10", "c4_quality.min_words_per_line changes which lines"),
    ([URL], "url_filter.soft_banned_words=[com]", "url_filter.soft_banned_words changes a list"),
    ([LANGUAGE], "language_id.max_chars=10", "language_id.max_chars changes how much of each text"),
    (HEURISTICS[:1], "gopher_repetition.top_n_grams=[[2, 0.2], [5, 0.1]]", "changes the n-gram sizes measured"),
    ([{"type": "normalise", "fix_text": False}], "normalise.form=NFKC", "normalise.form changes the text"),
    (FW2_LANGUAGE, "fineweb2_language.language_map={sh: hrv_Latn}", "fineweb2_language.language_map chooses"),
    (
        [*FW2_LANGUAGE, FW2["gopher_quality"]],
        "gopher_quality.per_language={word_splitters: {rus_Cyrl: icu}}",
        "gopher_quality.per_language chooses each document's word splitter",
    ),
    (
        [*FW2_LANGUAGE, FW2["gopher_quality"]],
        "gopher_quality.per_language={overrides: {'*': {stop_words: [zzz]}}}",
        "gopher_quality.per_language.overrides.*.stop_words is the word list counted",
    ),
    (
        [*FW2_LANGUAGE, FW2["gopher_repetition"]],
        "gopher_repetition.per_language={overrides: {'*': {top_n_grams: [[2, 0.1], [11, 0.1]]}}}",
        "gopher_repetition.per_language.overrides change the n-gram sizes measured for top_n_grams",
    ),
    (
        [*FW2_LANGUAGE, FW2["gopher_quality"]],
        "gopher_quality.stop_words_count=occurrences",
        "gopher_quality.stop_words_count chooses what the `stop_words` score counts",
    ),
    ([{"type": "pii"}], "pii.remove_ipv6=true", "pii.remove_ipv6 changes the text"),
    ([{"type": "symbol_lines"}], "symbol_lines.replace_char=''", "symbol_lines.replace_char changes the text"),
]


@pytest.mark.parametrize(
    ("steps", "setting", "why"),
    [pytest.param(*r, marks=needs_multilingual) if len(r[0]) > 2 and r[0][:2] == FW2_LANGUAGE else r for r in REFUSED],
    ids=[r[1].split("=")[0] for r in REFUSED],
)
def test_measuring_parameters_are_refused(
    steps: list[dict[str, Any]], setting: str, why: str, sample_input: Path, tmp_path: Path
) -> None:
    src = copy_sample(sample_input, tmp_path / "in", ("part-001",))
    run_units(src, tmp_path / "run", steps)
    with pytest.raises(SpecError) as error:
        what_if(str(tmp_path / "run"), [setting])
    message = str(error.value)
    assert why in message
    assert "cannot answer this from the stored scores" in message
    assert "Only a rerun measures again" in message


def test_a_refused_change_would_have_been_answered_wrongly(sample_input: Path, tmp_path: Path) -> None:
    """Why the guard exists: with `stop_words: [zzz]` a rerun drops most documents; the old scores say none."""
    src = copy_sample(sample_input, tmp_path / "in", ("part-001",))
    run_units(src, tmp_path / "run", HEURISTICS[:2])
    run_units(src, tmp_path / "rerun", changed_steps(HEURISTICS[:2], ["gopher_quality.stop_words=[zzz]"]))
    before, after = reasons(tmp_path / "run"), reasons(tmp_path / "rerun")
    newly = [doc for doc in before if before[doc] is None and after[doc] == "gopher_quality/too_few_stop_words"]
    assert len(newly) > 10
    with pytest.raises(SpecError, match="stop_words"):
        what_if(str(tmp_path / "run"), ["gopher_quality.stop_words=[zzz]"])


def test_refusal_lists_what_can_change(sample_input: Path, tmp_path: Path) -> None:
    src = copy_sample(sample_input, tmp_path / "in", ("part-001",))
    run_units(src, tmp_path / "run", HEURISTICS)
    with pytest.raises(SpecError) as error:
        what_if(str(tmp_path / "run"), ["fineweb_quality.stop_chars=['!']"])
    allowed = str(error.value).split("can change for fineweb_quality: ")[1].split(", ")
    assert allowed == [
        "char_duplicates_ratio",
        "line_punct_exclude_zero",
        "line_punct_thr",
        "new_line_ratio",
        "per_language",  # its per-language thresholds; not its word splitters (fw2.redecide_refusal)
        "short_line_thr",
    ]


def test_c4_sentences_not_counted_cannot_be_re_decided(sample_input: Path, tmp_path: Path) -> None:
    src = copy_sample(sample_input, tmp_path / "in", ("part-001",))
    run_units(src, tmp_path / "run", [{"type": "c4_quality", "min_num_sentences": -1}])
    sentences = pq.read_table(score_files(str(tmp_path / "run"))[0])["c4_quality.sentences"]
    assert np.isnan(sentences.to_numpy()).all()  # not counted: null, not a made-up 0
    with pytest.raises(SpecError, match="sentences were not counted"):
        what_if(str(tmp_path / "run"), ["c4_quality.min_num_sentences=3"])


def test_a_step_must_declare_every_parameter() -> None:
    with pytest.raises(TypeError, match=r"undeclared: max_ratio, min_ratio"):

        @register
        class Undeclared(Filter):  # pragma: no cover - never registered
            type: Literal["test_undeclared"] = "test_undeclared"
            min_ratio: float = 0.1
            max_ratio: float = 0.9

            def __call__(self, batch: pa.Table) -> Verdict:
                return Verdict.keep_all(batch.num_rows)


def test_kept_label_counts_every_document(sample_input: Path, tmp_path: Path) -> None:
    run_units(sample_input, tmp_path / "run", [URL, LANGUAGE])
    result = what_if(str(tmp_path / "run"), ["language_id.languages=[de]"])
    assert sum(result.new.values()) == sum(result.original.values()) == 697
    assert result.new[KEPT_LABEL] < result.original[KEPT_LABEL]
