"""The S3 path against a real S3 API: moto's server on 127.0.0.1, read and written through s3fs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from engine import run_job
from engine.spec import parse_job

pytestmark = [pytest.mark.s3]


@pytest.fixture
def bucket(s3_server: dict[str, str], sample_dir: Path, request: pytest.FixtureRequest) -> str:
    """A fresh bucket holding the sample shards under in/."""
    import s3fs

    fs = s3fs.S3FileSystem(**s3_server)
    name = f"corpus-{request.node.name.replace('_', '-')[:40].lower()}"
    fs.mkdir(name)
    for shard in sorted(sample_dir.glob("*.parquet")):
        fs.put(str(shard), f"{name}/in/{shard.name}")
    return name


def s3_job(bucket: str, options: dict[str, str], out: str = "out"):
    return parse_job(
        {
            "name": "s3",
            "input": {"path": f"s3://{bucket}/in", "storage_options": options},
            "output": {"path": f"s3://{bucket}/{out}", "storage_options": options},
            "steps": [{"type": "doc_length", "min_words": 50}],
        }
    )


@pytest.mark.ray
def test_job_reads_and_writes_s3(
    ray_local: None, s3_server: dict[str, str], bucket: str, capfd: pytest.CaptureFixture[str]
) -> None:
    import s3fs

    stats = run_job(s3_job(bucket, s3_server))
    assert stats.docs_in == 697
    assert stats.is_conserved()
    fs = s3fs.S3FileSystem(**s3_server)
    assert sorted(p.rsplit("/", 1)[-1] for p in fs.ls(f"{bucket}/out/kept")) == [
        f"part-00{i}.parquet" for i in range(4)
    ]
    assert not [p for p in fs.find(f"{bucket}/out") if ".tmp-" in p]
    saved = json.loads(fs.cat(f"{bucket}/out/stats.json"))
    assert saved["docs_kept"] == stats.docs_kept
    resolved = fs.cat(f"{bucket}/out/job.resolved.yaml").decode()
    everything_written = (
        resolved + json.dumps(saved) + "".join(fs.cat(p).decode() for p in fs.find(f"{bucket}/out/_units"))
    )
    assert s3_server["secret"] not in everything_written
    assert s3_server["secret"] not in "".join(capfd.readouterr())

    again = run_job(s3_job(bucket, s3_server))
    assert (again.shards_skipped, again.shards_processed) == (4, 0)


def test_throttling_and_dropped_connections_are_retried(s3_server: dict[str, str], bucket: str) -> None:
    """Every object's first GET answers 503 SlowDown and every 9th request is dropped: the units still finish."""
    from engine.runner.unit import run_unit
    from tests.io.faulty_proxy import FaultyProxy

    clean = [run_unit(s3_job(bucket, s3_server), shard).stats for shard in _shards(bucket, s3_server)]
    with FaultyProxy(s3_server["endpoint_url"]) as proxy:
        job = s3_job(bucket, {**s3_server, "endpoint_url": proxy.url}, out="out-faulty")
        stats = [run_unit(job, shard).stats for shard in _shards(bucket, job.input.storage_options)]
    assert proxy.injected["503"] >= 4
    assert proxy.injected["drop"] >= 1
    assert [(s["docs_in"], s["docs_kept"], s["dropped"]) for s in stats] == [
        (s["docs_in"], s["docs_kept"], s["dropped"]) for s in clean
    ]


def test_permanent_error_fails_the_shard_naming_the_object(s3_server: dict[str, str], bucket: str) -> None:
    import s3fs

    from engine.errors import StorageError
    from engine.io.paths import Shard
    from engine.runner.unit import run_unit
    from tests.io.faulty_proxy import FaultyProxy

    fs = s3fs.S3FileSystem(**s3_server)
    fs.copy(f"{bucket}/in/part-000.parquet", f"{bucket}/in/forbidden-000.parquet")
    with FaultyProxy(s3_server["endpoint_url"]) as proxy:
        job = s3_job(bucket, {**s3_server, "endpoint_url": proxy.url})
        shard = Shard(f"s3://{bucket}/in/forbidden-000.parquet", "forbidden-000")
        with pytest.raises(StorageError, match=rf"shard s3://{bucket}/in/forbidden-000\.parquet: storage error"):
            run_unit(job, shard)
    assert proxy.injected["403"] >= 1


def _shards(bucket: str, options: dict[str, str]):
    from engine.io.paths import list_shards

    job = s3_job(bucket, options)
    return list_shards(job.input.path, job.input.storage_options, job.input.glob)
