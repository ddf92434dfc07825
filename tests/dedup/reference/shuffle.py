"""Reference (frozen, see the package).

Phase B, the band shuffle: band keys to partitions, and colliding keys to edges of the duplicate graph.

A document is a node `shard_index << 32 | row` (row = its position in the shard's kept/signature file). Each
of its band keys becomes a row `(band, key, node)`, sent to partition `hash(band, key) % P`; all rows of one
`(band, key)` land in one partition, so one task per partition finds every collision. A group of `k`
colliding nodes gives `k - 1` edges from its smallest node to the others (a star, not all pairs).
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import polars as pl
import pyarrow as pa

from engine.dedup.minhash import mix64
from engine.dedup.signatures import EXACT, KEYS, LENGTH, SCORE
from engine.io.parquet import read_table
from engine.io.paths import filesystem
from engine.schema import ID
from tests.dedup.reference.components import both_directions, write_edges
from tests.dedup.reference.plan import (
    DST,
    NODE,
    SRC,
    Plan,
    node_ids,
    node_partitions,
    part_dir,
    read_folder,
    write_partitioned,
)

BAND = "band"
KEY = "key"

_BAND_SALT = np.uint64(0xD6E8FEB86659FD93)


def key_partitions(
    bands: npt.NDArray[np.int64], keys: npt.NDArray[np.uint64], partitions: int
) -> npt.NDArray[np.int64]:
    """Partition of each `(band, key)` row."""
    mixed = mix64(keys ^ (bands.astype(np.uint64) * _BAND_SALT))
    return (mixed % np.uint64(partitions)).astype(np.int64)


def band_rows(keys: npt.NDArray[np.uint64], has_keys: npt.NDArray[np.bool_], nodes: npt.NDArray[np.int64]) -> pa.Table:
    """Long table `(band, key, node)` of every document with keys; `keys` has shape `(documents, bands)`."""
    keys = keys[has_keys]
    nodes = nodes[has_keys]
    n_docs, n_bands = keys.shape
    return pa.table(
        {
            BAND: pa.array(np.tile(np.arange(n_bands, dtype=np.int32), n_docs)),
            KEY: pa.array(keys.reshape(-1)),
            NODE: pa.array(np.repeat(nodes, n_bands)),
        }
    )


def collision_edges(rows: pl.DataFrame) -> pl.DataFrame:
    """Distinct edges `(u, v)`, `u < v`: each colliding `(band, key)` group as a star from its least node."""
    if rows.height == 0:
        return pl.DataFrame({SRC: [], DST: []}, schema={SRC: pl.Int64, DST: pl.Int64})
    grouped = rows.lazy().with_columns(pl.col(NODE).min().over(BAND, KEY).alias(SRC))
    return (
        grouped.filter(pl.col(NODE) != pl.col(SRC))
        .select(pl.col(SRC), pl.col(NODE).alias(DST))
        .unique()
        .sort(SRC, DST)
        .collect()
    )


def map_bands(plan: Plan, item: tuple[int, str]) -> int:
    """One shard's signatures to band rows (by key hash) and sort-key rows (by node hash); rows mapped."""
    index, url = item
    fs, path = filesystem(url, plan.storage_options)
    if not fs.exists(path):
        return 0
    table = read_table(url, plan.storage_options)
    has_keys = np.asarray(table[KEYS].is_valid().to_numpy(zero_copy_only=False), dtype=bool)
    nodes = node_ids(index, table.num_rows)
    width = table.schema.field(KEYS).type.list_size
    valid = pa.array(has_keys, type=pa.bool_())
    flat = table[KEYS].filter(valid).combine_chunks().flatten()
    keys = np.asarray(flat.to_numpy(zero_copy_only=False), dtype=np.uint64).reshape(-1, width)
    rows = band_rows(keys, np.ones(len(keys), dtype=bool), nodes[has_keys])
    name = f"s={index:06d}"
    band_frame = pl.from_arrow(rows)
    assert isinstance(band_frame, pl.DataFrame)
    partitions = key_partitions(rows["band"].to_numpy().astype(np.int64), rows[KEY].to_numpy(), plan.partitions)
    write_partitioned(plan, band_frame, partitions, plan.url("bands"), name)
    sort_keys = {
        NODE: pa.array(nodes[has_keys]),
        ID: table[ID].filter(valid),
        LENGTH: table[LENGTH].filter(valid),
    }
    if plan.has_score:
        sort_keys[SCORE] = table[SCORE].filter(valid)
    if plan.exact_first:
        sort_keys[EXACT] = table[EXACT].filter(valid)
    key_frame = pl.from_arrow(pa.table(sort_keys))
    assert isinstance(key_frame, pl.DataFrame)
    write_partitioned(plan, key_frame, node_partitions(nodes[has_keys], plan.partitions), plan.url(KEYS), name)
    return int(has_keys.sum())


def find_edges(plan: Plan, partition: int) -> int:
    """Colliding band keys of one partition to star edges, written for components step 0; edges found."""
    rows = read_folder(plan, plan.url("bands", part_dir(partition)), {"band": pl.Int32, KEY: pl.UInt64, NODE: pl.Int64})
    edges = collision_edges(rows)
    write_edges(plan, both_directions(edges), 0, partition)
    return edges.height
