"""Re-hydrate a deduplicated corpus: repeat each kept document by the size of the cluster it stood for.

FineWeb-2 removes all but one document of each duplicate cluster, keeps the cluster's size on the survivor and
upsamples by it when the data is used ("re-hydration"). This reads a finished run's `kept/` (made with
`dedup: {add_cluster_columns: true}`, so every kept document carries `cluster_size`; a document that was in no
cluster counts as size 1) and writes the same files under another folder with each row repeated by its weight.
Weights come from a table of cluster-size ranges; the default is FineWeb-2's. File by file, row group by row
group: memory stays bounded whatever the corpus.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa

from engine.errors import InputError
from engine.io.layout import KEPT, join
from engine.io.parquet import StreamWriter, open_parquet, stream_batches
from engine.io.paths import list_files, relative_path
from engine.schema import CLUSTER_SIZE

SIZE = "N"
"""The weight that means "the cluster's size itself"."""

FINEWEB2_WEIGHTS = "1:1,2-3:N,4:3,5-99:5,100-999:8,1000+:1"
"""FineWeb-2's published upsampling: clusters of 2-3 repeated by their size, 4 -> 3, 5-99 -> 5, 100-999 -> 8,
1000 and more once (such clusters are mostly boilerplate)."""


@dataclass(frozen=True)
class Band:
    """Cluster sizes `low`..`high` (inclusive; `high` None: no upper end) get `weight` copies (None: the size)."""

    low: int
    high: int | None
    weight: int | None


def parse_weights(text: str) -> list[Band]:
    """`"1:1,2-3:N,4:3,5-99:5,100-999:8,1000+:1"` -> bands; they must cover every size from 1 up, once each.

    Raises:
        ValueError: a malformed entry, a gap or an overlap between ranges, or no open-ended last range.
    """
    bands: list[Band] = []
    for entry in (part.strip() for part in text.split(",") if part.strip()):
        match = re.fullmatch(r"(\d+)(?:-(\d+)|(\+))?:(\d+|N)", entry)
        if match is None:
            msg = f"weights entry {entry!r} is not SIZE:W, LOW-HIGH:W or LOW+:W (W a count or N for the size)"
            raise ValueError(msg)
        low = int(match[1])
        high = None if match[3] else int(match[2] or low)
        weight = None if match[4] == SIZE else int(match[4])
        bands.append(Band(low, high, weight))
    expected = 1
    for i, band in enumerate(bands):
        if band.low != expected or (band.high is not None and band.high < band.low):
            msg = f"weights must cover cluster sizes from 1 up without gaps or overlaps; {band.low} is not {expected}"
            raise ValueError(msg)
        if band.high is None:
            if i != len(bands) - 1:
                msg = f"the open range {band.low}+ must come last"
                raise ValueError(msg)
            return bands
        expected = band.high + 1
    msg = "weights must end with an open range such as 1000+:1"
    raise ValueError(msg)


def repeats(sizes: np.ndarray, bands: Sequence[Band]) -> np.ndarray:
    """Copies of each document, from its cluster size (sizes below 1 count as 1)."""
    sizes = np.maximum(sizes, 1)
    result = np.ones(len(sizes), dtype=np.int64)
    for band in bands:
        inside = sizes >= band.low if band.high is None else (sizes >= band.low) & (sizes <= band.high)
        result[inside] = sizes[inside] if band.weight is None else band.weight
    return result


@dataclass
class Rehydrated:
    """What a re-hydration wrote: documents read, rows written, and documents per number of copies."""

    files: int = 0
    documents: int = 0
    rows: int = 0
    by_copies: Counter[int] = field(default_factory=Counter)


def rehydrate(
    run_dir: str, destination: str, weights: str = FINEWEB2_WEIGHTS, storage_options: dict[str, Any] | None = None
) -> Rehydrated:
    """Write every file of `run_dir`'s kept/ under `destination` (same relative paths), rows repeated by weight.

    Raises:
        InputError: kept/ is empty or absent, or its files have no `cluster_size` column.
    """
    options = storage_options or {}
    bands = parse_weights(weights)
    kept = join(run_dir, KEPT)
    files = list_files(kept, options, "**/*.parquet")
    if not files:
        msg = f"{kept} holds no Parquet files: is {run_dir} the output folder of a finished run?"
        raise InputError(msg)
    done = Rehydrated()
    for url in files:
        with open_parquet(url, options) as parquet:
            schema = parquet.schema_arrow
            if CLUSTER_SIZE not in schema.names:
                msg = (
                    f"{url} has no {CLUSTER_SIZE!r} column: re-hydration needs the run to be made with "
                    "`dedup: {add_cluster_columns: true}`"
                )
                raise InputError(msg)
            writer = StreamWriter(join(destination, relative_path(url, kept, options)), schema, storage_options=options)
            try:
                for batch in stream_batches(parquet, url, batch_rows=8192):
                    sizes = batch.column(CLUSTER_SIZE).fill_null(1).to_numpy(zero_copy_only=False)
                    copies = repeats(np.asarray(sizes, dtype=np.int64), bands)
                    writer.write(pa.Table.from_batches([batch]).take(np.repeat(np.arange(len(copies)), copies)))
                    done.documents += len(copies)
                    done.rows += int(copies.sum())
                    done.by_copies.update(copies.tolist())
                writer.close()
            except BaseException:
                writer.abort()
                raise
        done.files += 1
    return done


def format_rehydrated(done: Rehydrated, destination: str) -> str:
    """The console summary: documents read, rows written, how many documents got how many copies."""
    lines = [f"{done.documents:,} documents in {done.files:,} files -> {done.rows:,} rows under {destination}"]
    lines += [f"  {count:,} documents x {copies}" for copies, count in sorted(done.by_copies.items())]
    return "\n".join(lines)
