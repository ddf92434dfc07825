"""The pieces of selective list invalidation, without Ray: diffs, key comparison, snapshots, sidecars."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from engine.io.layout import list_snapshot_file
from engine.runner.keys import job_key
from engine.runner.lists import KeyRecorder, ListDiff, ListVersions, list_only_changes, read_snapshot, read_unit_keys
from engine.spec import JobSpec, parse_job
from engine.steps.url_keys import KEY_BITS, list_hashes, string_hashes, to_keys

FINGERPRINT = {"size": 10, "version": "1"}
DOMAINS = "steps[0].domains_file"


def job_with(tmp_path: Path, domains: Path, **step: object) -> JobSpec:
    return parse_job(
        {
            "input": {"path": str(tmp_path / "in")},
            "output": {"path": str(tmp_path / "out")},
            "steps": [{"type": "url_filter", "domains_file": str(domains), **step}, {"type": "doc_length"}],
        }
    )


@pytest.fixture
def domains(tmp_path: Path) -> Path:
    path = tmp_path / "domains.txt"
    path.write_text("a.com\nb.org\n")
    return path


def test_diff_counts_added_and_removed_entries() -> None:
    old, new = np.unique(string_hashes(["a.com", "b.org", "c.net"])), np.unique(string_hashes(["b.org", "d.io"]))
    diff = ListDiff.between(old, new)
    assert (diff.added, diff.removed, diff.summary()) == (1, 2, "1 entry added, 2 removed")
    assert diff.keys.tolist() == to_keys(string_hashes(["a.com", "c.net", "d.io"])).tolist()
    assert diff.hits(to_keys(string_hashes(["zz.com", "c.net"])))
    assert not diff.hits(to_keys(string_hashes(["b.org", "zz.com"])))
    assert not diff.hits(np.zeros(0, np.uint64))


keys_strategy = arrays(np.uint64, st.integers(0, 40), elements=st.integers(0, 60)).map(np.unique)


@settings(max_examples=200, deadline=None)
@given(changed=keys_strategy, shard=keys_strategy)
def test_hits_is_a_set_intersection(changed: np.ndarray, shard: np.ndarray) -> None:
    diff = ListDiff(0, 0, changed)
    assert diff.hits(shard) == bool(np.intersect1d(changed, shard).size)


def key_of(job: JobSpec) -> dict[str, object]:
    return job_key(job).unit_key(FINGERPRINT)


def test_only_a_key_differing_by_diffable_lists_alone_may_be_re_keyed(tmp_path: Path, domains: Path) -> None:
    job = job_with(tmp_path, domains)
    lists = {DOMAINS: str(domains)}
    before = key_of(job)
    domains.write_text("a.com\n")
    after = key_of(job)
    assert list_only_changes(before, after, lists) == {DOMAINS: before["assets"][DOMAINS]}  # type: ignore[index]
    assert list_only_changes(before, before, lists) is None  # nothing changed
    assert list_only_changes(before, {**after, "input": {"size": 11}}, lists) is None
    assert list_only_changes(before, key_of(job_with(tmp_path, domains, soft_word_threshold=3)), lists) is None
    assert list_only_changes(before, {**after, "versions": {"steps[0]": "url_filter@2"}}, lists) is None
    shipped = dict(after["assets"])  # type: ignore[call-overload]
    shipped["steps[0].shipped/banned_words.txt"] = "sha256:other"
    assert list_only_changes(before, {**after, "assets": shipped}, lists) is None  # not a diffable list
    assert list_only_changes(None, after, lists) is None  # a marker from an older engine


def test_a_list_replaced_while_the_run_starts_is_not_recorded_as_the_keyed_version(
    tmp_path: Path, domains: Path
) -> None:
    job = job_with(tmp_path, domains)
    key = job_key(job)
    token = key.assets[DOMAINS]
    domains.write_text("a.com\nb.org\nnew.net\n")  # replaced after the key was taken
    ListVersions(job, key).save()
    assert not Path(list_snapshot_file(str(tmp_path / "out"), token)).exists()
    key = job_key(job)
    ListVersions(job, key).save()
    recorded = read_snapshot(str(tmp_path / "out"), {}, key.assets[DOMAINS])
    assert recorded is not None
    assert recorded.tolist() == list_hashes(str(domains)).tolist()
    assert read_snapshot(str(tmp_path / "out"), {}, token) is None


def test_sidecar_round_trip_and_size(tmp_path: Path, domains: Path) -> None:
    """100,000 documents with distinct URLs: about 4.3 bytes a key, delta-encoded (KEY_BITS-bit keys)."""
    urls_file = tmp_path / "urls.txt"
    urls_file.write_text("")
    recorder = KeyRecorder.for_job(job_with(tmp_path, domains, urls_file=str(urls_file)))
    assert recorder is not None
    urls = [f"https://site{i % 997}.com/p/{i}" for i in range(100_000)]
    for start in range(0, len(urls), 2048):
        recorder.observe(0, pa.table({"url": urls[start : start + 2048]}))
    recorder.observe(1, pa.table({"id": ["x"], "url": ["https://not-recorded.example/"]}))  # doc_length: no list
    url = str(tmp_path / "keys.parquet")
    rows, record = recorder.write(url, {})
    keys = read_unit_keys(url, {})
    assert keys is not None
    expected = to_keys(string_hashes({f"site{i}.com" for i in range(997)}))
    assert keys[DOMAINS].tolist() == expected.tolist()
    assert keys["steps[0].urls_file"].tolist() == to_keys(string_hashes(urls)).tolist()
    assert record["assets"] == {DOMAINS: 997, "steps[0].urls_file": 100_000}
    assert rows == 100_997
    assert int(keys[DOMAINS].max()) < 1 << KEY_BITS
    assert Path(url).stat().st_size / rows < 5  # sorted keys pack to their gaps (8 bytes each when plain)
    assert read_unit_keys(str(tmp_path / "missing.parquet"), {}) is None
