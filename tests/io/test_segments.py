"""Segmented objects (engine.io.segments) and write-once commits (engine.io.atomic) on disks and object stores."""

from __future__ import annotations

import sys
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pytest

from engine.io.atomic import AtomicFile
from engine.io.segments import (
    CorruptObject,
    SegmentWriter,
    footer_size,
    gather_index,
    pow2ceil,
    read_object,
    read_partition,
    top_partitions,
    write_partitioned,
    write_segments,
)

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"
sys.path.insert(0, str(BENCHMARKS))

import storage_counter  # noqa: E402


def keyed_table(rng: np.random.Generator, rows: int) -> pa.Table:
    return pa.table(
        {
            "key": pa.array(rng.integers(0, 2**64, size=rows, dtype=np.uint64)),
            "value": pa.array(rng.integers(0, 1000, size=rows), type=pa.int64()),
        }
    )


def route(table: pa.Table) -> np.ndarray:
    return np.asarray(table["key"].to_numpy(), dtype=np.uint64)


def shuffle_of(
    tmp: str, seed: int, partitions: int, producers: int, rows: int, options: dict[str, Any] | None = None
) -> tuple[list[str], pa.Table, str]:
    """`producers` objects of random keyed rows partitioned by their keys' top bits; their index; all rows."""
    options = options or {}
    rng = np.random.default_rng(seed)
    urls, sizes, tables = [], [], []
    for m in range(producers):
        table = keyed_table(rng, rows)
        url = f"{tmp}/objects/m={m}.seg"
        size, counts = write_partitioned(url, table, route(table), partitions, options)
        assert counts.sum() == rows
        urls.append(url)
        sizes.append(size)
        tables.append(table)
    index = f"{tmp}/objects/index.bin"
    per_partition = gather_index(urls, sizes, partitions, index, options)
    assert per_partition.sum() == rows * producers
    return urls, pa.concat_tables(tables), index


def rows_of(tables: list[pa.Table]) -> list[tuple[int, int]]:
    if not tables:
        return []
    table = pa.concat_tables(tables)
    return sorted(zip(table["key"].to_pylist(), table["value"].to_pylist(), strict=True))


def expected_rows(everything: pa.Table, partition: int, partitions: int) -> list[tuple[int, int]]:
    keep = top_partitions(route(everything), partitions) == partition
    return rows_of([everything.filter(pa.array(keep))])


def test_pow2ceil_and_top_bits() -> None:
    assert [pow2ceil(x) for x in (0, 0.3, 1, 1.01, 2, 3, 4, 4.5, 1000)] == [1, 1, 1, 2, 2, 4, 4, 8, 1024]
    keys = np.array([0, 2**63 - 1, 2**63, 2**64 - 1], dtype=np.uint64)
    assert top_partitions(keys, 1).tolist() == [0, 0, 0, 0]
    assert top_partitions(keys, 2).tolist() == [0, 0, 1, 1]
    assert top_partitions(keys, 8).tolist() == [0, 3, 4, 7]


def test_round_trip_with_empty_and_large_segments(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    big, small = keyed_table(rng, 250_000), keyed_table(rng, 3)
    url = str(tmp_path / "one.seg")
    size = write_segments(url, [(1, small), (1, small), (5, big)], 8, {})
    assert size == (tmp_path / "one.seg").stat().st_size
    tables = read_object(url, size, 8, {})
    assert [t.num_rows for t in tables] == [6, 250_000]
    assert tables[1].equals(big)
    assert rows_of(tables[:1]) == rows_of([small, small])


def test_every_partition_reads_back_what_was_written(tmp_path: Path) -> None:
    urls, everything, index = shuffle_of(str(tmp_path), 1, 8, 5, 2000)
    for p in range(8):
        got = list(read_partition(urls, index, p, 8, 8, {}))
        assert rows_of(got) == expected_rows(everything, p, 8)


@pytest.mark.parametrize("partitions", [1, 2, 4, 16, 64])
def test_coarser_and_finer_reads_equal_filtering(tmp_path: Path, partitions: int) -> None:
    urls, everything, index = shuffle_of(str(tmp_path), 2, 8, 3, 3000)
    for p in range(partitions):
        got = list(read_partition(urls, index, p, partitions, 8, {}, route=route))
        assert rows_of(got) == expected_rows(everything, p, partitions), (partitions, p)


def test_a_coarser_read_is_one_ranged_get_per_object(tmp_path: Path) -> None:
    urls, _, index = shuffle_of(f"count://{tmp_path}", 3, 8, 4, 5000)
    before = storage_counter.snapshot()
    tables = list(read_partition(urls, index, 1, 2, 8, {}))  # object partitions 4..7
    counts = storage_counter.delta(before, storage_counter.snapshot())
    assert len(tables) == 4 * 4
    assert counts["GET"] == 1 + 4  # the index rows, then one range per object
    assert "HEAD" not in counts
    assert "LIST" not in counts


def test_finer_read_needs_the_rows_keys(tmp_path: Path) -> None:
    urls, _, index = shuffle_of(str(tmp_path), 4, 2, 1, 10)
    with pytest.raises(ValueError, match="route"):
        list(read_partition(urls, index, 0, 4, 2, {}))


def test_partitions_must_not_go_back_and_must_be_a_power_of_two(tmp_path: Path) -> None:
    table = keyed_table(np.random.default_rng(5), 4)
    with pytest.raises(ValueError, match="power-of-two"):
        write_partitioned(str(tmp_path / "x.seg"), table, route(table), 6, {})
    writer = SegmentWriter(str(tmp_path / "x.seg"), 4, {})
    writer.write(2, table)
    with pytest.raises(ValueError, match="partition 1 written after 2"):
        writer.write(1, table)
    writer.abort()
    assert not list(tmp_path.iterdir())


def _one_object(tmp_path: Path) -> tuple[str, int]:
    table = keyed_table(np.random.default_rng(6), 1000)
    url = str(tmp_path / "obj.seg")
    return url, write_segments(url, [(0, table), (3, table)], 4, {})


def test_truncated_object_is_reported_with_its_name(tmp_path: Path) -> None:
    url, size = _one_object(tmp_path)
    data = Path(url).read_bytes()
    Path(url).write_bytes(data[: size - 100])
    with pytest.raises(CorruptObject, match=r"obj\.seg"):
        read_object(url, size, 4, {})


def test_wrong_magic_or_partition_count_is_reported(tmp_path: Path) -> None:
    url, size = _one_object(tmp_path)
    data = bytearray(Path(url).read_bytes())
    with pytest.raises(CorruptObject, match=r"obj\.seg is not a segmented object of 8 partitions"):
        read_object(url, size, 8, {})
    data[-1] ^= 0xFF
    Path(url).write_bytes(bytes(data))
    with pytest.raises(CorruptObject, match="found magic"):
        read_object(url, size, 4, {})


def test_a_flipped_byte_fails_the_segment_checksum(tmp_path: Path) -> None:
    url, size = _one_object(tmp_path)
    data = bytearray(Path(url).read_bytes())
    data[size - footer_size(4) - 50] ^= 0x01  # inside the last segment
    Path(url).write_bytes(bytes(data))
    with pytest.raises(CorruptObject, match=r"obj\.seg: a segment fails its checksum"):
        read_object(url, size, 4, {})


def test_a_missing_object_is_reported(tmp_path: Path) -> None:
    urls, _, index = shuffle_of(str(tmp_path), 7, 2, 2, 100)
    Path(urls[1]).unlink()
    with pytest.raises(CorruptObject, match=r"m=1\.seg is missing"):
        list(read_partition(urls, index, 0, 2, 2, {}))


# --------------------------------------------------------------------------------------------------
# Write-once commits


def test_local_disks_write_a_temporary_name_and_rename(tmp_path: Path) -> None:
    target = tmp_path / "a/b.bin"
    file = AtomicFile(str(target), "wb", {})
    assert not file.writes_in_place
    file.handle.write(b"data")
    assert not target.exists()  # still under its temporary name
    file.commit()
    assert target.read_bytes() == b"data"
    assert [p.name for p in target.parent.iterdir()] == ["b.bin"]


def test_object_stores_write_the_final_name_once(tmp_path: Path) -> None:
    url = f"count://{tmp_path}/out/x.seg"
    before = storage_counter.snapshot()
    size = write_segments(url, [(0, keyed_table(np.random.default_rng(8), 100))], 2, {})
    counts = storage_counter.delta(before, storage_counter.snapshot())
    assert (counts["PUT"], counts["files_written"], counts["bytes_written"]) == (1, 1, size)
    assert "COPY" not in counts
    assert "DELETE" not in counts
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["x.seg"]


def test_an_aborted_upload_leaves_nothing(memfs: Any) -> None:
    writer = SegmentWriter("memory://bucket/x.seg", 2, {})
    assert writer._file.writes_in_place
    writer.write(0, keyed_table(np.random.default_rng(9), 10))
    writer.abort()
    assert not memfs.exists("/bucket/x.seg")


def http_requests(caplog: pytest.LogCaptureFixture, bucket: str) -> Counter[str]:
    """The HTTP requests moto's server logged for objects of `bucket`, by method (COPY shows as a PUT with a source)."""
    found: Counter[str] = Counter()
    for record in caplog.records:
        message = record.getMessage()
        if f" /{bucket}/" in message and '"' in message:
            found[message.split('"')[1].split()[0].lstrip("\x1b[0123456789;m")] += 1
    return found


@pytest.mark.s3
def test_s3_writes_one_put_per_object_and_reads_by_range(
    s3_server: dict[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    import logging

    import s3fs

    s3fs.S3FileSystem(**s3_server).mkdir("segments-bucket")
    caplog.set_level(logging.INFO, logger="werkzeug")
    urls, everything, index = shuffle_of("s3://segments-bucket/shuffle", 10, 4, 3, 500, s3_server)
    written = http_requests(caplog, "segments-bucket")
    assert written["PUT"] == 4  # three objects and the index: no temporary name, no copy
    assert "DELETE" not in written
    fs = s3fs.S3FileSystem(**s3_server)
    assert sorted(p.rsplit("/", 1)[-1] for p in fs.find("segments-bucket/shuffle")) == [
        "index.bin",
        "m=0.seg",
        "m=1.seg",
        "m=2.seg",
    ]
    caplog.clear()
    for p in range(4):
        got = list(read_partition(urls, index, p, 4, 4, s3_server))
        assert rows_of(got) == expected_rows(everything, p, 4)
    read = http_requests(caplog, "segments-bucket")
    assert set(read) == {"GET"}
    assert read["GET"] <= 4 * (1 + 3)  # per partition: its index row, one range per object with data
