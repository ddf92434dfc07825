"""The whole run on a real local Ray: layout, skip on rerun, bad shards, vanished shards."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from engine import run_job
from engine.errors import InputError, RunFailed
from engine.spec import parse_job

pytestmark = pytest.mark.ray


@pytest.fixture
def corpus(tmp_path: Path, sample_dir: Path) -> Path:
    src = tmp_path / "in"
    shutil.copytree(sample_dir, src, ignore=shutil.ignore_patterns("*.md"))
    return src


def job_for(src: Path, out: Path):
    return parse_job(
        {
            "name": "t",
            "input": {"path": str(src)},
            "output": {"path": str(out)},
            "steps": [{"type": "doc_length", "min_words": 50}],
        }
    )


def test_run_writes_documented_layout_and_skips_on_rerun(ray_local: None, corpus: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    stats = run_job(job_for(corpus, out))
    rows = sum(pq.read_metadata(p).num_rows for p in corpus.glob("*.parquet"))
    assert stats.docs_in == rows
    assert stats.shards_processed == stats.shards_total == 4
    on_disk = json.loads((out / "stats.json").read_text())
    for key in (
        "docs_in",
        "docs_kept",
        "dropped",
        "duplicates",
        "shards_total",
        "shards_processed",
        "shards_skipped",
        "bytes_in",
        "bytes_kept",
        "seconds",
        "step_docs_per_second",
    ):
        assert key in on_disk, key
    assert on_disk["docs_in"] == on_disk["docs_kept"] + sum(on_disk["dropped"].values()) + on_disk["duplicates"]
    kept = sum(pq.read_metadata(p).num_rows for p in (out / "kept").glob("*.parquet"))
    rejected = sum(pq.read_metadata(p).num_rows for p in (out / "rejected").glob("*.parquet"))
    assert (kept, rejected) == (stats.docs_kept, stats.docs_dropped)
    assert "min_words: 50" in (out / "job.resolved.yaml").read_text()

    again = run_job(job_for(corpus, out))
    assert (again.shards_skipped, again.shards_processed) == (4, 0)
    assert (again.docs_in, again.docs_kept) == (stats.docs_in, stats.docs_kept)


def test_vanished_shard_outputs_are_removed(ray_local: None, corpus: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    run_job(job_for(corpus, out))
    (corpus / "part-003.parquet").unlink()
    stats = run_job(job_for(corpus, out))
    assert (stats.shards_total, stats.shards_skipped) == (3, 3)
    assert not (out / "kept/part-003.parquet").exists()
    assert not (out / "_units/part-003.marker.json").exists()


def test_corrupt_shard_fails_alone(ray_local: None, corpus: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    (corpus / "part-001.parquet").write_bytes(b"not parquet")
    with pytest.raises(RunFailed, match=r"part-001\.parquet is not a readable Parquet file") as caught:
        run_job(job_for(corpus, out))
    assert list(caught.value.failures) == [str(corpus / "part-001.parquet")]
    for good in ("part-000", "part-002", "part-003"):
        assert (out / f"_units/{good}.marker.json").exists()
    assert json.loads((out / "stats.json").read_text())["shards_failed"] == 1
    (corpus / "part-001.parquet").unlink()
    assert run_job(job_for(corpus, out)).shards_skipped == 3


def test_missing_input_is_a_clear_error(ray_local: None, tmp_path: Path) -> None:
    with pytest.raises(InputError, match="does not exist"):
        run_job(job_for(tmp_path / "nope", tmp_path / "out"))


@pytest.mark.parametrize("name", ["multilingual", "gopher-c4"])
def test_example_jobs_run(ray_local: None, tmp_path: Path, name: str) -> None:
    from engine import load_job

    repo = Path(__file__).resolve().parents[2]
    job = load_job(repo / "jobs" / "examples" / f"{name}.yaml", output=str(tmp_path / "out"))
    job = job.model_copy(update={"input": job.input.model_copy(update={"path": str(repo / "data" / "sample")})})
    stats = run_job(job)
    assert stats.is_conserved()
    kept = sum(pq.read_metadata(p).num_rows for p in (tmp_path / "out" / "kept").rglob("*.parquet"))
    assert kept == stats.docs_kept
    if name == "multilingual":
        languages = {p.name for p in (tmp_path / "out" / "kept").iterdir()}
        assert {"language=en", "language=es", "language=fr"} <= languages
        assert stats.duplicates >= 1  # the sample holds exact copies


def test_stats_record_the_largest_task_of_every_phase_13(ray_local: None, corpus: Path, tmp_path: Path) -> None:
    job = parse_job(
        {
            "name": "t",
            "input": {"path": str(corpus)},
            "output": {"path": str(tmp_path / "out")},
            "steps": [{"type": "doc_length", "min_words": 50}],
            "dedup": {"type": "minhash"},
        }
    )
    stats = run_job(job)
    on_disk = json.loads((tmp_path / "out" / "stats.json").read_text())
    phases = on_disk["phase_peak_rss_bytes"]
    assert {"filter", "dedup: band keys", "dedup: collisions", "dedup: removal"} <= set(phases)
    assert all(50 * 2**20 < peak < 8 * 2**30 for peak in phases.values()), phases  # a Python worker's size
    # The run's peak covers every phase (a unit's own reading, taken inside its task, may add a few pages).
    assert on_disk["peak_rss_bytes"] == stats.peak_rss_bytes >= max(phases.values())
    assert on_disk["ray_cpus"] >= 1
    assert set(on_disk["phase_seconds"]) == set(phases)
    assert all(seconds >= 0 for seconds in on_disk["phase_seconds"].values())
    assert on_disk["ray_start_seconds"] >= 0
