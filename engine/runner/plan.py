"""What a run would redo, and why, without running anything (`corpus-engine plan`; `run` prints it first).

One listing of the input (fingerprints come with it), one of `OUT/_units/`, then every current shard's marker is
read (in parallel threads) and its recorded key compared with the shard's key now (`engine.runner.keys`), except
where the last run's summary (`engine.runner.summary`) answers for a marker unchanged since: one object instead
of a request per shard on a night that changed little. Of each marker the plan keeps its outputs and kept count;
the reused shards' stats are summed as they are read (or taken whole from the summary). A shard
is redone when it has no marker, when its key differs, or when a file its marker lists is gone; a marker whose
input is gone is a vanished shard, whose outputs the run removes. A shard whose key differs only by a changed
blocklist is redone only if one of its documents presents a changed entry, else re-keyed: its marker gets the
new key, its outputs stay (`engine.runner.lists`). `run` acts on exactly this plan. No Ray here.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from typing import Any, TypeVar

from engine.io.layout import STATS_FILE, UNITS, config_file, join
from engine.io.markers import read_json
from engine.io.paths import Shard, absolute, list_file_infos, list_shard_fingerprints, relative_path
from engine.runner.keys import JobKey, job_key, key_changes, known_identities
from engine.runner.lists import ListVersions, decide, diffable_lists, list_only_changes
from engine.runner.summary import (
    MARKER_SUFFIX,
    Entry,
    Summary,
    key_digest,
    marker_fingerprints,
    missing_outputs,
    read_summary,
    stats_without,
)
from engine.spec import JobSpec
from engine.stats import Stats

OUTPUTS_KEY = "outputs_key"
"""Marker field of a re-keyed shard: the key its outputs were made under (absent: the marker's own key)."""

STATS_SUFFIX = ".stats.json"
THREADS = 32
"""Storage requests in flight while the driver reads markers (small JSON files): 100,000 shards take ~30 s on S3."""

NEW_SHARD = "new shard"
UNFINISHED = "not finished by the last run (no marker)"
FAILED_LAST = "failed in the last run"
OUTPUTS_MISSING = "output files missing"
VANISHED = "vanished shard: its outputs are removed"
FULL = "--full"
"""The reason of every shard in a full rebuild (`run --full`): redone whatever its marker says."""

Item = TypeVar("Item")
Result = TypeVar("Result")


@dataclass(frozen=True)
class ShardPlan:
    """One current shard: its input fingerprint, why it is redone (empty: reused), why it is re-keyed (if so), and
    what its marker recorded (`recorded`: its outputs and kept count, not its stats: the plan sums those)."""

    shard: Shard
    fingerprint: dict[str, Any]
    reasons: tuple[str, ...]
    recorded: Entry | None = None
    rekey: tuple[str, ...] = ()

    @property
    def is_redone(self) -> bool:
        return bool(self.reasons)

    @property
    def is_rekeyed(self) -> bool:
        """Reused with a new key (a changed list affects none of its documents): only its marker is rewritten."""
        return not self.reasons and bool(self.rekey)

    @property
    def size(self) -> int:
        return int(self.fingerprint.get("size") or 0)

    def outputs_key(self, key: JobKey) -> dict[str, Any]:
        """The key the shard's outputs are made under: its new key when redone, else the one its marker says they
        were made under (a re-key keeps it). Dedup takes this as the shard's identity, so a re-keyed shard is not
        deduplicated and rewritten again."""
        if self.is_redone or self.recorded is None or self.recorded.made_under is None:
            return key.unit_key(self.fingerprint)
        return self.recorded.made_under


@dataclass
class RunPlan:
    """Every shard's fate in the next run, and the run's shared key."""

    job: JobSpec
    key: JobKey
    shards: list[ShardPlan]
    vanished: list[str] = field(default_factory=list)
    lists: ListVersions | None = None
    reused_stats: Stats = field(default_factory=Stats)
    """The stats of every reused shard, summed (each unit's counters; the shard counts are the run's to set)."""
    summary_current: bool = False
    """The last run's summary answered for every shard, all reused as they were: a run has nothing to record."""
    full: bool = False
    """A full rebuild: every unit and every dedup phase is redone, whatever was done before (the dedup's build
    order is kept, so `first_seen` representatives stay put)."""

    @property
    def redo(self) -> list[ShardPlan]:
        return [s for s in self.shards if s.is_redone]

    @property
    def reuse(self) -> list[ShardPlan]:
        """Shards not redone (re-keyed ones included: their outputs and stats stand)."""
        return [s for s in self.shards if not s.is_redone]

    @property
    def rekeyed(self) -> list[ShardPlan]:
        return [s for s in self.shards if s.is_rekeyed]


def with_absolute_paths(job: JobSpec) -> JobSpec:
    """Local input and output paths made absolute, so workers anywhere see the same files."""
    return job.model_copy(
        update={
            "input": job.input.model_copy(update={"path": absolute(job.input.path)}),
            "output": job.output.model_copy(update={"path": absolute(job.output.path)}),
        }
    )


def in_parallel(fn: Callable[[Item], Result], items: Sequence[Item]) -> list[Result]:
    """`fn` over `items` in up to `THREADS` threads (small storage requests), results in order."""
    if len(items) <= 1:
        return [fn(item) for item in items]
    with ThreadPoolExecutor(max_workers=min(THREADS, len(items))) as pool:
        return list(pool.map(fn, items))


def make_run_plan(job: JobSpec, *, full: bool = False) -> RunPlan:
    """What the next run of `job` redoes, reuses and removes (reads markers; writes nothing).

    `full`: every current shard is redone (reason `--full`), whatever its marker says; vanished shards are still
    removed.

    Raises:
        InputError: the input path is missing or holds no shard.
        SpecError: an asset a step reads is missing or unreadable.
    """
    out, options = job.output.path, job.output.storage_options
    fingerprints = list_shard_fingerprints(job.input.path, job.input.storage_options, job.input.glob)
    key = job_key(job, known=known_identities(job))
    units = join(out, UNITS)
    infos = list_file_infos(units, options, "**/*.json")
    markers = marker_fingerprints(out, options, infos)
    current = {s.rel for s in fingerprints}
    vanished = sorted(rel for rel in markers if rel not in current)
    if full:  # no marker's key is compared, no list is diffed
        everything = [ShardPlan(shard, fingerprint, (FULL,)) for shard, fingerprint in fingerprints.items()]
        return RunPlan(
            job, key, everything, vanished, ListVersions(job, key) if diffable_lists(job) else None, full=True
        )
    names = {relative_path(url, units, options) for url in infos}
    unit_stats = {n.removesuffix(STATS_SUFFIX) for n in names if n.endswith(STATS_SUFFIX)}
    failed_last = _failed_last_run(job)
    summary = read_summary(out, options, markers)
    lists = diffable_lists(job)
    versions = ListVersions(job, key) if lists else None

    def absent(shard: Shard) -> tuple[str, ...]:
        """Why a shard without a marker is redone."""
        if shard.url in failed_last:
            return (FAILED_LAST,)
        return (UNFINISHED if shard.rel in unit_stats else NEW_SHARD,)

    base = summary if summary is not None and summary.complete and summary.stats else None
    reading = _MarkerReading(job, key, lists, absent, set(base.entries) if base is not None else set())
    planned: list[ShardPlan] = []
    to_read: list[int] = []
    from_summary: set[int] = set()
    for shard, fingerprint in fingerprints.items():
        entry = summary.entries.get(shard.rel) if summary is not None else None
        if shard.rel not in markers:
            planned.append(ShardPlan(shard, fingerprint, absent(shard)))
        elif entry is not None and entry.key == key_digest(key.unit_key(fingerprint)):
            from_summary.add(len(planned))  # its marker is unchanged since the summary, and records today's key
            planned.append(ShardPlan(shard, fingerprint, (), entry))
        else:
            to_read.append(len(planned))
            planned.append(ShardPlan(shard, fingerprint, ()))
    for index, marker in zip(to_read, _each_in_parallel(reading.read, [planned[i] for i in to_read]), strict=True):
        planned[index] = reading.plan(index, planned[index], marker)
    if versions is not None and reading.by_lists:
        _decide_list_changes(versions, planned, reading, options)
    reused = {i for i, s in enumerate(planned) if not s.is_redone}
    checked = sorted(reused & (from_summary | reading.tentative))
    missing = missing_outputs(((i, (planned[i].recorded or _NOTHING).outputs) for i in checked), options)
    for index in missing:
        planned[index] = ShardPlan(planned[index].shard, planned[index].fingerprint, (OUTPUTS_MISSING,))
    reused -= missing
    stats = _reused_stats(planned, reused, from_summary, base, reading, vanished)
    unchanged = (
        summary is not None
        and summary.complete
        and not vanished
        and reused == from_summary == set(range(len(planned)))
        and len(from_summary) == len(summary.entries)
    )
    return RunPlan(job, key, planned, vanished, versions, stats, summary_current=unchanged)


_NOTHING = Entry("", (), 0)


class _MarkerReading:
    """Markers read one at a time (in threads), each reduced as it arrives to what the plan keeps: its entry and
    its reasons; its stats go into two running sums, never kept per shard."""

    def __init__(
        self,
        job: JobSpec,
        key: JobKey,
        lists: Mapping[str, str],
        absent: Callable[[Shard], tuple[str, ...]],
        in_base: set[str],
    ) -> None:
        self.job, self.key, self.lists, self.absent, self.in_base = job, key, lists, absent, in_base
        self.configs: dict[str, dict[str, Any] | None] = {key.config_hash: key.config}
        self.added = Stats()
        """The stats of the shards read that are reused so far (`tentative`; a list decision or a missing output
        may yet redo some)."""
        self.tentative: set[int] = set()
        self.removed = Stats()
        """The stats of the shards read whose stats the summary's sum holds (`in_base`): what to take out of it."""
        self.removed_rels: set[str] = set()
        self.by_lists: list[tuple[int, dict[str, str], dict[str, Any]]] = []
        """Shards whose key differs only by changed lists: index, changed list -> old token, their list keys."""

    def read(self, planned: ShardPlan) -> dict[str, Any] | None:
        out = self.job.output
        return read_json(join(out.path, UNITS, planned.shard.rel + MARKER_SUFFIX), out.storage_options)

    def previous_config(self, marker: dict[str, Any]) -> dict[str, Any] | None:
        recorded = str((marker.get("key") or {}).get("config"))
        if recorded not in self.configs:
            out = self.job.output
            self.configs[recorded] = read_json(config_file(out.path, recorded), out.storage_options)
        return self.configs[recorded]

    def plan(self, index: int, planned: ShardPlan, marker: dict[str, Any] | None) -> ShardPlan:
        if marker is None:  # gone since the listing
            return replace(planned, reasons=self.absent(planned.shard))
        unit_key = self.key.unit_key(planned.fingerprint)
        reasons = key_changes(
            marker.get("key"), unit_key, previous_config=self.previous_config(marker), current_config=self.key.config
        )
        changed = list_only_changes(marker.get("key"), unit_key, self.lists) if reasons else None
        made_under = marker.get(OUTPUTS_KEY) or (marker["key"] if changed else None)
        entry = Entry(
            key_digest(marker.get("key")),
            tuple(marker.get("outputs", [])),
            int((marker.get("stats") or {}).get("docs_kept", 0)),
            made_under,
        )
        if changed:
            self.by_lists.append((index, changed, {"list_keys": marker.get("list_keys")}))
        rel = planned.shard.rel
        if changed or not reasons or rel in self.in_base:
            unit = _unit_part(marker.get("stats") or {})
            if changed or not reasons:
                self.added = self.added + unit
                self.tentative.add(index)
            if rel in self.in_base:
                self.removed = self.removed + unit
                self.removed_rels.add(rel)
        return replace(planned, reasons=tuple(reasons), recorded=entry)

    def stats_of(self, rels: Sequence[str]) -> Stats:
        """The stats of these shards' markers, summed as they are read."""
        out = self.job.output
        total = Stats()
        urls = [join(out.path, UNITS, rel + MARKER_SUFFIX) for rel in rels]
        for marker in _each_in_parallel(lambda url: read_json(url, out.storage_options), urls):
            total = total + _unit_part((marker or {}).get("stats") or {})
        return total


def _each_in_parallel(fn: Callable[[Item], Result], items: Sequence[Item]) -> Iterator[Result]:
    """`fn` over `items` in up to `THREADS` threads, results in order as they come (none kept once consumed)."""
    if len(items) <= 1:
        yield from (fn(item) for item in items)
        return
    with ThreadPoolExecutor(max_workers=min(THREADS, len(items))) as pool:
        yield from pool.map(fn, items)


def _unit_part(stats: dict[str, Any]) -> Stats:
    """A shard's stats as a run adds them up: its counters, without shard counts (the run counts shards)."""
    unit = Stats.from_dict(stats)
    unit.shards_total = unit.shards_processed = unit.shards_skipped = unit.shards_rekeyed = unit.shards_failed = 0
    return unit


def _reused_stats(
    planned: list[ShardPlan],
    reused: set[int],
    from_summary: set[int],
    base: Summary | None,
    reading: _MarkerReading,
    vanished: Sequence[str],
) -> Stats:
    """The reused shards' stats summed, reading as few markers as it can.

    The shards read and reused were summed as read (less those a list decision or a missing output then redid,
    read again and taken out). The shards trusted on the summary's word: its sum (`base`, when every entry is
    still valid), less the stats of its shards not reused as they were (those read, those vanished, those whose
    output went missing); where that cannot be undone exactly (`stats_without`), or without a usable sum, every
    reused shard's marker is read.
    """
    rel = [s.shard.rel for s in planned]
    total: Stats | None = reading.added
    flipped = sorted(rel[i] for i in reading.tentative - reused)
    if flipped:
        total = stats_without(reading.added, reading.stats_of(flipped), set(flipped))
    ours = reused & from_summary
    if total is not None and ours:
        if base is None:
            total = total + reading.stats_of([rel[i] for i in sorted(ours)])
        else:
            gone = [rel[i] for i in sorted(from_summary - reused)] + [r for r in vanished if r in base.entries]
            removed = reading.removed + reading.stats_of(gone)
            remaining = stats_without(_unit_part(base.stats), removed, reading.removed_rels | set(gone))
            total = None if remaining is None else total + remaining
    if total is None:  # a maximum or the slowest shards cannot be undone: every reused shard is read
        total = reading.stats_of([rel[i] for i in sorted(reused)])
    return total


def _decide_list_changes(
    versions: ListVersions, planned: list[ShardPlan], reading: _MarkerReading, options: dict[str, Any]
) -> None:
    """Redo or re-key the shards whose keys differ only by changed lists (in place).

    Each list is diffed once per recorded version, then the shards' sidecars are read in parallel threads.
    """
    for _, changed, _ in reading.by_lists:
        for name, token in changed.items():
            versions.diff(name, token)
    decisions = in_parallel(lambda item: decide(versions, item[2], item[1], options), reading.by_lists)
    for (index, _, _), decision in zip(reading.by_lists, decisions, strict=True):
        planned[index] = replace(planned[index], reasons=decision.redo, rekey=decision.rekey)
    reading.by_lists.clear()


class Finished:
    """What the run's summary records once phase A is done: every finished shard's entry, and their stats summed
    (None when a shard's entry is not known here: the next plan then reads markers rather than trust the sum)."""

    def __init__(self, plan: RunPlan) -> None:
        self.key = plan.key
        self.entries: dict[str, Entry] = {}
        self.stats: Stats | None = plan.reused_stats
        for reused in plan.reuse:
            assert reused.recorded is not None  # a reused shard had a marker
            current = plan.key.unit_key(reused.fingerprint)
            made_under = reused.outputs_key(plan.key)
            self.entries[reused.shard.rel] = Entry(
                key_digest(current),
                reused.recorded.outputs,
                reused.recorded.docs_kept,
                made_under if made_under != current else None,
            )

    def add(self, planned: ShardPlan, result: Any) -> Stats:
        """A redone shard's result (`UnitResult`): its entry, and its stats as the run adds them up."""
        unit = _unit_part(result.stats)
        if result.status == "processed":
            key = key_digest(self.key.unit_key(planned.fingerprint))
            self.entries[planned.shard.rel] = Entry(key, tuple(result.outputs), unit.docs_kept)
        if self.stats is not None:
            self.stats = self.stats + unit if result.status == "processed" else None
        return unit


def _failed_last_run(job: JobSpec) -> set[str]:
    stats = read_json(join(job.output.path, STATS_FILE), job.output.storage_options) or {}
    failed = stats.get("failed_shards") or {}
    return set(failed) if isinstance(failed, dict) else set()


# --------------------------------------------------------------------------------------------------
# The summary an operator reads.

EXAMPLES = 3


def _share(part: int, whole: int) -> str:
    return f"{100 * part / whole:.1f}%" if whole else "0.0%"


def _names(rels: Sequence[str]) -> str:
    shown = ", ".join(rels[:EXAMPLES])
    return shown + (f", ... (+{len(rels) - EXAMPLES})" if len(rels) > EXAMPLES else "")


def plan_lines(plan: RunPlan) -> list[str]:
    """The plan in a few lines: totals and shares, then one line per reason with its count and example shards."""
    total = len(plan.shards)
    total_bytes = sum(s.size for s in plan.shards)
    redo, rekeyed = plan.redo, plan.rekeyed
    redo_bytes = sum(s.size for s in redo)
    reused = total - len(redo) - len(rekeyed)
    head = f"plan for {plan.job.name!r}: {total:,} shards, {_megabytes(total_bytes)} of input"
    rekey = f"re-key {len(rekeyed):,} (outputs kept), " if rekeyed else ""
    if not redo and not plan.vanished:
        if rekeyed:
            lines = [f"{head}; nothing to redo: {rekey}reuse {reused:,}"]
        else:
            lines = [f"{head}; nothing to redo, every shard is reused"]
    else:
        vanished = f", remove {len(plan.vanished):,} vanished" if plan.vanished else ""
        lines = [
            f"{head}; redo {len(redo):,} ({_share(len(redo), total)} of shards, {_share(redo_bytes, total_bytes)}"
            f" of bytes), {rekey}reuse {reused:,}{vanished}"
        ]
    for action, shards in (("redo  ", redo), ("re-key", rekeyed)):
        by_reason: dict[str, list[str]] = defaultdict(list)
        for shard in shards:
            for reason in shard.reasons or shard.rekey:
                by_reason[reason].append(shard.shard.rel)
        for reason, rels in sorted(by_reason.items(), key=lambda item: (-len(item[1]), item[0])):
            lines.append(f"  {action} {len(rels):>7,}  {reason}: {_names(rels)}")
    if plan.vanished:
        lines.append(f"  remove {len(plan.vanished):>7,}  {VANISHED}: {_names(plan.vanished)}")
    lines.extend(dedup_plan_lines(plan))
    return lines


def _megabytes(size: int) -> str:
    return f"{size / 1e6:,.1f} MB"


def dedup_plan_lines(plan: RunPlan) -> list[str]:
    """What the run does about global dedup, with the partition counts it would use (no storage request beyond
    the dedup's phase markers); no lines without dedup."""
    job = plan.job
    if job.dedup is None:
        return []
    total = len(plan.shards)
    if plan.full:
        return [f"  dedup: every global phase and every shard's removal is redone over all {total:,} shards (--full)"]
    from engine.dedup.index import full_reason, night_reason, read_state
    from engine.dedup.plan import ShardInput, plan_lines, read_marker
    from engine.dedup.signatures import dedup_root
    from engine.dedup.state import read_registry, register
    from engine.runner.dedup import PHASES, decide

    root = dedup_root(job.output.path, job.dedup)
    state = read_state(root, job.output.storage_options)
    ordered = register(read_registry(root, job.output.storage_options), [s.shard.rel for s in plan.shards]).order()
    if plan.redo or plan.vanished:
        redone = {s.shard.rel for s in plan.redo}
        reason = full_reason(job, state, ordered, redone)
        if not isinstance(reason, str) and state is not None:
            return [f"  dedup: night: {night_reason(reason)}; fates and removal redone only where duplicates change"]
        memory = job.dedup.task_memory / 2**30
        return [
            f"  dedup: every global phase reruns over all {total:,} shards ({reason}); partition counts"
            f" follow the documents phase A keeps (task memory {memory:.2f} GiB)"
        ]
    inputs = {
        s.shard.rel: ShardInput(
            rows=s.recorded.docs_kept if s.recorded is not None else 0, identity=s.outputs_key(plan.key)
        )
        for s in plan.shards
    }
    dedup_plan, _, night = decide(job, ordered, inputs, full=False)
    if night.mode == "unchanged":
        return ["  dedup: input unchanged: the global phases are reused; removal redoes only shards missing output"]
    if night.mode == "night":
        return [f"  dedup: resumes an unfinished night ({night.reason})"]
    finished = [phase for phase in PHASES if read_marker(dedup_plan, phase)]
    if finished:
        return [f"  dedup: input unchanged; resumes after phase {finished[-1]!r} of an unfinished dedup"]
    head = f"  dedup: runs every global phase over all {total:,} shards ({night.reason})"
    return [head, *plan_lines(dedup_plan)]
