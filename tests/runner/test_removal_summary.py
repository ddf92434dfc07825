"""The removal summary (`state/removal-summary.json`, engine.runner.dedup_removal): an unchanged night's removal
makes the same few storage requests at 10 and 30 shards (a whole run: at 20 and 40), and stays exactly as safe as
the per-shard checks: an output deleted or edited after the summary, a changed removal setting, a tampered summary
and a removal killed half way are each noticed, and the outputs equal those of a full rebuild."""

from __future__ import annotations

import io
import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import pyarrow.parquet as pq
import pytest

from engine import run_job
from engine.dedup.signatures import dedup_root
from engine.runner.dedup import probe, run_dedup
from engine.runner.executor import SerialExecutor
from engine.runner.plan import with_absolute_paths
from engine.spec import JobSpec, parse_job
from tests.dedup.staging import corpus, make_job, split, stage
from tests.dedup.test_identity import assert_same_outputs
from tests.dedup.test_nightly import BRIDGING, documents, full_rebuild, night, segments
from tests.runner.test_plan_summary import counted
from tests.runner.test_rebuild import DOCS, sample_texts, write_shard

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"
sys.path.insert(0, str(BENCHMARKS))

import storage_counter  # noqa: E402

Item = TypeVar("Item")
Result = TypeVar("Result")
OVERLAP = 5
"""Texts each shard shares with the next (exact duplicates across shards)."""


def write_input(src: Path, shards: int) -> None:
    """`shards` input shards of real texts, each sharing `OVERLAP` texts with the next."""
    src.mkdir(parents=True, exist_ok=True)
    texts = sample_texts()
    step = DOCS - OVERLAP
    for index in range(shards):
        write_shard(src, index, texts[index * step : index * step + DOCS])


def dedup_job(tmp: Path, shards: int, **output: Any) -> JobSpec:
    write_input(tmp / "in", shards)
    raw = {
        "name": "nightly",
        "input": {"path": str(tmp / "in")},
        "output": {"path": str(tmp / "out"), **output},
        "steps": [{"type": "doc_length", "min_words": 5}],
        "dedup": {"type": "minhash"},
    }
    return with_absolute_paths(parse_job(raw))


def summary_file(job: JobSpec) -> Path:
    assert job.dedup is not None
    return Path(dedup_root(job.output.path.removeprefix("count://"), job.dedup)) / "state" / "removal-summary.json"


def phases(out: Path) -> dict[str, float]:
    return dict(json.loads((out / "stats.json").read_text())["phase_seconds"])


def removal_markers(out: Path) -> dict[str, int]:
    """Shard -> mtime of its removal marker (rewritten exactly when removal wrote the shard's outputs)."""
    folder = next(out.glob("_dedup/*/state/removal"))
    return {p.name.removesuffix(".json"): p.stat().st_mtime_ns for p in folder.glob("*.json")}


def contents(out: Path) -> dict[str, Any]:
    """Every file of kept/ and rejected/ (duplicates) as its rows."""
    return {
        str(p.relative_to(out)): pq.read_table(p).to_pylist()
        for folder in ("kept", "rejected")
        for p in sorted((out / folder).rglob("*.parquet"))
    }


@pytest.mark.ray
def test_an_unchanged_night_makes_the_same_requests_at_20_and_40_shards_and_runs_no_removal_task(
    ray_local: None, tmp_path: Path
) -> None:
    """The rerun reads through `count://`, a protocol Ray's workers do not know here: it runs no task at all. (20
    shards and more: the plan lists an output folder from `LIST_FROM` files on, and HEADs fewer.)"""
    requests = {}
    for shards in (20, 40):
        job = dedup_job(tmp_path / str(shards), shards)
        run_job(job)
        before = storage_counter.snapshot()
        stats = run_job(counted(job))
        spent = storage_counter.delta(before, storage_counter.snapshot())
        out = tmp_path / str(shards) / "out"
        assert stats.shards_skipped == shards
        assert "dedup: removal" not in phases(out)  # no task: the summary answered for every shard
        requests[shards] = {kind: spent.get(kind, 0) for kind in storage_counter.REQUEST_KINDS}
    assert requests[20] == requests[40], requests


def test_every_request_of_an_unchanged_dedup_is_counted_and_does_not_grow_with_the_shards(tmp_path: Path) -> None:
    """In-process (every task's requests counted): a constant number, against 5+ a shard without the summary."""
    spent: dict[int, dict[str, int]] = {}
    for shards in (10, 30):
        job = make_job(f"count://{tmp_path}/{shards}", {"type": "minhash"})
        names = stage(job, split(corpus(shards, originals=2 * shards), shards))
        inputs = probe(job, names, SerialExecutor())
        run_dedup(job, names, SerialExecutor(), inputs=inputs)
        before = storage_counter.snapshot()
        outcome = run_dedup(job, names, SerialExecutor(), inputs=inputs)
        delta = storage_counter.delta(before, storage_counter.snapshot())
        assert outcome.mode == "unchanged"
        assert outcome.duplicates > 0
        spent[shards] = {kind: delta.get(kind, 0) for kind in storage_counter.REQUEST_KINDS}
        assert not any(delta.get(f"{kind}@kept") for kind in ("HEAD", "GET", "PUT")), delta
        summary_file(job).unlink()  # the per-shard checks, as before the summary: requests grow with the shards
        before = storage_counter.snapshot()
        assert run_dedup(job, names, SerialExecutor(), inputs=inputs).duplicates == outcome.duplicates
        per_shard = storage_counter.requests(storage_counter.delta(before, storage_counter.snapshot()))
        assert per_shard >= 5 * shards
    assert spent[10] == spent[30], spent
    assert sum(spent[10].values()) <= 12, spent[10]


@pytest.mark.ray
@pytest.mark.parametrize("change", ["deleted", "edited"])
def test_a_kept_file_deleted_or_edited_after_the_summary_is_rewritten(
    ray_local: None, tmp_path: Path, change: str
) -> None:
    job = dedup_job(tmp_path, 5)
    run_job(job)
    out = Path(job.output.path)
    run_job(job)  # the summary stands for every shard
    written = contents(out)
    assert any("duplicates" in name for name in written)
    target = out / "kept" / "part-2.parquet"
    if change == "deleted":
        target.unlink()
    else:  # same name, fewer rows: only its listing fingerprint (size, mtime) tells
        pq.write_table(pq.read_table(target).slice(1), target)
    before = removal_markers(out)
    run_job(job)
    after = removal_markers(out)
    assert sorted(rel for rel in after if after[rel] != before[rel]) == ["part-2"]
    assert contents(out) == written


@pytest.mark.ray
def test_a_changed_output_setting_is_not_answered_by_the_summary(ray_local: None, tmp_path: Path) -> None:
    job = dedup_job(tmp_path, 4)
    run_job(job)
    out = Path(job.output.path)
    codec = pq.ParquetFile(out / "kept" / "part-1.parquet").metadata.row_group(0).column(0).compression
    changed = job.model_copy(update={"output": job.output.model_copy(update={"compression": "snappy"})})
    run_job(changed)
    for path in (out / "kept").glob("*.parquet"):
        assert pq.ParquetFile(path).metadata.row_group(0).column(0).compression == "SNAPPY" != codec


@pytest.mark.ray
def test_a_summary_whose_inputs_digest_differs_is_not_trusted(ray_local: None, tmp_path: Path) -> None:
    job = dedup_job(tmp_path, 4)
    run_job(job)
    out = Path(job.output.path)
    kept = json.loads((out / "stats.json").read_text())["docs_kept"]
    summary = json.loads(summary_file(job).read_text())
    entry = summary["shards"]["part-1"]
    entry["inputs"] = "made under other settings"
    entry["kept"] += 1000  # what a trusted entry would report
    summary_file(job).write_text(json.dumps(summary))
    before = removal_markers(out)
    run_job(job)
    assert json.loads((out / "stats.json").read_text())["docs_kept"] == kept
    assert removal_markers(out) == before  # the shard's task checked its marker: its key matches, nothing written
    assert json.loads(summary_file(job).read_text())["shards"]["part-1"]["kept"] == entry["kept"] - 1000


class FailingRemoval:
    """Runs tasks in this process; the removal phase dies after `after` of its tasks."""

    def __init__(self, after: int) -> None:
        self.after = after

    def map(self, fn: Callable[[Item], Result], items: Sequence[Item], *, label: str) -> list[Result]:
        results = []
        for number, item in enumerate(items):
            if label == "dedup: removal" and number == self.after:
                msg = "worker lost (injected)"
                raise RuntimeError(msg)
            results.append(fn(item))
        return results


@pytest.mark.parametrize("after", [0, 1, 2])
def test_a_removal_killed_half_way_then_rerun_equals_a_full_rebuild(tmp_path: Path, after: int) -> None:
    """A night whose new shard changes old shards' fates, killed during removal: the last summary does not answer
    for the shards rewritten or whose fates changed; the rerun's outputs equal a full rebuild's."""
    pool = segments(11, 16)
    old = {f"p-{s}": documents(20 + s, pool, 8, f"p{s}") for s in range(4)}
    job = make_job(str(tmp_path / "out"), {**BRIDGING, "keep": "longest"})
    night(job, old, sorted(old))
    night(job, {}, sorted(old))  # an unchanged night: the summary answers for every shard
    shards = [*sorted(old), "p-4"]
    with pytest.raises(RuntimeError, match="injected"):
        night(job, {"p-4": documents(40, pool, 12, "p4")}, shards, FailingRemoval(after))
    assert night(job, {}, shards).mode == "night"
    full_job, _ = full_rebuild(job, shards, tmp_path)
    assert_same_outputs(Path(job.output.path), Path(full_job.output.path))
    again = night(job, {}, shards)
    assert again.mode == "unchanged"
    assert_same_outputs(Path(job.output.path), Path(full_job.output.path))


@pytest.mark.s3
def test_the_summary_on_s3_lists_the_outputs_and_notices_a_deleted_or_edited_object(
    s3_server: dict[str, str],
) -> None:
    import s3fs

    fs = s3fs.S3FileSystem(**s3_server)
    fs.mkdir("removal-summary")
    out = "s3://removal-summary/out"
    job = make_job(out, {"type": "minhash"}, storage_options=s3_server)
    shards = stage(job, split(corpus(5, originals=12), 4))
    inputs = probe(job, shards, SerialExecutor())
    first = run_dedup(job, shards, SerialExecutor(), inputs=inputs)
    labels = Labels()
    assert run_dedup(job, shards, labels, inputs=inputs).shards == first.shards
    assert "dedup: removal" not in labels.seen  # the summary answered for every shard
    kept = "removal-summary/out/kept/part-001.parquet"
    original = fs.cat_file(kept)
    for change in ("deleted", "edited"):
        if change == "deleted":
            fs.rm(kept)
        else:
            fs.pipe_file(kept, original[:-1] + b"!")  # another etag, same size: not a Parquet file any more
        labels = Labels()
        assert run_dedup(job, shards, labels, inputs=inputs).shards == first.shards
        assert labels.items["dedup: removal"] == 1
        assert pq.read_table(io.BytesIO(fs.cat_file(kept))).equals(pq.read_table(io.BytesIO(original)))


class Labels(SerialExecutor):
    """A serial executor that records each phase's label and task count."""

    def __init__(self) -> None:
        self.seen: list[str] = []
        self.items: dict[str, int] = {}

    def map(self, fn: Callable[[Item], Result], items: Sequence[Item], *, label: str) -> list[Result]:
        self.seen.append(label)
        self.items[label] = len(items)
        return super().map(fn, items, label=label)
