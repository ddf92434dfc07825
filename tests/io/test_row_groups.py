"""Row groups cut by bytes (or a row cap) whatever a filter dropped; partitioned writers hold bounded files/bytes.

Issue 14: one row group per input batch made groups of ~290 rows after filtering, and a shard kept a file (and
its storage client's buffer) open per language.
"""

from __future__ import annotations

import os
import random
import tempfile
from collections import defaultdict
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.io.parquet import PartitionedWriter, StreamWriter, WriteLayout, check_footers

SCHEMA = pa.schema([("id", pa.string()), ("text", pa.large_string()), ("language", pa.string())])
KIB = 1024


def filtered_batches(seed: int, batches: int, *, languages: int = 1, text_bytes: int = 500) -> list[pa.Table]:
    """What a unit writes after a heavy filter: a few rows per input batch (3 to 20), random languages."""
    rng = random.Random(seed)
    out, n = [], 0
    for _ in range(batches):
        rows = rng.randint(3, 20)
        ids = [f"d{n + i:06d}" for i in range(rows)]
        n += rows
        texts = ["x" * rng.randint(text_bytes // 2, text_bytes) for _ in ids]
        langs = [f"l{rng.randrange(languages):03d}" for _ in ids]
        out.append(pa.table({"id": ids, "text": pa.array(texts, pa.large_string()), "language": langs}, SCHEMA))
    return out


def row_group_bytes(path: Path | str) -> list[int]:
    """Uncompressed Arrow bytes of every row group of a file, read back group by group."""
    parquet = pq.ParquetFile(path)
    return [parquet.read_row_group(i).nbytes for i in range(parquet.num_row_groups)]


def test_row_groups_reach_the_byte_target_after_heavy_filtering(tmp_path: Path) -> None:
    batches = filtered_batches(1, 400)
    layout = WriteLayout(row_group_bytes=64 * KIB)
    writer = StreamWriter(str(tmp_path / "kept.parquet"), SCHEMA, layout=layout)
    for batch in batches:
        writer.write(batch)
    writer.close()
    sizes = row_group_bytes(tmp_path / "kept.parquet")
    largest_batch = max(b.nbytes for b in batches)
    assert len(sizes) < len(batches) / 10  # one group per batch was the old layout
    assert all(64 * KIB <= size < 64 * KIB + largest_batch for size in sizes[:-1]), sizes
    assert sizes[-1] <= 64 * KIB + largest_batch
    expected = pa.concat_tables(batches)
    assert pq.read_table(tmp_path / "kept.parquet").equals(expected)


def test_row_cap_cuts_groups_of_exactly_that_many_rows(tmp_path: Path) -> None:
    batches = filtered_batches(2, 100, text_bytes=20)
    layout = WriteLayout(row_group_rows=100)
    writer = StreamWriter(str(tmp_path / "kept.parquet"), SCHEMA, layout=layout)
    for batch in batches:
        writer.write(batch)
    assert writer.rows == sum(b.num_rows for b in batches)
    writer.close()
    metadata = pq.read_metadata(tmp_path / "kept.parquet")
    rows = [metadata.row_group(i).num_rows for i in range(metadata.num_row_groups)]
    assert set(rows[:-1]) == {100}
    assert 0 < rows[-1] <= 100
    assert pq.read_table(tmp_path / "kept.parquet").equals(pa.concat_tables(batches))


def test_default_layout_writes_one_row_group_for_a_small_shard(tmp_path: Path) -> None:
    batches = filtered_batches(3, 50)
    writer = StreamWriter(str(tmp_path / "kept.parquet"), SCHEMA)
    for batch in batches:
        writer.write(batch)
    writer.close()
    assert pq.read_metadata(tmp_path / "kept.parquet").num_row_groups == 1


def open_files_under(folder: Path) -> int:
    """Files of this process open under `folder`, counted by the OS (/proc/self/fd), not by the writer."""
    found = 0
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        found += target.startswith(str(folder))
    return found


def write_partitioned(root: Path, batches: list[pa.Table], layout: WriteLayout) -> tuple[PartitionedWriter, int, int]:
    """Write `batches` partitioned by language; the most files open and bytes buffered seen after any write."""
    tmp = root / "_tmp"
    writer = PartitionedWriter(
        str(root), "kept", "part-000", SCHEMA, partition_column="language", tmp_dir=str(tmp), layout=layout
    )
    most_open = most_buffered = 0
    for batch in batches:
        writer.write(batch)
        most_open = max(most_open, open_files_under(tmp))
        most_buffered = max(most_buffered, writer.buffered_bytes)
    writer.close()
    return writer, most_open, most_buffered


def rows_by_language(writer: PartitionedWriter) -> dict[str, pa.Table]:
    """Every partition's rows, its part files read in part order (part-000, then .part1, .part2...)."""
    parts: dict[str, list[tuple[int, str]]] = defaultdict(list)
    for url in writer.rows_by_file:
        language = url.split("language=")[1].split("/")[0]
        name = url.rsplit("/", 1)[1].removesuffix(".parquet")
        parts[language].append((int(name.partition(".part")[2] or 0), url))
    return {
        language: pa.concat_tables(pq.read_table(url, schema=SCHEMA) for _, url in sorted(files))
        for language, files in parts.items()
    }


def expected_by_language(batches: list[pa.Table]) -> dict[str, pa.Table]:
    table = pa.concat_tables(batches)
    values = sorted(set(table["language"].to_pylist()))
    return {v: table.filter(pa.compute.equal(table["language"], v)) for v in values}


def test_many_languages_in_one_shard_stay_under_the_bounds(tmp_path: Path) -> None:
    batches = filtered_batches(4, 300, languages=40)
    layout = WriteLayout(row_group_bytes=64 * KIB, max_open_files=4, max_buffered_bytes=128 * KIB)
    writer, most_open, most_buffered = write_partitioned(tmp_path, batches, layout)
    assert most_open <= 4
    assert writer.peak_open_files <= 4
    assert most_buffered <= 128 * KIB
    assert any(".part" in url for url in writer.rows_by_file), "no partition had to spill to a further part"
    got, expected = rows_by_language(writer), expected_by_language(batches)
    assert got.keys() == expected.keys()
    for language, table in expected.items():
        assert got[language].equals(table), language
    check_footers(writer.rows_by_file, {}, where="shard part-000")  # conservation from the written footers
    assert sum(writer.rows_by_file.values()) == sum(b.num_rows for b in batches)
    assert not list(tmp_path.rglob("*.tmp-*"))


def test_unbounded_layout_writes_one_file_per_language(tmp_path: Path) -> None:
    batches = filtered_batches(5, 100, languages=10)
    writer, _, _ = write_partitioned(tmp_path, batches, WriteLayout())
    assert len(writer.rows_by_file) == 10
    assert not any(".part" in url for url in writer.rows_by_file)


@settings(max_examples=25, deadline=None)
@given(
    seed=st.integers(0, 10_000),
    languages=st.integers(1, 30),
    max_open=st.integers(1, 6),
    buffered_kib=st.integers(64, 400),
    group_kib=st.integers(64, 200),
)
def test_partitioned_output_keeps_every_row_within_any_bounds(
    seed: int, languages: int, max_open: int, buffered_kib: int, group_kib: int
) -> None:
    batches = filtered_batches(seed, 60, languages=languages, text_bytes=2000)
    layout = WriteLayout(
        row_group_bytes=group_kib * KIB, max_open_files=max_open, max_buffered_bytes=buffered_kib * KIB
    )
    with tempfile.TemporaryDirectory() as folder:
        writer, most_open, most_buffered = write_partitioned(Path(folder), batches, layout)
        assert most_open <= max_open, f"seed={seed}"
        assert writer.peak_open_files <= max_open, f"seed={seed}"
        assert most_buffered <= buffered_kib * KIB, f"seed={seed}"
        got, expected = rows_by_language(writer), expected_by_language(batches)
        assert {k: v.to_pylist() for k, v in got.items()} == {k: v.to_pylist() for k, v in expected.items()}
        check_footers(writer.rows_by_file, {}, where=f"seed={seed}")


def test_aborted_partitioned_writer_leaves_nothing_even_after_spilling(tmp_path: Path) -> None:
    layout = WriteLayout(row_group_bytes=64 * KIB, max_open_files=2, max_buffered_bytes=64 * KIB)
    writer = PartitionedWriter(
        str(tmp_path), "kept", "p", SCHEMA, partition_column="language", tmp_dir=str(tmp_path / "_tmp"), layout=layout
    )
    for batch in filtered_batches(6, 100, languages=8):
        writer.write(batch)
    assert len(list((tmp_path / "_tmp").glob("*.tmp-*"))) > 2, "no partition's file was finished early"
    assert not [p for p in (tmp_path / "kept").rglob("*") if p.is_file()], "a part appeared before the writer closed"
    writer.abort()
    assert not [p for p in tmp_path.rglob("*") if p.is_file()]


@pytest.mark.parametrize("field", ["row_group_bytes", "max_buffered_bytes"])
def test_layout_bounds_are_validated(field: str) -> None:
    from engine.errors import SpecError
    from engine.spec import parse_job

    with pytest.raises(SpecError, match=field):
        parse_job({"input": {"path": "x"}, "output": {"path": "y", field: 10}, "steps": []})
