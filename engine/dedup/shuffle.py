"""Phase B, the band shuffle: band keys to partitions, and colliding keys to star edges of the duplicate graph.

Map (`map_bands`, one task per run of shards): each document with keys gives one *band row* per band,

    key: uint64 = mix64(band key XOR band x C)   (bijective for a given band: grouping by (band, key) is exact)
    band: uint16, node: int64                     (node = shard_index << 32 | row)

and the task writes one segmented object (`engine.io.segments`) whose segment `p` holds the rows whose key's top
bits are `p` (`P` a power of two), sorted by key. A key with more local rows than `plan.split_rows` (a page copied
a million times) is dealt into sub-buckets: its least local node (the *anchor*) goes to every sub-bucket, every
other row to sub-bucket `rank mod n`, and sub-bucket `s > 0` gets the salted key `mix64(key XOR s x C2)` (another
partition). Every sub-bucket holds the anchors of every map task that split the key, so the sub-buckets' stars
still join all copies into one component; no collisions task holds more than its share of a hub. Map tasks also
report their largest local groups, from which the band index predicts the hubs' centres (heavy nodes).

Collisions (`find_edges`, one task per partition): read partition `p` of every map object (index row, then one
ranged GET per object), sort by key, and turn every group of `k >= 2` rows sharing `(band, key)` into a star from
its least node (`k - 1` edges, not all pairs). The distinct edges are written in both directions, sorted by source
(and pair hash: `components.merge_edges`, so a components task merges these runs instead of sorting), as one object
whose segments are node partitions (top bits of `mix64(source)`), finer than the graph phases need
(`plan.edge_partitions`): the components steps read contiguous ranges of them. Edges leaving a heavy node go to
`mix64(mix64(source) XOR mix64(target))` instead, and the task reports each heavy node's least neighbour (see
`engine.dedup.components`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa

from engine.dedup.components import (
    HeavyReport,
    edge_sketch,
    edge_table,
    heavy_report,
    merge_edges,
    node_sketch,
    route_keys,
    unique_edges,
)
from engine.dedup.minhash import mix64
from engine.dedup.plan import DST, NODE, SRC, Plan, node_ids
from engine.dedup.signatures import KEYS
from engine.io.parquet import read_table
from engine.io.segments import SegmentWriter, read_arrays, top_partitions, write_partitioned

KEY = "key"
BAND = "band"

I64 = npt.NDArray[np.int64]
U64 = npt.NDArray[np.uint64]

_BAND_SALT = np.uint64(0xD6E8FEB86659FD93)
_SUB_SALT = np.uint64(0xA0761D6478BD642F)
MAX_SUB_BUCKETS = 4096
REPORTED_GROUPS = 256
"""Largest local groups a map task reports (for predicting hub centres), if they have `plan.report_rows` rows."""

BAND_COLUMNS: dict[str, npt.DTypeLike] = {KEY: np.uint64, BAND: np.uint16, NODE: np.int64}


def band_keys(keys: U64, bands: npt.NDArray[np.integer]) -> U64:
    """The band rows' 64-bit keys: the band key mixed with its band (a bijection for each band)."""
    return mix64(keys ^ (bands.astype(np.uint64) * _BAND_SALT))


def salted(keys: U64, salts: I64) -> U64:
    """Keys of sub-bucket `salts` (sub-bucket 0 keeps the key)."""
    mixed = mix64(keys ^ (salts.astype(np.uint64) * _SUB_SALT))
    return np.where(salts == 0, keys, mixed)


def band_rows(keys: U64, has_keys: npt.NDArray[np.bool_], nodes: I64) -> tuple[U64, npt.NDArray[np.uint16], I64]:
    """`(key, band, node)` of every document with keys; `keys` has shape `(documents, bands)`."""
    keys = keys[has_keys]
    nodes = nodes[has_keys]
    n_docs, n_bands = keys.shape
    bands = np.tile(np.arange(n_bands, dtype=np.uint16), n_docs)
    return band_keys(keys.reshape(-1), bands), bands, np.repeat(nodes, n_bands)


def group_starts(keys: U64, bands: npt.NDArray[np.uint16]) -> I64:
    """Start of each run of equal `(key, band)` in rows sorted by key (and by band among equal keys)."""
    if len(keys) == 0:
        return np.zeros(0, dtype=np.int64)
    change = (keys[1:] != keys[:-1]) | (bands[1:] != bands[:-1])
    return np.concatenate([[0], np.flatnonzero(change) + 1]).astype(np.int64)


def sort_rows(keys: U64, bands: npt.NDArray[np.uint16], nodes: I64) -> tuple[U64, npt.NDArray[np.uint16], I64]:
    """Rows sorted by key, then band among equal keys (so every `(band, key)` group is one run)."""
    order = np.argsort(keys)
    keys, bands, nodes = keys[order], bands[order], nodes[order]
    same = keys[1:] == keys[:-1]
    mixed = same & (bands[1:] != bands[:-1])
    if mixed.any():  # equal keys of different bands (2^-64 per pair): order those runs by band
        run = np.concatenate([[0], np.cumsum(~same)])
        affected = np.isin(run, run[1:][mixed])
        rows = np.flatnonzero(affected)
        rows = rows[np.lexsort((bands[rows], run[rows]))]
        keys[affected], bands[affected], nodes[affected] = keys[rows], bands[rows], nodes[rows]
    return keys, bands, nodes


# --------------------------------------------------------------------------------------------------
# Map


@dataclass(frozen=True)
class MapResult:
    """One map object: its URL, size and rows, and its largest local groups `(band, key, rows, least node)`."""

    url: str
    size: int
    rows: int
    groups: tuple[tuple[int, int, int, int], ...]


def large_groups(keys: U64, least: int) -> U64:
    """The keys held by at least `least` rows (at most `REPORTED_GROUPS` of the largest, plus every key above
    `MAX_REPORTED_ROWS` rows); a sorted copy of the keys, no sort order over the rows."""
    if len(keys) < max(2, least):
        return np.zeros(0, dtype=np.uint64)
    ordered = np.sort(keys)
    starts = np.concatenate([[0], np.flatnonzero(ordered[1:] != ordered[:-1]) + 1])
    sizes = np.diff(np.append(starts, len(ordered)))
    found = np.flatnonzero(sizes >= max(2, least))
    if len(found) > REPORTED_GROUPS:
        found = found[np.argpartition(-sizes[found], REPORTED_GROUPS - 1)[:REPORTED_GROUPS]]
    return np.unique(ordered[starts[found]])


def split_hubs(
    keys: U64, bands: npt.NDArray[np.uint16], nodes: I64, limit: int
) -> tuple[U64, npt.NDArray[np.uint16], I64, tuple[tuple[int, int, int, int], ...]]:
    """Deal the groups larger than `limit` into sub-buckets (rows sorted by `sort_rows`); the rows out and every
    group `(band, key, rows, least node)`, largest first."""
    starts = group_starts(keys, bands)
    sizes = np.diff(np.append(starts, len(keys)))
    minima = np.minimum.reduceat(nodes, starts) if len(starts) else np.zeros(0, dtype=np.int64)
    order = np.argsort(-sizes, kind="stable")
    groups = tuple((int(bands[starts[g]]), int(keys[starts[g]]), int(sizes[g]), int(minima[g])) for g in order)
    big = np.flatnonzero(sizes > limit)
    if len(big) == 0:
        return keys, bands, nodes, groups
    keep = np.ones(len(keys), dtype=bool)
    extra_keys: list[U64] = []
    extra_bands: list[npt.NDArray[np.uint16]] = []
    extra_nodes: list[I64] = []
    for g in big.tolist():
        lo, hi = int(starts[g]), int(starts[g]) + int(sizes[g])
        keep[lo:hi] = False
        members = np.sort(nodes[lo:hi])
        n = min(MAX_SUB_BUCKETS, math.ceil(len(members) / limit))
        salts = np.arange(len(members), dtype=np.int64) % n
        salts = np.concatenate([salts, np.arange(1, n, dtype=np.int64)])  # the anchor into every sub-bucket
        members = np.concatenate([members, np.full(n - 1, members[0], dtype=np.int64)])
        extra_keys.append(salted(np.full(len(members), keys[lo], dtype=np.uint64), salts))
        extra_bands.append(np.full(len(members), bands[lo], dtype=np.uint16))
        extra_nodes.append(members)
    return (
        np.concatenate([keys[keep], *extra_keys]),
        np.concatenate([bands[keep], *extra_bands]),
        np.concatenate([nodes[keep], *extra_nodes]),
        groups,
    )


def member_rows(keys: U64, wanted: U64) -> npt.NDArray[np.bool_]:
    """Which rows hold one of the (sorted, few) `wanted` keys."""
    if len(wanted) == 0:
        return np.zeros(len(keys), dtype=bool)
    at = np.minimum(np.searchsorted(wanted, keys), len(wanted) - 1)
    return np.asarray(wanted[at] == keys)


def _shard_rows(plan: Plan, shard: int) -> tuple[U64, npt.NDArray[np.uint16], I64]:
    """The band rows of one shard's signature file."""
    url = plan.signature_url(shard)
    table = read_table(url, plan.storage_options, columns=[KEYS])
    if table.num_rows != plan.rows[shard]:
        msg = (
            f"{url} holds {table.num_rows:,} signatures, but phase A reported {plan.rows[shard]:,}; "
            "rerun the job so phase A rewrites the shard"
        )
        raise RuntimeError(msg)
    column = table[KEYS].combine_chunks()
    has_keys = np.asarray(column.is_valid().to_numpy(zero_copy_only=False), dtype=bool)
    width = column.type.list_size
    flat = column.filter(pa.array(has_keys)).flatten()
    keys = np.asarray(flat.to_numpy(zero_copy_only=False), dtype=np.uint64).reshape(-1, width)
    nodes = node_ids(shard, table.num_rows)[has_keys]
    return band_rows(keys, np.ones(len(keys), dtype=bool), nodes)


def map_bands(plan: Plan, task: int) -> MapResult:
    """Band rows of map task `task`'s shards, as one object of `P` segments; what it wrote."""
    parts = [_shard_rows(plan, shard) for shard in plan.map_shards(task) if plan.rows[shard]]
    url = plan.band_url(task)
    if parts:
        keys, bands, nodes = (np.concatenate(columns) for columns in zip(*parts, strict=True))
    else:
        keys, bands, nodes = np.zeros(0, np.uint64), np.zeros(0, np.uint16), np.zeros(0, np.int64)
    del parts
    # Only the rows of large local groups are grouped exactly (to report them, and deal the largest out).
    large = member_rows(keys, large_groups(keys, plan.report_rows))
    if large.any():
        subset = sort_rows(keys[large], bands[large], nodes[large])
        out_keys, out_bands, out_nodes, found = split_hubs(*subset, plan.split_rows)
        keep = ~large
        keys = np.concatenate([keys[keep], out_keys])
        bands = np.concatenate([bands[keep], out_bands])
        nodes = np.concatenate([nodes[keep], out_nodes])
        groups = found[:REPORTED_GROUPS]
    else:
        groups = ()
    partitions = top_partitions(keys, plan.partitions).astype(np.uint16)  # P <= 2^16: a radix sort
    order = np.argsort(partitions, kind="stable")
    table = pa.table({KEY: keys[order], BAND: bands[order], NODE: nodes[order]})
    bounds = np.searchsorted(partitions[order], np.arange(plan.partitions + 1))
    writer = SegmentWriter(url, plan.partitions, plan.storage_options)
    try:
        for p in np.flatnonzero(np.diff(bounds)).tolist():
            writer.write(p, table.slice(int(bounds[p]), int(bounds[p + 1] - bounds[p])))
        size = writer.close()
    except BaseException:
        writer.abort()
        raise
    return MapResult(url, size, table.num_rows, groups)


def predicted_hubs(results: Sequence[MapResult], heavy_degree: int) -> tuple[int, ...]:
    """Nodes predicted to be the centres of stars larger than `heavy_degree`: the least reported node of every
    `(band, key)` whose reported rows add up to more."""
    totals: dict[tuple[int, int], list[int]] = {}
    for result in results:
        for band, key, rows, least in result.groups:
            entry = totals.setdefault((band, key), [0, least])
            entry[0] += rows
            entry[1] = min(entry[1], least)
    return tuple(sorted({least for rows, least in totals.values() if rows > heavy_degree}))


# --------------------------------------------------------------------------------------------------
# Collisions


@dataclass(frozen=True)
class BandShuffle:
    """Where the map objects are (URLs, their index) and the hub centres predicted from them."""

    urls: tuple[str, ...]
    index: str
    heavy: tuple[int, ...]


@dataclass(frozen=True)
class CollisionResult:
    """One collisions object, the distinct edges it found (and their sketch: the same edge is found in several
    partitions, once per band), and what it reports of heavy and high-degree nodes."""

    url: str
    size: int
    edges: int
    rows: int
    report: HeavyReport
    sketch: tuple[int, ...]
    nodes: tuple[int, ...]


FINGERPRINT_BUCKETS = 4
"""Bits of the fingerprint that split `colliding_rows`' work (16 passes over a sixteenth of the rows each)."""


def colliding_rows(keys: U64) -> I64:
    """Rows that may share their key with another row (every row that does, a few that do not), ordered by key.

    Most keys are unique. This compares 32-bit fingerprints (the keys' low bits) a sixteenth of the rows at a
    time: 4 bytes per row plus a sort order over a sixteenth, never one over every row. Equal fingerprints of
    different keys (n^2 / 2^33 pairs) are resolved by the exact grouping of the rows it selects. The low bits,
    because the rows of one band partition share their keys' top `log2 P` bits: fingerprints taken from those
    would lose that many bits and fall into fewer buckets as `P` grows (at `P = 16`: one sort over every row
    and 16x the false candidates).
    """
    fingerprints = keys.astype(np.uint32)  # the low 32 bits
    buckets = (fingerprints >> np.uint32(32 - FINGERPRINT_BUCKETS)).astype(np.uint8)
    found = []
    for bucket in range(1 << FINGERPRINT_BUCKETS):
        rows = np.flatnonzero(buckets == bucket)
        mine = fingerprints[rows]
        order = np.argsort(mine)
        ordered = mine[order]
        equal = ordered[1:] == ordered[:-1]
        repeated = np.zeros(len(rows), dtype=bool)
        repeated[1:] |= equal
        repeated[:-1] |= equal
        found.append(rows[order[repeated]])
    return np.concatenate(found) if found else np.zeros(0, dtype=np.int64)


def collision_edges(keys: U64, bands: npt.NDArray[np.uint16], nodes: I64) -> tuple[I64, I64]:
    """Distinct edges `(u, v)`, `u < v`, sorted: each colliding `(band, key)` group as a star from its least node."""
    return _stars({KEY: keys, BAND: bands, NODE: nodes})


def _stars(rows: dict[str, npt.NDArray[Any]]) -> tuple[I64, I64]:
    """`collision_edges` of the arrays in `rows`, which it empties (the full arrays are freed before the groups
    of the colliding rows are formed)."""
    colliding = colliding_rows(rows[KEY]) if len(rows[KEY]) else np.zeros(0, dtype=np.int64)
    keys, bands, nodes = (rows.pop(name)[colliding] for name in (KEY, BAND, NODE))
    del colliding
    keys, bands, nodes = sort_rows(keys, bands, nodes)
    starts = group_starts(keys, bands)
    if len(starts) == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    sizes = np.diff(np.append(starts, len(keys)))
    centres = np.repeat(np.minimum.reduceat(nodes, starts), sizes)
    leaves = (np.repeat(sizes, sizes) >= 2) & (nodes != centres)
    return unique_edges(centres[leaves], nodes[leaves])


def find_edges(plan: Plan, shuffle: BandShuffle, heavy_degree: int, partition: int) -> CollisionResult:
    """Colliding band keys of one partition to star edges, written for the components; what it found."""
    rows = read_arrays(
        list(shuffle.urls),
        shuffle.index,
        partition,
        plan.partitions,
        plan.partitions,
        plan.storage_options,
        BAND_COLUMNS,
    )
    u, v = _stars(rows)
    count, sketch, nodes = len(u), edge_sketch(u, v), node_sketch(np.concatenate([u, v]))
    src, dst = merge_edges([u, v], [v, u])  # both directions, sorted as the components' reads merge them
    del u, v
    heavy = np.asarray(shuffle.heavy, dtype=np.int64)
    keys = route_keys(src, dst, heavy)
    report = heavy_report(src, dst, heavy, threshold=max(1, heavy_degree // (2 * plan.partitions)))
    url = plan.object_url("edges", "p", partition)
    size, _ = write_partitioned(url, edge_table(src, dst), keys, plan.edge_partitions, plan.storage_options)
    return CollisionResult(url, size, count, len(src), report, sketch, nodes)


__all__ = ["BAND", "DST", "KEY", "NODE", "SRC", "band_keys", "band_rows", "collision_edges", "find_edges", "map_bands"]
