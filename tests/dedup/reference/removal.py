"""Reference (frozen, see the package).

Phase D, removal: one task per shard writes `kept/` without its duplicates (and the duplicates apart)."""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt
import polars as pl
import pyarrow as pa
import pyarrow.compute as pc

from engine.io.layout import KEPT, REJECTED, shard_file
from engine.io.markers import read_json, write_json
from engine.io.parquet import PartitionedWriter, iter_batches, open_parquet
from engine.io.paths import all_exist, filesystem, remove_files
from engine.schema import CLUSTER_ID, CLUSTER_SIZE, DUPLICATE_OF, ID, REASON
from tests.dedup.reference.plan import ROW, SHARD, STAGE_KEPT, Plan, Removal, part_dir, read_folder

_FATE_SCHEMA: dict[str, Any] = {
    SHARD: pl.Int64,
    ROW: pl.Int64,
    ID: pl.String,
    DUPLICATE_OF: pl.String,
    CLUSTER_ID: pl.String,
    CLUSTER_SIZE: pl.Int64,
    REASON: pl.String,
}


def remove_duplicates(plan: Plan, removal: Removal, item: tuple[int, str]) -> int:
    """Write shard `rel`'s final kept documents (and its removed duplicates); duplicates removed."""
    index, rel = item
    options = plan.storage_options
    marker_url = plan.url("removal", f"{rel}.json")
    previous = read_json(marker_url, options)
    if previous is not None and previous.get("run") == removal.run and all_exist(previous["outputs"], options):
        return int(previous["duplicates"])
    staged = shard_file(removal.output, STAGE_KEPT, rel)
    fs, path = filesystem(staged, options)
    if not fs.exists(path):
        return 0
    fates = (
        read_folder(plan, plan.url("clusters", part_dir(index % plan.partitions)), _FATE_SCHEMA)
        .filter(pl.col(SHARD) == index)
        .sort(ROW)
    )
    fate_rows = fates[ROW].to_numpy()
    fate_table = fates.to_arrow()
    with open_parquet(staged, options) as parquet:
        schema = parquet.schema_arrow
    kept_schema = schema
    if removal.add_cluster_columns:
        kept_schema = kept_schema.append(pa.field(CLUSTER_ID, pa.string()))
        kept_schema = kept_schema.append(pa.field(CLUSTER_SIZE, pa.int64()))
    kept = PartitionedWriter(
        removal.output,
        KEPT,
        rel,
        kept_schema,
        partition_column=removal.partition_column,
        storage_options=options,
        compression=plan.compression,
    )
    writers = [kept]
    duplicates_writer = None
    if removal.write_duplicates:
        dup_schema = kept_schema.append(pa.field(REASON, pa.string())).append(pa.field(DUPLICATE_OF, pa.string()))
        duplicates_writer = PartitionedWriter(
            removal.output,
            REJECTED,
            f"{rel}.duplicates",
            dup_schema,
            storage_options=options,
            compression=plan.compression,
        )
        writers.append(duplicates_writer)
    removed = 0
    offset = 0
    try:
        for batch in iter_batches(staged, options, removal.batch_rows):
            table = pa.Table.from_batches([batch])
            n = table.num_rows
            lo, hi = np.searchsorted(fate_rows, [offset, offset + n])
            local = fate_rows[lo:hi] - offset
            fate_slice = fate_table.slice(int(lo), int(hi - lo))
            _check_ids(table, local, fate_slice, rel)
            position = np.full(n, -1, dtype=np.int64)
            position[local] = np.arange(len(local))
            take = pa.array(position, mask=position < 0)
            duplicate_of = fate_slice[DUPLICATE_OF].take(take)
            reasons = fate_slice[REASON].take(take)
            if removal.add_cluster_columns:
                table = table.append_column(CLUSTER_ID, fate_slice[CLUSTER_ID].take(take))
                table = table.append_column(CLUSTER_SIZE, fate_slice[CLUSTER_SIZE].take(take))
            is_duplicate = pc.is_valid(duplicate_of)
            kept.write(table.filter(pc.invert(is_duplicate)))
            n_dups = int(pc.sum(is_duplicate).as_py() or 0)
            removed += n_dups
            if duplicates_writer is not None and n_dups:
                dups = table.filter(is_duplicate)
                dups = dups.append_column(REASON, reasons.filter(is_duplicate))
                dups = dups.append_column(DUPLICATE_OF, duplicate_of.filter(is_duplicate))
                duplicates_writer.write(dups)
            offset += n
        if len(fate_rows) and int(fate_rows[-1]) >= offset:
            msg = f"shard {rel}: dedup refers to row {int(fate_rows[-1])} but {staged} holds {offset} rows"
            raise RuntimeError(msg)
        outputs: list[str] = []
        for writer in writers:
            outputs.extend(writer.close())
    except BaseException:
        for writer in writers:
            writer.abort()
        raise
    if previous is not None:
        remove_files([u for u in previous.get("outputs", []) if u not in outputs], options)
    write_json(marker_url, {"run": removal.run, "duplicates": removed, "outputs": sorted(outputs)}, options)
    return removed


def _check_ids(table: pa.Table, local: npt.NDArray[np.int64], fates: pa.Table, rel: str) -> None:
    if len(local) == 0:
        return
    ids = table[ID].take(pa.array(local))
    if not pc.all(pc.equal(ids.cast(pa.string()), fates[ID])).as_py():
        msg = (
            f"shard {rel}: the staged kept documents and their signatures disagree (ids differ); "
            "delete the shard's _units marker and rerun so phase A rewrites both"
        )
        raise RuntimeError(msg)
