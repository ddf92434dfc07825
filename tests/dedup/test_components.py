from __future__ import annotations

import numpy as np
import polars as pl
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.dedup.components import (
    LABEL,
    both_directions,
    components_in_memory,
    edge_digest,
    large_star,
    small_star,
)
from engine.dedup.plan import DST, NODE, SRC, node_partitions

edge_lists = st.lists(st.tuples(st.integers(0, 40), st.integers(0, 40)), max_size=80)


def union_find(edges: list[tuple[int, int]]) -> dict[int, int]:
    parent: dict[int, int] = {}

    def root(x: int) -> int:
        parent.setdefault(x, x)
        while parent[x] != x:
            x = parent[x]
        return x

    for a, b in edges:
        ra, rb = root(a), root(b)
        if ra != rb:
            parent[max(ra, rb)] = min(ra, rb)
    return {x: root(x) for x in parent}


def frame(edges: list[tuple[int, int]]) -> pl.DataFrame:
    return pl.DataFrame({SRC: [a for a, _ in edges], DST: [b for _, b in edges]}, schema={SRC: pl.Int64, DST: pl.Int64})


def star_rounds(edges: pl.DataFrame, partitions: int) -> dict[int, int]:
    """The distributed algorithm, run partition by partition in this process."""

    def by_partition(directed: pl.DataFrame) -> list[pl.DataFrame]:
        parts = node_partitions(directed[SRC].to_numpy(), partitions)
        return [directed.filter(pl.Series(parts == p)) for p in range(partitions)]

    current = by_partition(both_directions(edges))
    previous_digest = None
    for step in range(200):
        digest = sum(edge_digest(part.unique())[1] for part in current) % 2**64
        if step % 2 == 0 and digest == previous_digest:
            labels = pl.concat([large_star(part.unique())[1] for part in current])
            return dict(zip(labels[NODE].to_list(), labels[LABEL].to_list(), strict=True))
        if step % 2 == 0:
            previous_digest = digest
            outputs = [large_star(part.unique())[0] for part in current]
        else:
            outputs = [small_star(part.unique()) for part in current]
        current = by_partition(both_directions(pl.concat(outputs)))
    msg = "no convergence"
    raise AssertionError(msg)


@settings(max_examples=150, deadline=None)
@given(edge_lists)
def test_in_memory_components_match_union_find(edges: list[tuple[int, int]]) -> None:
    edges = [(a, b) for a, b in edges if a != b]
    labels = components_in_memory(frame(edges))
    assert dict(zip(labels[NODE].to_list(), labels[LABEL].to_list(), strict=True)) == union_find(edges)


@settings(max_examples=100, deadline=None)
@given(edge_lists, st.integers(1, 4))
def test_star_rounds_match_union_find_with_any_partition_count(edges: list[tuple[int, int]], partitions: int) -> None:
    edges = [(a, b) for a, b in edges if a != b]
    assert star_rounds(frame(edges), partitions) == union_find(edges)


def test_long_chain_converges_to_its_minimum() -> None:
    rng = np.random.default_rng(1)
    order = rng.permutation(2000)
    edges = [(int(order[i]), int(order[i + 1])) for i in range(1999)]
    labels = star_rounds(frame(edges), 3)
    assert set(labels.values()) == {0}
    assert len(labels) == 2000


def test_edge_digest_ignores_order_and_direction() -> None:
    a = both_directions(frame([(1, 2), (3, 4)]))
    b = both_directions(frame([(4, 3), (2, 1)]))
    assert edge_digest(a) == edge_digest(b)
    assert edge_digest(a) != edge_digest(both_directions(frame([(1, 2), (3, 5)])))
