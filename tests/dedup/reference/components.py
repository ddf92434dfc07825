"""Reference (frozen, see the package).

Connected components of the duplicate graph, labelled by the smallest node of each component.

Two implementations with the same result:

- `components_in_memory`: union by smallest root with pointer jumping, vectorised with NumPy; used when the
  whole edge list is small (`in_memory_max_edges`).
- `large_star` / `small_star`: one round of the alternating algorithm of Kiveris et al., "Connected Components
  in MapReduce and Beyond" (SoCC 2014). Each operates on the edges of one node partition (both directions of
  every edge, partitioned by the first node), so a task's memory is bounded by its partition, not the corpus.
  Alternating them converges in O(log^2 n) rounds to stars whose centres are the component minima; the driver
  (`engine.runner.dedup`) stores every step as Parquet, so each step is a resume point, and stops when a whole
  round leaves the edge set unchanged (compared through an order-independent digest, `edge_digest`).
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import polars as pl

from engine.dedup.minhash import mix64
from engine.io.parquet import write_table
from tests.dedup.reference.plan import DST, NODE, SRC, Plan, node_partitions, part_dir, read_folder, write_partitioned

LABEL = "label"
MAX_STEPS = 200
"""Components steps before giving up (large-star/small-star needs O(log^2 n) rounds)."""

I64 = npt.NDArray[np.int64]

EDGE_SCHEMA = {SRC: pl.Int64, DST: pl.Int64}
LABEL_SCHEMA = {NODE: pl.Int64, LABEL: pl.Int64}
_DIGEST_SALT = np.uint64(0x9E3779B97F4A7C15)


def empty_edges() -> pl.DataFrame:
    return pl.DataFrame(schema=EDGE_SCHEMA)


def both_directions(edges: pl.DataFrame) -> pl.DataFrame:
    """Every edge `(u, v)` also as `(v, u)`, distinct, without self loops."""
    swapped = edges.select(pl.col(DST).alias(SRC), pl.col(SRC).alias(DST))
    return pl.concat([edges.select(SRC, DST), swapped]).filter(pl.col(SRC) != pl.col(DST)).unique()


def edge_digest(edges: pl.DataFrame) -> tuple[int, int]:
    """`(count, digest)` of the canonical (`u < v`) distinct edges; digests of disjoint parts add up."""
    canonical = edges.filter(pl.col(SRC) < pl.col(DST))
    u = canonical[SRC].to_numpy().astype(np.uint64)
    v = canonical[DST].to_numpy().astype(np.uint64)
    mixed = mix64(mix64(u) * _DIGEST_SALT ^ v)
    return canonical.height, int(np.sum(mixed, dtype=np.uint64))


def large_star(edges: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Large-star on a partition holding every neighbour of its nodes.

    For each node `u` with neighbourhood `G(u)`, `m(u) = min(G(u) + {u})`; emits `(v, m(u))` for every
    neighbour `v > u`. Returns the emitted edges and the labels `(node, m(node))`.
    """
    minima = edges.group_by(SRC).agg(pl.col(DST).min().alias(LABEL))
    minima = minima.with_columns(pl.min_horizontal(SRC, LABEL).alias(LABEL))
    out = (
        edges.filter(pl.col(DST) > pl.col(SRC))
        .join(minima, on=SRC)
        .select(pl.col(DST).alias(SRC), pl.col(LABEL).alias(DST))
    )
    labels = minima.select(pl.col(SRC).alias(NODE), pl.col(LABEL))
    return out, labels


def small_star(edges: pl.DataFrame) -> pl.DataFrame:
    """Small-star on a partition holding every neighbour of its nodes.

    For each node `u`, `N = {v in G(u): v < u}` and `m = min(N + {u})`; emits `(v, m)` for every
    `v in N + {u}` other than `m`.
    """
    smaller = edges.filter(pl.col(DST) < pl.col(SRC))
    minima = smaller.group_by(SRC).agg(pl.col(DST).min().alias(LABEL))
    spokes = (
        smaller.join(minima, on=SRC)
        .filter(pl.col(DST) != pl.col(LABEL))
        .select(pl.col(DST).alias(SRC), pl.col(LABEL).alias(DST))
    )
    centres = minima.select(pl.col(SRC), pl.col(LABEL).alias(DST))
    return pl.concat([spokes, centres])


def components_in_memory(edges: pl.DataFrame) -> pl.DataFrame:
    """Labels `(node, label)` of every node of `edges`, label = smallest node of its component."""
    if edges.height == 0:
        return pl.DataFrame(schema=LABEL_SCHEMA)
    u_raw = edges[SRC].to_numpy()
    v_raw = edges[DST].to_numpy()
    nodes = np.unique(np.concatenate([u_raw, v_raw]))
    u = np.searchsorted(nodes, u_raw)
    v = np.searchsorted(nodes, v_raw)
    parent = np.arange(len(nodes), dtype=np.int64)
    while True:
        pu, pv = parent[u], parent[v]
        differ = pu != pv
        if not differ.any():
            break
        low = np.minimum(pu[differ], pv[differ])
        high = np.maximum(pu[differ], pv[differ])
        np.minimum.at(parent, high, low)  # hook the larger root under the smaller one
        while True:  # pointer jumping until every node points at its root
            jumped = parent[parent]
            if np.array_equal(jumped, parent):
                break
            parent = jumped
    return pl.DataFrame({NODE: nodes, LABEL: nodes[parent]}, schema=LABEL_SCHEMA)


# Tasks: one per partition, reading and writing edges through storage.


def write_edges(plan: Plan, edges: pl.DataFrame, step: int, source: int) -> None:
    partitions = node_partitions(edges[SRC].to_numpy(), plan.partitions)
    write_partitioned(plan, edges, partitions, plan.url("cc", f"step-{step:05d}"), f"from={source:05d}")


def components_task(plan: Plan, partition: int) -> int:
    """Connected components of the whole (small) graph in one task; labels written by node partition."""
    del partition
    edges = read_folder(plan, plan.url("cc", "step-00000"), EDGE_SCHEMA)
    labels = components_in_memory(edges.filter(pl.col(SRC) < pl.col(DST)))
    partitions = node_partitions(labels[NODE].to_numpy(), plan.partitions)
    write_partitioned(plan, labels, partitions, plan.url("cc", "labels-memory"), "labels")
    return labels.height


def star_task(plan: Plan, step: int, partition: int) -> tuple[int, int]:
    """One large-star (even steps) or small-star (odd steps) task; `(edges, digest)` of its input."""
    edges = read_folder(plan, plan.url("cc", f"step-{step:05d}", part_dir(partition)), EDGE_SCHEMA).unique()
    count, digest = edge_digest(edges)
    if step % 2 == 0:
        out, labels = large_star(edges)
        url = plan.url("cc", f"labels-{step:05d}", part_dir(partition), "labels.parquet")
        write_table(labels.to_arrow(), url, plan.storage_options, compression=plan.compression)
    else:
        out = small_star(edges)
    write_edges(plan, both_directions(out), step + 1, partition)
    return count, digest
