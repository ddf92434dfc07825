"""Where every output of a run lives, derived from the output root and a shard's relative name.

Public contract (README, "Output layout"):

    OUT/kept/<rel>.parquet            documents kept (after dedup, when dedup runs)
    OUT/kept/<col>=<value>/<rel>.parquet   the same, when a step partitions kept output (language)
    OUT/rejected/<rel>.parquet        dropped documents with `reason` = step/rule
    OUT/scores/<rel>.parquet          with `output.keep_scores`: id, reason, `<step>.<score>` per document
    OUT/stats.json                    totals of the run
    OUT/job.resolved.yaml             the job with defaults filled in, and the engine's git revision
    OUT/_units/<rel>.stats.json       per-shard stats
    OUT/_units/<rel>.marker.json      per-shard completion marker, written last
    OUT/_stage/kept/<rel>.parquet     phase-A kept documents awaiting dedup (only when dedup runs)
    OUT/_dedup/<parameters>/...       dedup phases (signatures, buckets, components)

`<rel>` is the shard's path relative to the input root, without its `.parquet` suffix.
"""

from __future__ import annotations

KEPT = "kept"
REJECTED = "rejected"
SCORES = "scores"
UNITS = "_units"
STAGE = "_stage"
DEDUP = "_dedup"
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
