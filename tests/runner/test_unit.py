from __future__ import annotations

import shutil
from pathlib import Path
from typing import Literal

import fsspec
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

import engine.runner.unit as unit_module
from engine.batch import Verdict
from engine.errors import InputError
from engine.io.paths import list_shards
from engine.runner.unit import run_unit
from engine.spec import JobSpec, parse_job
from engine.steps.base import Annotator


def make_job(src: str, out: str, **extra: object) -> JobSpec:
    raw = {
        "input": {"path": src},
        "output": {"path": out},
        "steps": [{"type": "doc_length", "min_words": 50}],
    }
    return parse_job({**raw, **extra})


@pytest.fixture
def one_shard(tmp_path: Path, sample_dir: Path) -> Path:
    src = tmp_path / "in"
    src.mkdir()
    shutil.copy(sample_dir / "part-000.parquet", src / "part-000.parquet")
    return src


def run_only(job: JobSpec):
    (shard,) = list_shards(job.input.path, job.input.storage_options, job.input.glob)
    return run_unit(job, shard)


def test_unit_writes_layout_and_accounts_for_every_row(one_shard: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = run_only(make_job(str(one_shard), str(out)))
    rows = pq.read_metadata(one_shard / "part-000.parquet").num_rows
    kept = pq.read_table(out / "kept/part-000.parquet")
    rejected = pq.read_table(out / "rejected/part-000.parquet")
    assert result.status == "processed"
    assert kept.num_rows + rejected.num_rows == rows == result.stats["docs_in"]
    assert kept.num_rows == result.stats["docs_kept"]
    assert set(rejected["reason"].to_pylist()) <= {"doc_length/too_few_words", "input/empty_text"}
    assert kept.column_names == ["id", "text", "url", "warc_date", "source"]
    assert (out / "_units/part-000.marker.json").exists()
    assert (out / "_units/part-000.stats.json").exists()
    assert not list(out.rglob("*.tmp-*"))


def test_marker_is_written_last(one_shard: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    written: list[str] = []
    original = unit_module.write_json

    def spy(url: str, data: dict, options: dict, **kwargs: object) -> None:
        written.append(url)
        original(url, data, options, **kwargs)

    monkeypatch.setattr(unit_module, "write_json", spy)
    run_only(make_job(str(one_shard), str(tmp_path / "out")))
    assert written[-1].endswith("part-000.marker.json")


def test_rerun_skips_and_redoes_only_on_change(one_shard: Path, tmp_path: Path) -> None:
    out = str(tmp_path / "out")
    first = run_only(make_job(str(one_shard), out))
    assert run_only(make_job(str(one_shard), out)).status == "skipped"
    assert run_only(make_job(str(one_shard), out)).stats == first.stats
    changed_step = parse_job(
        {
            "input": {"path": str(one_shard)},
            "output": {"path": out},
            "steps": [{"type": "doc_length", "min_words": 60}],
        }
    )
    assert run_only(changed_step).status == "processed"
    table = pq.read_table(one_shard / "part-000.parquet")
    pq.write_table(table.slice(0, 10), one_shard / "part-000.parquet")
    again = run_only(changed_step)
    assert (again.status, again.stats["docs_in"]) == ("processed", 10)
    (tmp_path / "out/kept/part-000.parquet").unlink()
    assert run_only(changed_step).status == "processed"


def test_output_bytes_are_deterministic(one_shard: Path, tmp_path: Path) -> None:
    run_only(make_job(str(one_shard), str(tmp_path / "a")))
    run_only(make_job(str(one_shard), str(tmp_path / "b")))
    for area in ("kept", "rejected"):
        a = (tmp_path / "a" / area / "part-000.parquet").read_bytes()
        assert a == (tmp_path / "b" / area / "part-000.parquet").read_bytes()


def test_shard_without_id_column_gets_derived_ids(tmp_path: Path) -> None:
    src = tmp_path / "in" / "sub"
    src.mkdir(parents=True)
    pq.write_table(pa.table({"body": ["word " * 60, "too short"]}), src / "p.parquet")
    job = parse_job(
        {
            "input": {"path": str(tmp_path / "in"), "text_column": "body"},
            "output": {"path": str(tmp_path / "out")},
            "steps": [{"type": "doc_length", "min_words": 50}],
        }
    )
    run_only(job)
    assert pq.read_table(tmp_path / "out/kept/sub/p.parquet")["id"].to_pylist() == ["sub/p:0"]
    rejected = pq.read_table(tmp_path / "out/rejected/sub/p.parquet")
    assert rejected["id"].to_pylist() == ["sub/p:1"]
    assert rejected["text"].to_pylist() == ["too short"]


def test_bad_shards_fail_clearly_and_commit_nothing(tmp_path: Path) -> None:
    src = tmp_path / "in"
    src.mkdir()
    (src / "corrupt.parquet").write_bytes(b"PAR1 garbage")
    with pytest.raises(InputError, match=r"corrupt\.parquet is not a readable Parquet file"):
        run_only(make_job(str(src), str(tmp_path / "out")))
    (src / "corrupt.parquet").unlink()
    pq.write_table(pa.table({"body": ["x"]}), src / "notext.parquet")
    with pytest.raises(InputError, match=r"notext\.parquet has no text column 'text' \(its columns: body\)"):
        run_only(make_job(str(src), str(tmp_path / "out")))
    assert not (tmp_path / "out/_units").exists() or not list((tmp_path / "out/_units").iterdir())
    assert not list(tmp_path.rglob("*.tmp-*"))


def test_memory_filesystem_output(one_shard: Path, memfs: fsspec.AbstractFileSystem) -> None:
    result = run_only(make_job(str(one_shard), "memory://out"))
    assert memfs.exists("/out/kept/part-000.parquet")
    assert memfs.exists("/out/_units/part-000.marker.json")
    assert result.stats["docs_in"] > 0


class Bucket(Annotator):
    """Test annotator: adds `bucket` (even/odd text length) and asks for output partitioned by it."""

    type: Literal["bucket_test"] = "bucket_test"

    def __call__(self, batch: pa.Table) -> tuple[pa.Table, Verdict]:
        lengths = np.asarray(pc.fill_null(pc.utf8_length(batch["text"]), 0).to_numpy(zero_copy_only=False))
        bucket = pa.array(np.where(lengths % 2 == 0, "even", "odd"), type=pa.string())
        return batch.append_column("bucket", bucket), Verdict.keep_all(batch.num_rows)

    def output_partition(self) -> str | None:
        return "bucket"


def test_kept_output_partitioned_when_a_step_asks(one_shard: Path, tmp_path: Path) -> None:
    job = make_job(str(one_shard), str(tmp_path / "out"))
    job = job.model_copy(update={"steps": [*job.steps, Bucket()]})
    result = run_only(job)
    even = pq.read_table(tmp_path / "out/kept/bucket=even/part-000.parquet")
    odd = pq.read_table(tmp_path / "out/kept/bucket=odd/part-000.parquet")
    assert set(even["bucket"].to_pylist()) == {"even"}
    assert even.num_rows + odd.num_rows == result.stats["docs_kept"]
    assert "bucket" in pq.read_table(tmp_path / "out/rejected/part-000.parquet").column_names


def test_scores_sidecar_when_asked(one_shard: Path, tmp_path: Path) -> None:
    job = make_job(str(one_shard), str(tmp_path / "out"), output={"path": str(tmp_path / "out"), "keep_scores": True})
    result = run_only(job)
    sheet = pq.read_table(tmp_path / "out/scores/part-000.parquet")
    assert sheet.num_rows == result.stats["docs_in"]
    assert {"id", "reason", "doc_length.words", "doc_length.chars"} <= set(sheet.column_names)
    assert sheet["reason"].null_count == result.stats["docs_kept"]


def test_marker_records_key_and_counted_rows(one_shard: Path, tmp_path: Path) -> None:
    import json

    out = tmp_path / "out"
    result = run_only(make_job(str(one_shard), str(out)))
    marker = json.loads((out / "_units/part-000.marker.json").read_text())
    assert set(marker["key"]) == {"input", "config", "assets", "versions"}
    kept_file, rejected_file = str(out / "kept/part-000.parquet"), str(out / "rejected/part-000.parquet")
    assert marker["rows"] == {
        kept_file: pq.read_metadata(kept_file).num_rows,
        rejected_file: pq.read_metadata(rejected_file).num_rows,
    }
    assert result.stats["written"] == {"kept": result.stats["docs_kept"], "rejected": result.stats["docs_dropped"]}
    assert not [p for p in (out / "_tmp").rglob("*") if p.is_file()]


def test_rows_lost_between_writer_and_file_fail_the_unit(
    one_shard: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Conservation is counted from the committed files: a row lost on the way to storage fails the shard."""
    from engine.errors import ConservationError

    original = pq.ParquetWriter.write_table

    def lossy(self: pq.ParquetWriter, table: pa.Table, row_group_size: int | None = None) -> None:
        original(self, table.slice(1), row_group_size)

    monkeypatch.setattr(pq.ParquetWriter, "write_table", lossy)
    with pytest.raises(ConservationError, match=r"shard .*part-000\.parquet: .*kept/part-000\.parquet: footer says"):
        run_only(make_job(str(one_shard), str(tmp_path / "out")))
    assert not (tmp_path / "out/_units/part-000.marker.json").exists()


def test_rows_never_written_fail_the_unit(one_shard: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Rows the steps kept but no writer received: rows read != rows written to kept + rejected."""
    from engine.errors import ConservationError
    from engine.io.parquet import PartitionedWriter

    original = PartitionedWriter.write
    monkeypatch.setattr(PartitionedWriter, "write", lambda self, table: original(self, table.slice(1)))
    with pytest.raises(ConservationError, match=r"shard .*part-000\.parquet: .* rows written to kept, .* kept by"):
        run_only(make_job(str(one_shard), str(tmp_path / "out")))


def test_rows_not_read_fail_the_unit(one_shard: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The rows read are checked against the input's footer: a reader that skips a batch fails the shard."""
    from engine.errors import ConservationError

    original = unit_module.stream_batches

    def first_batches_only(*args: object, **kwargs: object):
        batches = list(original(*args, **kwargs))
        yield from batches[:-1]

    monkeypatch.setattr(unit_module, "stream_batches", first_batches_only)
    with pytest.raises(ConservationError, match=r"part-000\.parquet: its Parquet footer holds 175 rows, \d+ were read"):
        run_only(make_job(str(one_shard), str(tmp_path / "out")))


def test_without_rejected_output_the_dropped_are_counted_by_the_steps(one_shard: Path, tmp_path: Path) -> None:
    out = str(tmp_path / "out")
    result = run_only(make_job(str(one_shard), out, output={"path": out, "write_rejected": False}))
    assert result.stats["written"] == {"kept": result.stats["docs_kept"]}
    assert result.stats["docs_in"] == result.stats["docs_kept"] + result.stats["docs_dropped"]
    assert not (tmp_path / "out/rejected").exists()
