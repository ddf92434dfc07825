"""Phase D, removal: one task per shard writes `kept/` without its duplicates (and the duplicates apart).

A shard's task reads its fate file (`state/fates/<rel>.parquet`, written by the fates task) and streams its staged
kept documents once: rows whose fate names another document (`duplicate_of`) go to `rejected/<rel>.duplicates`
with their reason, the others to `kept/`. Conservation is counted: the rows written to each file are counted by
its writer and checked against the committed files' Parquet footers, and the staged rows read (checked against
the staged file's footer) must equal the rows kept plus the duplicates removed. The task's marker
(`state/removal/<rel>.json`, written last) records the files, the counts and the key of what they were made from:
the removal settings, the shard's staged file (phase A's identity) and the content of its fate that reaches the
output (which rows are duplicates of what, and why; cluster columns when written). A later run whose key is the
same skips the shard and reports what it wrote: a night that adds shards rewrites `kept/` only for the new shards
and for old shards whose duplicates changed (issue 11).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

from engine.dedup.plan import ROW, Plan, Removal, digest, staged_url
from engine.errors import ConservationError, InputError
from engine.io.layout import KEPT, REJECTED
from engine.io.markers import read_json, write_json
from engine.io.parquet import PartitionedWriter, check_footers, open_parquet, read_table, stream_batches
from engine.io.paths import all_exist, filesystem, remove_files
from engine.schema import CLUSTER_ID, CLUSTER_SIZE, DUPLICATE_OF, ID, REASON


@dataclass(frozen=True)
class ShardRemoval:
    """What removal wrote for one shard: rows kept, duplicates removed, and duplicate rows written."""

    rel: str
    kept: int
    duplicates: int
    duplicates_written: int
    outputs: tuple[str, ...] = ()


def remove_duplicates(plan: Plan, removal: Removal, shard: int) -> ShardRemoval:
    """Write shard `shard`'s final kept documents (and its removed duplicates); what it wrote.

    Raises:
        InputError: the staged file or the fate file is missing (names it and what to do).
        ConservationError: the rows written do not account for the rows staged (names the shard).
    """
    rel = plan.shards[shard]
    options = plan.storage_options
    staged = staged_url(removal.output, rel)
    if plan.rows[shard] == 0:
        fs, path = filesystem(staged, options)
        if not fs.exists(path):  # a shard phase A left nothing for (its documents were all dropped)
            return ShardRemoval(rel, 0, 0, 0)
    fates = _read_fates(plan, shard)
    identity = removal.identities[shard] if removal.identities else removal.settings
    key = digest([removal.settings, identity, fates_digest(fates, cluster_columns=removal.add_cluster_columns)])
    marker_url = plan.removal_marker_url(rel)
    previous = read_json(marker_url, options)
    reusable = previous is not None and previous.get("key") == key and not removal.force
    if reusable and previous is not None and all_exist(previous["outputs"], options):
        return ShardRemoval(
            rel,
            int(previous["kept"]),
            int(previous["duplicates"]),
            int(previous["duplicates_written"]),
            tuple(previous["outputs"]),
        )
    fate_rows = np.asarray(fates[ROW].to_numpy(), dtype=np.int64)
    with open_parquet(staged, options) as parquet:
        schema = parquet.schema_arrow
        staged_rows = parquet.metadata.num_rows
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
            layout=removal.layout,
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
                layout=removal.layout,
            )
            writers.append(duplicates_writer)
        removed = 0
        offset = 0
        try:
            for batch in stream_batches(parquet, staged, removal.batch_rows):
                table = pa.Table.from_batches([batch])
                n = table.num_rows
                lo, hi = np.searchsorted(fate_rows, [offset, offset + n])
                local = fate_rows[lo:hi] - offset
                fate_slice = fates.slice(int(lo), int(hi - lo))
                _check_ids(table, local, fate_slice, rel)
                position = np.full(n, -1, dtype=np.int64)
                position[local] = np.arange(len(local))
                take = pa.array(position, mask=position < 0)
                duplicate_of = fate_slice[DUPLICATE_OF].take(take)
                if removal.add_cluster_columns:
                    table = table.append_column(CLUSTER_ID, fate_slice[CLUSTER_ID].take(take))
                    table = table.append_column(CLUSTER_SIZE, fate_slice[CLUSTER_SIZE].take(take))
                is_duplicate = pc.is_valid(duplicate_of)
                kept.write(table.filter(pc.invert(is_duplicate)))
                n_dups = int(pc.sum(is_duplicate).as_py() or 0)
                removed += n_dups
                if duplicates_writer is not None and n_dups:
                    dups = table.filter(is_duplicate)
                    dups = dups.append_column(REASON, fate_slice[REASON].take(take).filter(is_duplicate))
                    dups = dups.append_column(DUPLICATE_OF, duplicate_of.filter(is_duplicate))
                    duplicates_writer.write(dups)
                offset += n
            if len(fate_rows) and int(fate_rows[-1]) >= offset:
                msg = f"shard {rel}: dedup refers to row {int(fate_rows[-1])} but {staged} holds {offset} rows"
                raise RuntimeError(msg)
            for writer in writers:
                writer.close()
        except BaseException:
            for writer in writers:
                writer.abort()
            raise
    counted = {url: rows for writer in writers for url, rows in writer.rows_by_file.items()}
    where = f"dedup removal of shard {rel}"
    check_footers(counted, options, where=where)
    written_dups = duplicates_writer.rows if duplicates_writer is not None else 0
    if offset != staged_rows or kept.rows + removed != staged_rows or (duplicates_writer and written_dups != removed):
        msg = (
            f"conservation violated in {where}: {staged_rows:,} rows staged (footer), {offset:,} read, {kept.rows:,}"
            f" written to kept/ + {removed:,} duplicates ({written_dups:,} written); this is a bug, please report it"
        )
        raise ConservationError(msg)
    outputs = sorted(counted)
    if previous is not None:
        remove_files([u for u in previous.get("outputs", []) if u not in outputs], options)
    marker = {
        "key": key,
        "kept": kept.rows,
        "duplicates": removed,
        "duplicates_written": written_dups,
        "outputs": outputs,
        "rows": counted,
    }
    write_json(marker_url, marker, options)
    return ShardRemoval(rel, kept.rows, removed, written_dups, tuple(outputs))


def fates_digest(fates: pa.Table, *, cluster_columns: bool) -> str:
    """A digest of what of a fate file reaches the removal's output: which rows are duplicates, of what and why
    (plus every clustered row's cluster id and size when the cluster columns are written)."""
    columns = [ROW, ID, DUPLICATE_OF, REASON] + ([CLUSTER_ID, CLUSTER_SIZE] if cluster_columns else [])
    chosen = fates
    if not cluster_columns:  # only the duplicates matter: a representative's row carries no output change
        chosen = fates.filter(pc.is_valid(fates[DUPLICATE_OF]))
    hasher = hashlib.sha256()
    for name in columns:
        hasher.update(json.dumps(chosen[name].to_pylist()).encode())
    return hasher.hexdigest()[:20]


def _read_fates(plan: Plan, shard: int) -> pa.Table:
    url = plan.fates_url(shard)
    try:
        return read_table(url, plan.storage_options)
    except InputError as error:
        msg = f"shard {plan.shards[shard]}: its dedup fate file cannot be read ({error}); rerun the job to redo it"
        raise InputError(msg) from None


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
