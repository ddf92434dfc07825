"""`OUT/_units/_summary.json`: what every shard's marker said at the end of the last run, in one object.

A nightly rerun that changed little would otherwise read every shard's marker (a HEAD and a GET each, 16 KiB of
stats a shard held in the driver) only to find its key unchanged. A run without failures writes, per shard: the
listing fingerprint of its marker file (size and etag or mtime, as `engine.io.paths.fingerprint_of` gives it),
a digest of the key the marker records, its outputs, its kept count and, for a re-keyed shard, the key its
outputs were made under; and once, the sum of every shard's stats. The plan trusts an entry only while the
listing of `OUT/_units/` shows its marker unchanged (a marker rewritten, deleted or edited since is read as
before), and only when the digest equals the shard's key now: a marker is never trusted on the summary's word
beyond what it recorded. The summed stats stand for the reused shards only when they are exactly the summary's.
The dedup's removal summary (engine.runner.dedup_removal) lists and records outputs with the same helpers.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, fields
from typing import Any

from engine.io.layout import UNITS, join
from engine.io.markers import read_json, write_json
from engine.io.paths import all_exist, filesystem, fingerprint_of, has_protocol, list_file_infos, list_files
from engine.stats import _HISTOGRAMS, _MAXIMA, SLOWEST_SHARDS, Stats

SUMMARY_FILE = "_summary.json"
SUMMARY_FORMAT = 1
MARKER_SUFFIX = ".marker.json"
LIST_FROM = 16
"""Outputs to check in one folder from which one listing of the folder replaces a HEAD per file."""


def summary_url(out: str) -> str:
    return join(out, UNITS, SUMMARY_FILE)


def key_digest(key: Mapping[str, Any] | None) -> str:
    """A digest of a unit key as JSON (equal digests: equal keys)."""
    text = json.dumps(key, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:32]


@dataclass(frozen=True)
class Entry:
    """One shard as the last run left it (from the summary or from its marker)."""

    key: str
    """`key_digest` of the key its marker records."""
    outputs: tuple[str, ...]
    docs_kept: int
    made_under: dict[str, Any] | None = None
    """The key its outputs were made under, when its marker records one apart from its key (re-keyed)."""


@dataclass(frozen=True)
class Summary:
    """The entries still valid (their marker unchanged since) and the stats summed over every entry written."""

    entries: dict[str, Entry]
    stats: dict[str, Any]
    complete: bool
    """Every entry the summary was written with is still valid (no marker changed or vanished since)."""


def relative_to(out: str, url: str) -> str:
    """`url` relative to the output `out` when under it (kept that way in a summary: a shorter object)."""
    return url.removeprefix(out.rstrip("/") + "/")


def under(out: str, rel: str) -> str:
    """The URL a summary's `relative_to` stands for."""
    return rel if has_protocol(rel) or rel.startswith("/") else out.rstrip("/") + "/" + rel


def listed_fingerprints(folders: Iterable[str], options: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Path (within its filesystem) -> listing fingerprint of every file under `folders`: one recursive listing
    each (a LIST per 1,000 files on S3), no request per file."""
    found = {}
    for folder in folders:
        for url, info in list_file_infos(folder, options).items():
            found[filesystem(url, options)[1]] = fingerprint_of(info)
    return found


def marker_fingerprints(out: str, options: dict[str, Any], infos: Mapping[str, dict[str, Any]]) -> dict[str, Any]:
    """Shard -> its marker's listing fingerprint, from a listing of `OUT/_units/` (`list_file_infos`)."""
    base = filesystem(join(out, UNITS), options)[1].rstrip("/")
    found = {}
    for url, info in infos.items():
        path = filesystem(url, options)[1]
        if path.endswith(MARKER_SUFFIX) and path.startswith(base + "/"):
            found[path[len(base) + 1 :].removesuffix(MARKER_SUFFIX)] = fingerprint_of(info)
    return found


def read_summary(out: str, options: dict[str, Any], markers: Mapping[str, Any]) -> Summary | None:
    """The last run's summary with only the entries whose marker the listing `markers` shows unchanged."""
    data = read_json(summary_url(out), options)
    if not data or data.get("format") != SUMMARY_FORMAT:
        return None
    entries = {}
    for rel, item in (data.get("shards") or {}).items():
        if markers.get(rel) != item["marker"]:
            continue
        outputs = tuple(under(out, o) for o in item["outputs"])
        entries[rel] = Entry(item["key"], outputs, int(item["docs_kept"]), item.get("made_under"))
    complete = len(entries) == len(data.get("shards") or {})
    return Summary(entries, data.get("stats") or {}, complete)


def write_summary(out: str, options: dict[str, Any], entries: Mapping[str, Entry], stats: Stats | None) -> None:
    """Record every shard's entry under its marker's fingerprint now (one listing of `OUT/_units/`), and `stats`,
    the sum of exactly these entries' stats (None: not known)."""
    markers = marker_fingerprints(out, options, list_file_infos(join(out, UNITS), options, f"**/*{MARKER_SUFFIX}"))
    shards = {}
    for rel, entry in sorted(entries.items()):
        if rel not in markers:
            continue  # not finished: a later plan reads what is there
        item: dict[str, Any] = {
            "marker": markers[rel],
            "key": entry.key,
            "outputs": [relative_to(out, o) for o in entry.outputs],
            "docs_kept": entry.docs_kept,
        }
        if entry.made_under is not None:
            item["made_under"] = entry.made_under
        shards[rel] = item
    complete = len(shards) == len(entries)
    data = {"format": SUMMARY_FORMAT, "shards": shards, "stats": stats.to_dict() if complete and stats else {}}
    write_json(summary_url(out), data, options)


def missing_outputs(outputs: Iterable[tuple[int, Iterable[str]]], options: dict[str, Any]) -> set[int]:
    """The items (index, its files) of which a file is gone: a folder with `LIST_FROM` or more files to check is
    listed once (a LIST per 1,000 files), a file elsewhere is checked alone (a HEAD)."""
    by_folder: dict[str, list[tuple[int, str]]] = {}
    for index, urls in outputs:
        for url in urls:
            by_folder.setdefault(url.rsplit("/", 1)[0], []).append((index, url))
    missing: set[int] = set()
    for folder, items in by_folder.items():
        if len(items) >= LIST_FROM:
            present = {filesystem(u, options)[1] for u in list_files(folder, options, "*")}
            missing.update(i for i, url in items if filesystem(url, options)[1] not in present)
        else:
            missing.update(i for i, url in items if not all_exist([url], options))
    return missing


def stats_without(total: Stats, part: Stats, rels: set[str]) -> Stats | None:
    """`total` less `part`, the summed stats of the shards `rels` it includes; None where that is not exact: a
    maximum one of them reached, or a full slowest-shard list one of them is in (the next one is not known)."""
    result = Stats()
    for f in fields(Stats):
        a, b = getattr(total, f.name), getattr(part, f.name)
        if f.name in _MAXIMA:
            if b and b >= a:
                return None
            value: Any = a
        elif f.name == "phase_peak_rss_bytes":
            if any(v and v >= a.get(k, 0) for k, v in b.items()):
                return None
            value = dict(a)
        elif f.name in _HISTOGRAMS:
            value = {name: +(Counter(a[name]) - Counter(b.get(name, {}))) for name in a}
            value = {name: bins for name, bins in value.items() if bins}
        elif f.name == "slowest_shards":
            if len(a) >= SLOWEST_SHARDS and any(shard[1] in rels for shard in a):
                return None
            value = [shard for shard in a if shard[1] not in rels]
        elif isinstance(a, dict):
            value = +(Counter(a) - Counter(b))
        else:
            value = a - b
        setattr(result, f.name, value)
    return result
