"""Clusters that held a dead document: a night's changed and vanished shards (docs/dedup-design.md 5.3).

A changed shard's old documents and a vanished shard's documents are dead. The clusters that held one are found
from the dead shards' old fate files (their label column) and from the labels that are a dead document; their
living members are the rows of those labels in every living old fate file, and the labels themselves (a
representative may have no fate row). The night's graph task (`engine.dedup.night`) clusters them again from
their band keys, read from their signature files (`member_edges`): exact, whatever the index's hub sub-buckets.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import polars as pl
import pyarrow as pa
import pyarrow.compute as pc

from engine.dedup.components import LABEL
from engine.dedup.index import TOMBSTONE, Changes, is_tombstone
from engine.dedup.plan import ROW, ROW_BITS, ROW_MASK, Plan
from engine.dedup.shuffle import band_rows, collision_edges
from engine.dedup.signatures import KEYS
from engine.io.layout import join
from engine.io.parquet import read_table
from engine.io.paths import filesystem
from engine.schema import DUPLICATE_OF

I64 = npt.NDArray[np.int64]


def old_fates_url(plan: Plan, shard: int) -> str:
    """The fate file the state holds for position `shard` (a vanished shard's too, until clean-up)."""
    rel = plan.shards[shard]
    if is_tombstone(rel):
        rel = rel[len(TOMBSTONE) :]
    return join(plan.root, "state", "fates", f"{rel}.parquet")


@dataclass(frozen=True)
class Affected:
    """The old documents whose cluster held a dead document (of a changed or vanished shard): they are clustered
    again from their band keys. `labels`: the clusters' old labels (sorted); per node (sorted), its old label and
    whether it was a duplicate."""

    labels: I64
    nodes: I64
    old_labels: I64
    was_duplicate: npt.NDArray[np.bool_]


def affected_members(plan: Plan, changes: Changes, alive: pl.DataFrame) -> Affected:
    """The clusters that held a dead document (labels in the dead shards' old fate files, and labels that are a
    dead document) and their living members (fate rows of those labels in every living old shard, and the
    labels themselves: a representative may have no fate row)."""
    options = plan.storage_options
    dead = np.asarray(changes.dead, dtype=np.int64)
    labels = [alive[LABEL].to_numpy().astype(np.int64)]
    labels[0] = labels[0][np.isin(labels[0] >> ROW_BITS, dead)]
    for shard in changes.dead:
        url = old_fates_url(plan, shard)
        fs, path = filesystem(url, options)
        if fs.exists(path):
            labels.append(np.asarray(read_table(url, options, columns=[LABEL])[LABEL].to_numpy(), dtype=np.int64))
    affected = np.unique(np.concatenate(labels))
    empty = np.zeros(0, dtype=np.int64)
    if len(affected) == 0:
        return Affected(affected, empty, empty, np.zeros(0, dtype=bool))
    skip = set(changes.new) | set(changes.dead)
    wanted = pa.array(affected, type=pa.int64())
    nodes, olds, dups = [empty], [empty], [np.zeros(0, dtype=bool)]
    for shard in range(len(plan.shards)):
        if shard in skip or is_tombstone(plan.shards[shard]) or shard >= changes.first_new:
            continue
        table = read_table(plan.fates_url(shard), options, columns=[ROW, LABEL, DUPLICATE_OF])
        table = table.filter(pc.is_in(table[LABEL], value_set=wanted))
        if table.num_rows:
            rows = np.asarray(table[ROW].to_numpy(), dtype=np.int64)
            nodes.append((np.int64(shard) << np.int64(ROW_BITS)) + rows)
            olds.append(np.asarray(table[LABEL].to_numpy(), dtype=np.int64))
            dups.append(np.asarray(table[DUPLICATE_OF].is_valid().to_numpy(zero_copy_only=False), dtype=bool))
    found = np.concatenate(nodes)
    living = affected[~np.isin(affected >> ROW_BITS, dead)]
    reps = np.setdiff1d(living, found)  # representatives without a fate row
    every = np.concatenate([found, reps])
    order = np.argsort(every, kind="stable")
    return Affected(
        affected,
        every[order],
        np.concatenate([*olds, reps])[order],
        np.concatenate([*dups, np.zeros(len(reps), dtype=bool)])[order],
    )


def member_edges(plan: Plan, nodes: I64) -> tuple[I64, I64]:
    """Star edges of the colliding band keys among documents `nodes` (sorted), read from their signature files."""
    keys, bands, owners = [np.zeros(0, np.uint64)], [np.zeros(0, np.uint16)], [np.zeros(0, np.int64)]
    shards = nodes >> ROW_BITS
    for shard in np.unique(shards).tolist():
        mine = nodes[shards == shard]
        table = read_table(plan.signature_url(shard), plan.storage_options, columns=[KEYS])
        column = table[KEYS].take(pa.array(mine & ROW_MASK)).combine_chunks()
        has_keys = np.asarray(column.is_valid().to_numpy(zero_copy_only=False), dtype=bool)
        flat = column.filter(pa.array(has_keys)).flatten()
        width = column.type.list_size
        rows = np.asarray(flat.to_numpy(zero_copy_only=False), dtype=np.uint64).reshape(-1, width)
        k, b, n = band_rows(rows, np.ones(len(rows), dtype=bool), mine[has_keys])
        keys.append(k)
        bands.append(b)
        owners.append(n)
    return collision_edges(np.concatenate(keys), np.concatenate(bands), np.concatenate(owners))


__all__ = ["Affected", "affected_members", "member_edges", "old_fates_url"]
