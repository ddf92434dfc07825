from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.dedup.components import components_in_memory
from engine.dedup.plan import ROW_MASK, node_ids
from engine.dedup.shuffle import (
    band_keys,
    band_rows,
    colliding_rows,
    collision_edges,
    salted,
    sort_rows,
    split_hubs,
)
from engine.io.segments import top_partitions


def test_node_ids_encode_shard_and_row() -> None:
    nodes = node_ids(3, 4)
    assert (nodes >> 32).tolist() == [3] * 4
    assert (nodes & ROW_MASK).tolist() == [0, 1, 2, 3]


def test_node_ids_refuse_oversized_shards() -> None:
    with pytest.raises(ValueError, match="split the shard"):
        node_ids(0, ROW_MASK + 1)


def test_band_rows_skip_documents_without_keys() -> None:
    keys = np.array([[1, 2], [3, 4], [5, 6]], dtype=np.uint64)
    key, band, node = band_rows(keys, np.array([True, False, True]), np.array([10, 11, 12], dtype=np.int64))
    assert band.tolist() == [0, 1, 0, 1]
    assert node.tolist() == [10, 10, 12, 12]
    assert key.tolist() == band_keys(np.array([1, 2, 5, 6], dtype=np.uint64), band).tolist()


def rows(bands: list[int], keys: list[int], nodes: list[int]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    band = np.array(bands, dtype=np.uint16)
    return band_keys(np.array(keys, dtype=np.uint64), band), band, np.array(nodes, dtype=np.int64)


def test_collisions_become_stars_from_the_smallest_node() -> None:
    u, v = collision_edges(*rows([0, 0, 0, 1, 1, 0, 1], [7, 7, 7, 7, 7, 8, 9], [30, 10, 20, 30, 10, 40, 50]))
    assert sorted(zip(u.tolist(), v.tolist(), strict=True)) == [(10, 20), (10, 30)]


def test_same_key_in_different_bands_does_not_collide() -> None:
    u, _ = collision_edges(*rows([0, 1], [7, 7], [1, 2]))
    assert len(u) == 0


def test_equal_mixed_keys_of_different_bands_stay_apart() -> None:
    """Rows sorted by key keep every (band, key) group contiguous even when two bands share a mixed key."""
    key = np.array([5, 5, 5, 5, 5], dtype=np.uint64)  # as if two bands' keys mixed to the same value
    band = np.array([1, 0, 1, 0, 1], dtype=np.uint16)
    node = np.array([9, 8, 7, 6, 5], dtype=np.int64)
    _, sorted_band, sorted_node = sort_rows(key, band, node)
    assert sorted_band.tolist() == [0, 0, 1, 1, 1]
    u, v = collision_edges(key, band, node)
    assert sorted(zip(u.tolist(), v.tolist(), strict=True)) == [(5, 7), (5, 9), (6, 8)]


def test_partitions_are_in_range_and_spread() -> None:
    rng = np.random.default_rng(0)
    keys = rng.integers(0, 2**63, size=10_000, dtype=np.uint64)
    bands = rng.integers(0, 14, size=10_000).astype(np.uint16)
    parts = top_partitions(band_keys(keys, bands), 8)
    assert parts.min() >= 0
    assert parts.max() < 8
    assert np.bincount(parts).min() > 1100  # ~1250 each


def components_of(u: np.ndarray, v: np.ndarray) -> dict[int, int]:
    nodes, labels = components_in_memory(u, v)
    return dict(zip(nodes.tolist(), labels.tolist(), strict=True))


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.tuples(st.integers(0, 2), st.integers(0, 5)), min_size=1, max_size=300),
    st.integers(1, 40),
    st.integers(0, 10**6),
)
def test_split_hubs_keeps_every_group_connected(pairs: list[tuple[int, int]], limit: int, seed: int) -> None:
    """Dealing big groups into sub-buckets (anchor in each) gives the same components as the unsplit stars."""
    rng = np.random.default_rng(seed)
    key, band, node = rows([b for b, _ in pairs], [k for _, k in pairs], list(rng.permutation(len(pairs))))
    whole = components_of(*collision_edges(key, band, node))
    maps = rng.integers(1, 4)  # the rows of several map tasks, each splitting its own big groups
    parts = []
    for m in range(maps):
        mine = np.arange(len(key)) % maps == m
        parts.append(split_hubs(*sort_rows(key[mine], band[mine], node[mine]), limit)[:3])
    split = tuple(np.concatenate(c) for c in zip(*parts, strict=True))
    assert components_of(*collision_edges(*split)) == whole, f"seed {seed}"


def test_a_hub_is_dealt_over_partitions_with_its_anchor() -> None:
    key, band, node = rows([3] * 1000, [42] * 1000, list(range(1000, 0, -1)))
    out_key, out_band, out_node, groups = split_hubs(*sort_rows(key, band, node), 100)
    assert groups[0] == (3, int(key[0]), 1000, 1)
    assert len(out_key) == 1000 + 9  # the anchor (node 1) once more in each of the 9 other sub-buckets
    sub_buckets = {k: out_node[out_key == k] for k in np.unique(out_key)}
    assert len(sub_buckets) == 10
    assert all(1 in members for members in sub_buckets.values())
    assert max(len(m) for m in sub_buckets.values()) <= 101
    assert salted(key[:1], np.array([0]))[0] == key[0]
    assert len(set(top_partitions(np.array(list(sub_buckets)), 64).tolist())) > 5  # spread over partitions


@pytest.mark.parametrize("partition_bits", [0, 4, 16])
def test_colliding_rows_of_one_partition_stay_few(partition_bits: int) -> None:
    """The rows of one band partition share their keys' top bits; the candidates for a collision (true ones plus
    fingerprint false positives, ~n^2 / 2^33) must not grow with the partition count."""
    rng = np.random.default_rng(partition_bits)
    n = 200_000
    keys = rng.integers(0, 2**63, n, dtype=np.uint64)
    if partition_bits:  # every key in partition 5 of 2^bits
        keys = (keys >> np.uint64(partition_bits)) | (np.uint64(5) << np.uint64(64 - partition_bits))
        assert (top_partitions(keys, 1 << partition_bits) == 5).all()
    keys[:100] = keys[100:200]  # 100 true collisions: 200 rows
    found = colliding_rows(keys)
    assert set(range(200)) <= set(found.tolist())
    assert len(found) < 260
