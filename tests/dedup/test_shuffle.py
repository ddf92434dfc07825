from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from engine.dedup.plan import DST, NODE, ROW_MASK, SRC, node_ids, node_partitions
from engine.dedup.shuffle import BAND, KEY, band_rows, collision_edges, key_partitions


def test_node_ids_encode_shard_and_row() -> None:
    nodes = node_ids(3, 4)
    assert (nodes >> 32).tolist() == [3] * 4
    assert (nodes & ROW_MASK).tolist() == [0, 1, 2, 3]


def test_node_ids_refuse_oversized_shards() -> None:
    with pytest.raises(ValueError, match="split the shard"):
        node_ids(0, ROW_MASK + 1)


def test_band_rows_skip_documents_without_keys() -> None:
    keys = np.array([[1, 2], [3, 4], [5, 6]], dtype=np.uint64)
    rows = band_rows(keys, np.array([True, False, True]), np.array([10, 11, 12], dtype=np.int64))
    assert rows[BAND].to_pylist() == [0, 1, 0, 1]
    assert rows[KEY].to_pylist() == [1, 2, 5, 6]
    assert rows[NODE].to_pylist() == [10, 10, 12, 12]


def test_collisions_become_stars_from_the_smallest_node() -> None:
    rows = pl.DataFrame(
        {
            BAND: [0, 0, 0, 1, 1, 0, 1],
            KEY: [7, 7, 7, 7, 7, 8, 9],
            NODE: [30, 10, 20, 30, 10, 40, 50],
        },
        schema={BAND: pl.Int32, KEY: pl.UInt64, NODE: pl.Int64},
    )
    edges = collision_edges(rows)
    assert list(zip(edges[SRC], edges[DST], strict=True)) == [(10, 20), (10, 30)]


def test_same_key_in_different_bands_does_not_collide() -> None:
    rows = pl.DataFrame(
        {BAND: [0, 1], KEY: [7, 7], NODE: [1, 2]}, schema={BAND: pl.Int32, KEY: pl.UInt64, NODE: pl.Int64}
    )
    assert collision_edges(rows).height == 0


def test_partitions_are_in_range_and_spread() -> None:
    rng = np.random.default_rng(0)
    keys = rng.integers(0, 2**63, size=10_000, dtype=np.uint64)
    bands = rng.integers(0, 14, size=10_000).astype(np.int64)
    parts = key_partitions(bands, keys, 7)
    assert parts.min() >= 0
    assert parts.max() < 7
    assert np.bincount(parts).min() > 1200  # ~1430 each
    assert (key_partitions(bands, keys, 7) == parts).all()
    nodes = node_partitions(np.arange(10_000, dtype=np.int64), 5)
    assert np.bincount(nodes).min() > 1700
