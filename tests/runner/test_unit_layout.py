"""A unit's output files as issue 14 cuts them: row groups by bytes after filtering, bounded partitioned writers."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from engine.io.paths import list_shards
from engine.runner.keys import job_key, key_changes
from engine.runner.unit import run_unit
from engine.spec import JobSpec, parse_job
from tests.conftest import shared_corpus

KIB = 1024


def run_only(job: JobSpec):
    (shard,) = list_shards(job.input.path, job.input.storage_options, job.input.glob)
    return run_unit(job, shard)


def test_heavy_filtering_no_longer_makes_a_row_group_per_batch(tmp_path: Path, sample_dir: Path) -> None:
    src = tmp_path / "in"
    src.mkdir()
    sample = pa.concat_tables(pq.read_table(p) for p in sorted(sample_dir.glob("*.parquet")))
    pq.write_table(sample, src / "part-000.parquet")
    for name, output in (("default", {}), ("small", {"row_group_bytes": 256 * KIB})):
        out = tmp_path / name
        job = parse_job(
            {
                "input": {"path": str(src), "batch_rows": 8},
                "output": {"path": str(out), **output},
                "steps": [{"type": "doc_length", "min_words": 600}],  # drops most documents of every batch
            }
        )
        result = run_only(job)
        kept = pq.ParquetFile(out / "kept/part-000.parquet")
        batches = -(-result.stats["docs_in"] // 8)
        assert result.stats["docs_kept"] < result.stats["docs_in"] / 3
        if name == "default":  # the whole shard's kept text is far below 64 MiB: one row group
            assert kept.num_row_groups == 1
            assert pq.ParquetFile(out / "rejected/part-000.parquet").num_row_groups == 1
        else:
            sizes = [kept.read_row_group(i).nbytes for i in range(kept.num_row_groups)]
            assert 1 < len(sizes) < batches / 4
            assert all(size >= 256 * KIB for size in sizes[:-1]), sizes
    assert pq.read_table(tmp_path / "default/kept/part-000.parquet").equals(
        pq.read_table(tmp_path / "small/kept/part-000.parquet")
    )


def tatoeba_shard(folder: Path, languages: int = 40, per_language: int = 40) -> Path:
    """One shard of real sentences in `languages` languages, shuffled (seed 14), 3 sentences a document."""
    root = shared_corpus("laser-tatoeba-v1", "sentences in many languages for a shard partitioned by language")
    files = sorted(p for p in root.glob("tatoeba.*-eng.*") if not p.name.endswith(".eng"))[:languages]
    texts = []
    for path in files:
        lines = [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
        texts += [" ".join(lines[i : i + 3]) for i in range(0, min(len(lines), 3 * per_language), 3)]
    random.Random(14).shuffle(texts)
    folder.mkdir(parents=True)
    table = pa.table({"id": [f"t{i:05d}" for i in range(len(texts))], "text": pa.array(texts, pa.large_string())})
    pq.write_table(table, folder / "part-000.parquet")
    return folder


def language_job(src: Path, out: Path, **output: object) -> JobSpec:
    return parse_job(
        {
            "input": {"path": str(src), "batch_rows": 64},
            "output": {"path": str(out), **output},
            "steps": [{"type": "language_id", "min_score": 0.3, "partition_by_language": True}],
        }
    )


def kept_rows(out: Path) -> dict[str, list[str]]:
    """Ids per language folder, read part by part in part order."""
    found: dict[str, list[str]] = {}
    for folder in sorted((out / "kept").iterdir()):
        parts = sorted(folder.glob("*.parquet"), key=lambda p: int(p.stem.partition(".part")[2] or 0))
        found[folder.name] = [i for p in parts for i in pq.read_table(p)["id"].to_pylist()]
    return found


def test_many_languages_in_one_shard_spill_to_parts_with_the_same_rows(tmp_path: Path) -> None:
    src = tatoeba_shard(tmp_path / "in")
    bounded_out, free_out = tmp_path / "bounded", tmp_path / "free"
    bounded_job = language_job(src, bounded_out, max_open_files=3, max_buffered_bytes=64 * KIB)
    free = run_only(language_job(src, free_out))
    bounded = run_only(bounded_job)
    assert len(list((free_out / "kept").iterdir())) >= 20, "the shard should hold many languages"
    assert kept_rows(bounded_out) == kept_rows(free_out)
    assert pq.read_table(bounded_out / "rejected/part-000.parquet").equals(
        pq.read_table(free_out / "rejected/part-000.parquet")
    )
    marker = json.loads((bounded_out / "_units/part-000.marker.json").read_text())
    parts = [url for url in marker["outputs"] if ".part" in url.rsplit("/", 1)[-1]]
    assert parts, "no language had to continue in a further part file"
    # Conservation counted from the written files: every output's footer holds the rows its marker records.
    assert marker["rows"] == {url: pq.read_metadata(url).num_rows for url in marker["outputs"]}
    kept_files = [url for url in marker["outputs"] if "/kept/" in url]
    assert sum(marker["rows"][url] for url in kept_files) == bounded.stats["docs_kept"] == free.stats["docs_kept"]
    assert bounded.stats["written"] == free.stats["written"]


def test_a_layout_change_changes_the_reuse_key_and_says_so(tmp_path: Path) -> None:
    src = tmp_path / "in"
    before = job_key(language_job(src, tmp_path / "out"), known={})
    after = job_key(language_job(src, tmp_path / "out", row_group_bytes=16 << 20), known={})
    assert before.config_hash != after.config_hash
    fingerprint = {"size": 1}
    reasons = key_changes(
        before.unit_key(fingerprint),
        after.unit_key(fingerprint),
        previous_config=before.config,
        current_config=after.config,
    )
    assert reasons == ["changed parameter output.layout.row_group_bytes: 67108864 -> 16777216"]
