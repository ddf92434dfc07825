"""A changed blocklist redoes exactly the shards holding a document it affects; the others are re-keyed (issue 11).

Real local Ray, real files. The corpus (tests/runner/test_rebuild.py): 5 shards of 20 real web documents, shard
part-i's pages on `site<i>.example.org` (registered domain `example.org`, shared by all), part-1 and part-3 also
holding pages of `bad.com`.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

from engine import run_job
from engine.api import plan_job
from engine.spec import JobSpec
from tests.runner.test_rebuild import (
    everything,
    full_rebuild,
    job_of,
    kept,
    marker_times,
    redone,
    write_site,
)

pytestmark = pytest.mark.ray

DOMAINS = "steps[0].domains_file"
ADDED_ONE = "1 entry added, 0 removed"


@pytest.fixture
def lists(tmp_path: Path) -> dict[str, Any]:
    """Input shards, a domain and a URL blocklist (empty at first), the job (as a dict, to vary it)."""
    src = tmp_path / "in"
    write_site(src)
    domains, urls = tmp_path / "domains.txt", tmp_path / "urls.txt"
    domains.write_text("# domains\n")
    urls.write_text("# urls\n")
    raw = {
        "name": "nightly",
        "input": {"path": str(src)},
        "output": {"path": str(tmp_path / "out")},
        "steps": [
            {"type": "url_filter", "domains_file": str(domains), "urls_file": str(urls)},
            {"type": "doc_length", "min_words": 50},
        ],
    }
    return {"src": src, "out": tmp_path / "out", "domains": domains, "urls": urls, "raw": raw, "tmp": tmp_path}


def headline(src: Path, redo: list[str], rekey: int) -> str:
    sizes = {p.stem: p.stat().st_size for p in src.glob("*.parquet")}
    total = sum(sizes.values())
    shards = len(sizes)
    redo_bytes = sum(sizes[rel] for rel in redo)
    return (
        f"plan for 'nightly': {shards} shards, {total / 1e6:,.1f} MB of input; redo {len(redo)}"
        f" ({100 * len(redo) / shards:.1f}% of shards, {100 * redo_bytes / total:.1f}% of bytes),"
        f" re-key {rekey} (outputs kept), reuse {shards - len(redo) - rekey}"
    )


def hit(name: str, change: str, rels: list[str]) -> str:
    names = ", ".join(rels[:3]) + (f", ... (+{len(rels) - 3})" if len(rels) > 3 else "")
    reason = f"list {name} changed ({change}): a document of the shard matches a changed entry"
    return f"  redo   {len(rels):>7,}  {reason}: {names}"


def miss(name: str, change: str, rels: list[str]) -> str:
    names = ", ".join(rels[:3]) + (f", ... (+{len(rels) - 3})" if len(rels) > 3 else "")
    return f"  re-key {len(rels):>7,}  list {name} changed ({change}): no document of the shard is affected: {names}"


def full_rebuild_with_counts(job: JobSpec, tmp: Path) -> tuple[set[tuple[str, str]], Counter[str]]:
    """The kept documents and the drops by reason of a build from scratch into a new output."""
    fresh = tmp / f"fresh-{time.monotonic_ns()}"
    stats = run_job(job.model_copy(update={"output": job.output.model_copy(update={"path": str(fresh)})}))
    return kept(fresh), stats.dropped


def output_files(out: Path) -> dict[str, int]:
    """Every output file of the shards (kept, rejected, URL-key sidecars) and its mtime."""
    files = [*out.glob("kept/**/*.parquet"), *out.glob("rejected/**/*.parquet"), *out.glob("_units/*.urlkeys.parquet")]
    return {str(path.relative_to(out)): path.stat().st_mtime_ns for path in files}


def rewritten(before: dict[str, int], after: dict[str, int]) -> list[str]:
    return sorted(path for path, mtime in after.items() if before.get(path) != mtime)


def others(*rels: str) -> list[str]:
    return [rel for rel in everything() if rel not in rels]


def test_a_domain_added_redoes_the_one_shard_it_touches(ray_local: None, lists: dict[str, Any]) -> None:
    job = job_of(lists["raw"])
    run_job(job)
    outputs, markers = output_files(lists["out"]), marker_times(lists["out"])
    lists["domains"].write_text("# domains\nsite3.example.org\n")  # a host: only part-3's pages are on it
    assert plan_job(job) == [
        headline(lists["src"], ["part-3"], rekey=4),
        hit(DOMAINS, ADDED_ONE, ["part-3"]),
        miss(DOMAINS, ADDED_ONE, others("part-3")),
    ]
    stats = run_job(job)
    assert (stats.shards_processed, stats.shards_skipped, stats.shards_rekeyed) == (1, 4, 4)
    assert rewritten(outputs, output_files(lists["out"])) == [
        "_units/part-3.urlkeys.parquet",
        "kept/part-3.parquet",
        "rejected/part-3.parquet",
    ]
    assert redone(markers, marker_times(lists["out"])) == everything()  # 1 redone, 4 re-keyed: new keys
    assert stats.dropped["url_filter/blocked_subdomain"] > 0
    assert (kept(lists["out"]), stats.dropped) == full_rebuild_with_counts(job, lists["tmp"])
    assert plan_job(job)[0].endswith("nothing to redo, every shard is reused")
    assert len(list((lists["out"] / "_units/_lists").glob("*.parquet"))) == 2  # the current domain and URL lists


def test_a_domain_removed_brings_documents_back_in_its_shard_only(ray_local: None, lists: dict[str, Any]) -> None:
    lists["domains"].write_text("bad.com\nsite2.example.org\n")
    job = job_of(lists["raw"])
    run_job(job)
    assert not any(doc_id.startswith("s2-") for doc_id, _ in kept(lists["out"]))
    outputs = output_files(lists["out"])
    lists["domains"].write_text("bad.com\n")
    removed = "0 entries added, 1 removed"
    assert plan_job(job) == [
        headline(lists["src"], ["part-2"], rekey=4),
        hit(DOMAINS, removed, ["part-2"]),
        miss(DOMAINS, removed, others("part-2")),
    ]
    run_job(job)
    assert {p.split("/")[1] for p in rewritten(outputs, output_files(lists["out"]))} == {
        "part-2.urlkeys.parquet",
        "part-2.parquet",
    }
    back = {doc_id for doc_id, _ in kept(lists["out"]) if doc_id.startswith("s2-")}
    assert back
    assert not any(doc_id.startswith(("s1-0", "s3-0")) for doc_id, _ in kept(lists["out"]))  # bad.com stays out
    assert kept(lists["out"]) == full_rebuild(job, lists["tmp"])


def test_both_lists_changed_at_once(ray_local: None, lists: dict[str, Any]) -> None:
    job = job_of(lists["raw"])
    run_job(job)
    lists["domains"].write_text("bad.com\n")  # parts 1 and 3
    lists["urls"].write_text("site4.example.org/page-7\nnot-in-the-corpus.org/x\n")  # part-4 (one exact URL)
    urls, two = "steps[0].urls_file", "2 entries added, 0 removed"
    assert plan_job(job) == [
        headline(lists["src"], ["part-1", "part-3", "part-4"], rekey=2),
        hit(DOMAINS, ADDED_ONE, ["part-1", "part-3"]),
        hit(urls, two, ["part-4"]),
        miss(DOMAINS, ADDED_ONE, ["part-0", "part-2"]),
        miss(urls, two, ["part-0", "part-2"]),
    ]
    stats = run_job(job)
    assert stats.dropped["url_filter/blocked_url"] == 1
    assert (kept(lists["out"]), stats.dropped) == full_rebuild_with_counts(job, lists["tmp"])


def test_a_document_dropped_before_the_filter_is_not_a_key(ray_local: None, lists: dict[str, Any]) -> None:
    """Documents a step before url_filter drops never reach it: a list change on their domain re-keys the shard."""
    texts = ["too short", " ".join(["enough words here"] * 30)]
    table = pa.table({"id": ["t-0", "t-1"], "text": texts, "url": ["short.example.net/a", "long.example.net/b"]})
    pq.write_table(table, lists["src"] / "part-5.parquet")
    raw = {**lists["raw"], "steps": [lists["raw"]["steps"][1], lists["raw"]["steps"][0]]}  # doc_length first
    job = job_of(raw)
    run_job(job)
    lists["domains"].write_text("short.example.net\n")
    domains = "steps[1].domains_file"
    assert plan_job(job)[1:] == [miss(domains, ADDED_ONE, [*everything(), "part-5"])]
    lists["domains"].write_text("short.example.net\nlong.example.net\n")
    assert plan_job(job)[1:] == [
        hit(domains, "2 entries added, 0 removed", ["part-5"]),
        miss(domains, "2 entries added, 0 removed", everything()),
    ]
    run_job(job)
    assert ("t-1", texts[1]) not in kept(lists["out"])
    assert kept(lists["out"]) == full_rebuild(job, lists["tmp"])


def test_a_list_change_with_a_parameter_change_redoes_everything(ray_local: None, lists: dict[str, Any]) -> None:
    job = job_of(lists["raw"])
    run_job(job)
    lists["domains"].write_text("site3.example.org\n")
    steps = [lists["raw"]["steps"][0], {"type": "doc_length", "min_words": 60}]
    changed = job_of(lists["raw"], steps=steps)
    lines = plan_job(changed)
    assert lines[1:] == [
        "  redo         5  changed asset steps[0].domains_file: part-0, part-1, part-2, ... (+2)",
        "  redo         5  changed parameter steps[1].min_words: 50 -> 60: part-0, part-1, part-2, ... (+2)",
    ]
    outputs = output_files(lists["out"])
    stats = run_job(changed)
    assert (stats.shards_processed, stats.shards_rekeyed) == (5, 0)
    assert len(rewritten(outputs, output_files(lists["out"]))) == len(outputs)
    assert kept(lists["out"]) == full_rebuild(changed, lists["tmp"])


def spoil_list_keys(out: Path, how: str) -> None:
    """Make every marker look written by an engine before list keys (no record, no sidecar) or by another scheme."""
    for path in (out / "_units").glob("*.marker.json"):
        marker = json.loads(path.read_text())
        if how == "other scheme":  # e.g. keys taken with another tldextract (another public-suffix snapshot)
            marker["list_keys"]["scheme"] = "xxh3_64/48-bits;tldextract-0.0;v1"
        else:
            sidecar = marker.pop("list_keys")["file"]
            marker["outputs"] = [url for url in marker["outputs"] if url != sidecar]
            del marker["rows"][sidecar]
            Path(sidecar).unlink()
        path.write_text(json.dumps(marker))


@pytest.mark.parametrize("how", ["no record", "other scheme"])
def test_markers_without_usable_list_keys_redo(ray_local: None, lists: dict[str, Any], how: str) -> None:
    job = job_of(lists["raw"])
    run_job(job)
    spoil_list_keys(lists["out"], how)
    assert plan_job(job)[0].endswith("nothing to redo, every shard is reused")  # nothing else depends on them
    lists["domains"].write_text("site3.example.org\n")
    assert plan_job(job)[1:] == [
        f"  redo         5  changed asset {DOMAINS} (the shard has no usable record of its documents' URL keys):"
        " part-0, part-1, part-2, ... (+2)"
    ]
    run_job(job)  # the shards are redone with their keys recorded: the next change is selective again
    lists["domains"].write_text("site3.example.org\nsite1.example.org\n")
    assert plan_job(job)[1:] == [
        hit(DOMAINS, ADDED_ONE, ["part-1"]),
        miss(DOMAINS, ADDED_ONE, ["part-0", "part-2", "part-3", "part-4"]),
    ]


def test_an_unrecorded_list_version_redoes(ray_local: None, lists: dict[str, Any]) -> None:
    job = job_of(lists["raw"])
    run_job(job)
    for snapshot in (lists["out"] / "_units/_lists").glob("*.parquet"):
        snapshot.unlink()  # the versions the last run used are not recorded any more
    lists["domains"].write_text("site3.example.org\n")
    assert plan_job(job)[1:] == [
        f"  redo         5  changed asset {DOMAINS} (its previous version was not recorded, so it cannot be diffed):"
        " part-0, part-1, part-2, ... (+2)"
    ]
    before = marker_times(lists["out"])
    run_job(job)
    assert redone(before, marker_times(lists["out"])) == everything()
    assert kept(lists["out"]) == full_rebuild(job, lists["tmp"])


S3_RUN = "import sys; from engine.cli import main; sys.exit(main(sys.argv[1:]))"


@pytest.mark.s3
def test_a_list_on_s3_is_diffed_by_its_etag(ray_local: None, lists: dict[str, Any], s3_server: dict[str, str]) -> None:
    """The list lives on S3 (moto); `corpus-engine run` as a user runs it, with credentials in the environment."""
    import s3fs

    fs = s3fs.S3FileSystem(**s3_server)
    fs.mkdir("lists-nightly")
    fs.pipe("lists-nightly/domains.txt", b"bad.com\n")
    raw = {**lists["raw"], "steps": [{"type": "url_filter", "domains_file": "s3://lists-nightly/domains.txt"}]}
    job_file = lists["tmp"] / "nightly.yaml"
    job_file.write_text(yaml.safe_dump(raw))
    env = {
        **os.environ,
        "PYTHONPATH": str(Path(__file__).resolve().parents[2]),
        "AWS_ACCESS_KEY_ID": s3_server["key"],
        "AWS_SECRET_ACCESS_KEY": s3_server["secret"],
        "AWS_ENDPOINT_URL": s3_server["endpoint_url"],
        "AWS_DEFAULT_REGION": "us-east-1",
    }
    env.pop("RAY_ADDRESS", None)

    def cli(*args: str) -> str:
        done = subprocess.run(
            [sys.executable, "-c", S3_RUN, *args, str(job_file)], env=env, capture_output=True, text=True, check=False
        )
        assert done.returncode == 0, done.stderr
        return done.stdout

    # `--address local`: a Ray of its own (without an address, Ray joins a cluster another `ray start` recorded)
    cli("run", "--quiet", "--address", "local")
    outputs = output_files(lists["out"])
    fs.pipe("lists-nightly/domains.txt", b"bad.com\nsite3.example.org\n")
    planned = cli("plan").splitlines()
    name = "steps[0].domains_file"
    assert planned == [
        headline(lists["src"], ["part-3"], rekey=4),
        hit(name, ADDED_ONE, ["part-3"]),
        miss(name, ADDED_ONE, others("part-3")),
    ]
    assert "shards: 1 processed, 4 skipped (4 re-keyed) of 5" in cli("run", "--quiet", "--address", "local")
    assert {p.split("/")[1] for p in rewritten(outputs, output_files(lists["out"]))} == {
        "part-3.urlkeys.parquet",
        "part-3.parquet",
    }
    local = lists["tmp"] / "same-list.txt"
    local.write_text("bad.com\nsite3.example.org\n")
    same = job_of(raw, steps=[{"type": "url_filter", "domains_file": str(local)}])
    assert kept(lists["out"]) == full_rebuild(same, lists["tmp"])
    assert cli("plan").splitlines()[0].endswith("nothing to redo, every shard is reused")


def test_re_keyed_shards_keep_their_dedup_identity(ray_local: None, lists: dict[str, Any]) -> None:
    """A re-keyed shard's outputs are the ones made under its old key: dedup must not see it as changed, so its
    kept/ file is not rewritten (before the fix every re-keyed shard was deduplicated and rewritten again)."""
    raw = {**lists["raw"], "dedup": {"type": "minhash"}}
    job = job_of(raw)
    run_job(job)
    outputs = output_files(lists["out"])
    lists["domains"].write_text("# domains\nsite3.example.org\n")
    stats = run_job(job)
    assert (stats.shards_processed, stats.shards_rekeyed) == (1, 4)
    assert [p for p in rewritten(outputs, output_files(lists["out"])) if p.startswith("kept/")] == [
        "kept/part-3.parquet"
    ]
    assert kept(lists["out"]) == full_rebuild(job, lists["tmp"])
    lists["domains"].write_text("# domains\nsite3.example.org\nnot-in-the-corpus.org\n")  # re-keys all five
    outputs = output_files(lists["out"])
    stats = run_job(job)
    assert (stats.shards_processed, stats.shards_rekeyed) == (0, 5)
    assert rewritten(outputs, output_files(lists["out"])) == []
