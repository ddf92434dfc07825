"""Build order (issue 11 item 4, plan step 6): `first_seen` follows the night a shard was first published."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pytest
from hypothesis import given
from hypothesis import strategies as st

from engine.dedup.signatures import dedup_root
from engine.dedup.state import Registry, read_registry, register, registry_url
from engine.runner.dedup import DedupOutcome, run_dedup
from engine.runner.executor import SerialExecutor
from engine.spec import JobSpec
from tests.dedup.staging import corpus, make_job, stage
from tests.dedup.test_phases import duplicates, kept_ids

TEXT = corpus(3, originals=1, copies=0, words=80)[0][1]


def table(rows: list[tuple[str, str]]) -> pa.Table:
    return pa.table({"id": [r[0] for r in rows], "text": pa.array([r[1] for r in rows], type=pa.large_string())})


def night(job: JobSpec, new: dict[str, list[tuple[str, str]]], shards: list[str]) -> DedupOutcome:
    """Stage the night's new shards (as phase A would) and run dedup over `shards`."""
    stage(job, {rel: table(rows) for rel, rows in new.items()})
    return run_dedup(job, shards, SerialExecutor())


def registry(job: JobSpec) -> Registry | None:
    assert job.dedup is not None
    return read_registry(dedup_root(job.output.path, job.dedup), {})


@pytest.mark.parametrize("kind", ["minhash", "exact"])
def test_a_shard_added_later_never_replaces_a_published_representative(tmp_path: Path, kind: str) -> None:
    """`p-10` sorts before `p-9` and its copy's id before the published one's: neither matters, the document
    published on the first night stays; built from scratch in one night, the same shards keep the other copy."""
    published = [("z-published", TEXT), ("other-1", "an unrelated page about something else entirely here")]
    later = [("a-copy", TEXT)]
    job = make_job(str(tmp_path / "nightly"), {"type": kind})
    night(job, {"p-9": published}, ["p-9"])
    assert kept_ids(job, ["p-9"]) == ["other-1", "z-published"]
    outcome = night(job, {"p-10": later}, ["p-9", "p-10"])
    assert outcome.removed() == {"p-9": 0, "p-10": 1}
    assert outcome.churn == {
        "left_kept": 0,
        "returned_to_kept": 0,
        "merged": 0,
        "better_copy": 0,
        "representative_removed": 0,
        "cluster_split": 0,
    }
    assert kept_ids(job, ["p-9", "p-10"]) == ["other-1", "z-published"]
    assert duplicates(job, ["p-10"])["duplicate_of"].to_pylist() == ["z-published"]
    assert registry(job) == Registry(2, {"p-9": 1, "p-10": 2})

    scratch = make_job(str(tmp_path / "scratch"), {"type": kind})
    night(scratch, {"p-9": published, "p-10": later}, ["p-9", "p-10"])
    assert kept_ids(scratch, ["p-9", "p-10"]) == ["a-copy", "other-1"]  # one build: shard name order


def test_the_registry_is_written_only_when_the_shards_change(tmp_path: Path) -> None:
    job = make_job(str(tmp_path / "out"), {"type": "minhash"})
    assert job.dedup is not None
    url = Path(registry_url(dedup_root(job.output.path, job.dedup)))
    night(job, {"b": [("b-0", TEXT)], "a": [("a-0", TEXT + " more")]}, ["a", "b"])
    assert json.loads(url.read_text())["first_seen"] == {"a": 1, "b": 1}
    assert kept_ids(job, ["a", "b"]) == ["a-0"]  # one build: a's copy is first (name order)
    written = url.stat().st_mtime_ns
    night(job, {}, ["a", "b"])  # unchanged rerun: nothing rewritten
    assert url.stat().st_mtime_ns == written
    night(job, {}, ["b"])  # a vanished shard leaves the registry; its build stays counted
    assert registry(job) == Registry(1, {"b": 1})
    night(job, {}, ["a", "b"])  # and comes back as a new shard, after b
    assert registry(job) == Registry(2, {"a": 2, "b": 1})
    assert kept_ids(job, ["a", "b"]) == ["b-0"]  # b was published while a was away


builds = st.lists(st.sets(st.sampled_from([f"s{i}" for i in range(12)]), max_size=8), min_size=1, max_size=6)


@given(builds)
def test_build_order_keeps_old_shards_first_and_in_their_order(nights: list[set[str]]) -> None:
    """Across any sequence of builds: a shard present in two consecutive builds keeps its place relative to the
    other such shards, and every shard new in a build comes after every shard that was already there."""
    previous: Registry | None = None
    for shards in nights:
        current = register(previous, sorted(shards))
        order = current.order()
        assert sorted(order) == sorted(shards)
        if previous is not None:
            old = [rel for rel in order if rel in previous.first_seen]
            assert old == [rel for rel in previous.order() if rel in shards]
            assert order[: len(old)] == old
        previous = current


def mtimes(job: JobSpec) -> dict[str, int]:
    root = Path(job.output.path)
    return {
        str(p.relative_to(root)): p.stat().st_mtime_ns
        for area in ("kept", "rejected")
        for p in (root / area).rglob("*.parquet")
    }


@pytest.mark.parametrize("keep", ["first_seen", "longest"])
def test_a_night_rewrites_kept_only_for_new_shards_and_shards_whose_duplicates_changed(
    tmp_path: Path, keep: str
) -> None:
    """Night 2 adds `p-3`: copies of documents of the old shards plus new pages, and (for `longest`) a longer
    copy of one of `p-1`'s representatives. Old shards whose duplicates did not change keep their files; the
    outputs equal a build of all four shards from scratch, file for file."""
    from tests.dedup.test_identity import assert_same_outputs

    rows = corpus(31, originals=24, copies=2, words=60)
    old = {f"p-{s}": [(doc, text) for doc, text, _ in rows[s::3]] for s in range(3)}
    longer = old["p-1"][0]
    new = [(f"new-{doc}", text) for doc, text in old["p-0"][:3] + old["p-2"][:2]]
    new += [(f"fresh-{i}", text) for i, (_, text, _) in enumerate(corpus(32, originals=4, copies=0, words=60))]
    if keep == "longest":
        new.append(("new-longer", longer[1] + " " + " ".join(longer[1].split()[:20])))
    dedup = {"type": "minhash", "keep": keep}
    job = make_job(str(tmp_path / "nightly"), dedup)
    night(job, old, sorted(old))
    published = kept_ids(job, sorted(old))
    before = mtimes(job)
    outcome = night(job, {"p-3": new}, [*sorted(old), "p-3"])
    after = mtimes(job)
    rewritten = {name.split("/")[1].split(".")[0] for name in after if after[name] != before.get(name)}
    assert rewritten == ({"p-1", "p-3"} if keep == "longest" else {"p-3"})
    # churn: under longest the longer copy pushes p-1's representative out of kept/; first_seen never does
    assert outcome.churn == {
        "left_kept": int(keep == "longest"),
        "returned_to_kept": 0,
        "merged": 0,
        "better_copy": int(keep == "longest"),
        "representative_removed": 0,
        "cluster_split": 0,
    }
    scratch = make_job(str(tmp_path / "scratch"), dedup)
    night(scratch, {**old, "p-3": new}, [*sorted(old), "p-3"])
    assert_same_outputs(Path(job.output.path), Path(scratch.output.path))
    outcome = night(job, {}, sorted(old))  # p-3 vanishes: p-1's representative returns
    assert outcome.churn == {"left_kept": 0, "returned_to_kept": int(keep == "longest")}
    assert kept_ids(job, sorted(old)) == published


def test_a_changed_shard_is_rewritten_and_keeps_its_place(tmp_path: Path) -> None:
    """`p-0` changes on night 2 (one page fewer): it is rewritten, keeps its build (its copies still win over
    `p-1`'s) and the outputs equal a build from scratch."""
    from tests.dedup.test_identity import assert_same_outputs

    rows = corpus(33, originals=12, copies=2, words=60)
    shards = {f"p-{s}": [(doc, text) for doc, text, _ in rows[s::2]] for s in range(2)}
    job = make_job(str(tmp_path / "nightly"), {"type": "minhash"})
    night(job, shards, sorted(shards))
    before = mtimes(job)
    changed = {"p-0": shards["p-0"][:-1]}
    night(job, changed, sorted(shards))
    after = mtimes(job)
    assert {name.split("/")[1].split(".")[0] for name in after if after[name] != before[name]} >= {"p-0"}
    assert registry(job) == Registry(1, {"p-0": 1, "p-1": 1})
    scratch = make_job(str(tmp_path / "scratch"), {"type": "minhash"})
    night(scratch, {**shards, **changed}, sorted(shards))
    assert_same_outputs(Path(job.output.path), Path(scratch.output.path))
