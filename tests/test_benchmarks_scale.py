"""The dedup scale benchmark's own pieces: request counting, the synthetic corpus's ground truth, a smoke run."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from engine.dedup.components import components_in_memory
from engine.dedup.plan import node_ids
from engine.dedup.shuffle import band_rows, collision_edges
from engine.dedup.signatures import signatures_file
from engine.io.parquet import read_table, write_table
from engine.io.paths import filesystem
from engine.runner.executor import SerialExecutor

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
sys.path.insert(0, str(BENCHMARKS))

import bench_scale  # noqa: E402
import scale_data  # noqa: E402
import storage_counter  # noqa: E402


def test_counting_filesystem_counts_writes_moves_and_reads_as_s3_would(tmp_path: Path) -> None:
    url = f"count://{tmp_path}/x/_dedup/p/work/bands/p=00001/s=1.parquet"
    before = storage_counter.snapshot()
    write_table(pa.table({"a": list(range(1000))}), url, {})  # an object store: written once, under its name
    written = storage_counter.delta(before, storage_counter.snapshot())
    assert (written["PUT"], written["files_written"]) == (1, 1)
    assert "COPY" not in written
    assert written["PUT@work/bands"] == 1
    assert written["bytes_written"] == (tmp_path / "x/_dedup/p/work/bands/p=00001/s=1.parquet").stat().st_size

    fs, path = filesystem(url, {})
    before = storage_counter.snapshot()
    fs.mv(path, path + ".moved")
    moved = storage_counter.delta(before, storage_counter.snapshot())
    assert (moved["COPY"], moved["DELETE"]) == (1, 1)
    fs.mv(path + ".moved", path)

    before = storage_counter.snapshot()
    assert read_table(url, {}).num_rows == 1000
    read = storage_counter.delta(before, storage_counter.snapshot())
    assert read["HEAD"] == 1
    assert read["GET"] >= 1
    assert "PUT" not in read

    fs, path = filesystem(f"count://{tmp_path}/x", {})
    before = storage_counter.snapshot()
    assert len(fs.find(path)) == 1
    assert not fs.exists(f"{path}/missing")
    listed = storage_counter.delta(before, storage_counter.snapshot())
    assert listed["LIST"] == 2  # the listing, and the prefix lookup after a missing HEAD
    assert listed["HEAD"] == 1


def test_counting_filesystem_counts_a_multipart_upload(tmp_path: Path) -> None:
    fs, path = filesystem(f"count://{tmp_path}/big.bin", {})
    before = storage_counter.snapshot()
    with fs.open(path, "wb", block_size=1000) as handle:
        for _ in range(4):
            handle.write(b"x" * 1000)  # a full block: uploaded as a part
        handle.write(b"y" * 500)
    counts = storage_counter.delta(before, storage_counter.snapshot())
    assert counts["files_written"] == 1
    assert counts["PUT"] == 1 + 5 + 1  # create, five parts, complete
    assert (tmp_path / "big.bin").read_bytes() == b"x" * 4000 + b"y" * 500


def _components_from_files(folder: str, shards: list[str]) -> int:
    """Duplicates implied by the band keys on disk, computed independently of the generator."""
    dedup = scale_data.dedup_spec()
    parts = []
    for index, rel in enumerate(shards):
        table = read_table(signatures_file(folder, dedup, rel), {})
        has = np.asarray(table["keys"].is_valid().to_numpy(zero_copy_only=False), dtype=bool)
        flat = table["keys"].filter(pa.array(has)).combine_chunks().flatten()
        keys = np.asarray(flat.to_numpy(zero_copy_only=False), dtype=np.uint64).reshape(-1, dedup.bands)
        parts.append(band_rows(keys, np.ones(len(keys), dtype=bool), node_ids(index, table.num_rows)[has]))
    key, band, node = (np.concatenate(c) for c in zip(*parts, strict=True))
    nodes, labels = components_in_memory(*collision_edges(key, band, node))
    return len(nodes) - len(np.unique(labels))


@pytest.mark.parametrize("hub", [0, 500])
def test_synthetic_corpus_has_the_duplicates_it_claims(tmp_path: Path, hub: int) -> None:
    spec = scale_data.Synthetic(docs=6000, shard_docs=2500, hub=hub, seed=7)
    truth = scale_data.generate(str(tmp_path), spec)
    assert len(truth["shards"]) == 3
    assert truth["largest_cluster"] >= max(hub, 2)
    assert _components_from_files(str(tmp_path), truth["shards"]) == truth["expected_duplicates"], f"seed {spec.seed}"


@pytest.mark.parametrize("design", ["segments", "reference"])
def test_measured_run_finds_the_planted_duplicates_and_counts_requests(tmp_path: Path, design: str) -> None:
    truth = scale_data.generate(str(tmp_path), scale_data.Synthetic(docs=4000, shard_docs=1000, hub=100, seed=3))
    args = bench_scale.main_parser().parse_args(["run", "--dir", str(tmp_path), "--design", design])
    record = bench_scale.measure_run(tmp_path, truth["shards"], args, SerialExecutor())
    assert record["error"] is None
    assert record["duplicates"] == truth["expected_duplicates"]
    checks = bench_scale.check(record, truth, tmp_path, full=True)
    expected: dict[str, object] = {
        "kept_rows": 4000 - truth["expected_duplicates"],
        "duplicate_rows": truth["expected_duplicates"],
        "conserved": True,
        "duplicates_as_expected": True,
    }
    if design == "segments":  # the stats counters the dedup tasks emit, against the generator's clusters
        expected["clusters_found_expected"] = [truth["clusters"], truth["clusters"]]
        expected["largest_cluster_found_expected"] = [100, 100]
    assert checks == expected
    assert record["requests"] > 0
    assert record["counts"]["files_written"] >= 3 * len(truth["shards"])  # kept, duplicates, marker per shard
    assert set(record["phases"]) >= {"band keys", "collisions", "removal"}
    assert record["partitions"] >= 1
    if design == "segments":  # one object per map task: no file per (map task, partition), no temporary names
        # (the band objects stay as the dedup state's band index, beside its index, clusters and manifest)
        written = record["by_area"]["state/index"]["files_written"]
        assert len(truth["shards"]) < written <= len(truth["shards"]) + 3 + record["counts_chosen"]["graph_partitions"]
        assert record["counts"].get("COPY", 0) == 0


def test_the_dump_model_reads_a_measured_run(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """scale_model.py builds docs/scaling.md's figures from measured lines: counts from the engine's planning
    functions, and the request formulas calibrated on one run predict another's."""
    import json

    import scale_model

    lines = []
    for docs, seed in ((4000, 3), (8000, 4)):
        folder = tmp_path / str(docs)
        truth = scale_data.generate(str(folder), scale_data.Synthetic(docs=docs, shard_docs=1000, seed=seed))
        args = bench_scale.main_parser().parse_args(["run", "--dir", str(folder), "--task-memory", str(1 << 20)])
        record = bench_scale.measure_run(folder, truth["shards"], args, SerialExecutor())
        lines.append(
            json.dumps(
                record
                | {
                    "design": "segments",
                    "run": "full build",
                    "hub": 0,
                    "git": {"revision": "x" * 7},
                    "synthetic": truth["spec"],
                }
            )
        )
    results = tmp_path / "scale.jsonl"
    results.write_text("\n".join(lines) + "\n")
    scale_model.main(["--results", str(results), "--docs", "3e9", "--shard-docs", "100000"])
    out = capsys.readouterr().out
    assert "3,000,000,000 documents in 30,000 shards" in out
    check = next(line for line in out.splitlines() if "check: calibrated on 4,000" in line)
    found = re.search(r"predicted at [\d,]+: ([\d,]+) requests.*measured ([\d,]+) and", check)
    assert found is not None
    predicted, measured = (int(x.replace(",", "")) for x in found.groups())
    assert abs(predicted - measured) <= 0.2 * measured


def test_a_measured_run_can_be_reported_as_a_user_reports_it(tmp_path: Path) -> None:
    """`run` leaves what `run_job` leaves (stats.json with the dedup's counters, the resolved job), so `report`
    runs `python -m engine report DIR` on it: the page shows the cluster sizes, its peak RSS is recorded."""
    import json

    truth = scale_data.generate(str(tmp_path), scale_data.Synthetic(docs=3000, shard_docs=1000, hub=50, seed=5))
    args = bench_scale.main_parser().parse_args(["run", "--dir", str(tmp_path)])
    record = bench_scale.measure_run(tmp_path, truth["shards"], args, SerialExecutor())
    assert record["error"] is None
    stats = json.loads((tmp_path / "stats.json").read_text())
    assert stats["conserved"] is True
    assert stats["duplicates"] == truth["expected_duplicates"]
    assert sum(stats["cluster_sizes"].values()) == truth["clusters"]
    results = tmp_path / "report.jsonl"
    bench_scale.main(["report", "--dir", str(tmp_path), "--results", str(results)])
    (line,) = results.read_text().splitlines()
    measured = json.loads(line)
    assert measured["exit_status"] == 0
    assert measured["docs"] == 3000
    assert measured["report_peak_rss_mb"] > 0
    page = (tmp_path / "report.html").read_text()
    assert "Dedup" in page or "dedup" in page
    assert f"{truth['expected_duplicates']:,}" in page
