"""Segmented objects: one object per producing task, one byte range per destination partition, read by range.

A shuffle through storage (the dedup phases) writes one object per producing task instead of one file per
(producer, partition) pair, so its objects and PUTs grow with the tasks, not with their product:

    object = segment 0 | segment 1 | ... | segment P-1 | footer

- A segment is an Arrow IPC stream (schema, record batches, end marker; zstd-compressed buffers) readable alone
  from its byte range. An empty partition is a zero-length range and is never fetched.
- The footer is little-endian int64: `offsets[P + 1]` (segment `p` is bytes `offsets[p]:offsets[p + 1]`, the last
  offset is where the footer starts), `rows[P]`, `checksums[P]` (xxh3-64 of each segment's bytes, 0 when empty),
  then `P`, the format version and the magic number `SEGMENTS`. Its size is `footer_size(P)`, so a reader that
  knows `P` and the object's size reads it with one ranged GET of the tail.
- Integrity: every segment read is checked against its checksum before it is decoded (a mismatch, a short read,
  a wrong magic or partition count raise `CorruptObject` naming the object); the IPC decoder then checks the
  stream's structure.

An index gathers the footers of the `M` objects of one shuffle into one partition-major object: an int64 array
`(P, M, 4)` of `(start, end, rows, checksum)`, so the consumer of partition `p` reads its row with one ranged GET
(rows `lo..hi` of a coarser read are contiguous too), then fetches its non-empty segments with `cat_ranges`
(concurrent on s3fs), checks and decodes them one by one.

Partitioning uses the top bits of a 64-bit mixed key: partition `h >> (64 - log2 P)` with `P` a power of two. A
coarser partitioning is then a contiguous range of finer segments (one ranged GET per object), and a finer one is
a filter on a coarser segment (`route` gives the rows' keys), so consumers may choose their own partition count
without the producers rewriting anything.

Objects are written through `AtomicFile`: under their final, write-once name on object stores (one PUT or one
multipart upload, no COPY), temporary + rename on local disks.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import xxhash

from engine.errors import StorageError
from engine.io.atomic import AtomicFile, write_bytes
from engine.io.paths import filesystem

MAGIC = int.from_bytes(b"SEGMENTS", "little")
VERSION = 1
INDEX_FIELDS = 4  # start, end, rows, checksum
FETCH_BATCH = 64
"""Segments fetched per `cat_ranges` call: bounds the compressed bytes held at once while a consumer decodes."""

I64 = npt.NDArray[np.int64]
U64 = npt.NDArray[np.uint64]
Route = Callable[[pa.Table], U64]
"""The 64-bit partitioning keys of a table's rows (needed only to read partitions finer than the objects')."""

_IPC_OPTIONS = pa.ipc.IpcWriteOptions(compression="zstd")


class CorruptObject(StorageError):
    """A segmented object or index is truncated, not in this format, or fails its checksum; names the object."""


def pow2ceil(value: float) -> int:
    """The smallest power of two >= `value` (1 for anything <= 1)."""
    if value <= 1:
        return 1
    return 1 << (int(np.ceil(value)) - 1).bit_length()


def bits_of(partitions: int) -> int:
    """`log2(partitions)`.

    Raises:
        ValueError: `partitions` is not a power of two.
    """
    if partitions < 1 or partitions & (partitions - 1):
        msg = f"segmented objects need a power-of-two partition count, not {partitions}"
        raise ValueError(msg)
    return partitions.bit_length() - 1


def top_partitions(keys: U64, partitions: int) -> I64:
    """Partition of each 64-bit key: its top `log2(partitions)` bits."""
    bits = bits_of(partitions)
    if bits == 0:
        return np.zeros(len(keys), dtype=np.int64)
    return (keys >> np.uint64(64 - bits)).astype(np.int64)


def footer_size(partitions: int) -> int:
    return 8 * (3 * partitions + 1) + 24


def checksum(data: bytes | memoryview) -> int:
    """The checksum stored for a segment: xxh3-64 as a signed int64 (0 for an empty segment)."""
    if not len(data):
        return 0
    return int(np.uint64(xxhash.xxh3_64_intdigest(data)).astype(np.int64))


# --------------------------------------------------------------------------------------------------
# Writing


class SegmentWriter:
    """Streams the segments of one object, in partition order, then its footer; `close` commits it.

    `write(p, table)` appends rows to partition `p` (several calls per partition are fine; partitions must not go
    back). Memory: the encoded segment being written. Any partition count works here; routing rows by the top
    bits of their keys (`top_partitions`, `write_partitioned`, finer or coarser reads) needs a power of two.
    """

    def __init__(
        self, url: str, partitions: int, storage_options: dict[str, Any], *, tmp_dir: str | None = None
    ) -> None:
        if partitions < 1:
            msg = f"a segmented object needs at least one partition, not {partitions}"
            raise ValueError(msg)
        self.url, self.partitions = url, partitions
        self._file = AtomicFile(url, "wb", storage_options, tmp_dir=tmp_dir)
        self._offsets = np.zeros(partitions + 1, dtype=np.int64)
        self._rows = np.zeros(partitions, dtype=np.int64)
        self._checksums = np.zeros(partitions, dtype=np.int64)
        self._current = -1
        self._position = 0
        self._sink: pa.BufferOutputStream | None = None
        self._stream: pa.ipc.RecordBatchStreamWriter | None = None

    def write(self, partition: int, table: pa.Table) -> None:
        if not 0 <= partition < self.partitions or partition < self._current:
            msg = f"{self.url}: partition {partition} written after {self._current} (or out of 0..{self.partitions})"
            raise ValueError(msg)
        if table.num_rows == 0:
            return
        if partition != self._current:
            self._finish_segment()
            self._current = partition
            self._sink = pa.BufferOutputStream()
            self._stream = pa.ipc.new_stream(self._sink, table.schema, options=_IPC_OPTIONS)
        assert self._stream is not None
        self._stream.write_table(table)
        self._rows[partition] += table.num_rows

    def _finish_segment(self) -> None:
        if self._stream is None or self._sink is None:
            return
        self._stream.close()
        data = self._sink.getvalue()
        self._file.handle.write(memoryview(data))
        self._checksums[self._current] = checksum(memoryview(data))
        self._position += data.size
        self._offsets[self._current + 1 :] = self._position
        self._stream = self._sink = None

    def close(self) -> int:
        """Write the footer and commit the object; its size in bytes."""
        self._finish_segment()
        trailer = np.array([self.partitions, VERSION, MAGIC], dtype=np.int64)
        footer = np.concatenate([self._offsets, self._rows, self._checksums, trailer]).astype("<i8")
        self._file.handle.write(footer.tobytes())
        self._file.commit()
        return self._position + footer.nbytes

    def abort(self) -> None:
        """Drop the object (the task failed)."""
        self._file.abort()


def write_segments(
    url: str,
    tables: Sequence[tuple[int, pa.Table]],
    partitions: int,
    storage_options: dict[str, Any],
) -> int:
    """One object holding `(partition, table)` pieces (partitions in order); its size."""
    writer = SegmentWriter(url, partitions, storage_options)
    try:
        for partition, table in tables:
            writer.write(partition, table)
        return writer.close()
    except BaseException:
        writer.abort()
        raise


def write_partitioned(
    url: str, table: pa.Table, keys: U64, partitions: int, storage_options: dict[str, Any]
) -> tuple[int, I64]:
    """`table`'s rows as one object, partitioned by the top bits of `keys`; its size and the rows per partition."""
    return write_grouped(url, table, top_partitions(keys, partitions), partitions, storage_options)


def write_grouped(
    url: str, table: pa.Table, parts: I64, partitions: int, storage_options: dict[str, Any]
) -> tuple[int, I64]:
    """`table`'s rows as one object, row `i` in partition `parts[i]`; its size and the rows per partition.

    Memory: the sort order and one partition's rows at a time (a radix sort when `partitions <= 2^16`).
    """
    small = parts.astype(np.uint16) if partitions <= 1 << 16 else parts
    order = np.argsort(small, kind="stable")
    counts = np.bincount(parts, minlength=partitions).astype(np.int64)
    del small
    starts = np.concatenate([[0], np.cumsum(counts)])
    writer = SegmentWriter(url, partitions, storage_options)
    try:
        for p in np.flatnonzero(counts).tolist():
            writer.write(p, table.take(pa.array(order[starts[p] : starts[p + 1]])))
        return writer.close(), counts
    except BaseException:
        writer.abort()
        raise


# --------------------------------------------------------------------------------------------------
# Footers and the index


@dataclass(frozen=True)
class Footer:
    """Where each segment of one object is: offsets `(P + 1,)`, rows `(P,)`, checksums `(P,)`."""

    offsets: I64
    rows: I64
    checksums: I64


def parse_footer(data: bytes, url: str, partitions: int) -> Footer:
    """The footer from an object's last `footer_size(partitions)` bytes.

    Raises:
        CorruptObject: the bytes are not the footer of a segmented object with `partitions` partitions.
    """
    if len(data) != footer_size(partitions):
        msg = f"segmented object {url} is truncated: its footer has {len(data)} bytes, not {footer_size(partitions)}"
        raise CorruptObject(msg)
    values = np.frombuffer(data, dtype="<i8").astype(np.int64)
    found_partitions, version, magic = (int(v) for v in values[-3:])
    if magic != MAGIC or version != VERSION or found_partitions != partitions:
        msg = (
            f"{url} is not a segmented object of {partitions} partitions (format {VERSION}): found magic {magic:#x},"
            f" version {version}, {found_partitions} partitions; delete the run's shuffle folder and rerun"
        )
        raise CorruptObject(msg)
    offsets = values[: partitions + 1]
    if offsets[0] != 0 or (np.diff(offsets) < 0).any():
        msg = f"segmented object {url} has a corrupt footer (offsets out of order)"
        raise CorruptObject(msg)
    return Footer(offsets, values[partitions + 1 : 2 * partitions + 1], values[2 * partitions + 1 : 3 * partitions + 1])


def read_footers(
    urls: Sequence[str], sizes: Sequence[int], partitions: int, storage_options: dict[str, Any]
) -> list[Footer]:
    """The footers of objects whose sizes are known: one ranged GET of each tail, concurrent on object stores."""
    if not urls:
        return []
    fs, _ = filesystem(urls[0], storage_options)
    paths = [filesystem(url, storage_options)[1] for url in urls]
    length = footer_size(partitions)
    footers: list[Footer] = []
    for lo in range(0, len(urls), FETCH_BATCH):
        hi = min(len(urls), lo + FETCH_BATCH)
        starts = [max(0, int(sizes[i]) - length) for i in range(lo, hi)]
        ends = [int(sizes[i]) for i in range(lo, hi)]
        blobs = _cat_ranges(fs, paths[lo:hi], starts, ends, urls[lo:hi])
        footers += [parse_footer(blob, urls[lo + i], partitions) for i, blob in enumerate(blobs)]
    return footers


def gather_index(
    urls: Sequence[str],
    sizes: Sequence[int],
    partitions: int,
    index_url: str,
    storage_options: dict[str, Any],
) -> I64:
    """Read the footers of one shuffle's objects and write its partition-major index; rows per partition."""
    footers = read_footers(urls, sizes, partitions, storage_options)
    index = np.zeros((partitions, len(urls), INDEX_FIELDS), dtype=np.int64)
    for m, footer in enumerate(footers):
        index[:, m, 0] = footer.offsets[:-1]
        index[:, m, 1] = footer.offsets[1:]
        index[:, m, 2] = footer.rows
        index[:, m, 3] = footer.checksums
    write_bytes(index_url, index.astype("<i8").tobytes(), storage_options)
    per_partition: I64 = index[:, :, 2].sum(axis=1)
    return per_partition


def read_index(index_url: str, producers: int, lo: int, hi: int, storage_options: dict[str, Any]) -> I64:
    """Rows `lo..hi` of an index over `producers` objects: `(hi - lo, producers, 4)`, one ranged GET."""
    row = producers * INDEX_FIELDS * 8
    fs, path = filesystem(index_url, storage_options)
    data = _cat_ranges(fs, [path], [lo * row], [hi * row], [index_url])[0]
    if len(data) != (hi - lo) * row:
        msg = f"segment index {index_url} is truncated (rows {lo}..{hi} of {producers} objects)"
        raise CorruptObject(msg)
    return np.frombuffer(data, dtype="<i8").astype(np.int64).reshape(hi - lo, producers, INDEX_FIELDS)


# --------------------------------------------------------------------------------------------------
# Reading


def partition_span(partition: int, partitions: int, object_partitions: int) -> tuple[int, int]:
    """The object partitions `lo..hi` holding consumer partition `partition` of `partitions`."""
    if partitions == object_partitions:
        return partition, partition + 1
    bits, object_bits = bits_of(partitions), bits_of(object_partitions)
    if bits <= object_bits:
        shift = object_bits - bits
        return partition << shift, (partition + 1) << shift
    coarse = partition >> (bits - object_bits)
    return coarse, coarse + 1


def read_partition(
    urls: Sequence[str],
    index_url: str,
    partition: int,
    partitions: int,
    object_partitions: int,
    storage_options: dict[str, Any],
    *,
    route: Route | None = None,
) -> Iterator[pa.Table]:
    """The tables of consumer partition `partition` (of `partitions`) from every object of one shuffle.

    Tables come one per non-empty segment, in object order (and partition order within an object). When the
    consumer's partitions are finer than the objects', `route` gives each row's key and rows of other partitions
    are dropped.

    Raises:
        CorruptObject: a segment is truncated or fails its checksum (naming the object).
        ValueError: a finer read without `route`.
    """
    rows = _index_rows(urls, index_url, partition, partitions, object_partitions, storage_options, route)
    yield from _filtered(fetch_segments(urls, rows, storage_options), partition, partitions, object_partitions, route)


def read_arrays(
    urls: Sequence[str],
    index_url: str,
    partition: int,
    partitions: int,
    object_partitions: int,
    storage_options: dict[str, Any],
    columns: dict[str, npt.DTypeLike],
    *,
    route: Route | None = None,
) -> dict[str, npt.NDArray[Any]]:
    """`read_partition`'s numeric `columns` as one NumPy array each, filled in place segment by segment.

    The index gives the partition's rows, so the arrays are allocated once: memory is the arrays plus one decoded
    segment (a finer read, whose rows are known only after filtering, concatenates instead).
    """
    rows = _index_rows(urls, index_url, partition, partitions, object_partitions, storage_options, route)
    tables = _filtered(fetch_segments(urls, rows, storage_options), partition, partitions, object_partitions, route)
    if partitions > object_partitions:
        return column_arrays(tables, columns)
    total = int(rows[:, :, 2].sum())
    out = {name: np.empty(total, dtype=dtype) for name, dtype in columns.items()}
    position = 0
    for table in tables:
        if position + table.num_rows > total:
            break
        for name in columns:
            at = position
            for chunk in table[name].chunks:
                out[name][at : at + len(chunk)] = chunk.to_numpy(zero_copy_only=False)
                at += len(chunk)
        position += table.num_rows
        del table
    if position != total:
        msg = (
            f"segment index {index_url} says partition {partition} holds {total:,} rows, its segments hold more or less"
        )
        raise CorruptObject(msg)
    return out


def _index_rows(
    urls: Sequence[str],
    index_url: str,
    partition: int,
    partitions: int,
    object_partitions: int,
    storage_options: dict[str, Any],
    route: Route | None,
) -> I64:
    if partitions > object_partitions and route is None:
        msg = f"reading {partitions} partitions from objects of {object_partitions} needs the rows' keys (route)"
        raise ValueError(msg)
    lo, hi = partition_span(partition, partitions, object_partitions)
    return read_index(index_url, len(urls), lo, hi, storage_options)


def _filtered(
    tables: Iterator[pa.Table], partition: int, partitions: int, object_partitions: int, route: Route | None
) -> Iterator[pa.Table]:
    for table in tables:
        if partitions > object_partitions:
            assert route is not None
            keep = top_partitions(route(table), partitions) == partition
            table = table.filter(pa.array(keep))
        if table.num_rows:
            yield table


def fetch_segments(urls: Sequence[str], rows: I64, storage_options: dict[str, Any]) -> Iterator[pa.Table]:
    """Decode the segments that index rows `rows` (`(k, M, 4)`, consecutive partitions) point at, object by object.

    One ranged GET per object with data (its `k` segments are contiguous), batched in `cat_ranges` calls.
    """
    wanted = [m for m in range(len(urls)) if rows[-1, m, 1] > rows[0, m, 0]]
    if not wanted:
        return
    fs, _ = filesystem(urls[0], storage_options)
    for lo in range(0, len(wanted), FETCH_BATCH):
        batch = wanted[lo : lo + FETCH_BATCH]
        paths = [filesystem(urls[m], storage_options)[1] for m in batch]
        starts = [int(rows[0, m, 0]) for m in batch]
        ends = [int(rows[-1, m, 1]) for m in batch]
        blobs = _cat_ranges(fs, paths, starts, ends, [urls[m] for m in batch])
        for i, m in enumerate(batch):
            blob, base = blobs[i], starts[i]
            blobs[i] = b""  # release the compressed bytes once decoded
            if len(blob) != ends[i] - base:
                msg = f"segmented object {urls[m]} is truncated: read {len(blob)} of {ends[i] - base} bytes"
                raise CorruptObject(msg)
            view = memoryview(blob)
            for start, end, _n, expected in rows[:, m, :]:
                if end > start:
                    yield _decode(view[start - base : end - base], int(expected), urls[m])


def _decode(data: memoryview, expected: int, url: str) -> pa.Table:
    if checksum(data) != expected:
        msg = f"segmented object {url}: a segment fails its checksum (corrupt in storage or in transit)"
        raise CorruptObject(msg)
    try:
        return pa.ipc.open_stream(pa.py_buffer(data)).read_all()
    except pa.ArrowInvalid as error:
        msg = f"segmented object {url}: a segment is not a readable Arrow IPC stream: {error}"
        raise CorruptObject(msg) from None


def _cat_ranges(fs: Any, paths: list[str], starts: list[int], ends: list[int], urls: Sequence[str]) -> list[bytes]:
    """`fs.cat_ranges` that raises on the first failed range (fsspec returns exceptions by default)."""
    blobs = fs.cat_ranges(paths, starts, ends, on_error="return")
    for blob, url in zip(blobs, urls, strict=True):
        if isinstance(blob, FileNotFoundError):
            msg = f"segmented object {url} is missing; delete the run's shuffle folder and rerun"
            raise CorruptObject(msg)
        if isinstance(blob, BaseException):
            raise blob
    return list(blobs)


def read_object(url: str, size: int, partitions: int, storage_options: dict[str, Any]) -> list[pa.Table]:
    """Every non-empty segment of one object, in partition order (footer then data: two ranged GETs)."""
    footer = read_footers([url], [size], partitions, storage_options)[0]
    rows = np.stack([footer.offsets[:-1], footer.offsets[1:], footer.rows, footer.checksums], axis=1)
    return list(fetch_segments([url], rows[:, None, :], storage_options))


def column_arrays(
    tables: Sequence[pa.Table] | Iterator[pa.Table], columns: dict[str, npt.DTypeLike]
) -> dict[str, npt.NDArray[Any]]:
    """Numeric columns of many tables as one NumPy array each (empty arrays of `columns`' types when none)."""
    parts: dict[str, list[npt.NDArray[Any]]] = {name: [] for name in columns}
    for table in tables:
        for name, dtype in columns.items():
            parts[name].append(np.asarray(table[name].to_numpy(), dtype=dtype))
    return {
        name: np.concatenate(chunks) if chunks else np.zeros(0, dtype=columns[name]) for name, chunks in parts.items()
    }
