from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.dedup.components import (
    HeavyReport,
    HeavyTable,
    both_directions,
    components_in_memory,
    edge_digest,
    edge_sketch,
    heavy_report,
    large_star,
    merge_edges,
    merge_reports,
    node_sketch,
    pair_hashes,
    route_keys,
    sketch_count,
    small_star,
    unique_edges,
)
from engine.dedup.minhash import mix64
from engine.io.segments import top_partitions

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


def arrays(edges: list[tuple[int, int]]) -> tuple[np.ndarray, np.ndarray]:
    return np.array([a for a, _ in edges], dtype=np.int64), np.array([b for _, b in edges], dtype=np.int64)


class Rounds:
    """The distributed algorithm as the driver runs it, partition by partition in this process: every step's
    output routed by `route_keys` with the step's heavy set, heavy tables merged from the producers' reports."""

    def __init__(self, partitions: int, heavy_degree: int) -> None:
        self.partitions, self.heavy_degree = partitions, heavy_degree
        self.largest_input = 0

    def route(self, producers: list[tuple[np.ndarray, np.ndarray]], heavy: tuple[int, ...]) -> tuple:
        """Producers' outputs to partitions; the heavy table of the result and the next heavy set."""
        heavy_array = np.asarray(heavy, dtype=np.int64)
        parts: list[list[tuple[np.ndarray, np.ndarray]]] = [[] for _ in range(self.partitions)]
        reports = []
        for u, v in producers:
            src, dst = both_directions(u, v)
            where = top_partitions(route_keys(src, dst, heavy_array), self.partitions)
            for p in range(self.partitions):
                parts[p].append((src[where == p], dst[where == p]))
            reports.append(heavy_report(src, dst, heavy_array, threshold=1))
        table, following = merge_reports(reports, heavy, self.heavy_degree)
        inputs = [unique_edges(np.concatenate([u for u, _ in p]), np.concatenate([v for _, v in p])) for p in parts]
        self.largest_input = max(self.largest_input, *(len(u) for u, _ in inputs))
        return inputs, table, following

    def labels(self, u: np.ndarray, v: np.ndarray, heavy: tuple[int, ...] = ()) -> dict[int, int]:
        chunks = [(u[i::3], v[i::3]) for i in range(3)]  # three collisions tasks
        inputs, table, following = self.route(chunks, heavy)
        digests: dict[int, int] = {}
        labels: dict[int, dict[int, int]] = {}
        for step in range(200):
            digests[step] = sum(edge_digest(a, b)[1] for a, b in inputs) % 2**64
            outputs = []
            if step % 2 == 0:
                labels[step] = {}
                for a, b in inputs:
                    out_u, out_v, nodes, minima = large_star(a, b, table)
                    labels[step].update(zip(nodes.tolist(), minima.tolist(), strict=True))
                    outputs.append((out_u, out_v))
                if step >= 2 and digests[step] == digests[step - 2]:
                    return labels[step]
            else:
                outputs = [small_star(a, b, table) for a, b in inputs]
            inputs, table, following = self.route(outputs, following)
        msg = "no convergence"
        raise AssertionError(msg)


@settings(max_examples=150, deadline=None)
@given(edge_lists)
def test_in_memory_components_match_union_find(edges: list[tuple[int, int]]) -> None:
    edges = [(a, b) for a, b in edges if a != b]
    nodes, labels = components_in_memory(*arrays(edges))
    assert dict(zip(nodes.tolist(), labels.tolist(), strict=True)) == union_find(edges)


@settings(max_examples=100, deadline=None)
@given(edge_lists, st.integers(0, 3))
def test_star_rounds_match_union_find_with_any_partition_count(edges: list[tuple[int, int]], bits: int) -> None:
    edges = [(a, b) for a, b in edges if a != b]
    assert Rounds(2**bits, heavy_degree=10**9).labels(*arrays(edges)) == union_find(edges)


@settings(max_examples=100, deadline=None)
@given(edge_lists, st.integers(1, 3), st.sets(st.integers(0, 40), max_size=8), st.integers(1, 6))
def test_star_rounds_with_heavy_nodes_spread_match_union_find(
    edges: list[tuple[int, int]], bits: int, heavy: set[int], degree: int
) -> None:
    """Any heavy set, any threshold: spreading heavy nodes' edges never changes the components."""
    edges = [(a, b) for a, b in edges if a != b]
    rounds = Rounds(2**bits, heavy_degree=degree)
    assert rounds.labels(*arrays(edges), heavy=tuple(sorted(heavy))) == union_find(edges)


def test_a_hub_is_spread_over_partitions() -> None:
    """A star of 20,000 copies plus small clusters: with the hub's centre heavy no partition holds it all."""
    rng = np.random.default_rng(3)
    hub = [(5, int(x)) for x in rng.permutation(np.arange(1000, 21000))]
    pairs = [(int(a), int(a) + 1) for a in range(30000, 40000, 2)]
    u, v = arrays(hub + pairs)
    plain, spread = Rounds(8, heavy_degree=10**9), Rounds(8, heavy_degree=2000)
    expected = union_find(hub + pairs)
    assert plain.labels(u, v) == expected
    assert spread.labels(u, v, heavy=(5,)) == expected
    total = 2 * (len(hub) + len(pairs))
    assert plain.largest_input > 20000  # the centre's partition holds the whole hub
    assert spread.largest_input < 1.3 * total / 8


def test_a_hub_formed_during_the_rounds_is_found_and_spread() -> None:
    """A chain of stars whose centres merge into one: the new centre's degree is reported, and it is spread."""
    edges = [(c, c + 1 + i) for c in range(0, 40000, 400) for i in range(399)]  # 100 stars of 400
    edges += [(c, c + 400) for c in range(0, 39600, 400)]  # their centres in a chain: one component
    rounds = Rounds(8, heavy_degree=1000)
    assert rounds.labels(*arrays(edges)) == union_find(edges)
    assert rounds.largest_input < 0.5 * 2 * len(edges)


def test_large_and_small_star_use_the_heavy_minimum() -> None:
    u, v = unique_edges(np.array([10, 10], dtype=np.int64), np.array([20, 30], dtype=np.int64))
    table = HeavyTable((10,), (3,))  # node 10's least neighbour, held by another partition, is 3
    out_u, out_v, nodes, minima = large_star(u, v, table)
    assert sorted(zip(out_u.tolist(), out_v.tolist(), strict=True)) == [(20, 3), (30, 3)]
    assert (nodes.tolist(), minima.tolist()) == ([10], [3])
    assert large_star(u, v)[3].tolist() == [10]  # without the table: its local minimum
    a, b = unique_edges(np.array([50, 50], dtype=np.int64), np.array([20, 40], dtype=np.int64))
    spokes_u, spokes_v = small_star(a, b, HeavyTable((50,), (7,)))
    assert sorted(zip(spokes_u.tolist(), spokes_v.tolist(), strict=True)) == [(20, 7), (40, 7), (50, 7)]


def test_merge_reports_adds_minima_and_high_degrees() -> None:
    reports = [HeavyReport(((10, 40),), ((99, 700),)), HeavyReport(((10, 4),), ((99, 400), (5, 3)))]
    table, following = merge_reports(reports, (10, 11), heavy_degree=1000)
    assert table == HeavyTable((10, 11), (4, 11))  # min(N(u) + {u}): 11 wrote no row
    assert following == (4, 10, 11, 99)


def test_edge_digest_ignores_order_and_direction() -> None:
    a = both_directions(*arrays([(1, 2), (3, 4)]))
    b = both_directions(*arrays([(4, 3), (2, 1)]))
    assert edge_digest(*a) == edge_digest(*b)
    assert edge_digest(*a) != edge_digest(*both_directions(*arrays([(1, 2), (3, 5)])))


def test_long_chain_converges_to_its_minimum() -> None:
    rng = np.random.default_rng(1)
    order = rng.permutation(2000)
    edges = [(int(order[i]), int(order[i + 1])) for i in range(1999)]
    labels = Rounds(4, heavy_degree=10**9).labels(*arrays(edges))
    assert set(labels.values()) == {0}
    assert len(labels) == 2000


def test_edge_sketches_count_distinct_edges_of_a_union() -> None:
    rng = np.random.default_rng(4)
    u = rng.integers(0, 10**6, size=200_000)
    v = u + rng.integers(1, 50, size=200_000)
    distinct = len(set(zip(u.tolist(), v.tolist(), strict=True)))
    parts = [edge_sketch(u[i::5], v[i::5]) for i in range(5)]
    parts.append(edge_sketch(u[:50_000], v[:50_000]))  # the same edges found again (another band)
    assert abs(sketch_count(parts) - distinct) < 0.1 * distinct
    small = edge_sketch(np.array([1, 1, 2]), np.array([2, 2, 3]))
    assert sketch_count([small, small]) == 2


def test_node_sketch_counts_nodes_a_hub_repeats_a_million_times() -> None:
    """A node repeated far more often than the sketch holds (a hub's centre in every star edge) must not crowd the
    other nodes out of the sketch: the count stays near the distinct nodes, not 1."""
    nodes = np.arange(200_000, dtype=np.int64)
    hashes = mix64(nodes.astype(np.uint64) ^ np.uint64(0x9E3779B97F4A7C15))
    crowd = nodes[np.argsort(hashes)[:3]]  # the nodes with the smallest hashes, repeated
    repeated = np.concatenate([np.repeat(crowd, 1_000_000), nodes])
    assert abs(sketch_count([node_sketch(repeated)]) - len(nodes)) < 0.1 * len(nodes)


def pair_set(u: np.ndarray, v: np.ndarray) -> set[tuple[int, int]]:
    return set(zip(u.tolist(), v.tolist(), strict=True))


def check_merged(u: np.ndarray, v: np.ndarray, expected: set[tuple[int, int]]) -> None:
    assert len(u) == len(expected)  # distinct
    assert pair_set(u, v) == expected
    assert (np.diff(u) >= 0).all()  # sorted by source


@settings(max_examples=150, deadline=None)
@given(st.lists(edge_lists, min_size=1, max_size=5), st.booleans())
def test_merge_edges_is_the_distinct_union_sorted_by_source(
    parts: list[list[tuple[int, int]]],
    runs: bool,  # noqa: FBT001
) -> None:
    """Exact for any parts; the parts the writers produce (distinct, sorted by `unique_edges`) are its fast case."""
    us, vs, expected = [], [], set()
    for part in parts:
        u = np.array([a for a, _ in part], dtype=np.int64)
        v = np.array([b for _, b in part], dtype=np.int64)
        if runs:
            u, v = unique_edges(u, v)
        us.append(u)
        vs.append(v)
        expected |= set(part)
    merged_u, merged_v = merge_edges(list(us), list(vs))
    check_merged(merged_u, merged_v, expected)
    again_u, again_v = merge_edges([merged_u, *us], [merged_v, *vs])  # a merged result is a run for the next merge
    check_merged(again_u, again_v, expected)


def test_merge_edges_separates_pairs_whose_hashes_share_their_top_bits() -> None:
    """Rows of one source are merged by the top 32 bits of their pair hash: pairs that share them (found here by
    search) must still be told apart, and their copies dropped."""
    source = 7
    targets = np.arange(300_000, dtype=np.int64)
    top = pair_hashes(np.full(len(targets), source, dtype=np.int64), targets) >> np.uint64(32)
    order = np.argsort(top, kind="stable")
    equal = np.flatnonzero(top[order][1:] == top[order][:-1])
    assert len(equal), "no two targets share the top hash bits in this range (widen it)"
    a, b = (int(t) for t in targets[order[[equal[0], equal[0] + 1]]])
    c = 1 if 1 not in (a, b) else 2
    first = unique_edges(np.array([source] * 3, dtype=np.int64), np.array([a, b, c], dtype=np.int64))
    second = unique_edges(np.array([source] * 2, dtype=np.int64), np.array([b, c], dtype=np.int64))
    third = (np.array([source], dtype=np.int64), np.array([a], dtype=np.int64))
    u, v = merge_edges([first[0], second[0], third[0]], [first[1], second[1], third[1]])
    check_merged(u, v, {(source, a), (source, b), (source, c)})


def test_merge_edges_releases_its_parts_and_gathers_one_column_at_a_time() -> None:
    """A components task merges while segments arrive: the parts are freed once concatenated (the lists are
    emptied) and the sorted columns are built one by one, so the merge holds about 40 bytes per row above them
    (56 when the parts stayed alive and three columns were gathered at once)."""
    import tracemalloc

    rng = np.random.default_rng(3)
    us, vs = [], []
    for _ in range(4):
        u = (rng.integers(0, 80, 200_000) << 32) + rng.integers(0, 100_000, 200_000)
        v = (rng.integers(0, 80, 200_000) << 32) + rng.integers(0, 100_000, 200_000)
        run_u, run_v = unique_edges(u.astype(np.int64), v.astype(np.int64))
        us.append(run_u)
        vs.append(run_v)
    rows = sum(len(u) for u in us)
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        merged_u, merged_v = merge_edges(us, vs)
        peak = tracemalloc.get_traced_memory()[1] - before
    finally:
        tracemalloc.stop()
    assert not us
    assert not vs
    assert len(merged_u) == len(merged_v) <= rows
    assert peak / rows <= 48
