"""Dedup inside a whole run on the local Ray (`engine.run_job`): accounting, layout and a skipped rerun."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from engine import run_job
from engine.cli.jobs import summary
from engine.spec import JobSpec, parse_job
from tests.dedup.staging import corpus, split

pytestmark = pytest.mark.ray


def test_run_job_removes_duplicates_across_shards(ray_local: None, tmp_path: Path) -> None:
    rows = corpus(8, originals=12, copies=2)
    src = tmp_path / "in"
    src.mkdir()
    for rel, table in split(rows, 3).items():
        pq.write_table(table, src / f"{rel}.parquet")
    out = tmp_path / "out"
    job = parse_job(
        {
            "name": "dedup",
            "input": {"path": str(src)},
            "output": {"path": str(out)},
            "steps": [{"type": "doc_length", "min_words": 5}],
            "dedup": {"type": "minhash", "partitions": 2, "in_memory_max_edges": 0},
        }
    )
    stats = run_job(job)
    kept = pa.concat_tables([pq.read_table(p) for p in sorted((out / "kept").glob("*.parquet"))])
    dups = pa.concat_tables([pq.read_table(p) for p in sorted((out / "rejected").glob("*.duplicates.parquet"))])
    assert stats.docs_in == len(rows)
    assert stats.duplicates == dups.num_rows > 0
    assert stats.docs_kept == kept.num_rows == len(rows) - stats.duplicates
    # Conservation counted from the files removal wrote (issue 11), and said so on the console.
    assert stats.written["kept"] == kept.num_rows
    assert stats.written["duplicates"] == dups.num_rows
    assert stats.written["staged"] == kept.num_rows + dups.num_rows
    staged = stats.written["staged"]
    line = f"dedup: {staged:,} staged = {kept.num_rows:,} in kept/ + {dups.num_rows:,} duplicates in rejected/"
    assert line in summary(stats, job)
    # Exact copies (suffix -2) of originals (suffix -0) never survive next to them.
    kept_ids = set(kept["id"].to_pylist())
    for group in range(12):
        assert not {f"doc-{group:03d}-0", f"doc-{group:03d}-2"} <= kept_ids
    on_disk = json.loads((out / "stats.json").read_text())
    assert on_disk["duplicates"] == stats.duplicates

    again = run_job(job)
    assert again.shards_skipped == 3
    assert again.duplicates == stats.duplicates
    assert again.docs_kept == stats.docs_kept
    assert again.written == stats.written


def test_a_later_night_keeps_the_published_copy_and_reports_counters(ray_local: None, tmp_path: Path) -> None:
    """Two nights as a user runs them (the CLI's `run_job`, local Ray, real files): `p-10` arrives on the second
    night with a copy of a page `p-9` published on the first; `p-10` sorts first and its copy's id is smaller, yet
    the published page stays. stats.json carries the cluster-size counters and the churn (none under first_seen)."""
    text = corpus(41, originals=1, copies=0, words=60)[0][1]
    src, out = tmp_path / "in", tmp_path / "out"
    src.mkdir()

    def shard(rel: str, rows: list[tuple[str, str]]) -> None:
        pq.write_table(pa.table({"id": [r[0] for r in rows], "text": [r[1] for r in rows]}), src / f"{rel}.parquet")

    job = parse_job(
        {
            "name": "nightly",
            "input": {"path": str(src)},
            "output": {"path": str(out)},
            "steps": [{"type": "doc_length", "min_words": 5}],
            "dedup": {"type": "minhash"},
        }
    )
    shard("p-9", [("z-published", text), ("other", corpus(42, originals=1, copies=0, words=60)[0][1])])
    run_job(job)
    shard("p-10", [("a-copy", text)])
    stats = run_job(job)
    kept = sorted(i for p in (out / "kept").glob("*.parquet") for i in pq.read_table(p)["id"].to_pylist())
    assert kept == ["other", "z-published"]
    on_disk = json.loads((out / "stats.json").read_text())
    assert on_disk["cluster_sizes"] == {"2": 1}
    assert on_disk["largest_cluster"] == 2
    assert on_disk["churn"] == dict.fromkeys(
        ["left_kept", "returned_to_kept", "merged", "better_copy", "representative_removed", "cluster_split"], 0
    )
    assert stats.duplicates == 1


def test_removal_cuts_its_files_by_the_jobs_layout_and_redoes_them_when_it_changes(
    ray_local: None, tmp_path: Path
) -> None:
    rows = corpus(8, originals=12, copies=2)
    src = tmp_path / "in"
    src.mkdir()
    for rel, table in split(rows, 2).items():
        pq.write_table(table, src / f"{rel}.parquet")
    out = tmp_path / "out"

    def job(row_group_rows: int) -> JobSpec:
        return parse_job(
            {
                "name": "layout",
                "input": {"path": str(src)},
                "output": {"path": str(out), "row_group_rows": row_group_rows},
                "steps": [{"type": "doc_length", "min_words": 5}],
                "dedup": {"type": "minhash"},
            }
        )

    def largest_row_group(folder: str) -> int:
        metas = [pq.read_metadata(p) for p in sorted((out / folder).rglob("*.parquet"))]
        return max(m.row_group(i).num_rows for m in metas for i in range(m.num_row_groups))

    run_job(job(4))
    assert largest_row_group("kept") == 4
    kept_before = sorted(pq.read_table(out / "kept")["id"].to_pylist())
    run_job(job(1_000))
    assert largest_row_group("kept") > 4  # removal's files were rewritten with the new layout, not reused
    assert sorted(pq.read_table(out / "kept")["id"].to_pylist()) == kept_before
