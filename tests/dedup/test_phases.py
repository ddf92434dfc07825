from __future__ import annotations

import random
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import fsspec
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.dedup.signatures import signature_table
from engine.io.layout import KEPT, REJECTED, join, shard_file
from engine.io.parquet import read_table
from engine.runner.dedup import run_dedup
from engine.runner.executor import SerialExecutor
from engine.schema import CLUSTER_ID, CLUSTER_SIZE, DUPLICATE_OF, ID, REASON
from engine.spec import JobSpec, MinhashDedup
from tests.dedup.staging import corpus, make_job, mutate, random_text, split, stage

Item = TypeVar("Item")
Result = TypeVar("Result")


class ShuffledExecutor:
    """Runs tasks in a random order (results in item order), counting them; may crash after `fail_after`."""

    def __init__(self, seed: int, fail_after: int | None = None) -> None:
        self.rng = random.Random(seed)
        self.fail_after = fail_after
        self.tasks = 0
        self.labels: list[str] = []

    def map(self, fn: Callable[[Item], Result], items: Sequence[Item], *, label: str) -> list[Result]:
        self.labels.append(label)
        order = list(range(len(items)))
        self.rng.shuffle(order)
        results: dict[int, Result] = {}
        for i in order:
            if self.fail_after is not None and self.tasks >= self.fail_after:
                msg = "worker lost (injected)"
                raise RuntimeError(msg)
            results[i] = fn(items[i])
            self.tasks += 1
        return [results[i] for i in range(len(items))]


def kept_ids(job: JobSpec, shards: list[str]) -> list[str]:
    out, options = job.output.path, job.output.storage_options
    ids: list[str] = []
    for rel in shards:
        ids += read_table(shard_file(out, KEPT, rel), options)[ID].to_pylist()
    return sorted(ids)


def duplicates(job: JobSpec, shards: list[str]) -> pa.Table:
    out, options = job.output.path, job.output.storage_options
    tables = [read_table(shard_file(out, REJECTED, f"{rel}.duplicates"), options) for rel in shards]
    return pa.concat_tables(tables)


def run(
    tmp: Path,
    name: str,
    rows: list[tuple[str, str, int]],
    dedup: dict[str, Any],
    *,
    n_shards: int = 3,
    executor: Any = None,
    **extra: Callable[[str, str], object],
) -> tuple[JobSpec, list[str], dict[str, int]]:
    job = make_job(str(tmp / name), dedup)
    shards = stage(job, split(rows, n_shards, **extra))
    return job, shards, run_dedup(job, shards, executor or SerialExecutor()).removed()


def test_near_and_exact_copies_are_removed_one_kept_per_group(tmp_path: Path) -> None:
    rows = corpus(0)
    job, shards, removed = run(tmp_path, "out", rows, {"type": "minhash"})
    kept = kept_ids(job, shards)
    groups = {r[0]: r[2] for r in rows}
    exact_copies = {r[0] for r in rows if r[0].endswith(("-0", "-2"))}
    # Exact copies always collide: never both of the original/exact-copy pair survive (the near copy may be the
    # one kept, when it comes first in build order).
    assert all(sum(1 for k in kept if groups[k] == g and k in exact_copies) <= 1 for g in set(groups.values()))
    assert len(kept) + sum(removed.values()) == len(rows)
    # first_seen: each group's first document in build order (shard name, then row; rows are dealt to 3 shards
    # round robin) survives.
    first: dict[int, tuple[tuple[int, int], str]] = {}
    for position, (doc, _, group) in enumerate(rows):
        first[group] = min(first.get(group, ((9, 9**9), "")), ((position % 3, position // 3), doc))
    assert {doc for _, doc in first.values()} <= set(kept)
    dups = duplicates(job, shards)
    assert dups.num_rows == sum(removed.values())
    assert set(dups[REASON].to_pylist()) == {"minhash/duplicate"}
    for dup, of in zip(dups[ID].to_pylist(), dups[DUPLICATE_OF].to_pylist(), strict=True):
        assert groups[dup] == groups[of]
        assert of in kept


@pytest.mark.parametrize("keep", ["first_seen", "longest"])
def test_same_result_with_any_partition_count_components_mode_and_task_order(tmp_path: Path, keep: str) -> None:
    """`longest` (ties by id) does not depend on how documents are sharded either; `first_seen` does (it follows
    build order: shard, then row), so it keeps the shards and varies the rest."""
    rows = corpus(1, originals=20, copies=3)
    reference = None
    for i, (partitions, in_memory, seed) in enumerate([(1, 10**6, 0), (3, 0, 1), (4, 0, 2), (2, 10**6, 3)]):
        dedup = {"type": "minhash", "partitions": partitions, "in_memory_max_edges": in_memory, "keep": keep}
        n_shards = 3 if keep == "first_seen" else 1 + i
        job, shards, removed = run(tmp_path, f"out{i}", rows, dedup, n_shards=n_shards, executor=ShuffledExecutor(seed))
        result = (kept_ids(job, shards), sorted(duplicates(job, shards)[DUPLICATE_OF].to_pylist()))
        reference = reference or result
        assert result == reference, (partitions, in_memory)


@pytest.mark.parametrize(
    ("keep", "winner"),
    [("first_seen", "a"), ("longest", "c"), ("highest_score", "b")],
)
def test_representative_follows_the_policy(tmp_path: Path, keep: str, winner: str) -> None:
    base = "the same words in the same order make the same document every single time"
    rows = [("a", base, 0), ("b", base + "!", 0), ("c", base.upper() + " !!!", 0), ("z", "other text here", 1)]
    scores = {"a": 0.1, "b": 0.9, "c": 0.5, "z": 0.0}
    dedup: dict[str, Any] = {"type": "minhash", "keep": keep}
    if keep == "highest_score":
        dedup["score_column"] = "quality_score"
    job, shards, _ = run(tmp_path, "out", rows, dedup, n_shards=2, quality_score=lambda i, _t: scores[i])
    assert kept_ids(job, shards) == sorted([winner, "z"])
    assert set(duplicates(job, shards)[DUPLICATE_OF].to_pylist()) == {winner}


def test_ties_are_broken_by_id(tmp_path: Path) -> None:
    text = "five words make one shingle here"
    rows = [("m", text, 0), ("k", text, 0), ("x", text, 0)]
    job, shards, _ = run(tmp_path, "out", rows, {"type": "minhash", "keep": "longest"})
    assert kept_ids(job, shards) == ["k"]


def test_cluster_columns_and_no_duplicate_files(tmp_path: Path) -> None:
    rows = corpus(2, originals=5, copies=2)
    job, shards, removed = run(
        tmp_path, "out", rows, {"type": "minhash", "add_cluster_columns": True, "write_duplicates": False}
    )
    out = job.output.path
    kept = pa.concat_tables([read_table(shard_file(out, KEPT, rel), {}) for rel in shards])
    sizes = dict(zip(kept[ID].to_pylist(), kept[CLUSTER_SIZE].to_pylist(), strict=True))
    clusters = dict(zip(kept[ID].to_pylist(), kept[CLUSTER_ID].to_pylist(), strict=True))
    for doc, size in sizes.items():
        assert size is None or size >= 2
        assert clusters[doc] in (None, doc)  # a kept document represents its own cluster
    assert sum(s or 1 for s in sizes.values()) == len(rows)
    fs = fsspec.filesystem("file")
    assert not fs.exists(shard_file(out, REJECTED, f"{shards[0]}.duplicates"))
    assert sum(removed.values()) == len(rows) - len(sizes)


def test_exact_dedup_removes_only_equal_normalised_texts(tmp_path: Path) -> None:
    rng = random.Random(4)
    base = random_text(rng, 100)
    rows = [
        ("a", base, 0),
        ("b", base.upper() + "!", 0),
        ("c", mutate(rng, base, 0.05), 1),
        ("d", "...", 2),
        ("e", "!!", 3),
    ]
    job, shards, removed = run(tmp_path, "out", rows, {"type": "exact"})
    assert kept_ids(job, shards) == ["a", "c", "d", "e"]
    assert set(duplicates(job, shards)[REASON].to_pylist()) == {"exact/duplicate"}


def test_crashed_run_resumes_from_the_last_finished_phase(tmp_path: Path) -> None:
    rows = corpus(3, originals=15, copies=2)
    dedup = {"type": "minhash", "partitions": 3, "in_memory_max_edges": 0}
    clean_job, clean_shards, clean = run(tmp_path, "clean", rows, dedup)
    expected = kept_ids(clean_job, clean_shards)

    job = make_job(str(tmp_path / "crash"), dedup)
    shards = stage(job, split(rows, 3))
    first = ShuffledExecutor(0, fail_after=25)
    with pytest.raises(RuntimeError, match="injected"):
        run_dedup(job, shards, first)
    second = ShuffledExecutor(1)
    assert run_dedup(job, shards, second).removed() == clean
    assert kept_ids(job, shards) == expected
    assert "dedup: band keys" not in second.labels  # finished phases are not redone
    third = ShuffledExecutor(2)
    assert run_dedup(job, shards, third).removed() == clean
    assert third.labels == ["dedup: probe shards"]  # everything resumable was reused (removal: its summary)


def test_changed_input_redoes_the_global_phases(tmp_path: Path) -> None:
    rows = corpus(5, originals=6, copies=0)
    job = make_job(str(tmp_path / "out"), {"type": "minhash"})
    shards = stage(job, split(rows, 2))
    assert sum(run_dedup(job, shards, SerialExecutor()).removed().values()) == 0
    copy = ("zz-copy", rows[0][1], 0)
    shards = stage(job, split([*rows, copy], 2))
    assert sum(run_dedup(job, shards, SerialExecutor()).removed().values()) == 1


def test_memory_filesystem_output(memfs: fsspec.AbstractFileSystem) -> None:
    rows = corpus(6, originals=4, copies=1)
    job = make_job("memory://dedup-test/out", {"type": "minhash", "partitions": 2})
    shards = stage(job, split(rows, 2))
    removed = run_dedup(job, shards, SerialExecutor()).removed()
    assert sum(removed.values()) == 4
    assert memfs.exists(join("/dedup-test/out", KEPT, f"{shards[0]}.parquet"))
    assert len(kept_ids(job, shards)) == 4


def test_score_column_must_exist() -> None:
    dedup = MinhashDedup(keep="highest_score", score_column="quality_score")
    table = pa.table({"id": ["a"], "text": pa.array(["x"], type=pa.large_string())})
    with pytest.raises(ValueError, match="quality_score"):
        signature_table(table, dedup)


def test_signature_table_of_an_empty_batch_has_the_full_schema() -> None:
    dedup = MinhashDedup(keep="highest_score", score_column="quality_score")
    empty = pa.table(
        {
            "id": pa.array([], pa.string()),
            "text": pa.array([], pa.large_string()),
            "quality_score": pa.array([], pa.float64()),
        }
    )
    table = signature_table(empty, dedup)
    assert table.num_rows == 0
    assert table.column_names == ["id", "keys", "length", "score"]
    assert table.schema.field("keys").type.list_size == 14


def test_a_finished_build_is_its_state_and_without_it_every_global_phase_is_redone(tmp_path: Path) -> None:
    """A finished run keeps only its markers (its shuffle is cleaned up) and the dedup state, whose manifest is the
    commit: a deleted phase marker changes nothing; a deleted manifest redoes every phase."""
    rows = corpus(9, originals=8, copies=2)
    dedup = {"type": "minhash", "partitions": 2, "in_memory_max_edges": 0}
    job = make_job(str(tmp_path / "out"), dedup)
    shards = stage(job, split(rows, 2))
    first = run_dedup(job, shards, SerialExecutor()).removed()
    expected = kept_ids(job, shards)
    run_dir = next((tmp_path / "out" / "_dedup").iterdir()) / "shuffle"
    (markers,) = [p / "_markers" for p in run_dir.iterdir()]
    assert {p.name for p in markers.parent.iterdir()} == {"_markers"}  # the shuffle objects are gone
    (markers / "edges.json").unlink()
    unchanged = ShuffledExecutor(3)
    assert run_dedup(job, shards, unchanged).removed() == first
    assert unchanged.labels == ["dedup: probe shards"]  # removal answers from its summary
    manifest = next((tmp_path / "out" / "_dedup").iterdir()) / "state" / "index" / "manifest.json"
    manifest.unlink()
    again = ShuffledExecutor(3)
    assert run_dedup(job, shards, again).removed() == first
    assert kept_ids(job, shards) == expected
    assert manifest.exists()
    assert "dedup: band keys" in again.labels
    assert "dedup: collisions" in again.labels
    assert "dedup: components step 0 (large-star)" in again.labels
    assert "dedup: representatives" in again.labels


def test_outputs_of_a_vanished_shard_are_removed(tmp_path: Path) -> None:
    rows = corpus(10, originals=6, copies=1)
    job = make_job(str(tmp_path / "out"), {"type": "minhash"})
    tables = split(rows, 3)
    shards = stage(job, tables)
    run_dedup(job, shards, SerialExecutor())
    gone = tmp_path / "out" / KEPT / f"{shards[2]}.parquet"
    assert gone.exists()
    del tables[shards[2]]
    remaining = stage(job, tables)
    removed = run_dedup(job, remaining, SerialExecutor()).removed()
    assert not gone.exists()
    assert not (tmp_path / "out" / REJECTED / f"{shards[2]}.duplicates.parquet").exists()
    assert len(kept_ids(job, remaining)) + sum(removed.values()) == sum(t.num_rows for t in tables.values())


def test_final_kept_output_honours_the_partition_column(tmp_path: Path) -> None:
    rows = corpus(11, originals=6, copies=2)
    steps = [{"type": "language_id", "min_score": 0.0, "partition_by_language": True}]
    job = make_job(str(tmp_path / "out"), {"type": "minhash"}, steps)
    languages = {r[0]: ("en" if r[2] % 2 else "fr") for r in rows}
    shards = stage(job, split(rows, 2, language=lambda i, _t: languages[i]))
    removed = run_dedup(job, shards, SerialExecutor()).removed()
    kept = tmp_path / "out" / KEPT
    assert sorted(p.name for p in kept.iterdir()) == ["language=en", "language=fr"]
    ids = []
    for path in kept.rglob("*.parquet"):
        table = read_table(str(path), {})
        assert set(table["language"].to_pylist()) == {path.parent.name.split("=")[1]}
        ids += table[ID].to_pylist()
    assert len(ids) + sum(removed.values()) == len(rows)


def test_exact_first_labels_exact_copies_inside_minhash_clusters(tmp_path: Path) -> None:
    rows = corpus(13, originals=10, copies=2)  # copy 1 is mutated (1%), copy 2 exact
    job, shards, removed = run(tmp_path, "out", rows, {"type": "minhash", "exact_first": True})
    dups = duplicates(job, shards)
    reasons = dict(zip(dups[ID].to_pylist(), dups[REASON].to_pylist(), strict=True))
    texts = {r[0]: r[1] for r in rows}
    kept_in_place = dict(zip(dups[ID].to_pylist(), dups[DUPLICATE_OF].to_pylist(), strict=True))
    exact = {doc for doc in reasons if texts[doc] == texts[kept_in_place[doc]]}
    kept = set(kept_ids(job, shards))
    pairs = [{f"doc-{g:03d}-0", f"doc-{g:03d}-2"} for g in range(10)]  # original and exact copy
    pairs_kept = [pair for pair in pairs if pair & kept]  # (else the mutated copy came first in build order)
    assert len(pairs_kept) >= 5
    assert all(pair - kept <= exact for pair in pairs_kept)
    assert any(doc.endswith("-1") for doc in reasons.keys() - exact)  # mutated copies stay near-duplicates
    assert {doc for doc, reason in reasons.items() if reason == "exact/duplicate"} == exact
    assert {reasons[doc] for doc in reasons.keys() - exact} == {"minhash/duplicate"}
    plain_job, plain_shards, plain = run(tmp_path, "plain", rows, {"type": "minhash"})
    assert removed == plain  # labels only: the same documents are removed
    assert kept_ids(job, shards) == kept_ids(plain_job, plain_shards)


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(st.integers(0, 5), min_size=2, max_size=14),
    st.integers(1, 4),
    st.integers(1, 3),
    st.integers(0, 10**6),
)
def test_property_one_survivor_per_identical_group_whatever_the_partitioning(
    groups: list[int], partitions: int, n_shards: int, seed: int
) -> None:
    rng = random.Random(seed)
    texts = {g: random_text(rng, 30) for g in set(groups)}
    rows = [(f"d{i:03d}", texts[g], g) for i, g in enumerate(groups)]
    fs = fsspec.filesystem("memory")
    results = []
    for p, in_memory, order in [(1, 10**6, 0), (partitions, 0, seed)]:
        out = f"memory://prop-{uuid.uuid4().hex}"
        job = make_job(out, {"type": "minhash", "partitions": p, "in_memory_max_edges": in_memory})
        shards = stage(job, split(rows, n_shards))
        run_dedup(job, shards, ShuffledExecutor(order))
        results.append(kept_ids(job, shards))
        fs.rm(out.removeprefix("memory://"), recursive=True)
    assert results[0] == results[1]
    survivors = [next(r[2] for r in rows if r[0] == doc) for doc in results[0]]
    assert sorted(survivors) == sorted(set(groups))  # exactly one document per group of identical texts
    # first_seen: the first in build order (rows are dealt round robin: row i is row i // n of shard i % n)
    first = {
        g: min((i % n_shards, i // n_shards, f"d{i:03d}") for i, h in enumerate(groups) if h == g)[2] for g in groups
    }
    assert all(doc == first[g] for doc, g in zip(results[0], survivors, strict=True))


def test_crash_in_the_components_rounds_resumes_at_that_step(tmp_path: Path) -> None:
    rows = corpus(14, originals=15, copies=3)
    dedup = {"type": "minhash", "partitions": 2, "in_memory_max_edges": 0}
    clean_job, clean_shards, clean = run(tmp_path, "clean", rows, dedup)

    class CrashAtStep(ShuffledExecutor):
        def map(self, fn: Callable[[Item], Result], items: Sequence[Item], *, label: str) -> list[Result]:
            if label.startswith("dedup: components step 3"):
                msg = "driver killed (injected)"
                raise RuntimeError(msg)
            return super().map(fn, items, label=label)

    job = make_job(str(tmp_path / "crash"), dedup)
    shards = stage(job, split(rows, 3))
    first = CrashAtStep(0)
    with pytest.raises(RuntimeError, match="injected"):
        run_dedup(job, shards, first)
    assert "dedup: components step 2 (large-star)" in first.labels
    second = ShuffledExecutor(1)
    assert run_dedup(job, shards, second).removed() == clean
    assert kept_ids(job, shards) == kept_ids(clean_job, clean_shards)
    steps = [label for label in second.labels if "components step" in label]
    assert steps[0] == "dedup: components step 3 (small-star)"  # steps 0-2 were not redone
    assert not {"dedup: band keys", "dedup: collisions"} & set(second.labels)


def test_a_map_task_killed_mid_write_and_retried_leaves_one_complete_object(tmp_path: Path) -> None:
    from engine.dedup.plan import ShardInput, make_plan
    from engine.dedup.shuffle import map_bands
    from engine.io.segments import SegmentWriter, read_object

    rows = corpus(15, originals=10, copies=2)
    job = make_job(str(tmp_path / "out"), {"type": "minhash", "partitions": 4})
    shards = stage(job, split(rows, 2))
    inputs = {rel: ShardInput(rows=read_table(signatures_of(job, rel), {}).num_rows, identity=rel) for rel in shards}
    plan, _ = make_plan(job, shards, inputs)
    url = plan.band_url(0)
    killed = SegmentWriter(url, plan.partitions, {})
    killed.write(0, pa.table({"key": pa.array([1], pa.uint64())}))
    killed._file.handle.write(b"half an object")  # the worker dies here: no commit, no abort
    result = map_bands(plan, 0)  # the retry
    assert result.url == url
    tables = read_object(url, result.size, plan.partitions, {})
    assert sum(t.num_rows for t in tables) == result.rows > 0
    folder = Path(url).parent
    assert [p.name for p in folder.iterdir() if ".tmp-" not in p.name] == [Path(url).name]
    run_dedup(job, shards, SerialExecutor())
    assert not [p for p in (tmp_path / "out").rglob("*") if ".tmp-" in p.name]  # the run cleaned up after it


def signatures_of(job: JobSpec, rel: str) -> str:
    from engine.dedup.signatures import signatures_file

    assert job.dedup is not None
    return signatures_file(job.output.path, job.dedup, rel)


def test_collisions_write_both_directions_as_distinct_runs_sorted_by_source(tmp_path: Path) -> None:
    """The components' reads merge sorted runs (`merge_edges`) instead of sorting: every segment the collisions
    write holds distinct edges, both directions of each, sorted by source."""
    import numpy as np

    from engine.dedup.components import DST, SRC
    from engine.dedup.plan import ShardInput, make_plan
    from engine.dedup.shuffle import BandShuffle, find_edges, map_bands
    from engine.io.segments import gather_index, read_object

    rows = corpus(21, originals=40, copies=3)
    job = make_job(str(tmp_path / "out"), {"type": "minhash", "partitions": 2})
    shards = stage(job, split(rows, 3))
    inputs = {rel: ShardInput(rows=read_table(signatures_of(job, rel), {}).num_rows, identity=rel) for rel in shards}
    plan, _ = make_plan(job, shards, inputs)
    maps = [map_bands(plan, task) for task in range(plan.maps)]
    index = str(tmp_path / "bands.index")
    gather_index([m.url for m in maps], [m.size for m in maps], plan.partitions, index, {})
    shuffle = BandShuffle(tuple(m.url for m in maps), index, ())
    found: list[tuple[int, int]] = []
    for partition in range(plan.partitions):
        result = find_edges(plan, shuffle, plan.heavy_degree, partition)
        for table in read_object(result.url, result.size, plan.edge_partitions, {}):
            src, dst = table[SRC].to_numpy(), table[DST].to_numpy()
            assert (np.diff(src) >= 0).all()
            assert len(set(zip(src.tolist(), dst.tolist(), strict=True))) == len(src)
            found += zip(src.tolist(), dst.tolist(), strict=True)
    assert found
    assert set(found) == {(v, u) for u, v in found}  # both directions
