"""The run summary (`OUT/_units/_summary.json`): a night that changed little plans with a few requests, whatever
the number of shards, and decides exactly as reading every marker would."""

from __future__ import annotations

import json
import pickle
import shutil
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from engine import run_job
from engine.runner.plan import make_run_plan, plan_lines, with_absolute_paths
from engine.runner.summary import SUMMARY_FILE, stats_without
from engine.spec import JobSpec
from engine.stats import Stats
from tests.runner.test_rebuild import DOCS, job_of, marker_times, redone, sample_texts, site, write_shard  # noqa: F401

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"
sys.path.insert(0, str(BENCHMARKS))

import storage_counter  # noqa: E402

pytestmark = pytest.mark.ray


def counted(job: JobSpec) -> JobSpec:
    """The same job with its input and output read through the counting filesystem (`count:///abs/path`)."""
    job = with_absolute_paths(job)
    return job.model_copy(
        update={
            "input": job.input.model_copy(update={"path": f"count://{job.input.path}"}),
            "output": job.output.model_copy(update={"path": f"count://{job.output.path}"}),
        }
    )


def plan_requests(job: JobSpec, *, by_area: bool = False) -> tuple[dict[str, int], list[str]]:
    """The storage requests of planning `job` (by kind, or every counter: `<kind>@<area>` too), the plan's lines."""
    before = storage_counter.snapshot()
    lines = plan_lines(make_run_plan(counted(job)))
    spent = storage_counter.delta(before, storage_counter.snapshot())
    return (spent if by_area else {kind: spent.get(kind, 0) for kind in storage_counter.REQUEST_KINDS}), lines


def add_shards(src: Path, first: int, count: int) -> None:
    texts = sample_texts()
    for index in range(first, first + count):
        start = (index * DOCS) % (len(texts) - DOCS)
        write_shard(src, index, texts[start : start + DOCS])


COUNTERS = ("docs_in", "docs_kept", "docs_dropped", "dropped", "score_bins", "languages", "bytes_in", "written")


def test_an_unchanged_night_plans_with_the_same_few_requests_at_20_and_40_shards(
    ray_local: None,
    site: dict[str, Any],  # noqa: F811
) -> None:
    job = job_of(site["raw"])
    add_shards(site["src"], 5, 15)
    run_job(job)
    first = json.loads((site["out"] / "stats.json").read_text())
    twenty, lines = plan_requests(job)
    assert lines[0].endswith("nothing to redo, every shard is reused")
    add_shards(site["src"], 20, 20)
    new_night, lines = plan_requests(job)
    assert "redo 20" in lines[0]
    run_job(job)
    forty, lines = plan_requests(job)
    assert lines[0].endswith("nothing to redo, every shard is reused")
    # No request per shard: the summary answers for every marker, outputs are checked by listing their folders.
    assert twenty == forty, (twenty, forty)
    assert new_night == twenty, (new_night, twenty)
    assert sum(twenty.values()) <= 16, twenty  # listings, the summary, the last stats and asset identities
    # The reused shards' stats come whole from the summary, and equal the markers' sum.
    before = marker_times(site["out"])
    run_job(job)
    assert redone(before, marker_times(site["out"])) == []
    again = json.loads((site["out"] / "stats.json").read_text())
    (site["out"] / "_units" / SUMMARY_FILE).unlink()
    run_job(job)  # every marker read, as without a summary
    from_markers = json.loads((site["out"] / "stats.json").read_text())
    assert {k: again[k] for k in COUNTERS} == {k: from_markers[k] for k in COUNTERS}
    assert again["docs_in"] == 40 * DOCS == 2 * first["docs_in"]
    assert again["shards_skipped"] == 40


def test_a_marker_changed_after_the_summary_is_read_not_trusted(ray_local: None, site: dict[str, Any]) -> None:  # noqa: F811
    job = job_of(site["raw"])
    run_job(job)
    marker_file = site["out"] / "_units" / "part-2.marker.json"
    marker = json.loads(marker_file.read_text())
    marker["key"]["input"]["version"] = "an older input"
    marker_file.write_text(json.dumps(marker))
    lines = plan_lines(make_run_plan(with_absolute_paths(job)))
    assert lines[1].startswith("  redo         1  changed input: part-2"), lines
    before = marker_times(site["out"])
    run_job(job)
    assert redone(before, marker_times(site["out"])) == ["part-2"]


def test_a_missing_output_is_found_by_listing_its_folder(ray_local: None, site: dict[str, Any]) -> None:  # noqa: F811
    job = job_of(site["raw"])
    add_shards(site["src"], 5, 15)  # 20 shards: their kept files are checked with one listing of kept/
    run_job(job)
    (site["out"] / "kept" / "part-7.parquet").unlink()
    requests, lines = plan_requests(job, by_area=True)
    assert lines[1].startswith("  redo         1  output files missing: part-7"), lines
    # No HEAD per output file: kept/ and rejected/ are listed, and every HEAD under _units/ opens a file it reads.
    assert "HEAD@kept" not in requests, requests
    assert "HEAD@rejected" not in requests, requests
    assert requests["HEAD@_units"] == requests["GET@_units"], requests


def test_the_plan_keeps_a_small_part_of_each_marker(ray_local: None, site: dict[str, Any]) -> None:  # noqa: F811
    job = job_of({**site["raw"], "output": {**site["raw"]["output"], "keep_scores": True}})
    run_job(job)
    (site["out"] / "_units" / SUMMARY_FILE).unlink()  # every marker is read
    plan = make_run_plan(with_absolute_paths(job))
    markers = [p.stat().st_size for p in (site["out"] / "_units").glob("*.marker.json")]
    kept_per_shard = len(pickle.dumps(plan.shards)) / len(plan.shards)
    assert kept_per_shard < min(markers) / 3, (kept_per_shard, markers)
    assert plan.reused_stats.docs_in == 5 * DOCS
    shutil.rmtree(site["out"] / "kept")
    assert len(make_run_plan(with_absolute_paths(job)).redo) == 5


def test_a_changed_shard_night_takes_its_old_stats_out_of_the_summary_sum(
    ray_local: None,
    site: dict[str, Any],  # noqa: F811
) -> None:
    job = job_of(site["raw"])
    add_shards(site["src"], 5, 15)
    run_job(job)
    # A shard neither among the 10 slowest nor the one with the largest memory: its stats can be taken out of the
    # sum exactly (for one of those the plan reads every reused marker instead; `stats_without` is tested below).
    stats = json.loads((site["out"] / "stats.json").read_text())
    slowest = {rel for _, rel, _, _ in stats["slowest_shards"]}
    rss = {
        p.name: json.loads(p.read_text())["stats"]["peak_rss_bytes"]
        for p in (site["out"] / "_units").glob("*.marker.json")
    }
    index = next(
        i for i in range(20) if f"part-{i}" not in slowest and rss[f"part-{i}.marker.json"] < max(rss.values())
    )
    write_shard(site["src"], index, sample_texts()[-DOCS:])  # other documents in that shard
    requests, lines = plan_requests(job)
    assert lines[1].startswith(f"  redo         1  changed input: part-{index}"), lines
    assert requests["GET"] <= 5, requests  # the changed shard's marker, not the 19 others'
    run_job(job)
    night = json.loads((site["out"] / "stats.json").read_text())
    (site["out"] / "_units" / SUMMARY_FILE).unlink()
    run_job(job)  # every marker read, as without a summary
    from_markers = json.loads((site["out"] / "stats.json").read_text())
    assert {k: night[k] for k in COUNTERS} == {k: from_markers[k] for k in COUNTERS}
    assert night["shards_processed"] == 1


def stats_of(rel: str, docs: int, seconds: float, rss: int) -> Stats:
    return Stats(
        docs_in=docs,
        docs_kept=docs - 1,
        dropped=Counter({"x/y": 1}),
        score_bins={"x.s": Counter({"3": docs})},
        slowest_shards=[[seconds, rel, docs, docs - 1]],
        peak_rss_bytes=rss,
    )


def test_stats_without_undoes_a_sum_exactly_or_says_it_cannot() -> None:
    shards = {f"s{i}": stats_of(f"s{i}", 10 + i, 1.0 + i, 100 + i) for i in range(12)}
    total = sum(shards.values(), Stats())
    rest = sum((v for k, v in shards.items() if k not in {"s0", "s1"}), Stats())
    taken = stats_without(total, shards["s0"] + shards["s1"], {"s0", "s1"})
    assert taken is not None
    assert taken.to_dict() == rest.to_dict()  # neither is the largest nor among the 10 slowest
    assert stats_without(total, shards["s11"], {"s11"}) is None  # the largest RSS: the next one is not known
    slow = stats_of("s0", 10, 99.0, 1)
    assert stats_without(total + slow, slow, {"s0"}) is None  # among the 10 slowest of a full list
    few = shards["s1"] + shards["s2"]
    assert stats_without(few, shards["s1"], {"s1"}) is not None  # a short list just loses the shard
