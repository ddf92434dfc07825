"""A changed blocklist redoes only the shards it affects: the others are re-keyed, their outputs kept.

`url_filter`'s `domains_file` / `urls_file` (FineWeb's UT1 list: millions of domains, changed almost daily) are
assets of every unit's key, so a new version would redo every shard. Instead:

- every unit records the keys its documents present to each such list, as they reach `url_filter` (registered
  domain and host for a domain list, URL for a URL list; `engine.steps.url_keys`), in a sidecar beside its
  marker, `OUT/_units/<rel>.urlkeys.parquet` (columns `asset`, `key`; about 4.3 bytes a distinct key);
- every run keeps the hashed entries of each list version it used, `OUT/_units/_lists/<token>.parquet`;
- when the only difference between a shard's recorded key and its key now is the identity of such lists, the
  plan diffs each list's recorded version against the current one and intersects the changed entries with the
  shard's keys (one sidecar read per shard, in parallel threads; never the corpus). A hit redoes the shard; a
  miss re-keys it: only its marker is rewritten, with the new key. Its outputs are those the new list gives:
  no document of it presents a changed entry, so `url_filter` decides every one of its documents alike.

Anything else (a parameter, a step version, a non-diffable asset, a marker without sidecar, a list version not
recorded) falls back to redoing the shard, with the reason.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from engine.errors import SpecError
from engine.io.assets import asset_identity, identity_token
from engine.io.atomic import atomic_open
from engine.io.layout import list_snapshot_file, list_snapshots_dir
from engine.io.paths import filesystem, list_files, remove_files
from engine.runner.keys import JobKey
from engine.spec import JobSpec
from engine.steps.url_keys import U64, blocklist_files, document_keys, key_scheme, list_hashes, to_keys

ASSET = "asset"
KEY = "key"
HASH = "hash"
LIST_SCHEME = "xxh3_64;v1"
"""How a list snapshot's entries are hashed (a snapshot of another scheme is not used)."""


def diffable_lists(job: JobSpec) -> dict[str, str]:
    """The blocklists of `job` a change of which can be diffed: key asset name (`steps[0].domains_file`) -> path."""
    return {
        f"steps[{index}].{parameter}": path
        for index, step in enumerate(job.steps)
        for parameter, path in blocklist_files(step).items()
    }


# --------------------------------------------------------------------------------------------------
# The units' side: the keys a shard's documents present to each list.


@dataclass
class KeyRecorder:
    """Collects, while a unit runs, the keys its documents present to each diffable list (at their step)."""

    targets: dict[int, dict[str, str]]
    """step index -> {list parameter: key asset name}"""
    found: dict[str, list[U64]] = field(default_factory=dict)

    @classmethod
    def for_job(cls, job: JobSpec) -> KeyRecorder | None:
        targets: dict[int, dict[str, str]] = {}
        for index, step in enumerate(job.steps):
            for parameter in blocklist_files(step):
                targets.setdefault(index, {})[parameter] = f"steps[{index}].{parameter}"
        return cls(targets) if targets else None

    def observe(self, index: int, batch: pa.Table) -> None:
        """The documents reaching step `index` (`process_batch`'s `before_step`)."""
        names = self.targets.get(index)
        if names is None:
            return
        for parameter, keys in document_keys(batch, names).items():
            self.found.setdefault(names[parameter], []).append(keys)

    def write(
        self, url: str, storage_options: dict[str, Any], *, tmp_dir: str | None = None
    ) -> tuple[int, dict[str, Any]]:
        """Write the sidecar at `url` (one row per distinct key and list); its rows and what the marker records."""
        names = [name for by_parameter in self.targets.values() for name in by_parameter.values()]
        keys = [np.unique(np.concatenate(self.found.get(name) or [np.zeros(0, np.uint64)])) for name in names]
        counts = {name: len(found) for name, found in zip(names, keys, strict=True)}
        indices = np.repeat(np.arange(len(names), dtype=np.int32), [len(found) for found in keys])
        table = pa.table(
            {
                ASSET: pa.DictionaryArray.from_arrays(pa.array(indices), pa.array(names, type=pa.string())),
                KEY: pa.array(np.concatenate(keys).astype(np.int64)),  # KEY_BITS < 63: never negative
            }
        )
        _write_sorted(table, url, storage_options, tmp_dir=tmp_dir, column=KEY)
        return table.num_rows, {"file": url, "scheme": key_scheme(), "assets": counts}


def _write_sorted(
    table: pa.Table, url: str, storage_options: dict[str, Any], *, column: str, tmp_dir: str | None = None
) -> None:
    """A table of sorted integer `column` as Parquet, delta-encoded (sorted hashes pack to their gaps)."""
    with atomic_open(url, "wb", storage_options, tmp_dir=tmp_dir) as handle:
        pq.write_table(
            table,
            handle,
            compression="zstd",
            use_dictionary=[c for c in table.column_names if c != column],
            column_encoding={column: "DELTA_BINARY_PACKED"},
        )


def read_unit_keys(url: str, storage_options: dict[str, Any]) -> dict[str, U64] | None:
    """A sidecar's keys by asset name, or None when it is missing or unreadable."""
    try:
        fs, path = filesystem(url, storage_options)
        with fs.open(path, "rb") as handle:
            table = pq.read_table(handle, columns=[ASSET, KEY])
    except (OSError, pa.ArrowInvalid, KeyError):
        return None
    assets = table[ASSET].combine_chunks().cast(pa.string()).to_numpy(zero_copy_only=False)
    keys = table[KEY].to_numpy().astype(np.uint64)
    return {str(name): np.sort(keys[assets == name]) for name in np.unique(assets)}


# --------------------------------------------------------------------------------------------------
# The lists' side: snapshots of the versions used, and diffs between two.


def read_snapshot(out: str, storage_options: dict[str, Any], token: str) -> U64 | None:
    """The hashed entries of the list version `token` a run recorded, or None (not recorded, other scheme)."""
    try:
        fs, path = filesystem(list_snapshot_file(out, token), storage_options)
        with fs.open(path, "rb") as handle:
            table = pq.read_table(handle)
    except (OSError, pa.ArrowInvalid):
        return None
    metadata = table.schema.metadata or {}
    if metadata.get(b"scheme") != LIST_SCHEME.encode() or metadata.get(b"token") != token.encode():
        return None
    return np.asarray(table[HASH].to_numpy(), dtype=np.uint64)


def write_snapshot(out: str, storage_options: dict[str, Any], token: str, hashes: U64) -> None:
    table = pa.table({HASH: pa.array(hashes, type=pa.uint64())})
    table = table.replace_schema_metadata({"scheme": LIST_SCHEME, "token": token, "entries": str(len(hashes))})
    _write_sorted(table, list_snapshot_file(out, token), storage_options, column=HASH)


@dataclass(frozen=True)
class ListDiff:
    """What changed between two versions of a list: counts, and the changed entries as shard keys."""

    added: int
    removed: int
    keys: U64

    @classmethod
    def between(cls, old: U64, new: U64) -> ListDiff:
        added = np.setdiff1d(new, old, assume_unique=True)
        removed = np.setdiff1d(old, new, assume_unique=True)
        return cls(len(added), len(removed), to_keys(np.concatenate([added, removed])))

    def summary(self) -> str:
        return f"{self.added:,} {'entry' if self.added == 1 else 'entries'} added, {self.removed:,} removed"

    def hits(self, keys: U64) -> bool:
        """Whether any of a shard's sorted `keys` is a changed entry."""
        if not len(keys) or not len(self.keys):
            return False
        at = np.searchsorted(keys, self.keys)
        inside = at < len(keys)
        return bool(np.any(keys[at[inside]] == self.keys[inside]))


class ListVersions:
    """The current and recorded versions of a job's lists, loaded once each (the driver's side of a plan)."""

    def __init__(self, job: JobSpec, key: JobKey) -> None:
        self.out, self.options = job.output.path, job.output.storage_options
        self.lists = diffable_lists(job)
        self.key = key
        self.current: dict[str, U64] = {}
        self._recorded: dict[str, U64 | None] = {}
        self._diffs: dict[tuple[str, str], ListDiff | None] = {}

    def current_hashes(self, name: str) -> U64:
        """The entries of list `name` now: its recorded snapshot if this version has one, else the file."""
        token = self.key.assets[name]
        if token not in self.current:
            found = self.recorded(token)
            self.current[token] = found if found is not None else _read_list(name, self.lists[name])
        return self.current[token]

    def recorded(self, token: str) -> U64 | None:
        if token not in self._recorded:
            self._recorded[token] = read_snapshot(self.out, self.options, token)
        return self._recorded[token]

    def diff(self, name: str, old_token: str) -> ListDiff | None:
        """The change of list `name` since version `old_token`, or None when that version was not recorded."""
        if (name, old_token) not in self._diffs:
            old = self.recorded(old_token)
            self._diffs[(name, old_token)] = None if old is None else ListDiff.between(old, self.current_hashes(name))
        return self._diffs[(name, old_token)]

    def save(self) -> None:
        """Record the current version of every list (once: an unchanged rerun writes nothing).

        The snapshot is written only if the file still has the identity the run's key holds (a list replaced
        while the run started is not recorded under the wrong version; the next change then redoes the shards).
        """
        for name, url in self.lists.items():
            token = self.key.assets[name]
            if self._recorded.get(token) is not None:
                continue  # read by the plan: it exists
            fs, path = filesystem(list_snapshot_file(self.out, token), self.options)
            if fs.exists(path):
                continue
            hashes = self.current.get(token)
            if hashes is None:
                hashes = _read_list(name, url)
            if identity_token(asset_identity(url, known=self.key.identities)) == token:
                write_snapshot(self.out, self.options, token, hashes)

    def prune(self) -> None:
        """Delete the snapshots of list versions no marker refers to any more (after a run without failures)."""
        keep = {list_snapshot_file(self.out, self.key.assets[name]).rsplit("/", 1)[-1] for name in self.lists}
        found = list_files(list_snapshots_dir(self.out), self.options, "*.parquet")
        remove_files([url for url in found if url.rsplit("/", 1)[-1] not in keep], self.options)


def _read_list(name: str, url: str) -> U64:
    """The hashed entries of the list file at `url` (key asset `name`).

    Raises:
        SpecError: the file is not UTF-8 text (`url_filter` could not read it either).
    """
    try:
        return list_hashes(url)
    except UnicodeDecodeError as error:
        msg = f"{name}: {url!r} is not UTF-8 text ({error}); give a text file with one entry per line"
        raise SpecError(msg) from None


# --------------------------------------------------------------------------------------------------
# The plan's side: may a shard whose key differs only by lists be re-keyed?


def list_only_changes(
    previous: Mapping[str, Any] | None, current: Mapping[str, Any], lists: Mapping[str, str]
) -> dict[str, str] | None:
    """The diffable lists whose identity differs (name -> recorded token), if nothing else in the key differs."""
    if not previous or not lists:
        return None
    if {k: v for k, v in previous.items() if k != "assets"} != {k: v for k, v in current.items() if k != "assets"}:
        return None
    old, new = previous.get("assets") or {}, current["assets"]
    if set(old) != set(new):
        return None
    changed = {name: str(old[name]) for name in new if old[name] != new[name]}
    if not changed or any(name not in lists for name in changed):
        return None
    return changed


@dataclass(frozen=True)
class Decision:
    """A shard's fate under list changes: redone (with its reasons) or re-keyed (with its reasons)."""

    redo: tuple[str, ...] = ()
    rekey: tuple[str, ...] = ()


def unrecorded_version(name: str) -> str:
    return f"changed asset {name} (its previous version was not recorded, so it cannot be diffed)"


def no_keys(name: str) -> str:
    return f"changed asset {name} (the shard has no usable record of its documents' URL keys)"


def decide(
    versions: ListVersions, marker: Mapping[str, Any], changed: Mapping[str, str], storage_options: dict[str, Any]
) -> Decision:
    """Redo or re-key one shard whose key differs from now only by the lists in `changed` (name -> old token)."""
    diffs = {name: versions.diff(name, token) for name, token in changed.items()}
    unrecorded = [unrecorded_version(name) for name, diff in diffs.items() if diff is None]
    if unrecorded:
        return Decision(redo=tuple(unrecorded))
    record = marker.get("list_keys") or {}
    usable = record.get("scheme") == key_scheme() and all(name in (record.get("assets") or {}) for name in changed)
    keys = read_unit_keys(str(record["file"]), storage_options) if usable else None
    if keys is None:
        return Decision(redo=tuple(no_keys(name) for name in changed))
    hit, miss = [], []
    for name, diff in diffs.items():
        assert diff is not None
        if diff.hits(keys.get(name, np.zeros(0, np.uint64))):
            hit.append(f"list {name} changed ({diff.summary()}): a document of the shard matches a changed entry")
        else:
            miss.append(f"list {name} changed ({diff.summary()}): no document of the shard is affected")
    return Decision(redo=tuple(hit)) if hit else Decision(rekey=tuple(miss))
