"""Incremental nights (issue 11 item 3): new shards are probed against the last build's state, and the outputs
equal a full rebuild's, file for file, under every policy; merges and better copies are counted; a night killed
half way resumes, or gives way to a full build, never to a state written half."""

from __future__ import annotations

import random
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from engine.dedup import index
from engine.dedup.index import choose, read_state, tombstone
from engine.dedup.signatures import dedup_root
from engine.runner.dedup import DedupOutcome, run_dedup
from engine.runner.executor import SerialExecutor
from engine.spec import JobSpec
from tests.dedup.staging import VOCABULARY, make_job, stage
from tests.dedup.test_identity import POLICIES, assert_same_outputs, scores
from tests.dedup.test_phases import ShuffledExecutor, duplicates, kept_ids

BRIDGING = {"type": "minhash", "bands": 14, "rows": 2}
"""Two rows per band: documents sharing half their text collide (almost surely), documents sharing none never, so
a document made of two others' texts bridges their clusters."""


def segments(seed: int, count: int, words: int = 40) -> list[str]:
    rng = random.Random(seed)
    return [" ".join(rng.choice(VOCABULARY) for _ in range(words)) for _ in range(count)]


def documents(seed: int, pool: list[str], count: int, prefix: str) -> list[tuple[str, str]]:
    """Documents of one or two segments of the pool (docs sharing a segment are near-duplicates)."""
    rng = random.Random(seed)
    docs = []
    for i in range(count):
        picked = rng.sample(range(len(pool)), rng.choice([1, 1, 2]))
        docs.append((f"{prefix}-{i:03d}", " ".join(pool[p] for p in picked)))
    return docs


def shard_table(rows: list[tuple[str, str]]) -> pa.Table:
    ids = [r[0] for r in rows]
    return pa.table(
        {
            "id": ids,
            "text": pa.array([r[1] for r in rows], type=pa.large_string()),
            "quality_score": pa.array([scores(i, "") for i in ids], type=pa.float64()),
        }
    )


def night(job: JobSpec, new: dict[str, list[tuple[str, str]]], shards: list[str], executor: Any = None) -> DedupOutcome:
    stage(job, {rel: shard_table(rows) for rel, rows in new.items()})
    return run_dedup(job, shards, executor or SerialExecutor())


def full_rebuild(job: JobSpec, shards: list[str], tmp: Path) -> tuple[JobSpec, DedupOutcome]:
    """`--full` on a copy of the output (same registry, same build order)."""
    copy = tmp / "full"
    shutil.copytree(job.output.path, copy)
    for folder in ("kept", "rejected", "_dedup/*/state/removal", "_dedup/*/state/index"):
        for path in copy.glob(folder):  # they name the original's files: a copy starts without them
            shutil.rmtree(path)
    other = job.model_copy(update={"output": job.output.model_copy(update={"path": str(copy)})})
    return other, run_dedup(other, shards, SerialExecutor(), full=True)


def state_of(job: JobSpec) -> Any:
    assert job.dedup is not None
    return read_state(dedup_root(job.output.path, job.dedup), {})


@contextmanager
def any_dead_share() -> Iterator[None]:
    """Test corpora are a few shards: one changed shard is far above the default share of dead documents past
    which a build is a full one (`DEAD_SHARE`, tested below); allow any share."""
    saved = index.DEAD_SHARE
    index.DEAD_SHARE = 1.0
    try:
        yield
    finally:
        index.DEAD_SHARE = saved


def churn(**counts: int) -> dict[str, int]:
    """A night's churn counters: the given ones, every other 0, the totals added up."""
    found = dict.fromkeys(["merged", "better_copy", "representative_removed", "cluster_split"], 0) | counts
    found["left_kept"] = found["merged"] + found["better_copy"]
    found["returned_to_kept"] = found["representative_removed"] + found["cluster_split"]
    return found


POLICY_IDS = [p["keep"] for p in POLICIES] + ["first_seen-columns"]
ALL_POLICIES = [*POLICIES, {"keep": "first_seen", "add_cluster_columns": True}]


@settings(
    max_examples=6,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    phases=[Phase.explicit, Phase.reuse, Phase.generate],  # each example runs several builds: no shrinking
)
@given(
    seed=st.integers(0, 10**6),
    policy=st.sampled_from(ALL_POLICIES),
    nights=st.lists(st.integers(1, 3), min_size=1, max_size=3),
    partitions=st.sampled_from([1, 2, 4]),
)
def test_nights_of_new_shards_equal_a_full_rebuild(
    tmp_path_factory: pytest.TempPathFactory, seed: int, policy: dict[str, Any], nights: list[int], partitions: int
) -> None:
    """Any sequence of nights adding shards of documents that join, bridge and better old clusters: the outputs
    (kept/, duplicates, with cluster columns when asked) and the cluster counters equal a full rebuild's."""
    tmp = tmp_path_factory.mktemp("nightly")
    pool = segments(seed, 30)
    job = make_job(str(tmp / "out"), {**BRIDGING, "partitions": partitions, **policy})
    shards: list[str] = []
    for n, count in enumerate([2, *nights]):
        new = {f"n{n}-s{s}": documents(seed + 97 * n + s, pool, 9, f"n{n}s{s}") for s in range(count)}
        shards += sorted(new)
        outcome = night(job, new, list(shards))
        assert outcome.mode == ("full" if n == 0 else "night")
    full_job, full = full_rebuild(job, shards, tmp)
    assert full.mode == "full"
    assert_same_outputs(Path(job.output.path), Path(full_job.output.path))
    assert (outcome.clusters, outcome.largest_cluster, outcome.cluster_sizes) == (
        full.clusters,
        full.largest_cluster,
        full.cluster_sizes,
    )
    assert sum(outcome.removed().values()) == sum(full.removed().values())


@settings(
    max_examples=12,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    phases=[Phase.explicit, Phase.reuse, Phase.generate],
)
@given(
    seed=st.integers(0, 10**6),
    policy=st.sampled_from(ALL_POLICIES),
    nights=st.lists(st.tuples(st.integers(0, 2), st.booleans(), st.booleans()), min_size=1, max_size=3),
    partitions=st.sampled_from([1, 2, 4]),
)
def test_nights_that_add_change_and_remove_shards_equal_a_full_rebuild(
    tmp_path_factory: pytest.TempPathFactory,
    seed: int,
    policy: dict[str, Any],
    nights: list[tuple[int, bool, bool]],
    partitions: int,
) -> None:
    """Nights that add shards, change one (new content of the same segments) and remove one: clusters lose
    representatives and bridges, split, merge again; the outputs and cluster counters equal a full rebuild's."""
    tmp = tmp_path_factory.mktemp("dead")
    pool = segments(seed, 24)
    job = make_job(str(tmp / "out"), {**BRIDGING, "partitions": partitions, **policy})
    current = {f"n0-s{s}": documents(seed + s, pool, 9, f"n0s{s}") for s in range(3)}
    outcome = night(job, current, list(current))
    with any_dead_share():
        for n, (adds, change, remove) in enumerate(nights, 1):
            rng = random.Random(seed + n)
            staged: dict[str, list[tuple[str, str]]] = {}
            if remove and len(current) > 1:
                del current[rng.choice(sorted(current))]
            if change:
                rel = rng.choice(sorted(current))
                staged[rel] = current[rel] = documents(seed + 31 * n, pool, rng.randint(3, 9), f"n{n}c")
            for s in range(adds):
                staged[f"n{n}-s{s}"] = current[f"n{n}-s{s}"] = documents(seed + 97 * n + s, pool, 9, f"n{n}s{s}")
            outcome = night(job, staged, list(current))
            assert outcome.mode == ("night" if staged or remove else "unchanged")
    full_job, full = full_rebuild(job, list(current), tmp)
    assert_same_outputs(Path(job.output.path), Path(full_job.output.path))
    assert (outcome.clusters, outcome.largest_cluster, outcome.cluster_sizes) == (
        full.clusters,
        full.largest_cluster,
        full.cluster_sizes,
    )
    assert outcome.removed() == full.removed()


def test_a_document_bridging_two_published_clusters_merges_them(tmp_path: Path) -> None:
    """Night 1 publishes A (p-0) and B (p-1), unrelated; night 2 brings A+B: the clusters merge, B's shard is
    rewritten (B is now a duplicate of A: churn `merged`), nothing else old is."""
    a, b, other = segments(5, 3)
    job = make_job(str(tmp_path / "out"), BRIDGING)
    night(job, {"p-0": [("a", a), ("x", other)], "p-1": [("b", b)]}, ["p-0", "p-1"])
    assert kept_ids(job, ["p-0", "p-1"]) == ["a", "b", "x"]
    kept_file = next((tmp_path / "out" / "kept").glob("p-0*"))
    before = kept_file.stat().st_mtime_ns
    outcome = night(job, {"p-2": [("ab", a + " " + b)]}, ["p-0", "p-1", "p-2"])
    assert outcome.mode == "night"
    assert outcome.churn == churn(merged=1)
    assert kept_ids(job, ["p-0", "p-1", "p-2"]) == ["a", "x"]
    assert kept_file.stat().st_mtime_ns == before
    assert outcome.counts["fates_rewritten"] == 1  # p-1's
    assert outcome.clusters == 1
    assert outcome.largest_cluster == 3


def test_an_unchanged_rerun_after_a_night_runs_no_global_phase(tmp_path: Path) -> None:
    pool = segments(8, 12)
    job = make_job(str(tmp_path / "out"), BRIDGING)
    night(job, {"p-0": documents(1, pool, 10, "a")}, ["p-0"])
    night(job, {"p-1": documents(2, pool, 10, "b")}, ["p-0", "p-1"])
    again = ShuffledExecutor(1)
    outcome = night(job, {}, ["p-0", "p-1"], again)
    assert outcome.mode == "unchanged"
    assert again.labels == ["dedup: probe shards"]  # removal answers from its summary: no task


@pytest.mark.parametrize("crash_after", [1, 3, 5, 8])
def test_a_night_killed_half_way_resumes_or_gives_way_to_a_full_build(tmp_path: Path, crash_after: int) -> None:
    """A night killed after `crash_after` tasks: rerun as it was, it resumes and equals a full rebuild; if a new
    shard arrives before the rerun, the half-changed state is not used: the build is a full one."""
    pool = segments(11, 20)
    old = {f"p-{s}": documents(20 + s, pool, 8, f"p{s}") for s in range(3)}
    new = {"p-3": documents(30, pool, 8, "p3")}
    for variant in ("resume", "another shard"):
        job = make_job(str(tmp_path / variant / "out"), {**BRIDGING, "keep": "longest"})
        night(job, old, sorted(old))
        with pytest.raises(RuntimeError, match="injected"):
            night(job, new, [*sorted(old), "p-3"], ShuffledExecutor(0, fail_after=crash_after))
        shards = [*sorted(old), "p-3"]
        if variant == "another shard":
            shards.append("p-4")
            outcome = night(job, {"p-4": documents(40, pool, 8, "p4")}, shards)
            assert outcome.mode == "full"
        else:
            outcome = night(job, {}, shards)
            assert outcome.mode == "night"
        assert state_of(job).pending is None
        full_job, _ = full_rebuild(job, shards, tmp_path / variant)
        assert_same_outputs(Path(job.output.path), Path(full_job.output.path))


@pytest.mark.parametrize("crash_after", [1, 3, 5, 6, 7, 9, 12])
def test_a_night_with_changed_and_vanished_shards_killed_half_way_resumes(tmp_path: Path, crash_after: int) -> None:
    """A night that changes p-1, removes p-0 (the representatives of first build) and adds p-3, killed after
    `crash_after` tasks (15 in all: probe shards 1, band keys 3 (p-1's, none for p-2 between, p-3's) and their index
    1, probe 1, graph 1, fates 1, removal 3, clean-up 4):
    rerun as it was, it resumes as a night (after the manifest: an unchanged rerun) and equals a full rebuild; if
    yet another shard arrives first, the half-changed state is not used: the build is a full one (a night once the
    manifest is written)."""
    pool = segments(17, 16)
    old = {f"p-{s}": documents(80 + s, pool, 8, f"p{s}") for s in range(3)}
    shards = ["p-1", "p-2", "p-3"]
    for variant in ("resume", "another shard"):
        job = make_job(str(tmp_path / variant / "out"), {**BRIDGING, "keep": "first_seen", "add_cluster_columns": True})
        night(job, old, sorted(old))
        changes = {"p-1": documents(90, pool, 6, "p1v2"), "p-3": documents(91, pool, 8, "p3")}
        with any_dead_share():
            with pytest.raises(RuntimeError, match="injected"):
                night(job, changes, shards, ShuffledExecutor(0, fail_after=crash_after))
            if variant == "another shard":
                outcome = night(job, {"p-4": documents(92, pool, 8, "p4")}, [*shards, "p-4"])
                assert outcome.mode == ("full" if crash_after < 11 else "night")
                final = [*shards, "p-4"]
            else:
                outcome = night(job, {}, shards)
                assert outcome.mode == ("night" if crash_after < 11 else "unchanged")
                final = shards
        assert state_of(job).pending is None
        full_job, _ = full_rebuild(job, final, tmp_path / variant)
        assert_same_outputs(Path(job.output.path), Path(full_job.output.path))


def test_changed_and_vanished_shards_are_a_night_and_a_new_one_is_probed_after(tmp_path: Path) -> None:
    """A night that changes one shard and one that removes another stay incremental (their old documents are
    dead in the index); a later night of new shards probes the index past them."""
    pool = segments(12, 12)
    job = make_job(str(tmp_path / "out"), BRIDGING)
    old = {f"p-{s}": documents(50 + s, pool, 8, f"p{s}") for s in range(3)}
    night(job, old, sorted(old))
    with any_dead_share():
        changed = night(
            job, {"p-1": old["p-1"][:-1], "p-3": documents(60, pool, 8, "p3")}, ["p-0", "p-1", "p-2", "p-3"]
        )
        assert changed.mode == "night"
        vanished = night(job, {}, ["p-0", "p-2", "p-3"])
        assert vanished.mode == "night"
        again = ShuffledExecutor(1)
        assert night(job, {}, ["p-0", "p-2", "p-3"], again).mode == "unchanged"  # the tombstone is no change
        assert again.labels == ["dedup: probe shards"]  # removal answers from the summary the night wrote
        grown = night(job, {"p-4": documents(61, pool, 8, "p4")}, ["p-0", "p-2", "p-3", "p-4"])
    assert grown.mode == "night"
    state = state_of(job)
    assert len(state.runs) == 3  # the base, p-1's new content with p-3, p-4 (the vanishing night maps nothing)
    assert state.runs[0].dead == (1,)  # p-1's old rows (changed), then p-1 vanished: still position 1
    assert state.shards[1] == tombstone("p-1")
    assert state.extra["dead_rows"] == 8 + 7
    full_job, full = full_rebuild(job, ["p-0", "p-2", "p-3", "p-4"], tmp_path)
    assert_same_outputs(Path(job.output.path), Path(full_job.output.path))
    assert (grown.clusters, grown.cluster_sizes) == (full.clusters, full.cluster_sizes)


@pytest.mark.parametrize("kind", ["minhash", "exact"])
def test_removing_a_published_representative_restores_its_duplicates(tmp_path: Path, kind: str) -> None:
    """`first_seen`: p-0's `a` represents copies in p-1 and p-2. p-0 vanishes: the cluster is computed again, p-1's
    copy becomes the representative and returns to kept/ (`representative_removed`); p-2's stays a duplicate, of
    the new representative; shards of other clusters are not rewritten."""
    a, b = segments(21, 2)
    job = make_job(str(tmp_path / "out"), BRIDGING if kind == "minhash" else {"type": "exact"})
    night(
        job,
        {"p-0": [("a", a)], "p-1": [("a1", a), ("b", b)], "p-2": [("a2", a)], "p-3": [("b3", b)]},
        ["p-0", "p-1", "p-2", "p-3"],
    )
    assert kept_ids(job, ["p-0", "p-1", "p-2", "p-3"]) == ["a", "b"]
    untouched = next((tmp_path / "out" / "kept").glob("p-3*"))
    before = untouched.stat().st_mtime_ns
    with any_dead_share():
        outcome = night(job, {}, ["p-1", "p-2", "p-3"])
    assert outcome.mode == "night"
    assert outcome.churn == churn(representative_removed=1)
    assert kept_ids(job, ["p-1", "p-2", "p-3"]) == ["a1", "b"]
    assert duplicates(job, ["p-2"]).select(["id", "duplicate_of"]).to_pylist() == [{"id": "a2", "duplicate_of": "a1"}]
    assert untouched.stat().st_mtime_ns == before
    assert not list((tmp_path / "out" / "kept").glob("p-0*"))
    full_job, full = full_rebuild(job, ["p-1", "p-2", "p-3"], tmp_path)
    assert_same_outputs(Path(job.output.path), Path(full_job.output.path))
    assert (outcome.clusters, outcome.cluster_sizes) == (full.clusters, full.cluster_sizes)


def test_a_changed_shard_that_loses_a_bridge_splits_its_cluster(tmp_path: Path) -> None:
    """p-1's `ab` bridges `a` (p-0) and `b` (p-2): one cluster, `b` a duplicate. p-1 changes (the bridge is gone):
    `b` returns to kept/ (`cluster_split`, its representative `a` is still there); p-1 keeps its build order."""
    a, b, c = segments(22, 3)
    job = make_job(str(tmp_path / "out"), BRIDGING)
    night(job, {"p-0": [("a", a)], "p-1": [("ab", a + " " + b)], "p-2": [("b", b)]}, ["p-0", "p-1", "p-2"])
    assert kept_ids(job, ["p-0", "p-1", "p-2"]) == ["a"]
    with any_dead_share():
        outcome = night(job, {"p-1": [("c", c), ("a-again", a)]}, ["p-0", "p-1", "p-2"])
    assert outcome.mode == "night"
    assert outcome.churn == churn(cluster_split=1)
    assert kept_ids(job, ["p-0", "p-1", "p-2"]) == ["a", "b", "c"]
    full_job, full = full_rebuild(job, ["p-0", "p-1", "p-2"], tmp_path)
    assert_same_outputs(Path(job.output.path), Path(full_job.output.path))
    assert (outcome.clusters, outcome.cluster_sizes) == (full.clusters, full.cluster_sizes)


@pytest.mark.parametrize("policy", ALL_POLICIES, ids=POLICY_IDS)
def test_a_vanished_shard_that_comes_back_is_a_new_shard(tmp_path: Path, policy: dict[str, Any]) -> None:
    """p-1 vanishes (a tombstone keeps its place), comes back under the same name (new, last in build order), then
    p-0 changes: three nights, and the outputs equal a full rebuild's."""
    pool = segments(3, 10)
    job = make_job(str(tmp_path / "out"), {**BRIDGING, **policy})
    old = {f"p-{s}": documents(5 + s, pool, 8, f"p{s}") for s in range(3)}
    night(job, old, sorted(old))
    with any_dead_share():
        gone = night(job, {}, ["p-0", "p-2"])
        back = night(job, {"p-1": documents(9, pool, 8, "back")}, ["p-0", "p-2", "p-1"])
        changed = night(job, {"p-0": documents(10, pool, 5, "again")}, ["p-0", "p-2", "p-1"])
    assert (gone.mode, back.mode, changed.mode) == ("night", "night", "night")
    assert state_of(job).shards == ("p-0", tombstone("p-1"), "p-2", "p-1")
    full_job, full = full_rebuild(job, ["p-0", "p-2", "p-1"], tmp_path)
    assert_same_outputs(Path(job.output.path), Path(full_job.output.path))
    assert (changed.clusters, changed.cluster_sizes) == (full.clusters, full.cluster_sizes)


def test_dead_documents_beyond_the_share_take_the_full_path(tmp_path: Path) -> None:
    """The default share (5%): one changed shard of three is a third of the index: a full build, which says why,
    and leaves a fresh index (no dead rows)."""
    pool = segments(12, 12)
    job = make_job(str(tmp_path / "out"), BRIDGING)
    old = {f"p-{s}": documents(50 + s, pool, 8, f"p{s}") for s in range(3)}
    night(job, old, sorted(old))
    assert job.dedup is not None
    state = state_of(job)
    shards = ["p-0", "p-1", "p-2"]
    identities = list(state.identities)
    identities[1] = "another content"
    decided = choose(job, state, shards, identities, list(state.rows), full=False)
    assert (decided.mode, decided.reason) == (
        "full",
        f"1 changed or vanished shard(s): {8 / 24:.1%} of the band index would be dead (> 5%)",
    )
    changed = night(job, {"p-1": old["p-1"][:-1]}, shards)
    assert changed.mode == "full"
    assert len(state_of(job).runs) == 1
    assert state_of(job).extra.get("dead_rows", 0) == 0


@pytest.mark.parametrize("kind", ["minhash", "exact"])
def test_a_night_of_unrelated_documents_writes_only_the_new_shard(tmp_path: Path, kind: str) -> None:
    """No new document meets an old one (nor another new one): the graph is empty, only the new shard's fate and
    outputs are written, the clusters stay as they were."""
    pool = segments(13, 10)
    dedup = {**BRIDGING, "type": kind} if kind == "minhash" else {"type": "exact"}
    job = make_job(str(tmp_path / "out"), dedup)
    first = night(job, {"p-0": documents(70, pool, 12, "a")}, ["p-0"])
    fresh = [(f"fresh-{i}", text) for i, text in enumerate(segments(14, 3))]
    outcome = night(job, {"p-1": fresh}, ["p-0", "p-1"])
    assert outcome.mode == "night"
    assert outcome.removed() == {"p-0": first.removed()["p-0"], "p-1": 0}
    assert outcome.counts["fates_rewritten"] == 0
    assert (outcome.clusters, outcome.cluster_sizes) == (first.clusters, first.cluster_sizes)
    assert outcome.churn == churn()


def test_a_better_copy_of_a_published_page_of_no_cluster_replaces_it(tmp_path: Path) -> None:
    """`highest_score` with `exact_first`: a published page that had no copy meets a new, higher-scored exact
    copy; the published one leaves kept/ (`better_copy`) as an exact duplicate, its shard's fate is rewritten."""
    page, other = segments(15, 2)
    job = make_job(
        str(tmp_path / "out"), {**BRIDGING, "keep": "highest_score", "score_column": "score", "exact_first": True}
    )

    def scored(rows: list[tuple[str, str, float]]) -> pa.Table:
        return pa.table(
            {
                "id": [r[0] for r in rows],
                "text": pa.array([r[1] for r in rows], type=pa.large_string()),
                "score": [r[2] for r in rows],
            }
        )

    stage(job, {"p-0": scored([("published", page, 0.1), ("other", other, 0.5)])})
    run_dedup(job, ["p-0"], SerialExecutor())
    stage(job, {"p-1": scored([("better", page, 0.9)])})
    outcome = run_dedup(job, ["p-0", "p-1"], SerialExecutor())
    assert outcome.mode == "night"
    assert outcome.churn == churn(better_copy=1)
    assert kept_ids(job, ["p-0", "p-1"]) == ["better", "other"]
    removed = duplicates(job, ["p-0"]).select(["id", "duplicate_of", "reason"]).to_pylist()
    assert removed == [{"id": "published", "duplicate_of": "better", "reason": "exact/duplicate"}]
