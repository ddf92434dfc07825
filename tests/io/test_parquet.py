from __future__ import annotations

from pathlib import Path

import fsspec
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from engine.errors import InputError
from engine.io.parquet import PartitionedWriter, is_damage, iter_batches, read_table, write_table
from engine.io.paths import fingerprint, list_shards


def test_partitioned_writer_splits_by_value(tmp_path: Path) -> None:
    schema = pa.schema([("id", pa.string()), ("language", pa.string())])
    writer = PartitionedWriter(str(tmp_path), "kept", "sub/part", schema, partition_column="language")
    writer.write(pa.table({"id": ["1", "2", "3"], "language": ["en", "fr", None]}))
    writer.write(pa.table({"id": ["4"], "language": ["en"]}))
    written = writer.close()
    names = sorted(str(Path(p).relative_to(tmp_path)) for p in written)
    assert names == [
        "kept/language=__HIVE_DEFAULT_PARTITION__/sub/part.parquet",
        "kept/language=en/sub/part.parquet",
        "kept/language=fr/sub/part.parquet",
    ]
    assert pq.read_table(tmp_path / "kept/language=en/sub/part.parquet")["id"].to_pylist() == ["1", "4"]
    assert not list(tmp_path.rglob("*.tmp-*"))


def test_unpartitioned_writer_always_writes_a_file(tmp_path: Path) -> None:
    schema = pa.schema([("id", pa.string()), ("text", pa.large_string())])
    written = PartitionedWriter(str(tmp_path), "kept", "p", schema).close()
    assert pq.read_table(written[0]).schema == schema


def test_aborted_writer_leaves_nothing(tmp_path: Path) -> None:
    writer = PartitionedWriter(str(tmp_path), "kept", "p", pa.schema([("id", pa.string())]))
    writer.write(pa.table({"id": ["1"]}))
    writer.abort()
    assert not [p for p in tmp_path.rglob("*") if p.is_file()]


def test_corrupt_parquet_names_the_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.parquet"
    bad.write_bytes(b"this is not parquet at all")
    with pytest.raises(InputError, match=r"bad\.parquet is not a readable Parquet file"):
        list(iter_batches(str(bad), {}, 10))


def test_truncated_parquet_names_the_file(tmp_path: Path) -> None:
    good = tmp_path / "good.parquet"
    pq.write_table(pa.table({"text": ["x" * 1000] * 100}), good)
    (tmp_path / "cut.parquet").write_bytes(good.read_bytes()[:-200])
    with pytest.raises(InputError, match=r"cut\.parquet"):
        list(iter_batches(str(tmp_path / "cut.parquet"), {}, 10))


def test_streaming_reads_row_group_by_row_group(tmp_path: Path) -> None:
    path = tmp_path / "rg.parquet"
    pq.write_table(pa.table({"text": [str(i) for i in range(100)]}), path, row_group_size=10)
    sizes = [b.num_rows for b in iter_batches(str(path), {}, 1000)]
    assert sizes == [10] * 10
    assert [b.num_rows for b in iter_batches(str(path), {}, 4)] == [4, 4, 2] * 10


def test_list_shards_local(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    write_table(pa.table({"text": ["x"]}), str(tmp_path / "a" / "one.parquet"), {})
    write_table(pa.table({"text": ["x"]}), str(tmp_path / "two.parquet"), {})
    (tmp_path / "notes.txt").write_text("not a shard")
    shards = list_shards(str(tmp_path), {}, "**/*.parquet")
    assert [s.rel for s in shards] == ["a/one", "two"]
    assert list_shards(str(tmp_path / "two.parquet"), {}, "**/*.parquet")[0].rel == "two"


def test_list_shards_memory(memfs: fsspec.AbstractFileSystem) -> None:
    write_table(pa.table({"text": ["x"]}), "memory://corpus/p0.parquet", {})
    shards = list_shards("memory://corpus", {}, "**/*.parquet")
    assert [s.rel for s in shards] == ["p0"]
    assert next(iter_batches(shards[0].url, {}, 10)).num_rows == 1
    assert fingerprint(shards[0].url, {})["size"] > 0


def test_missing_and_empty_inputs_are_clear(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="does not exist"):
        list_shards(str(tmp_path / "nope"), {}, "**/*.parquet")
    with pytest.raises(InputError, match="holds no shard matching"):
        list_shards(str(tmp_path), {}, "**/*.parquet")


def test_fingerprint_changes_with_content(tmp_path: Path) -> None:
    path = tmp_path / "p.parquet"
    write_table(pa.table({"text": ["x"]}), str(path), {})
    before = fingerprint(str(path), {})
    write_table(pa.table({"text": ["xy", "z"]}), str(path), {})
    assert fingerprint(str(path), {}) != before


def test_writers_count_rows_and_footers_are_checked(tmp_path: Path) -> None:
    """Conservation is counted (issue 11): writers count rows; the committed files' footers must agree."""
    from engine.errors import ConservationError
    from engine.io.parquet import check_footers, footer_rows

    schema = pa.schema([("id", pa.string()), ("language", pa.string())])
    writer = PartitionedWriter(str(tmp_path), "kept", "part", schema, partition_column="language")
    writer.write(pa.table({"id": ["1", "2", "3"], "language": ["en", "fr", "en"]}))
    assert writer.rows == 3
    writer.close()
    en, fr = str(tmp_path / "kept/language=en/part.parquet"), str(tmp_path / "kept/language=fr/part.parquet")
    assert writer.rows_by_file == {en: 2, fr: 1}
    assert writer.rows == 3
    assert footer_rows(en, {}) == 2
    check_footers(writer.rows_by_file, {}, where="shard part")
    with pytest.raises(ConservationError, match=r"shard part: .*language=fr/part\.parquet: footer says 1 rows, 2"):
        check_footers({**writer.rows_by_file, fr: 2}, {}, where="shard part")


def test_temporary_files_go_to_the_given_folder(tmp_path: Path) -> None:
    """A unit's temporary files live in its own folder: what a killed writer leaves is found without listing."""
    from engine.io.atomic import AtomicFile, remove_temporary

    tmp_dir = str(tmp_path / "_tmp/sub/part")
    target = tmp_path / "kept/sub/part.parquet"
    killed = AtomicFile(str(target), "wb", {}, tmp_dir=tmp_dir)
    killed.handle.write(b"half")
    killed.handle.close()  # the process dies here: no commit, no abort
    assert [p.name.split(".tmp-")[0] for p in Path(tmp_dir).iterdir()] == ["part.parquet"]
    assert not list(target.parent.glob("*.tmp-*"))
    done = AtomicFile(str(target), "wb", {}, tmp_dir=tmp_dir)
    done.handle.write(b"whole")
    done.commit()
    assert target.read_bytes() == b"whole"
    remove_temporary(tmp_dir, {})
    assert not Path(tmp_dir).exists()
    assert not list(tmp_path.rglob("*.tmp-*"))


# ----------------------------------------------------------------------------------------------------------
# Page checksums (issue 12): the engine's files carry them and every read verifies them.


def overwrite_middle(path: Path, size: int = 2000, fill: bytes = b"x") -> None:
    """Damage a file as the issue did: `size` bytes overwritten in the middle."""
    data = bytearray(path.read_bytes())
    middle = len(data) // 2
    data[middle : middle + size] = fill * size
    path.write_bytes(bytes(data))


def test_engine_files_carry_page_checksums_that_reads_verify(tmp_path: Path) -> None:
    """Uncompressed pages decode whatever their letters say: without checksums the damage would read back silently."""
    texts = [f"document {i} " + "some words of text " * 40 for i in range(400)]
    url = str(tmp_path / "plain.parquet")
    write_table(pa.table({"text": texts}), url, {}, compression="none")
    data = bytearray((tmp_path / "plain.parquet").read_bytes())
    middle = len(data) // 2
    data[middle : middle + 2000] = bytes(b"x"[0] if 97 <= b <= 122 else b for b in data[middle : middle + 2000])
    (tmp_path / "plain.parquet").write_bytes(bytes(data))
    unchecked = pq.ParquetFile(url).read()["text"].to_pylist()  # what a reader without verification gets
    assert unchecked != texts
    assert len(unchecked) == len(texts)
    with pytest.raises(InputError, match=r"plain\.parquet is corrupt: .*CRC checksum verification failed"):
        list(iter_batches(url, {}, 100))
    with pytest.raises(InputError, match=r"plain\.parquet is corrupt: .*CRC checksum"):
        read_table(url, {})


def test_damaged_sample_shard_fails_with_its_name(tmp_path: Path, sample_dir: Path) -> None:
    """The issue's case: 2,000 bytes overwritten mid-file in a zstd shard (the shipped sample carries checksums)."""
    shard = tmp_path / "part-000.parquet"
    shard.write_bytes((sample_dir / "part-000.parquet").read_bytes())
    overwrite_middle(shard)
    with pytest.raises(InputError) as error:
        list(iter_batches(str(shard), {}, 2048))
    message = str(error.value)
    assert message.startswith(f"{shard} is corrupt: could not verify page integrity, CRC checksum verification failed")
    assert message.count(str(shard)) == 1
    assert not isinstance(error.value, OSError)  # not a storage error: retrying cannot help


def test_storage_errors_are_not_taken_for_damage() -> None:
    assert is_damage(OSError("could not verify page integrity, CRC checksum verification failed"))
    assert not is_damage(ConnectionResetError(104, "Connection reset by peer"))
    assert not is_damage(OSError("Service Unavailable"))
    assert not is_damage(TimeoutError("read timed out"))
