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


class StreamWriter:
    """Streams tables into one Parquet file at `url`, under a temporary name until `close` commits it.

    `rows` counts the rows written so far.
    """

    def __init__(
        self,
        url: str,
        schema: pa.Schema,
        *,
        storage_options: dict[str, Any] | None = None,
        compression: str = "zstd",
        tmp_dir: str | None = None,
    ) -> None:
        self.url, self.schema = url, schema
        self.rows = 0
        self._file = AtomicFile(url, "wb", storage_options, tmp_dir=tmp_dir)
        self._writer = pq.ParquetWriter(self._file.handle, schema, compression=compression, write_page_checksum=True)

    def write(self, table: pa.Table) -> None:
        if table.num_rows:
            self._writer.write_table(conform(table, self.schema))
            self.rows += table.num_rows

    def close(self) -> str:
        """Finish the file and rename it into place; its URL."""
        self._writer.close()
        return self._file.commit()

    def abort(self) -> None:
        """Drop the temporary file (the unit failed)."""
        try:
            self._writer.close()
        except OSError:
            pass
        self._file.abort()


class PartitionedWriter:
    """Streams one shard's output into `root/area[/col=value]/rel.parquet`, committed on `close`.

    Every batch is conformed to `schema` (the unit's output schema). Without a partition column the file
    is always written, even empty, so each input shard has its outputs; with one, a file per value present.
    After `close`, `rows_by_file` maps every committed file to the rows written to it.
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
    ) -> None:
        self.root, self.area, self.rel, self.schema = root, area, rel, schema
        self.partition_column = partition_column
        self.storage_options = storage_options or {}
        self.compression = compression
        self.tmp_dir = tmp_dir
        self.rows_by_file: dict[str, int] = {}
        self._open: dict[str | None, StreamWriter] = {}

    @property
    def rows(self) -> int:
        """Rows written so far (to every partition's file)."""
        return sum(w.rows for w in self._open.values()) + sum(self.rows_by_file.values())

    def _writer(self, partition: str | None) -> StreamWriter:
        if partition not in self._open:
            url = shard_file(self.root, self.area, self.rel, partition)
            self._open[partition] = StreamWriter(
                url,
                self.schema,
                storage_options=self.storage_options,
                compression=self.compression,
                tmp_dir=self.tmp_dir,
            )
        return self._open[partition]

    def write(self, table: pa.Table) -> None:
        if table.num_rows == 0:
            return
        if self.partition_column is None:
            self._writer(None).write(table)
            return
        column = table[self.partition_column]
        for value in pc.unique(column).to_pylist():
            mask = pc.is_null(column) if value is None else pc.fill_null(pc.equal(column, value), False)
            self._writer(partition_dir(self.partition_column, value)).write(table.filter(mask))

    def close(self) -> list[str]:
        """Finish every file and rename it into place; the URLs written, sorted."""
        if self.partition_column is None and not self._open:
            self._writer(None)
        for writer in self._open.values():
            self.rows_by_file[writer.close()] = writer.rows
        self._open.clear()
        return sorted(self.rows_by_file)

    def abort(self) -> None:
        """Drop every temporary file (the unit failed)."""
        for writer in self._open.values():
            writer.abort()
        self._open.clear()


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
