"""Connected components of the duplicate graph, labelled by the smallest node of each component.

Two implementations with the same result:

- `components_in_memory`: union by smallest root with pointer jumping, vectorised with NumPy; used when the
  whole edge list is small (`in_memory_max_edges`).
- `large_star` / `small_star`: one round of the alternating algorithm of Kiveris et al., "Connected Components
  in MapReduce and Beyond" (SoCC 2014), on the edges of one node partition (both directions of every edge, by
  source node). Alternating them converges in O(log^2 n) steps to stars whose centres are the component minima;
  the driver (`engine.runner.dedup`) stores every step's output as segmented objects (`Q` segments by the top bits
  of `mix64(source)`), so each step is a resume point, and stops when a whole round leaves the edge set unchanged
  (compared through an order-independent digest, `edge_digest`). Large-star steps also write every node's label,
  by shard group (the members phase reads its group's labels with one ranged GET per object).

Heavy nodes (a page copied a million times makes a star whose centre has a million edges): a step's producers
spread the rows leaving a node of the step's heavy set by `mix64(mix64(u) XOR mix64(v))` instead of `mix64(u)`, so
no task holds all of them, and report each heavy node's least neighbour over the rows they wrote. The index task
merges these into the heavy table the consumers read first: for a heavy node, large-star's `min(N(u) + {u})` and
small-star's `min({v in N(u): v < u} + {u})` are that global minimum, so every portion of the node emits exactly
what the whole node would. The heavy set is fixed before a step runs (every producer routes the same way): the
previous set, the minima of its nodes (the centres their edges move to), and every node whose reported degree in
the step's input exceeded the threshold (found one step late). The collisions' heavy set is predicted from the
map tasks' largest groups (`engine.dedup.shuffle`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import pyarrow as pa

from engine.dedup.minhash import mix64
from engine.dedup.plan import DST, NODE, ROW_BITS, SRC, Graph, Plan, node_keys
from engine.io.segments import (
    gather_index,
    read_partition,
    write_grouped,
    write_partitioned,
)

LABEL = "label"
MAX_STEPS = 200
"""Components steps before giving up (large-star/small-star needs O(log^2 n) rounds)."""

I64 = npt.NDArray[np.int64]
U64 = npt.NDArray[np.uint64]

EDGE_COLUMNS: dict[str, npt.DTypeLike] = {SRC: np.int64, DST: np.int64}
LABEL_COLUMNS: dict[str, npt.DTypeLike] = {NODE: np.int64, LABEL: np.int64}
_DIGEST_SALT = np.uint64(0x9E3779B97F4A7C15)
_MIX1 = np.uint64(0xBF58476D1CE4E5B9)  # SplitMix64's finaliser constants (as mix64), for the in-place pair hash
_MIX2 = np.uint64(0x94D049BB133111EB)
_EMPTY = np.zeros(0, dtype=np.int64)


# --------------------------------------------------------------------------------------------------
# Edge arrays


def pair_hashes(u: I64, v: I64) -> U64:
    """A 64-bit hash of each pair `(u, v)`, every bit depending on both (`merge_edges` orders a node's pairs by the
    top bits), computed in place (one array and one temporary)."""
    out = u.astype(np.uint64)
    scratch = np.empty_like(out)

    def finalise() -> None:  # SplitMix64's finaliser (as mix64), in place
        for shift, factor in ((30, _MIX1), (27, _MIX2)):
            np.right_shift(out, np.uint64(shift), out=scratch)
            np.bitwise_xor(out, scratch, out=out)
            np.multiply(out, factor, out=out)
        np.right_shift(out, np.uint64(31), out=scratch)
        np.bitwise_xor(out, scratch, out=out)

    finalise()
    np.multiply(out, _DIGEST_SALT, out=out)
    np.bitwise_xor(out, v.view(np.uint64), out=out)
    finalise()
    return out


def unique_edges(u: I64, v: I64) -> tuple[I64, I64]:
    """Distinct `(u, v)` pairs, sorted by `u` (the pairs of one `u` in an order fixed by their hashes).

    Two single-key sorts (by a hash of the pair, then by `u`) instead of a two-key sort: equal pairs are adjacent
    after the first and compared exactly. (Two different pairs with equal 64-bit hashes, 2^-64 per pair, may
    leave a duplicate row behind, which changes no result.) Memory: the pairs, one order and one column at a time.
    """
    if len(u) == 0:
        return u.astype(np.int64), v.astype(np.int64)
    order = np.argsort(pair_hashes(u, v))
    u = u[order]
    v = v[order]
    del order
    first = np.ones(len(u), dtype=bool)
    first[1:] = (u[1:] != u[:-1]) | (v[1:] != v[:-1])
    u = u[first]
    v = v[first]
    del first
    order = np.argsort(u, kind="stable")
    u = u[order]
    v = v[order]
    return u, v


def merge_edges(us: list[I64], vs: list[I64]) -> tuple[I64, I64]:
    """Distinct edges of several parts, sorted by source (exact for any parts); empties the lists it is given.

    Fast when each part is sorted as `unique_edges` leaves edges (by source, then `pair_hashes`), which every
    edge object's segments are: two stable sorts (timsort, which finds the parts' runs and merges them) instead of
    the two full sorts of `unique_edges`. First by source; then by `(source rank, top 32 bits of the pair hash)`,
    which each source's rows from one part already follow, so equal pairs become adjacent. Pairs of one source
    whose hashes share their top 32 bits (rare) are ordered by target before duplicates are dropped. Memory: the
    rows and about three more 8-byte columns (the parts are released once concatenated, columns gathered one by one).
    """
    u = us[0] if len(us) == 1 else np.concatenate(us)
    v = vs[0] if len(vs) == 1 else np.concatenate(vs)
    us.clear()
    vs.clear()
    if len(u) == 0:
        return u.astype(np.int64), v.astype(np.int64)
    order = np.argsort(u, kind="stable")
    u = u[order]
    v = v[order]
    del order
    new = np.empty(len(u), dtype=bool)
    new[0] = True
    np.not_equal(u[1:], u[:-1], out=new[1:])
    key = np.cumsum(new, dtype=np.uint64)  # the source's rank (from 1)
    del new
    if int(key[-1]) >= 1 << 32:  # more distinct sources than a task could hold: the general sort
        return unique_edges(u, v)
    np.left_shift(key, np.uint64(32), out=key)
    hashes = pair_hashes(u, v)
    np.right_shift(hashes, np.uint64(32), out=hashes)
    np.bitwise_or(key, hashes, out=key)
    del hashes
    order = np.argsort(key, kind="stable")
    u = u[order]
    v = v[order]
    key = key[order]
    del order
    same = key[1:] == key[:-1]
    del key
    differ = v[1:] != v[:-1]
    if (same & differ).any():  # a source's pairs with equal top hash bits: order them by target
        group = np.concatenate([[0], np.cumsum(~same)])
        rows = np.flatnonzero(np.isin(group, group[1:][same & differ]))
        v[rows] = v[rows[np.lexsort((v[rows], group[rows]))]]
        differ = v[1:] != v[:-1]
    first = np.ones(len(u), dtype=bool)
    first[1:] = ~same | differ
    del same, differ
    return u[first], v[first]


def both_directions(u: I64, v: I64) -> tuple[I64, I64]:
    """Every edge `(u, v)` also as `(v, u)`, distinct, without self loops, sorted by source."""
    kept = u != v
    src = np.concatenate([u[kept], v[kept]])
    dst = np.concatenate([v[kept], u[kept]])
    del kept
    return unique_edges(src, dst)


def edge_digest(u: I64, v: I64) -> tuple[int, int]:
    """`(count, digest)` of the canonical (`u < v`) edges of distinct rows; digests of disjoint parts add up."""
    canonical = u < v
    mixed = pair_hashes(u[canonical], v[canonical])
    return int(canonical.sum()), int(np.sum(mix64(mixed), dtype=np.uint64))


SKETCH_SIZE = 512
"""Hashes kept by an edge-count sketch (k minimum values: about 4% error, exact below this many edges)."""


def edge_sketch(u: I64, v: I64) -> tuple[int, ...]:
    """The `SKETCH_SIZE` smallest distinct hashes of the edges `(u, v)`: sketches of several sets merge into the
    sketch of their union, so the distinct edges found by all collisions tasks are counted without moving them."""
    return sketch(mix64(pair_hashes(u, v)))


def node_sketch(nodes: I64) -> tuple[int, ...]:
    """`edge_sketch` of a set of nodes (to count the documents in clusters)."""
    return sketch(mix64(nodes.astype(np.uint64) ^ _DIGEST_SALT))


def sketch(hashes: U64) -> tuple[int, ...]:
    """The `SKETCH_SIZE` smallest distinct values of `hashes` (uniform 64-bit hashes)."""
    take = 4 * SKETCH_SIZE
    while take < len(hashes):  # linear time: only the smallest few are sorted
        smallest = np.unique(np.partition(hashes, take)[:take])
        if len(smallest) >= SKETCH_SIZE:  # a value repeated many times (a hub's node) can crowd the others out
            return tuple(int(h) for h in smallest[:SKETCH_SIZE])
        take *= 4
    return tuple(int(h) for h in np.unique(hashes)[:SKETCH_SIZE])


def sketch_count(sketches: Sequence[tuple[int, ...]]) -> int:
    """Distinct edges in the union of the sketched sets (exact when fewer than `SKETCH_SIZE`)."""
    merged = sorted(set().union(*sketches)) if sketches else []
    if len(merged) < SKETCH_SIZE:
        return len(merged)
    kth = merged[SKETCH_SIZE - 1]
    return int((SKETCH_SIZE - 1) * 2.0**64 / (kth + 1))


def runs(sorted_nodes: I64) -> tuple[I64, I64]:
    """Start and length of each run of equal values."""
    if len(sorted_nodes) == 0:
        return _EMPTY, _EMPTY
    starts = np.concatenate([[0], np.flatnonzero(sorted_nodes[1:] != sorted_nodes[:-1]) + 1]).astype(np.int64)
    return starts, np.diff(np.append(starts, len(sorted_nodes)))


# --------------------------------------------------------------------------------------------------
# Heavy nodes


@dataclass(frozen=True)
class HeavyTable:
    """The heavy nodes of one edge set (sorted) and each one's `min(N(u) + {u})` over the whole edge set."""

    nodes: tuple[int, ...] = ()
    minima: tuple[int, ...] = ()

    def arrays(self) -> tuple[I64, I64]:
        return np.asarray(self.nodes, dtype=np.int64), np.asarray(self.minima, dtype=np.int64)


@dataclass(frozen=True)
class HeavyReport:
    """What one producer saw: the least target of each heavy source it wrote, and high-degree sources."""

    minima: tuple[tuple[int, int], ...] = ()
    degrees: tuple[tuple[int, int], ...] = ()


def route_keys(src: I64, dst: I64, heavy: I64) -> U64:
    """Partitioning key of each edge row: `mix64(src)`, or mixed with the target when `src` is heavy."""
    keys = node_keys(src)
    if len(heavy) and len(src):
        spread = np.isin(src, heavy)
        keys[spread] = mix64(keys[spread] ^ node_keys(dst[spread]))
    return keys


def heavy_report(src: I64, dst: I64, heavy: I64, *, threshold: int) -> HeavyReport:
    """The least target of every heavy source in `src`, and the sources with at least `threshold` rows."""
    minima: tuple[tuple[int, int], ...] = ()
    if len(heavy) and len(src):
        spread = np.isin(src, heavy)
        if spread.any():
            order = np.argsort(src[spread], kind="stable")
            s, d = src[spread][order], dst[spread][order]
            starts, _ = runs(s)
            minima = tuple(zip(s[starts].tolist(), np.minimum.reduceat(d, starts).tolist(), strict=True))
    ordered = src if is_sorted(src) else np.sort(src)
    starts, counts = runs(ordered)
    high = counts >= threshold
    return HeavyReport(minima, tuple(zip(ordered[starts[high]].tolist(), counts[high].tolist(), strict=True)))


def is_sorted(values: I64) -> bool:
    return bool(len(values) < 2 or (values[1:] >= values[:-1]).all())


def merge_reports(
    reports: Sequence[HeavyReport], heavy: Sequence[int], heavy_degree: int
) -> tuple[HeavyTable, tuple[int, ...]]:
    """The heavy table of an edge set written with heavy set `heavy`, and the heavy set of the next step.

    The next set keeps `heavy`, adds each heavy node's minimum (the centre its edges move to) and every node whose
    reported degree exceeds `heavy_degree`.
    """
    least = {int(u): int(u) for u in heavy}
    degree: dict[int, int] = {}
    for report in reports:
        for u, m in report.minima:
            least[u] = min(least.get(u, u), m)
        for u, n in report.degrees:
            degree[u] = degree.get(u, 0) + n
    table = HeavyTable(tuple(sorted(least)), tuple(least[u] for u in sorted(least)))
    following = set(least) | {min(u, m) for u, m in least.items()} | {u for u, n in degree.items() if n > heavy_degree}
    return table, tuple(sorted(following))


def _minima_with(nodes: I64, local: I64, table: HeavyTable) -> I64:
    """`local` minima of `nodes`, replaced by the global minimum for heavy nodes."""
    heavy, minima = table.arrays()
    if len(heavy) == 0 or len(nodes) == 0:
        return local
    at = np.minimum(np.searchsorted(heavy, nodes), len(heavy) - 1)
    hit = heavy[at] == nodes
    out = local.copy()
    out[hit] = np.minimum(nodes[hit], minima[at[hit]])
    return out


# --------------------------------------------------------------------------------------------------
# The two star operations, on one partition (every row leaving a light node is here; heavy nodes use the table)


def large_star(u: I64, v: I64, table: HeavyTable | None = None) -> tuple[I64, I64, I64, I64]:
    """Large-star on distinct edges sorted by source.

    For each node `u` with neighbourhood `N(u)`, `m(u) = min(N(u) + {u})`; emits `(v, m(u))` for every
    neighbour `v > u`. Returns the emitted edges and the labels `(node, m(node))`.
    """
    starts, sizes = runs(u)
    if len(starts) == 0:
        return _EMPTY, _EMPTY, _EMPTY, _EMPTY
    nodes = u[starts]
    minima = np.minimum(np.minimum.reduceat(v, starts), nodes)
    minima = _minima_with(nodes, minima, table or HeavyTable())
    per_row = np.repeat(minima, sizes)
    larger = v > u
    return v[larger], per_row[larger], nodes, minima


def small_star(u: I64, v: I64, table: HeavyTable | None = None) -> tuple[I64, I64]:
    """Small-star on distinct edges sorted by source.

    For each node `u`, `N = {v in N(u): v < u}` and `m = min(N + {u})`; emits `(v, m)` for every `v in N + {u}`
    other than `m`.
    """
    smaller = v < u
    su, sv = u[smaller], v[smaller]
    starts, sizes = runs(su)
    if len(starts) == 0:
        return _EMPTY, _EMPTY
    nodes = su[starts]
    minima = _minima_with(nodes, np.minimum.reduceat(sv, starts), table or HeavyTable())
    per_row = np.repeat(minima, sizes)
    spokes = sv != per_row
    return np.concatenate([sv[spokes], nodes]), np.concatenate([per_row[spokes], minima])


def components_in_memory(u: I64, v: I64) -> tuple[I64, I64]:
    """Labels `(nodes, labels)` of every node of the edges, label = smallest node of its component."""
    if len(u) == 0:
        return _EMPTY, _EMPTY
    nodes = np.unique(np.concatenate([u, v]))
    a = np.searchsorted(nodes, u)
    b = np.searchsorted(nodes, v)
    parent = np.arange(len(nodes), dtype=np.int64)
    while True:
        pa_, pb = parent[a], parent[b]
        differ = pa_ != pb
        if not differ.any():
            break
        low = np.minimum(pa_[differ], pb[differ])
        high = np.maximum(pa_[differ], pb[differ])
        np.minimum.at(parent, high, low)  # hook the larger root under the smaller one
        while True:  # pointer jumping until every node points at its root
            jumped = parent[parent]
            if np.array_equal(jumped, parent):
                break
            parent = jumped
    return nodes, nodes[parent]


# --------------------------------------------------------------------------------------------------
# Tasks


@dataclass(frozen=True)
class EdgeSource:
    """The objects holding a step's input edges: URLs, their index, how finely they are partitioned, the heavy
    table of the nodes their producers spread, and the heavy set the step spreads in its own output."""

    urls: tuple[str, ...]
    index: str
    partitions: int
    heavy: HeavyTable
    next_heavy: tuple[int, ...] = ()
    sorted_runs: bool = False
    """Each producer wrote distinct rows, sorted by source within each segment (every writer of edges does now;
    `read_edges` no longer needs to be told)."""


@dataclass(frozen=True)
class StepResult:
    """One components task: its output objects (edges; labels on large-star steps) and its input's digest."""

    url: str
    size: int
    labels_url: str | None
    labels_size: int
    count: int
    digest: int
    report: HeavyReport


def edge_table(src: I64, dst: I64) -> pa.Table:
    return pa.table({SRC: pa.array(src, type=pa.int64()), DST: pa.array(dst, type=pa.int64())})


def read_edges(plan: Plan, graph: Graph, source: EdgeSource, partition: int, partitions: int) -> tuple[I64, I64]:
    """Distinct edges of one partition of the graph (of `partitions`), sorted by source.

    Every segment holds distinct rows sorted as `unique_edges` leaves them, but several producers may hold the same
    edge (the collisions find an edge once in each band's partition, up to one copy per band; star steps emit an
    edge from several nodes), so segments are merged as they arrive (`merge_edges`, which merges sorted runs):
    a task holds about twice its distinct edges, not every copy. One segment sorted by source is used as it is.
    """
    heavy, _ = source.heavy.arrays()

    def route(table: pa.Table) -> U64:
        return route_keys(table[SRC].to_numpy(), table[DST].to_numpy(), heavy)

    where = (list(source.urls), source.index, partition, partitions, source.partitions, plan.storage_options)
    kept_u, kept_v = _EMPTY, _EMPTY
    us: list[I64] = []
    vs: list[I64] = []
    waiting = 0
    for table in read_partition(*where, route=route):
        us.append(np.asarray(table[SRC].to_numpy(), dtype=np.int64))
        vs.append(np.asarray(table[DST].to_numpy(), dtype=np.int64))
        waiting += table.num_rows
        del table
        if waiting > max(len(kept_u), 1 << 20):
            us.insert(0, kept_u)
            vs.insert(0, kept_v)
            kept_u = kept_v = _EMPTY  # held by the lists only, which merge_edges empties
            kept_u, kept_v = merge_edges(us, vs)
            waiting = 0
    if not us:
        return kept_u, kept_v
    if not len(kept_u) and len(us) == 1 and is_sorted(us[0]):
        return us[0], vs[0]  # one producer's segment: distinct and sorted already
    us.insert(0, kept_u)
    vs.insert(0, kept_v)
    del kept_u, kept_v
    return merge_edges(us, vs)


def write_labels(plan: Plan, url: str, nodes: I64, labels: I64) -> int:
    """Labels by shard group (shard `s` in group `s mod G`), one object; its size."""
    groups = (nodes >> ROW_BITS) % plan.groups
    table = pa.table({NODE: pa.array(nodes, type=pa.int64()), LABEL: pa.array(labels, type=pa.int64())})
    size, _ = write_grouped(url, table, groups.astype(np.int64), plan.groups, plan.storage_options)
    return size


def components_task(plan: Plan, graph: Graph, source: EdgeSource, task: int) -> tuple[str, int, int]:
    """Connected components of the whole (small) graph in one task; its labels object, size and nodes labelled."""
    u, v = read_edges(plan, graph, source, 0, 1)
    canonical = u < v
    nodes, labels = components_in_memory(u[canonical], v[canonical])
    url = plan.object_url("cc/labels-memory", "q", task)
    return url, write_labels(plan, url, nodes, labels), len(nodes)


def star_task(plan: Plan, graph: Graph, step: int, source: EdgeSource, partition: int) -> StepResult:
    """One large-star (even steps) or small-star (odd steps) task; its outputs and its input's digest."""
    u, v = read_edges(plan, graph, source, partition, graph.partitions)
    count, digest = edge_digest(u, v)
    labels_url, labels_size = None, 0
    if step % 2 == 0:
        out_u, out_v, nodes, labels = large_star(u, v, source.heavy)
        del u, v
        labels_url = plan.object_url(f"cc/labels-{step:05d}", "q", partition)
        labels_size = write_labels(plan, labels_url, nodes, labels)
        del nodes, labels
    else:
        out_u, out_v = small_star(u, v, source.heavy)
        del u, v
    src, dst = both_directions(out_u, out_v)
    del out_u, out_v
    heavy = np.asarray(source.next_heavy, dtype=np.int64)
    keys = route_keys(src, dst, heavy)
    report = heavy_report(src, dst, heavy, threshold=max(1, graph.heavy_degree // (2 * graph.partitions)))
    url = plan.object_url(f"cc/step-{step + 1:05d}", "q", partition)
    size, _ = write_partitioned(url, edge_table(src, dst), keys, graph.partitions, plan.storage_options)
    return StepResult(url, size, labels_url, labels_size, count, digest, report)


@dataclass(frozen=True)
class EdgeObjects:
    """The objects one step (or the collisions) wrote, with what their producers reported, to be indexed."""

    urls: tuple[str, ...]
    sizes: tuple[int, ...]
    partitions: int
    index: str
    reports: tuple[HeavyReport, ...]
    heavy: tuple[int, ...]


def index_edges(plan: Plan, graph: Graph, objects: EdgeObjects, task: int) -> tuple[HeavyTable, tuple[int, ...]]:
    """The index task of an edge set: gathers the footers into its index; its heavy table and the next heavy set."""
    del task
    gather_index(list(objects.urls), list(objects.sizes), objects.partitions, objects.index, plan.storage_options)
    return merge_reports(objects.reports, objects.heavy, graph.heavy_degree)
