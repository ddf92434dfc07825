"""Where every output of a run lives, derived from the output root and a shard's relative name.

Public contract (README, "Output layout"):

    OUT/kept/<rel>.parquet            documents kept (after dedup, when dedup runs)
    OUT/kept/<col>=<value>/<rel>.parquet   the same, when a step partitions kept output (language)
    OUT/rejected/<rel>.parquet        dropped documents with `reason` = step/rule
    OUT/scores/<rel>.parquet          with `output.keep_scores`: id, reason, `<step>.<score>` per document
    OUT/stats.json                    totals of the run
    OUT/job.resolved.yaml             the job with defaults filled in, and the engine's git revision
    OUT/_units/<rel>.stats.json       per-shard stats
    OUT/_units/<rel>.marker.json      per-shard completion marker (its reuse key, files and row counts), written last
    OUT/_units/<rel>.urlkeys.parquet  keys the shard's documents present to url_filter's blocklists (hashed)
    OUT/_units/_lists/<token>.parquet the hashed entries of each blocklist version a run used (to diff the next)
    OUT/_units/_keys/<hash>.json      a phase-A configuration a marker refers to (to say what changed)
    OUT/_units/_assets.json           content identities of the assets steps read (the hash cache)
    OUT/_units/_summary.json          the last run's shards (marker fingerprint, key digest, outputs) and summed stats
    OUT/_tmp/<rel>/                   a running unit's temporary files (what a killed unit left is removed)
    OUT/_stage/rows/<rel>.parquet     phase-A kept documents awaiting dedup: input row + step columns (dedup runs)
    OUT/_stage/kept/<rel>.parquet     the same with their text, with `dedup.stage_text`
    OUT/_dedup/<parameters>/...       dedup phases (signatures, buckets, components)

`<rel>` is the shard's path relative to the input root, without its `.parquet` suffix.
"""

from __future__ import annotations

import hashlib

KEPT = "kept"
REJECTED = "rejected"
SCORES = "scores"
UNITS = "_units"
STAGE = "_stage"
DEDUP = "_dedup"
TMP = "_tmp"
KEYS_DIR = "_keys"
ASSETS_FILE = "_assets.json"
LISTS_DIR = "_lists"
STATS_FILE = "stats.json"
RESOLVED_JOB_FILE = "job.resolved.yaml"


def join(root: str, *parts: str) -> str:
    """Join URL/path parts with `/` (fsspec paths use `/` on every platform)."""
    return "/".join([root.rstrip("/"), *(p.strip("/") for p in parts if p)])


def shard_file(root: str, area: str, rel: str, partition: str | None = None) -> str:
    """`root/area[/partition]/rel.parquet`, e.g. `OUT/kept/language=en/part-000.parquet`."""
    return join(root, area, partition or "", f"{rel}.parquet")


def unit_stats_file(root: str, rel: str) -> str:
    return join(root, UNITS, f"{rel}.stats.json")


def unit_marker_file(root: str, rel: str) -> str:
    return join(root, UNITS, f"{rel}.marker.json")


def unit_tmp_dir(root: str, rel: str) -> str:
    """`OUT/_tmp/<rel>/`: where a unit's writers keep their temporary files until they commit."""
    return join(root, TMP, rel)


def config_file(root: str, config_hash: str) -> str:
    """`OUT/_units/_keys/<hash>.json`: the phase-A configuration with that hash."""
    return join(root, UNITS, KEYS_DIR, f"{config_hash}.json")


def assets_file(root: str) -> str:
    """`OUT/_units/_assets.json`: the identities of the assets the last run's steps read."""
    return join(root, UNITS, ASSETS_FILE)


def unit_list_keys_file(root: str, rel: str) -> str:
    """`OUT/_units/<rel>.urlkeys.parquet`: the hashed keys shard `rel`'s documents present to blocklists."""
    return join(root, UNITS, f"{rel}.urlkeys.parquet")


def list_snapshots_dir(root: str) -> str:
    """`OUT/_units/_lists/`: the hashed entries of the blocklist versions runs used."""
    return join(root, UNITS, LISTS_DIR)


def list_snapshot_file(root: str, token: str) -> str:
    """`OUT/_units/_lists/<digest of token>.parquet`: the hashed entries of the list whose identity is `token`."""
    return join(list_snapshots_dir(root), f"{hashlib.sha256(token.encode()).hexdigest()[:32]}.parquet")
