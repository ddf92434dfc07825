"""Mergeable run counters (`a + b`) and the conservation check every run must pass."""

from __future__ import annotations

from bisect import bisect_right
from collections import Counter, defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any

from engine.errors import ConservationError
from engine.histograms import decode_bins, decode_named, encode_bins, encode_named, merge_histograms

KEPT_ROWS = "kept"
STAGED_ROWS = "staged"
REJECTED_ROWS = "rejected"
DUPLICATE_ROWS = "duplicates"
SLOWEST_SHARDS = 10
_HISTOGRAMS = ("score_bins", "score_bins_dropped")


CLUSTER_SIZE_BINS: tuple[int, ...] = (
    *range(2, 10),
    *(m * 10**e for e in range(1, 12) for m in (1, 2, 5)),
)
"""Lower bounds of the fixed cluster-size bins: 2..9 exactly, then 10, 20, 50, 100, 200, 500, ... (1-2-5 steps)."""
_MAXIMA = frozenset({"peak_rss_bytes", "largest_cluster"})


def cluster_size_bin(size: int) -> str:
    """The name (smallest size) of the fixed bin counting clusters of `size` documents."""
    return str(CLUSTER_SIZE_BINS[max(0, bisect_right(CLUSTER_SIZE_BINS, size) - 1)])


def binned_cluster_sizes(clusters_by_size: Mapping[int, int]) -> Counter[str]:
    """Clusters per fixed bin, from clusters per exact size: a counter that merges by `+` and stays ~40 entries
    however large the corpus."""
    binned: Counter[str] = Counter()
    for size, clusters in clusters_by_size.items():
        binned[cluster_size_bin(int(size))] += int(clusters)
    return binned


@dataclass
class Stats:
    """Counters of one unit, or the sum of many. Plain numbers and maps, JSON in and out.

    `dropped` maps `step/rule` to a count; `step_seconds` and `step_docs` are the time spent in each
    step and the documents it saw, from which `to_dict` derives docs/s per step. `written` counts the rows
    committed to each output area, checked against the files' Parquet footers: `kept` (kept/), `staged`
    (`_stage/kept/`, awaiting dedup), `rejected` (rejected/), `duplicates` (removed duplicates written by dedup).
    `cluster_sizes` counts dedup's clusters (2 or more documents) per fixed size bin (`cluster_size_bin`), as the
    dedup tasks emit them. Everything adds up, except `peak_rss_bytes`, `phase_peak_rss_bytes` (per phase:
    filter, each dedup phase; the resident memory of the largest task, `task_peak_rss`) and `largest_cluster`,
    which keep the maximum.
    `slowest_shards` keeps the `SLOWEST_SHARDS` slowest.

    The report reads nothing else (issue 14): fixed-bin histograms (`engine.histograms`) of every step's scores
    over the documents that reached it (`score_bins`, by `<step>.<score>`) and over those it dropped
    (`score_bins_dropped`), kept documents per language (`languages`, from a `language` column: before dedup in
    a dedup job), dropped ones per language and reason (`dropped_by_language`, keys `"<language> <step/rule>"`:
    documents dropped before their language was known are not in it), seconds per shard (`shard_seconds_bins`,
    `shard_seconds_total`) and the slowest shards
    (`[seconds, shard, docs_in, docs_kept]`).
    """

    docs_in: int = 0
    docs_reused: int = 0  # of docs_in, those in shards skipped because the last run's outputs were reused
    docs_kept: int = 0
    duplicates: int = 0
    dropped: Counter[str] = field(default_factory=Counter)
    bytes_in: int = 0
    bytes_kept: int = 0
    seconds: float = 0.0
    step_seconds: defaultdict[str, float] = field(default_factory=lambda: defaultdict(float))
    step_docs: Counter[str] = field(default_factory=Counter)
    written: Counter[str] = field(default_factory=Counter)
    shards_total: int = 0
    shards_processed: int = 0
    shards_skipped: int = 0
    shards_rekeyed: int = 0  # of the skipped: given a new key without work (a blocklist change touched none of theirs)
    shards_failed: int = 0
    peak_rss_bytes: int = 0  # the largest resident memory of any task of the run (merged by max)
    phase_peak_rss_bytes: dict[str, int] = field(default_factory=dict)  # per phase: its largest task (by max)
    cluster_sizes: Counter[str] = field(default_factory=Counter)
    largest_cluster: int = 0  # documents in dedup's largest cluster (merged by max)
    churn: Counter[str] = field(default_factory=Counter)  # dedup vs the last build: left_kept, returned_to_kept
    score_bins: dict[str, Counter[str]] = field(default_factory=dict)
    score_bins_dropped: dict[str, Counter[str]] = field(default_factory=dict)
    languages: Counter[str] = field(default_factory=Counter)
    duplicates_by_language: Counter[str] = field(default_factory=Counter)  # counted by dedup removal, when it does
    dropped_by_language: Counter[str] = field(default_factory=Counter)  # "<language> <step/rule>", once known
    shard_seconds_bins: Counter[str] = field(default_factory=Counter)
    shard_seconds_total: float = 0.0
    slowest_shards: list[list[Any]] = field(default_factory=list)

    def __add__(self, other: Stats) -> Stats:
        merged = Stats()
        for f in fields(self):
            a, b = getattr(self, f.name), getattr(other, f.name)
            if f.name in _MAXIMA:
                setattr(merged, f.name, max(a, b))
            elif f.name == "phase_peak_rss_bytes":
                merged.phase_peak_rss_bytes = {k: max(a.get(k, 0), b.get(k, 0)) for k in sorted({*a, *b})}
            elif f.name in _HISTOGRAMS:
                setattr(merged, f.name, merge_histograms(a, b))
            elif f.name == "slowest_shards":
                merged.slowest_shards = sorted([*a, *b], key=lambda s: (-s[0], s[1]))[:SLOWEST_SHARDS]
            else:
                setattr(merged, f.name, Counter(a) + Counter(b) if isinstance(a, dict) else a + b)
        return merged

    @property
    def docs_dropped(self) -> int:
        return sum(self.dropped.values())

    @property
    def docs_processed(self) -> int:
        """Documents read and run through the steps in this run (not reused from the last run)."""
        return self.docs_in - self.docs_reused

    def is_conserved(self) -> bool:
        """Documents in = kept + dropped (by reason) + duplicates removed."""
        return self.docs_in == self.docs_kept + self.docs_dropped + self.duplicates

    def check_conservation(self, where: str) -> None:
        """Raise `ConservationError` naming `where` if documents went missing or appeared."""
        if not self.is_conserved():
            msg = (
                f"conservation violated in {where}: docs_in={self.docs_in} != docs_kept={self.docs_kept}"
                f" + dropped={self.docs_dropped} + duplicates={self.duplicates}; this is a bug, please report it"
            )
            raise ConservationError(msg)

    def check_written(self, where: str, *, rejected_written: bool) -> None:
        """Rows read = rows written to kept (or staged) + rows written to rejected, as counted in the files.

        Without rejected/ (`write_rejected: false`) the dropped documents are counted by the steps instead.

        Raises:
            ConservationError: naming `where` and the counted figures.
        """
        kept = self.written[KEPT_ROWS] + self.written[STAGED_ROWS]
        dropped = self.written[REJECTED_ROWS] if rejected_written else self.docs_dropped
        problems = []
        if kept != self.docs_kept:
            problems.append(f"{kept:,} rows written to kept, {self.docs_kept:,} documents kept by the steps")
        if rejected_written and dropped != self.docs_dropped:
            problems.append(f"{dropped:,} rows written to rejected, {self.docs_dropped:,} documents dropped")
        if self.docs_in != kept + dropped:
            what = "written to rejected" if rejected_written else "dropped (rejected/ not written)"
            problems.append(f"{self.docs_in:,} rows read != {kept:,} written to kept + {dropped:,} {what}")
        if problems:
            msg = f"conservation violated in {where}: {'; '.join(problems)}; this is a bug, please report it"
            raise ConservationError(msg)

    def check_dedup_written(self, where: str, *, duplicates_written: bool) -> None:
        """After dedup: rows staged = rows written to kept + duplicates removed, as counted in the files.

        With `write_duplicates` the duplicates are counted in rejected/*.duplicates too; without, by removal.

        Raises:
            ConservationError: naming `where` and the counted figures.
        """
        staged, kept, written = self.written[STAGED_ROWS], self.written[KEPT_ROWS], self.written[DUPLICATE_ROWS]
        problems = []
        if staged != kept + self.duplicates:
            problems.append(f"{staged:,} rows staged != {kept:,} written to kept + {self.duplicates:,} duplicates")
        if duplicates_written and written != self.duplicates:
            problems.append(f"{written:,} duplicates written, {self.duplicates:,} removed")
        if kept != self.docs_kept:
            problems.append(f"{kept:,} rows written to kept, {self.docs_kept:,} documents kept")
        if problems:
            msg = f"conservation violated in {where}: {'; '.join(problems)}; this is a bug, please report it"
            raise ConservationError(msg)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form, with derived per-step docs/s."""
        data: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name in _HISTOGRAMS:
                value = encode_named(value)
            elif f.name == "shard_seconds_bins":
                value = encode_bins(value)
            data[f.name] = dict(sorted(value.items())) if isinstance(value, Counter) else value
        data["docs_dropped"] = self.docs_dropped
        data["docs_processed"] = self.docs_processed
        data["step_docs_per_second"] = {
            step: round(self.step_docs[step] / secs, 1) if secs > 0 else None
            for step, secs in sorted(self.step_seconds.items())
        }
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Stats:
        """Inverse of `to_dict` (derived keys ignored)."""
        stats = cls()
        for f in fields(cls):
            if f.name in data:
                value = data[f.name]
                if f.name in _HISTOGRAMS:
                    value = decode_named(value)
                elif f.name == "shard_seconds_bins":
                    value = decode_bins(value)
                setattr(stats, f.name, Counter(value) if isinstance(getattr(stats, f.name), Counter) else value)
        return stats


def reset_peak_rss() -> None:
    """Start measuring this process's peak resident memory afresh (Linux: reset the high-water mark).

    Worker processes run one task after another, so without a reset a task would report the peak of every
    task before it. Where the reset is not possible, the peak stays the process's lifetime peak.
    """
    try:
        with open("/proc/self/clear_refs", "w", encoding="ascii") as handle:
            handle.write("5")
    except OSError:
        pass


def task_peak_rss() -> int:
    """Peak resident memory of this process, in bytes, since `reset_peak_rss` (or since it started)."""
    try:
        with open("/proc/self/status", encoding="ascii") as handle:
            for line in handle:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    import resource

    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024  # Linux reports KiB
