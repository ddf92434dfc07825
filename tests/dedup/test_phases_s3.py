"""run_dedup against a real S3 API (moto's server on 127.0.0.1) through s3fs."""

from __future__ import annotations

import pytest

from engine.io.layout import KEPT, REJECTED, shard_file
from engine.io.parquet import read_table
from engine.runner.dedup import run_dedup
from engine.runner.executor import SerialExecutor
from engine.schema import ID
from tests.dedup.staging import corpus, make_job, split, stage

pytestmark = [pytest.mark.s3]


@pytest.fixture
def s3_options(s3_server: dict[str, str]) -> dict[str, str]:
    return s3_server


def test_dedup_phases_on_s3_match_the_local_run(
    s3_options: dict[str, str], tmp_path, caplog: pytest.LogCaptureFixture
) -> None:
    import logging

    import s3fs

    s3fs.S3FileSystem(**s3_options).mkdir("dedup-bucket")
    caplog.set_level(logging.INFO, logger="werkzeug")
    rows = corpus(12, originals=4, copies=2)
    dedup = {"type": "minhash", "partitions": 2, "in_memory_max_edges": 0}
    results = {}
    for name, out, options in [
        ("local", str(tmp_path / "out"), {}),
        ("s3", "s3://dedup-bucket/out", s3_options),
    ]:
        job = make_job(out, dedup, storage_options=options)
        shards = stage(job, split(rows, 2))
        removed = run_dedup(job, shards, SerialExecutor()).removed()
        kept = sorted(doc for rel in shards for doc in read_table(shard_file(out, KEPT, rel), options)[ID].to_pylist())
        dups = sum(read_table(shard_file(out, REJECTED, f"{rel}.duplicates"), options).num_rows for rel in shards)
        results[name] = (removed, kept, dups)
        assert run_dedup(job, shards, SerialExecutor()).removed() == removed  # resumed from markers on S3 too
    assert results["s3"] == results["local"]
    assert sum(results["s3"][0].values()) == results["s3"][2] > 0
    # Write-once names: every object was PUT under its final name (no temporary name, no copy).
    puts = [r.getMessage() for r in caplog.records if '"PUT /dedup-bucket/' in r.getMessage()]
    assert len(puts) > 10
    assert not [m for m in puts if ".tmp-" in m]
    fs = s3fs.S3FileSystem(**s3_options)
    left = [p for p in fs.find("dedup-bucket/out/_dedup") if "/shuffle/" in p]
    assert left
    assert all("/_markers/" in p for p in left)  # after the run only the markers of its shuffle stay


def test_a_night_on_s3_probes_the_state_and_equals_the_local_night(s3_options: dict[str, str], tmp_path) -> None:
    """Night 1 with two shards, night 2 adds a third: on S3 the second is a night over the state too, with the
    same outputs as on local disk, and the first build's band index stays until a build no longer refers to it."""
    import s3fs

    s3fs.S3FileSystem(**s3_options).mkdir("night-bucket")
    rows = corpus(13, originals=6, copies=2)
    tables = split(rows, 3)
    results = {}
    for name, out, options in [("local", str(tmp_path / "out"), {}), ("s3", "s3://night-bucket/out", s3_options)]:
        job = make_job(out, {"type": "minhash", "partitions": 2}, storage_options=options)
        first = stage(job, {rel: tables[rel] for rel in sorted(tables)[:2]})
        run_dedup(job, first, SerialExecutor())
        shards = stage(job, {rel: tables[rel] for rel in sorted(tables)[2:]})
        outcome = run_dedup(job, [*first, *shards], SerialExecutor())
        assert outcome.mode == "night"
        kept = sorted(
            doc for rel in sorted(tables) for doc in read_table(shard_file(out, KEPT, rel), options)[ID].to_pylist()
        )
        results[name] = (outcome.removed(), kept, outcome.clusters)
    assert results["s3"] == results["local"]
    fs = s3fs.S3FileSystem(**s3_options)
    runs = {
        p.split("/state/index/")[1].split("/")[0] for p in fs.find("night-bucket/out/_dedup") if "/state/index/" in p
    }
    assert len(runs - {"manifest.json"}) == 2  # the full build's base and the night's run
