"""url_filter's blocklist keys: a list change that meets none of a batch's keys changes none of its verdicts.

This is what lets a nightly rebuild re-key a shard without redoing it (`engine.runner.lists`), so it is checked
as a property over random documents and random pairs of list versions, with the lists read from real files.
"""

from __future__ import annotations

import tempfile
import uuid
from pathlib import Path

import numpy as np
from hypothesis import example, given, settings
from hypothesis import strategies as st

from engine.batch import make_batch
from engine.steps.url import URLFilter, _file_entries
from engine.steps.url_keys import KEY_BITS, document_keys, list_hashes, string_hashes, to_keys

HOSTS = ["a.com", "www.a.com", "b.a.com", "a.co.uk", "x.a.co.uk", "b.org", "shop.b.org", "127.0.0.1", "c.net"]
PATHS = ["", "/", "/p", "/q?x=1"]
URLS = [f"https://{host}{path}" for host in HOSTS for path in PATHS] + ["", None]
ENTRIES = HOSTS + ["co.uk", "com", "https://a.com/p", "https://shop.b.org/q?x=1", "https://c.net"]

urls = st.lists(st.sampled_from(URLS), min_size=1, max_size=12)
lists = st.sets(st.sampled_from(ENTRIES), max_size=6)


def write_list(folder: Path, entries: set[str]) -> str:
    path = folder / f"{uuid.uuid4().hex}.txt"  # a new file per version: no cache can answer for an older one
    path.write_text("# blocklist\n" + "".join(f"{e}\n" for e in sorted(entries)), encoding="utf-8")
    return str(path)


def verdicts(step: URLFilter, batch_urls: list[str | None]) -> list[str | None]:
    batch = make_batch({"text": ["t"] * len(batch_urls), "url": batch_urls})
    return list(step(batch).reason)


@settings(max_examples=150, deadline=None)
@given(batch_urls=urls, old=lists, new=lists)
@example(batch_urls=["https://b.a.com/p"], old=set(), new={"a.com"})  # registered domain added
@example(batch_urls=["https://x.a.co.uk/"], old={"x.a.co.uk"}, new=set())  # host removed
@example(batch_urls=["https://a.com/p"], old=set(), new={"https://a.com/p"})  # URL added
@example(batch_urls=["https://c.net/p", None, ""], old={"b.org"}, new={"b.org", "shop.b.org"})  # a miss
def test_a_list_change_missing_every_key_changes_no_verdict(
    batch_urls: list[str | None], old: set[str], new: set[str]
) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        before = {name: write_list(folder, old) for name in ("domains_file", "urls_file")}
        after = {name: write_list(folder, new) for name in ("domains_file", "urls_file")}
        batch = make_batch({"text": ["t"] * len(batch_urls), "url": batch_urls})
        keys = document_keys(batch, ["domains_file", "urls_file"])
        changed = set()
        for name in before:
            old_hashes, new_hashes = list_hashes(before[name]), list_hashes(after[name])
            delta = to_keys(np.setxor1d(old_hashes, new_hashes))
            changed |= set(np.intersect1d(delta, keys[name]).tolist())
        old_verdicts = verdicts(URLFilter(**before), batch_urls)
        new_verdicts = verdicts(URLFilter(**after), batch_urls)
        if not changed:
            assert old_verdicts == new_verdicts
        for url, a, b in zip(batch_urls, old_verdicts, new_verdicts, strict=True):
            if a != b:  # the document whose verdict changed presents one of the changed entries
                own = document_keys(make_batch({"text": ["t"], "url": [url]}), ["domains_file", "urls_file"])
                assert any(np.intersect1d(list(changed), own[name]).size for name in own)


def test_list_entries_are_hashed_exactly_as_url_filter_reads_them(tmp_path: Path) -> None:
    path = tmp_path / "domains.txt"
    path.write_bytes("# comment\r\n  spaced.com  \r\n\r\nplain.org\n#not.this\n dup.net\ndup.net\nünï.de\n".encode())
    entries = _file_entries(str(path))
    assert entries == {"spaced.com", "plain.org", "dup.net", "ünï.de"}
    assert list_hashes(str(path)).tolist() == sorted(set(string_hashes(entries).tolist()))


def test_documents_without_url_present_no_key() -> None:
    batch = make_batch({"text": ["a", "b"], "url": [None, ""]})
    assert {name: keys.size for name, keys in document_keys(batch, ["domains_file", "urls_file"]).items()} == {
        "domains_file": 0,
        "urls_file": 0,
    }
    assert document_keys(make_batch({"text": ["a"]}), ["domains_file"])["domains_file"].size == 0


def test_domain_keys_are_the_registered_domain_and_the_host() -> None:
    batch = make_batch({"text": ["a", "b"], "url": ["https://x.shop.a.co.uk/p", "http://a.co.uk/"]})
    keys = document_keys(batch, ["domains_file"])["domains_file"]
    assert keys.tolist() == to_keys(string_hashes(["a.co.uk", "x.shop.a.co.uk"])).tolist()
    assert int(keys.max()) < 1 << KEY_BITS
