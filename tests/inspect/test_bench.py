"""bench: every step alone and the whole pipeline on a sample; drop counts, overlap, examples, the JSON line."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from engine.batch import take
from engine.cli import main
from engine.inspect.bench import examples as bench_examples
from engine.inspect.bench import load_sample, overlap, rule_score, run_bench, to_record
from engine.spec import JobSpec, parse_job
from engine.steps.base import build_step, score_thresholds
from tests.inspect.test_whatif import STEPS, copy_sample, run_units


def job_for(src: Path, steps: list[dict[str, object]] = STEPS) -> JobSpec:
    return parse_job(
        {"name": "tiny", "input": {"path": str(src), "batch_rows": 64}, "output": {"path": "unused"}, "steps": steps}
    )


@pytest.fixture(scope="module")
def two_shards(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tests.conftest import SAMPLE_DIR

    return copy_sample(SAMPLE_DIR, tmp_path_factory.mktemp("bench") / "in")


def test_sample_takes_an_equal_share_of_each_shard(sample_dir: Path) -> None:
    sample = load_sample(job_for(sample_dir), sample=10)
    assert sample.docs == 10
    assert sample.shards == ["part-000", "part-001", "part-002", "part-003"]
    ids = [i for batch, _ in sample.batches for i in batch["id"].to_pylist()]
    first_rows = {
        name: pq.read_table(sample_dir / f"{name}.parquet", columns=["id"])["id"].to_pylist()[:3]
        for name in sample.shards
    }
    assert (
        ids == first_rows["part-000"] + first_rows["part-001"] + first_rows["part-002"][:2] + first_rows["part-003"][:2]
    )


def test_sample_is_capped_by_the_shards(two_shards: Path) -> None:
    assert load_sample(job_for(two_shards), sample=10_000).docs == 350
    assert load_sample(job_for(two_shards), shards_path=str(two_shards)).docs == 350


def test_pipeline_of_bench_equals_a_run(two_shards: Path, tmp_path: Path) -> None:
    job = job_for(two_shards)
    bench = run_bench(job, load_sample(job, shards_path=str(two_shards)))
    run_units(two_shards, tmp_path / "out", STEPS, keep_scores=False)
    stats = json.loads((tmp_path / "out/stats.json").read_text())
    assert bench.pipeline.docs_in == stats["docs_in"] == 350
    assert bench.pipeline.docs_kept == stats["docs_kept"]
    assert dict(bench.pipeline.dropped) == stats["dropped"]


def test_each_step_alone_sees_every_valid_document(two_shards: Path) -> None:
    job = job_for(two_shards)
    sample = load_sample(job, shards_path=str(two_shards))
    bench = run_bench(job, sample)
    valid = [take(b, v.keep) for b, v in sample.batches]
    n_valid = sum(b.num_rows for b in valid)
    assert n_valid == 350 - bench.pipeline.dropped["input/empty_text"]
    for step, run in zip(job.steps, bench.steps, strict=True):
        assert run.docs == n_valid
        expected = Counter(r for b in valid for r in step.apply(b)[1].reason.tolist() if r is not None)
        assert Counter(r for r in run.reason_array().tolist() if r is not None) == expected
        assert run.cpu_seconds > 0


def test_record_rules_and_overlap_add_up(two_shards: Path) -> None:
    job = job_for(two_shards)
    bench = run_bench(job, load_sample(job, shards_path=str(two_shards)))
    record = to_record(bench)
    rules, matrix = overlap(bench)
    dropped_sets = [np.asarray([r is not None for r in run.reason_array()]) for run in bench.steps]
    droppers = np.sum(dropped_sets, axis=0)
    for i, (step, run) in enumerate(zip(record["steps"], bench.steps, strict=True)):
        assert step["step"] == run.label
        total = sum(info["dropped"] for info in step["rules"].values())
        assert step["drop_rate"] == round(total / run.docs, 4)
        assert matrix[i][i] == total
        for info in step["rules"].values():
            assert info["only"] + info["shared"] == info["dropped"]
        only = sum(info["only"] for info in step["rules"].values())
        assert only == int((dropped_sets[i] & (droppers == 1)).sum())
    assert matrix == [list(row) for row in np.asarray(matrix).T]
    assert set(rules) == {f"{s['step']}/{r}" for s in record["steps"] for r in s["rules"]}
    assert record["job"]["hash"] == job.phase_a_hash()
    assert record["pipeline"]["dropped"] == dict(bench.pipeline.dropped)
    assert {"cpu_model", "cpu_count", "python", "platform"} <= set(record["machine"])
    assert "revision" in record["git"]


def test_examples_are_dropped_and_nearest_kept(two_shards: Path) -> None:
    job = job_for(two_shards)
    bench = run_bench(job, load_sample(job, shards_path=str(two_shards)))
    found = {ex.rule: ex for ex in bench_examples(bench, 3)}
    words = found["doc_length/too_few_words"]
    assert words.score == "words"
    assert words.side == "low"
    assert words.threshold == [("min_words", 80.0)]
    assert len(words.dropped) == 3
    assert all(row["score"] < 80 for row in words.dropped)
    kept_words = bench.steps[2].score_arrays()["words"][bench.steps[2].reason_array() == None]  # noqa: E711
    assert [row["score"] for row in words.near] == sorted(kept_words)[:3]
    chars = found["short/too_few_chars"]
    assert chars.score == "chars"
    assert all(row["score"] >= 400 for row in chars.near)
    # The test-only digit filter has no score named after its rule: found as the only separating score.
    digits = found["digits/too_many_digits"]
    assert digits.score == "digit_ratio"
    assert digits.side == "high"
    assert all(len(row["text"]) <= 240 for row in digits.dropped)


def test_rule_score_needs_a_name_or_a_separating_score() -> None:
    dropped = np.array([True, True, False, False])
    kept = ~dropped
    scores = {"a": np.array([1.0, 2.0, 3.0, 4.0]), "b": np.array([4.0, 1.0, 3.0, 2.0])}
    assert rule_score("whatever", scores, dropped, kept) == "a"
    assert rule_score("too_many_b", scores, dropped, kept) == "b"
    scores["c"] = np.array([9.0, 8.0, 1.0, 2.0])
    assert rule_score("whatever", scores, dropped, kept) is None


def test_score_thresholds_pair_parameters_with_scores() -> None:
    step = build_step({"type": "doc_length", "min_chars": 5, "min_words": 2, "max_words": 9})
    assert score_thresholds(step, ["chars", "words"]) == {
        "chars": [("min_chars", 5.0)],
        "words": [("min_words", 2.0), ("max_words", 9.0)],
    }
    language = build_step({"type": "language_id", "min_score": 0.5})
    assert score_thresholds(language, ["language_score"]) == {"language_score": [("min_score", 0.5)]}


def test_cli_prints_table_and_appends_json_lines(
    two_shards: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    job_file = tmp_path / "job.yaml"
    job_file.write_text(
        f"name: tiny\ninput: {{path: {two_shards}}}\noutput: {{path: {tmp_path / 'out'}}}\n"
        "steps:\n  - {type: doc_length, min_words: 80}\n"
    )
    results = tmp_path / "results" / "bench.jsonl"
    args = ["bench", str(job_file), "--sample", "60", "--examples", "1", "--json-out", str(results)]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "doc_length" in printed
    assert "too_few_words" in printed
    assert "pipeline (all steps, in order)" in printed
    assert "kept, nearest the threshold" in printed
    assert main(args) == 0
    lines = results.read_text().splitlines()
    assert len(lines) == 2
    record = json.loads(lines[0])
    assert record["sample"]["docs"] == 60
    assert record["steps"][0]["step"] == "doc_length"
    assert not (tmp_path / "out").exists()  # bench writes no run output
    with pytest.raises(SystemExit) as exit_info:
        main(["bench", str(job_file), "--sample", "5", "--shards", str(two_shards)])
    assert exit_info.value.code == 2
