"""The band shuffle: band keys to partitions, and colliding keys to edges of the duplicate graph.

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

BAND = "band"
KEY = "key"
NODE = "node"
SRC = "u"
DST = "v"

ROW_BITS = 32
ROW_MASK = (1 << ROW_BITS) - 1

_BAND_SALT = np.uint64(0xD6E8FEB86659FD93)


def node_ids(shard_index: int, n_rows: int) -> npt.NDArray[np.int64]:
    """Node ids of the `n_rows` documents of shard number `shard_index` (in the sorted shard list)."""
    if n_rows > ROW_MASK:
        msg = f"a shard holds {n_rows} kept documents; at most {ROW_MASK} are supported, split the shard"
        raise ValueError(msg)
    return (np.int64(shard_index) << np.int64(ROW_BITS)) + np.arange(n_rows, dtype=np.int64)


def key_partitions(
    bands: npt.NDArray[np.int64], keys: npt.NDArray[np.uint64], partitions: int
) -> npt.NDArray[np.int64]:
    """Partition of each `(band, key)` row."""
    mixed = mix64(keys ^ (bands.astype(np.uint64) * _BAND_SALT))
    return (mixed % np.uint64(partitions)).astype(np.int64)


def node_partitions(nodes: npt.NDArray[np.int64], partitions: int) -> npt.NDArray[np.int64]:
    """Partition of each node (edges, labels and sort keys are partitioned this way)."""
    return (mix64(nodes.astype(np.uint64)) % np.uint64(partitions)).astype(np.int64)


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
