"""Streaming Parquet through fsspec: read a shard batch by batch, write shards atomically, count what was written.

Writers count the rows they write; `check_footers` compares those counts with the row counts in the committed
files' Parquet footers (read back from storage), so conservation is counted from the files, not computed.

Every file the engine writes carries a CRC32 checksum per page, and every read verifies the checksums a file
carries (the engine's own files always; input shards when their writer added them): a damaged page fails its
file with an `InputError` naming it, instead of decoding into silently altered text. A file written without
checksums can only be caught where its damage breaks decoding.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from engine.errors import ConservationError, InputError
from engine.io.atomic import AtomicFile
from engine.io.layout import shard_file
from engine.io.paths import filesystem

HIVE_NULL = "__HIVE_DEFAULT_PARTITION__"
# Arrow reports a page that fails its checksum or cannot be decoded as a plain OSError; these say it is the bytes.
_DAMAGE = (
    "CRC checksum verification failed",
    "decompression failed",
    "Corrupt",
    "corrupt",
    "Unexpected end of stream",
    "Invalid BYTE_ARRAY",
    "Couldn't deserialize thrift",
    "Destination buffer",
)


def is_damage(error: BaseException) -> bool:
    """Whether a read error says the file's bytes are damaged (retrying cannot help), not that storage failed."""
    if isinstance(error, pa.ArrowException) and not isinstance(error, OSError | MemoryError):
        return True
    return type(error) is OSError and any(phrase in str(error) for phrase in _DAMAGE)


def damaged(url: str, error: BaseException) -> InputError:
    """The error for a damaged file: names it, says what failed and what to do."""
    msg = (
        f"{url} is corrupt: {error}. Restore the file from its source (or remove it from the input); "
        "a damaged output of the engine is deleted and rewritten by the next run once its marker is removed"
    )
    return InputError(msg)


@contextmanager
def open_parquet(url: str, storage_options: dict[str, Any]) -> Iterator[pq.ParquetFile]:
    """Open a Parquet file for streaming reads.

    Raises:
        InputError: the file is missing or is not readable Parquet, naming the file.
    """
    fs, path = filesystem(url, storage_options)
    try:
        handle = fs.open(path, "rb")
    except FileNotFoundError:
        msg = f"{url} does not exist (it was listed, then removed?)"
        raise InputError(msg) from None
    with handle:
        try:
            parquet = pq.ParquetFile(handle, page_checksum_verification=True)
        except (pa.ArrowException, OSError) as error:  # pyarrow's own errors: the bytes are not valid Parquet
            if not is_damage(error):
                raise
            msg = f"{url} is not a readable Parquet file: {error}"
            raise InputError(msg) from None
        yield parquet


def stream_batches(
    parquet: pq.ParquetFile, url: str, batch_rows: int, columns: list[str] | None = None
) -> Iterator[pa.RecordBatch]:
    """Batches of an open Parquet file, row group by row group (bounded memory).

    Raises:
        InputError: the file is corrupt part-way (a page fails its checksum or cannot be decoded), naming it.
    """
    try:
        for group in range(parquet.num_row_groups):
            yield from parquet.iter_batches(batch_size=batch_rows, row_groups=[group], columns=columns)
    except (pa.ArrowException, OSError) as error:  # storage errors pass through to be retried
        if not is_damage(error):
            raise
        raise damaged(url, error) from None


def iter_batches(
    url: str, storage_options: dict[str, Any], batch_rows: int, columns: list[str] | None = None
) -> Iterator[pa.RecordBatch]:
    """Stream a Parquet file `batch_rows` rows at a time.

    Raises:
        InputError: the file is missing, not Parquet, or corrupt part-way, naming the file.
    """
    with open_parquet(url, storage_options) as parquet:
        yield from stream_batches(parquet, url, batch_rows, columns)


def read_table(url: str, storage_options: dict[str, Any], columns: list[str] | None = None) -> pa.Table:
    """A whole (small) Parquet file as a table.

    Raises:
        InputError: the file is missing, not Parquet, or corrupt, naming it.
    """
    with open_parquet(url, storage_options) as parquet:
        try:
            return parquet.read(columns=columns)
        except (pa.ArrowException, OSError) as error:
            if not is_damage(error):
                raise
            raise damaged(url, error) from None


def read_schema(url: str, storage_options: dict[str, Any]) -> pa.Schema:
    """A Parquet file's Arrow schema, from its footer only.

    Raises:
        InputError: the file is missing or is not readable Parquet, naming it.
    """
    with open_parquet(url, storage_options) as parquet:
        return parquet.schema_arrow


def write_table(table: pa.Table, url: str, storage_options: dict[str, Any], compression: str = "zstd") -> None:
    """Write a table as one Parquet file, atomically (temporary name, then rename)."""
    writer = StreamWriter(url, table.schema, storage_options=storage_options, compression=compression)
    writer.write(table)
    writer.close()


def conform(table: pa.Table, schema: pa.Schema) -> pa.Table:
    """`table` with exactly `schema`'s columns, in order: missing columns as nulls, others cast."""
    arrays = []
    for field in schema:
        if field.name in table.column_names:
            column = table[field.name]
            arrays.append(column if column.type == field.type else column.cast(field.type))
        else:
            arrays.append(pa.nulls(table.num_rows, field.type))
    return pa.Table.from_arrays(arrays, schema=schema)


def partition_dir(column: str, value: object) -> str:
    """Hive-style directory name for one partition value (`language=en`)."""
    text = HIVE_NULL if value is None else str(value)
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in text) or HIVE_NULL
    return f"{column}={safe}"


MiB = 1 << 20


@dataclass(frozen=True)
class WriteLayout:
    """How output files are cut: row groups by size, and how much a partitioned writer holds at once.

    A row group is written when its buffered rows reach `row_group_bytes` (uncompressed Arrow bytes, nearly all
    text) or `row_group_rows`, whatever a filter dropped from each input batch (one row group per batch made
    groups of a few hundred rows). A `PartitionedWriter` keeps at most `max_open_files` files open and
    `max_buffered_bytes` buffered over all its partitions; past either it writes the largest buffer, or finishes
    a file, and that partition's later rows go to a further part file.
    """

    row_group_bytes: int = 64 * MiB
    row_group_rows: int = 1 << 20
    max_open_files: int = 8
    max_buffered_bytes: int = 128 * MiB


class StreamWriter:
    """Streams tables into one Parquet file at `url`, under a temporary name until `close` commits it.

    Rows are buffered into row groups of `layout.row_group_bytes` / `layout.row_group_rows`; the file is opened
    at the first row group (or at `close`). `rows` counts the rows written so far, buffered ones included.
    """

    def __init__(
        self,
        url: str,
        schema: pa.Schema,
        *,
        storage_options: dict[str, Any] | None = None,
        compression: str = "zstd",
        tmp_dir: str | None = None,
        layout: WriteLayout | None = None,
    ) -> None:
        self.url, self.schema = url, schema
        self.layout = layout or WriteLayout()
        self.rows = 0
        self.buffered_bytes = 0
        self._buffered_rows = 0
        self._buffer: list[pa.Table] = []
        self._storage_options, self._compression, self._tmp_dir = storage_options, compression, tmp_dir
        self._file: AtomicFile | None = None
        self._writer: pq.ParquetWriter | None = None
        self._finished = False

    @property
    def is_open(self) -> bool:
        """Whether the file has been opened (a row group was written)."""
        return self._file is not None

    @property
    def is_full(self) -> bool:
        """Whether the buffered rows make a whole row group."""
        return self.buffered_bytes >= self.layout.row_group_bytes or self._buffered_rows >= self.layout.row_group_rows

    def buffer(self, table: pa.Table) -> None:
        """Add rows to the next row group without writing anything (the caller decides when to `flush`)."""
        if table.num_rows:
            table = conform(table, self.schema)
            self._buffer.append(table)
            self.buffered_bytes += table.nbytes
            self._buffered_rows += table.num_rows
            self.rows += table.num_rows

    def write(self, table: pa.Table) -> None:
        """Add rows; a whole row group is written as soon as the buffer holds one."""
        self.buffer(table)
        if self.is_full:
            self.flush(whole_groups=True)

    def flush(self, *, whole_groups: bool = False) -> None:
        """Write the buffered rows as one row group (one per `row_group_rows` past it); opens the file.

        With `whole_groups`, rows beyond the last whole group of `row_group_rows` stay in the buffer.
        """
        if not self._buffer:
            return
        table = pa.concat_tables(self._buffer)
        self._buffer.clear()
        self.buffered_bytes = self._buffered_rows = 0
        cap = self.layout.row_group_rows
        written = table.num_rows - table.num_rows % cap if whole_groups and table.num_rows > cap else table.num_rows
        _, writer = self._open()
        writer.write_table(table.slice(0, written), row_group_size=cap)
        self.rows -= table.num_rows - written
        self.buffer(table.slice(written))  # counted again

    def _open(self) -> tuple[AtomicFile, pq.ParquetWriter]:
        if self._file is None or self._writer is None:
            self._file = AtomicFile(self.url, "wb", self._storage_options, tmp_dir=self._tmp_dir)
            self._writer = pq.ParquetWriter(
                self._file.handle, self.schema, compression=self._compression, write_page_checksum=True
            )
        return self._file, self._writer

    def finish(self) -> None:
        """Write what is buffered and complete the file under its temporary name (an empty file if no rows)."""
        if not self._finished:
            self.flush()
            file, writer = self._open()
            writer.close()
            file.handle.close()
            self._finished = True

    def close(self) -> str:
        """`finish`, then rename the file into place; its URL."""
        self.finish()
        file, _ = self._open()
        return file.commit()

    def abort(self) -> None:
        """Drop the buffer and the temporary file (the unit failed)."""
        self._buffer.clear()
        self.buffered_bytes = self._buffered_rows = 0
        if self._writer is not None and not self._finished:
            try:
                self._writer.close()
            except OSError:
                pass
        if self._file is not None:
            self._file.abort()


class PartitionedWriter:
    """Streams one shard's output into `root/area[/col=value]/rel.parquet`, committed on `close`.

    Every batch is conformed to `schema` (the unit's output schema). Without a partition column the file
    is always written, even empty, so each input shard has its outputs; with one, a file per value present.
    Partitions are bounded by `layout` (`WriteLayout`): at most `max_open_files` open, at most
    `max_buffered_bytes` buffered; a partition whose file had to be finished early continues in
    `rel.part<n>.parquet` (n = 1, 2, ...). Files are renamed into place only by `close`, all together, so a
    failed unit leaves no part behind. After `close`, `rows_by_file` maps every committed file to its rows.
    """

    def __init__(
        self,
        root: str,
        area: str,
        rel: str,
        schema: pa.Schema,
        *,
        partition_column: str | None = None,
        storage_options: dict[str, Any] | None = None,
        compression: str = "zstd",
        tmp_dir: str | None = None,
        layout: WriteLayout | None = None,
    ) -> None:
        self.root, self.area, self.rel, self.schema = root, area, rel, schema
        self.partition_column = partition_column
        self.storage_options = storage_options or {}
        self.compression = compression
        self.tmp_dir = tmp_dir
        self.layout = layout or WriteLayout()
        self.rows_by_file: dict[str, int] = {}
        self.peak_open_files = 0
        self._current: dict[str | None, StreamWriter] = {}  # each partition's current part
        self._parts: dict[str | None, int] = {}  # parts started per partition
        self._opened: list[str | None] = []  # partitions with an open file, least recently written first
        self._finished: list[StreamWriter] = []  # complete under their temporary names, renamed by `close`

    @property
    def rows(self) -> int:
        """Rows written so far (to every partition's file)."""
        written = [*self._current.values(), *self._finished]
        return sum(w.rows for w in written) + sum(self.rows_by_file.values())

    @property
    def open_files(self) -> int:
        return len(self._opened)

    @property
    def buffered_bytes(self) -> int:
        return sum(w.buffered_bytes for w in self._current.values())

    def _writer(self, partition: str | None) -> StreamWriter:
        if partition not in self._current:
            part = self._parts.get(partition, 0)
            self._parts[partition] = part + 1
            rel = self.rel if part == 0 else f"{self.rel}.part{part}"
            self._current[partition] = StreamWriter(
                shard_file(self.root, self.area, rel, partition),
                self.schema,
                storage_options=self.storage_options,
                compression=self.compression,
                tmp_dir=self.tmp_dir,
                layout=self.layout,
            )
        return self._current[partition]

    def write(self, table: pa.Table) -> None:
        if table.num_rows == 0:
            return
        if self.partition_column is None:
            self._add(None, table)
        else:
            column = table[self.partition_column]
            for value in pc.unique(column).to_pylist():
                mask = pc.is_null(column) if value is None else pc.fill_null(pc.equal(column, value), False)
                self._add(partition_dir(self.partition_column, value), table.filter(mask))
        while self.buffered_bytes > self.layout.max_buffered_bytes:
            self._flush(max(self._current, key=lambda p: self._current[p].buffered_bytes))

    def _add(self, partition: str | None, table: pa.Table) -> None:
        writer = self._writer(partition)
        writer.buffer(table)
        if writer.is_full:
            self._flush(partition, whole_groups=True)

    def _flush(self, partition: str | None, *, whole_groups: bool = False) -> None:
        """Write a partition's buffer as a row group, first finishing the least recently written file if need be."""
        writer = self._current[partition]
        if writer.is_open:
            self._opened.remove(partition)
        elif len(self._opened) >= self.layout.max_open_files:
            self._finish(self._opened[0])
        writer.flush(whole_groups=whole_groups)
        self._opened.append(partition)
        self.peak_open_files = max(self.peak_open_files, len(self._opened))

    def _finish(self, partition: str | None) -> None:
        """Complete a partition's current file (renamed into place by `close`); its later rows go to a new part."""
        writer = self._current.pop(partition)
        if partition in self._opened:
            self._opened.remove(partition)
        else:  # opened now, written and closed at once
            self.peak_open_files = max(self.peak_open_files, len(self._opened) + 1)
        writer.finish()
        self._finished.append(writer)

    def close(self) -> list[str]:
        """Finish every file and rename it into place; the URLs written, sorted."""
        if self.partition_column is None and not self._current:
            self._writer(None)
        for partition in [*self._opened, *(p for p in self._current if p not in self._opened)]:
            self._finish(partition)  # open files first, then the others one at a time
        for writer in self._finished:
            self.rows_by_file[writer.close()] = writer.rows
        self._finished.clear()
        return sorted(self.rows_by_file)

    def abort(self) -> None:
        """Drop every temporary file (the unit failed)."""
        for writer in [*self._current.values(), *self._finished]:
            writer.abort()
        self._current.clear()
        self._finished.clear()
        self._opened.clear()


def footer_rows(url: str, storage_options: dict[str, Any]) -> int:
    """The row count in the Parquet footer of the file at `url` (reads the footer only, not the data)."""
    fs, path = filesystem(url, storage_options)
    with fs.open(path, "rb") as handle:
        return int(pq.ParquetFile(handle).metadata.num_rows)


def check_footers(counted: dict[str, int], storage_options: dict[str, Any], *, where: str) -> None:
    """Check that every committed file's footer holds the rows its writer counted.

    Raises:
        ConservationError: naming `where` and every file whose footer disagrees.
    """
    wrong = []
    for url, rows in sorted(counted.items()):
        found = footer_rows(url, storage_options)
        if found != rows:
            wrong.append(f"{url}: footer says {found:,} rows, {rows:,} were written")
    if wrong:
        msg = f"conservation violated in {where}: " + "; ".join(wrong) + "; this is a bug, please report it"
        raise ConservationError(msg)
