"""what-if: re-deciding from the score sidecar must give what a real rerun with the changed job gives."""

from __future__ import annotations

import shutil
from collections import Counter
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from engine.batch import Verdict, text_column, utf8_lengths
from engine.cli import main
from engine.errors import InputError, SpecError
from engine.inspect.run_outputs import score_files
from engine.inspect.whatif import KEPT_LABEL, parse_setting, redecide, what_if
from engine.io.paths import list_shards
from engine.runner.run import _write_stats, with_absolute_paths, write_resolved_job
from engine.runner.unit import run_unit
from engine.spec import JobSpec, parse_job
from engine.stats import Stats
from engine.steps.base import Decides, Filter, register


@register
class DigitShare(Filter):
    """Test-only filter without `decide`: drops documents whose share of digit characters is high."""

    type: Literal["test_whatif_digits"] = "test_whatif_digits"
    max_ratio: float = 0.04
    parameters = {"max_ratio": Decides(("digit_ratio",))}

    def __call__(self, batch: pa.Table) -> Verdict:
        digits = pc.utf8_length(pc.replace_substring_regex(text_column(batch), r"\D", ""))
        counts = np.asarray(pc.fill_null(digits, 0).to_numpy(zero_copy_only=False), dtype=np.float64)
        lengths = utf8_lengths(batch)
        ratio = np.where(lengths > 0, counts / np.maximum(lengths, 1), np.nan)
        return Verdict.from_rules(too_many_digits=ratio > self.max_ratio, scores={"digit_ratio": ratio})


# Three steps: a length filter with `decide` (labelled "short"), one without (digits), another with (doc_length).
STEPS: list[dict[str, Any]] = [
    {"type": "doc_length", "name": "short", "min_chars": 400},
    {"type": "test_whatif_digits", "name": "digits"},
    {"type": "doc_length", "min_words": 80, "max_words": 3000},
]


def run_units(
    src: Path,
    out: Path,
    steps: list[dict[str, Any]],
    *,
    keep_scores: bool = True,
    input_options: dict[str, Any] | None = None,
) -> JobSpec:
    """Run every shard under `src` with `run_unit` (no Ray), then write what `run_on_ray` writes around them."""
    raw = {
        "name": "tiny",
        "input": {"path": str(src), **(input_options or {})},
        "output": {"path": str(out), "keep_scores": keep_scores},
    }
    job = with_absolute_paths(parse_job({**raw, "steps": steps}))
    write_resolved_job(job)
    total = Stats()
    for shard in list_shards(job.input.path, {}, job.input.glob):
        total = total + Stats.from_dict(run_unit(job, shard).stats)
    total.shards_total = total.shards_processed
    _write_stats(job, total, {})
    return job


def copy_sample(sample_dir: Path, dest: Path, names: tuple[str, ...] = ("part-000", "part-001")) -> Path:
    dest.mkdir(parents=True)
    for name in names:
        shutil.copy(sample_dir / f"{name}.parquet", dest / f"{name}.parquet")
    return dest


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(input folder, output folder) of a run of STEPS with keep_scores over two sample shards (350 docs)."""
    from tests.conftest import SAMPLE_DIR

    root = tmp_path_factory.mktemp("whatif")
    src = copy_sample(SAMPLE_DIR, root / "in")
    run_units(src, root / "out", STEPS)
    return src, root / "out"


def sidecar_reasons(out: Path) -> dict[str, str | None]:
    table = pa.concat_tables(pq.read_table(f) for f in score_files(str(out)))
    return dict(zip(table["id"].to_pylist(), table["reason"].to_pylist(), strict=True))


def changed_steps(**changes: dict[str, Any]) -> list[dict[str, Any]]:
    steps = [dict(s) for s in STEPS]
    for index, params in changes.items():
        steps[int(index.removeprefix("s"))].update(params)
    return steps


def predicted_reasons(out: Path, settings: list[str]) -> tuple[dict[str, str | None], dict[str, str]]:
    """what-if's per-document new reasons, and the documents whose fate it says is unknown (-> next step)."""
    from engine.inspect.run_outputs import iter_score_batches, load_run_job
    from engine.inspect.whatif import apply_settings

    raw, job = load_run_job(str(out))
    new_job, changes = apply_settings(raw, job, settings)
    known: dict[str, str | None] = {}
    unknown: dict[str, str] = {}
    for table in iter_score_batches(score_files(str(out))):
        fates = redecide(table, job.steps, new_job.steps, {c.index for c in changes})
        rows = zip(table["id"].to_pylist(), fates.reason.tolist(), fates.unknown_at.tolist(), strict=True)
        for doc, reason, at in rows:
            if at is None:
                known[doc] = reason
            else:
                unknown[doc] = at
    return known, unknown


CASES = {
    "tighten_last": (["doc_length.min_words=150"], {"s2": {"min_words": 150}}),
    "tighten_first": (["short.min_chars=1500"], {"s0": {"min_chars": 1500}}),
    "upper_bound": (["doc_length.max_words=400"], {"s2": {"max_words": 400}}),
    "loosen_last": (
        ["doc_length.min_words=10", "doc_length.max_words=null"],
        {"s2": {"min_words": 10, "max_words": None}},
    ),
    "loosen_first": (["short.min_chars=50"], {"s0": {"min_chars": 50}}),
    "both": (
        ["steps[0].min_chars=1000", "doc_length.min_words=40"],
        {"s0": {"min_chars": 1000}, "s2": {"min_words": 40}},
    ),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_what_if_equals_a_real_rerun(case: str, tiny_run: tuple[Path, Path], tmp_path: Path) -> None:
    src, out = tiny_run
    settings, changes = CASES[case]
    result = what_if(str(out), settings)
    rerun_out = tmp_path / "rerun"
    run_units(src, rerun_out, changed_steps(**changes))
    actual = sidecar_reasons(rerun_out)
    known, unknown = predicted_reasons(out, settings)
    assert result.docs == len(actual) == len(known) + len(unknown) == 350

    # Every document whose fate what-if claims to know ends exactly so in the rerun.
    mismatched = {doc: (reason, actual[doc]) for doc, reason in known.items() if actual[doc] != reason}
    assert not mismatched, f"{case}: {len(mismatched)} documents differ, e.g. {list(mismatched.items())[:3]}"
    # A document of unknown fate is, in the rerun, kept or dropped by the step it never reached or a later one.
    labels = ["short", "digits", "doc_length"]
    for doc, next_step in unknown.items():
        reason = actual[doc]
        assert reason is None or labels.index(reason.split("/")[0]) >= labels.index(next_step), (doc, reason)

    stats = Stats.from_dict(__import__("json").loads((rerun_out / "stats.json").read_text()))
    low, high = result.kept_range
    assert low <= stats.docs_kept <= high
    if not unknown:
        assert low == high == stats.docs_kept
        assert {k: v for k, v in result.new.items() if k != KEPT_LABEL} == dict(stats.dropped)
    # Only loosening an earlier step can leave fates unknown.
    assert bool(unknown) == (case == "loosen_first")


def test_what_if_counts_moves_and_original(tiny_run: tuple[Path, Path]) -> None:
    _, out = tiny_run
    result = what_if(str(out), ["doc_length.min_words=150"])
    original = Counter(r or KEPT_LABEL for r in sidecar_reasons(out).values())
    assert result.original == original
    newly = result.moves[(KEPT_LABEL, "doc_length/too_few_words")]
    assert newly > 0
    assert result.new[KEPT_LABEL] == original[KEPT_LABEL] - newly
    assert set(result.moves) == {(KEPT_LABEL, "doc_length/too_few_words")}
    assert result.changes[0].old == 80
    assert result.changes[0].value == 150


def test_unchanged_value_changes_nothing(tiny_run: tuple[Path, Path]) -> None:
    _, out = tiny_run
    result = what_if(str(out), ["doc_length.min_words=80"])
    assert result.changes == []
    assert result.new == result.original
    assert not result.moves
    assert not result.unknown


def test_unknown_fate_is_reported_as_a_range(tiny_run: tuple[Path, Path]) -> None:
    _, out = tiny_run
    result = what_if(str(out), ["short.min_chars=50"])
    unknown = sum(result.unknown.values())
    assert unknown > 0
    assert set(result.unknown) == {("short/too_few_chars", "digits")}
    low, high = result.kept_range
    assert high - low == unknown


@pytest.mark.parametrize(
    ("setting", "expected"),
    [
        ("doc_length.min_wordz=1", ["steps[2].min_wordz: unknown key", "keys allowed for doc_length", "min_words"]),
        ("doc_length.min_words=-1", ["steps[2].min_words", "greater than or equal to 0"]),
        ("doc_length.min_words=many", ["steps[2].min_words", "integer"]),
        ("nosuch.min_words=1", ["no step 'nosuch'", "steps[0]=short", "steps[2]=doc_length"]),
        ("steps[9].min_words=1", ["no step 'steps[9]'"]),
        ("digits.max_ratio=0.5", ["cannot answer", "does not re-decide", "test_whatif_digits", "rerun"]),
        ("doc_length.type=other", ["`type` cannot be changed"]),
        ("min_words=1", ["expected STEP.PARAM=VALUE"]),
    ],
)
def test_bad_settings_fail_clearly(tiny_run: tuple[Path, Path], setting: str, expected: list[str]) -> None:
    _, out = tiny_run
    with pytest.raises(SpecError) as error:
        what_if(str(out), [setting])
    for part in expected:
        assert part in str(error.value)


def test_run_without_scores_fails_clearly(tmp_path: Path, sample_dir: Path) -> None:
    src = copy_sample(sample_dir, tmp_path / "in", ("part-002",))
    run_units(src, tmp_path / "out", STEPS, keep_scores=False)
    with pytest.raises(InputError, match="keep_scores: true"):
        what_if(str(tmp_path / "out"), ["doc_length.min_words=10"])


def test_not_a_run_fails_clearly(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="not the output folder of a run"):
        what_if(str(tmp_path), ["doc_length.min_words=10"])


def test_parse_setting_reads_values_as_yaml() -> None:
    assert parse_setting("a.b=0.2") == ("a", "b", 0.2)
    assert parse_setting("a.b=null") == ("a", "b", None)
    assert parse_setting("steps[1].b=[x, y]") == ("steps[1]", "b", ["x", "y"])
    assert parse_setting("my.step.b=true") == ("my.step", "b", True)


def test_cli_prints_the_table_and_exit_codes(tiny_run: tuple[Path, Path], capsys: pytest.CaptureFixture[str]) -> None:
    _, out = tiny_run
    assert main(["what-if", str(out), "--set", "doc_length.min_words=150"]) == 0
    printed = capsys.readouterr().out
    assert "doc_length.min_words: 80 -> 150" in printed
    assert "kept -> doc_length/too_few_words" in printed
    assert main(["what-if", str(out), "--set", "doc_length.nope=1"]) == 2
    assert "steps[2].nope: unknown key" in capsys.readouterr().err


def test_steps_sharing_a_label_are_refused(tmp_path: Path, sample_dir: Path) -> None:
    src = copy_sample(sample_dir, tmp_path / "in", ("part-002",))
    run_units(src, tmp_path / "out", [{"type": "doc_length", "min_words": 5}, {"type": "doc_length", "min_words": 50}])
    with pytest.raises(SpecError, match="several steps labelled doc_length.*distinct `name:`"):
        what_if(str(tmp_path / "out"), ["steps[1].min_words=10"])


def test_sidecar_keeps_every_steps_columns_when_a_first_batch_is_dropped_whole_12(tmp_path: Path) -> None:
    """The sidecar's schema comes from every step, not from the first batch (which an early step may drop whole)."""
    src = tmp_path / "in"
    src.mkdir()
    texts = ["tiny", "also tiny", " ".join(["a document long enough to pass the first step"] * 3), "long " * 26 + "x"]
    pq.write_table(pa.table({"id": ["a", "b", "c", "d"], "text": texts}), src / "part.parquet")
    steps = [{"type": "doc_length", "name": "short", "min_chars": 50}, {"type": "doc_length", "min_words": 3}]
    run_units(src, tmp_path / "out", steps, input_options={"batch_rows": 2})
    (scores,) = [pq.read_table(f) for f in score_files(str(tmp_path / "out"))]
    assert scores["batch"].to_pylist() == [0, 0, 1, 1]
    assert scores["reason"].to_pylist() == ["short/too_few_chars", "short/too_few_chars", None, None]
    assert scores["doc_length.words"].to_pylist() == [None, None, 27.0, 27.0]  # null: the step never saw them
