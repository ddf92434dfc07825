"""The segmented design writes what the design before it wrote, document for document (issue 14).

Both drivers run on the same staged corpus (many clusters over many shards); every `kept/` and
`rejected/*.duplicates` file must hold the same rows, in the same order, with the same columns. The reference is the
previous design, frozen in `tests.dedup.reference`.
"""

from __future__ import annotations

import random
import sys
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from engine.dedup.plan import ShardInput, index_objects, make_plan
from engine.dedup.shuffle import BandShuffle, find_edges, map_bands
from engine.io.layout import KEPT, REJECTED
from engine.io.segments import read_object
from engine.runner.dedup import run_dedup
from engine.runner.executor import SerialExecutor
from engine.stats import binned_cluster_sizes
from tests.dedup import reference
from tests.dedup.reference import shuffle as old
from tests.dedup.staging import corpus, make_job, split, stage

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"
sys.path.insert(0, str(BENCHMARKS))

import scale_data  # noqa: E402


def outputs(root: Path) -> dict[str, pa.Table]:
    """Every file under kept/ and rejected/ by its path relative to the output."""
    found = {}
    for area in (KEPT, REJECTED):
        for path in sorted((root / area).rglob("*.parquet")):
            found[str(path.relative_to(root))] = pq.read_table(path)
    return found


def comparable(table: pa.Table) -> dict[str, list[Any]]:
    """Rows as Python values, NaN made comparable (NaN != NaN)."""
    return {
        name: ["NaN" if isinstance(x, float) and x != x else x for x in table[name].to_pylist()]
        for name in table.column_names
    }


def assert_same_outputs(new: Path, old: Path) -> None:
    ours, theirs = outputs(new), outputs(old)
    assert sorted(ours) == sorted(theirs)
    for name, table in theirs.items():
        assert ours[name].schema.equals(table.schema), name
        assert comparable(ours[name]) == comparable(table), name


def scores(doc: str, _text: str) -> float | None:
    """Scores with ties, NaNs and nulls (ranked last), as a quality classifier's column may hold."""
    value = random.Random(doc).choice([0.1, 0.5, 0.5, 0.9, float("nan"), None, 0.7, 0.3])
    return value


POLICIES: list[dict[str, Any]] = [
    {"keep": "first_seen"},
    {"keep": "longest", "add_cluster_columns": True},
    {"keep": "highest_score", "score_column": "quality_score", "exact_first": True},
]


@pytest.mark.parametrize("policy", POLICIES, ids=lambda p: p["keep"])
@pytest.mark.parametrize(("partitions", "in_memory"), [(4, 0), (1, 10**6)], ids=["distributed", "in-memory"])
def test_whole_outputs_equal_the_previous_design(
    tmp_path: Path, policy: dict[str, Any], partitions: int, in_memory: int
) -> None:
    rows = corpus(21, originals=60, copies=4, words=60)
    rows += [(f"single-{i:03d}", text, -1) for i, (_, text, _) in enumerate(corpus(22, originals=40, copies=0))]
    dedup = {"type": "minhash", "partitions": partitions, "in_memory_max_edges": in_memory, **policy}
    tables = split(rows, 7, quality_score=scores)
    results, outcome = {}, None
    for name, driver in (("new", run_dedup), ("old", reference.run_dedup)):
        job = make_job(str(tmp_path / name), dedup)
        shards = stage(job, tables)
        removed = driver(job, shards, SerialExecutor())
        if name == "new":
            outcome, removed = removed, removed.removed()
        results[name] = removed
    assert results["new"] == results["old"]
    assert sum(results["new"].values()) > 150  # many clusters
    assert_same_outputs(tmp_path / "new", tmp_path / "old")
    assert outcome is not None
    assert outcome.cluster_sizes == reference_histogram(tmp_path / "old")  # the tasks' counters, binned
    assert sum(outcome.cluster_sizes.values()) == outcome.clusters


class Recording(SerialExecutor):
    """Runs tasks serially and keeps their results by phase label."""

    def __init__(self) -> None:
        self.results: dict[str, list[Any]] = {}

    def map(self, fn: Callable[[Any], Any], items: Sequence[Any], *, label: str) -> list[Any]:
        results = super().map(fn, items, label=label)
        self.results.setdefault(label, []).extend(results)
        return results


def reference_histogram(root: Path) -> dict[str, int]:
    """Clusters per fixed size bin, counted from the previous design's duplicates files (size = copies + 1)."""
    copies: Counter[str] = Counter()
    for path in (root / REJECTED).rglob("*duplicates*.parquet"):
        copies.update(pq.read_table(path, columns=["duplicate_of"])["duplicate_of"].to_pylist())
    return dict(binned_cluster_sizes(Counter(n + 1 for n in copies.values())))


@pytest.mark.parametrize("keep", ["first_seen", "longest"])
def test_a_hub_and_small_tasks_give_the_previous_design_s_output(tmp_path: Path, keep: str) -> None:
    """60,000 synthetic documents with a 6,000-copy hub, small task memory: several band and graph partitions,
    hub keys dealt into sub-buckets, the hub's centre spread; the same output as before."""
    spec = scale_data.Synthetic(docs=60_000, shard_docs=5_000, hub=6_000, seed=5)
    truth = scale_data.generate(str(tmp_path / "new"), spec)
    scale_data.generate(str(tmp_path / "old"), spec)
    dedup = {"type": "minhash", "keep": keep, "in_memory_max_edges": 0, "task_memory": 4 << 20}
    new_job = make_job(str(tmp_path / "new"), dedup)
    recording = Recording()
    outcome = run_dedup(new_job, truth["shards"], recording)
    old_job = make_job(str(tmp_path / "old"), {**dedup, "partitions": 3, "task_memory": 1 << 30})
    removed = reference.run_dedup(old_job, truth["shards"], SerialExecutor())
    assert outcome.removed() == removed
    assert outcome.duplicates == truth["expected_duplicates"]
    assert outcome.kept + outcome.duplicates == spec.docs
    assert_same_outputs(tmp_path / "new", tmp_path / "old")
    assert outcome.largest_cluster == spec.hub
    assert outcome.cluster_sizes == reference_histogram(tmp_path / "old")
    # Bounded tasks: in every components step no partition holds much more than its share of the edges, though
    # the hub's star alone (6,000 edges into one centre) is more than a share: unspread, the centre's partition
    # would hold the hub plus its share (~1.8 shares in step 0).
    steps = [(label, [r.count for r in results]) for label, results in recording.results.items() if "step" in label]
    assert len(steps) >= 4
    assert len(steps[0][1]) >= 4
    assert spec.hub > sum(steps[0][1]) / len(steps[0][1])
    for label, counts in steps:
        assert max(counts) < 1.3 * sum(counts) / len(counts) + 200, (label, counts)


@pytest.mark.parametrize("memory", [1 << 20, 4 << 20, 1 << 30])
def test_collisions_find_the_previous_design_s_edges(tmp_path: Path, memory: int) -> None:
    """The collisions objects hold exactly the star edges the previous shuffle found, for several band partition
    counts (chosen automatically from the task memory)."""
    spec = scale_data.Synthetic(docs=30_000, shard_docs=3_000, seed=9)
    truth = scale_data.generate(str(tmp_path), spec)
    job = make_job(str(tmp_path), {"type": "minhash", "task_memory": memory})
    shards = truth["shards"]
    inputs = {
        rel: ShardInput(rows=pq.read_metadata(signatures(tmp_path, rel)).num_rows, identity=rel) for rel in shards
    }
    plan, _ = make_plan(job, shards, inputs)
    maps = [map_bands(plan, m) for m in range(plan.maps)]
    index = plan.index_url("bands")
    index_objects(plan, (tuple(r.url for r in maps), tuple(r.size for r in maps), plan.partitions, index))
    shuffle = BandShuffle(tuple(r.url for r in maps), index, ())
    found = set()
    for p in range(plan.partitions):
        result = find_edges(plan, shuffle, plan.heavy_degree, p)
        for table in read_object(result.url, result.size, plan.edge_partitions, {}):
            u, v = table["u"].to_numpy(), table["v"].to_numpy()
            found |= set(zip(u[u < v].tolist(), v[u < v].tolist(), strict=True))
    frames = []
    for index_, rel in enumerate(shards):
        table = pq.read_table(signatures(tmp_path, rel))
        has = np.asarray(table["keys"].is_valid().to_numpy(zero_copy_only=False), dtype=bool)
        keys = np.asarray(table["keys"].filter(pa.array(has)).combine_chunks().flatten().to_numpy(), dtype=np.uint64)
        nodes = old.node_ids(index_, table.num_rows)
        frames.append(old.band_rows(keys.reshape(-1, 14), np.ones(int(has.sum()), dtype=bool), nodes[has]))
    expected = old.collision_edges(pl.from_arrow(pa.concat_tables(frames)))
    assert found == set(zip(expected["u"].to_list(), expected["v"].to_list(), strict=True))
    assert plan.partitions == {1 << 20: 32, 4 << 20: 8, 1 << 30: 1}[memory]  # BAND_ROW_BYTES = 50


def signatures(root: Path, rel: str) -> str:
    from engine.dedup.signatures import signatures_file

    return signatures_file(str(root), scale_data.dedup_spec(), rel)
