"""What a run would redo, and why, without running anything (`corpus-engine plan`; `run` prints it first).

One listing of the input (fingerprints come with it), one of `OUT/_units/`, then every current shard's marker is
read (in parallel threads) and its recorded key compared with the shard's key now (`engine.runner.keys`). A shard
is redone when it has no marker, when its key differs, or when a file its marker lists is gone; a marker whose
input is gone is a vanished shard, whose outputs the run removes. A shard whose key differs only by a changed
blocklist is redone only if one of its documents presents a changed entry, else re-keyed: its marker gets the
new key, its outputs stay (`engine.runner.lists`). `run` acts on exactly this plan. No Ray here.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from typing import Any, TypeVar

from engine.io.layout import STATS_FILE, UNITS, config_file, join
from engine.io.markers import read_json
from engine.io.paths import Shard, absolute, all_exist, list_files, list_shard_fingerprints, relative_path
from engine.runner.keys import JobKey, job_key, key_changes, known_identities
from engine.runner.lists import ListVersions, decide, diffable_lists, list_only_changes
from engine.spec import JobSpec

OUTPUTS_KEY = "outputs_key"
"""Marker field of a re-keyed shard: the key its outputs were made under (absent: the marker's own key)."""

MARKER_SUFFIX = ".marker.json"
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
    """One current shard: its input fingerprint, why it is redone (empty: reused), why it is re-keyed (if so)."""

    shard: Shard
    fingerprint: dict[str, Any]
    reasons: tuple[str, ...]
    marker: dict[str, Any] | None = None
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
        if self.is_redone or self.marker is None:
            return key.unit_key(self.fingerprint)
        made_under: dict[str, Any] = self.marker.get(OUTPUTS_KEY) or self.marker["key"]
        return made_under


@dataclass
class RunPlan:
    """Every shard's fate in the next run, and the run's shared key."""

    job: JobSpec
    key: JobKey
    shards: list[ShardPlan]
    vanished: list[str] = field(default_factory=list)
    lists: ListVersions | None = None
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
    names = {relative_path(url, units, options) for url in list_files(units, options, "**/*.json")}
    markers = {n.removesuffix(MARKER_SUFFIX) for n in names if n.endswith(MARKER_SUFFIX)}
    current = {s.rel for s in fingerprints}
    vanished = sorted(rel for rel in markers if rel not in current)
    if full:  # no marker's key is compared, no list is diffed
        everything = [ShardPlan(shard, fingerprint, (FULL,)) for shard, fingerprint in fingerprints.items()]
        return RunPlan(
            job, key, everything, vanished, ListVersions(job, key) if diffable_lists(job) else None, full=True
        )
    unit_stats = {n.removesuffix(STATS_SUFFIX) for n in names if n.endswith(STATS_SUFFIX)}
    failed_last = _failed_last_run(job)
    shards = list(fingerprints)
    read = in_parallel(
        lambda s: read_json(join(units, s.rel + MARKER_SUFFIX), options) if s.rel in markers else None, shards
    )
    configs: dict[str, dict[str, Any] | None] = {key.config_hash: key.config}

    def previous_config(marker: dict[str, Any]) -> dict[str, Any] | None:
        recorded = str((marker.get("key") or {}).get("config"))
        if recorded not in configs:
            configs[recorded] = read_json(config_file(out, recorded), options)
        return configs[recorded]

    def outputs_exist(marker: dict[str, Any]) -> bool:
        return all_exist(list(marker.get("outputs", [])), options)

    lists = diffable_lists(job)
    versions = ListVersions(job, key) if lists else None
    planned: list[ShardPlan] = []
    to_check: list[int] = []
    by_lists: list[tuple[int, dict[str, str]]] = []  # shards whose key differs only by changed lists
    for shard, marker in zip(shards, read, strict=True):
        fingerprint = fingerprints[shard]
        if marker is None:
            if shard.url in failed_last:
                reasons = [FAILED_LAST]
            else:
                reasons = [UNFINISHED if shard.rel in unit_stats else NEW_SHARD]
        else:
            unit_key = key.unit_key(fingerprint)
            reasons = key_changes(
                marker.get("key"), unit_key, previous_config=previous_config(marker), current_config=key.config
            )
            changed = list_only_changes(marker.get("key"), unit_key, lists) if reasons else None
            if changed:
                by_lists.append((len(planned), changed))
            elif not reasons:
                to_check.append(len(planned))
        planned.append(ShardPlan(shard, fingerprint, tuple(reasons), marker))
    if versions is not None and by_lists:
        to_check.extend(_decide_list_changes(versions, planned, by_lists, options))
    present = in_parallel(lambda i: outputs_exist(planned[i].marker or {}), to_check)
    for index, exists in zip(to_check, present, strict=True):
        if not exists:
            planned[index] = ShardPlan(planned[index].shard, planned[index].fingerprint, (OUTPUTS_MISSING,))
    return RunPlan(job, key, planned, vanished, versions)


def _decide_list_changes(
    versions: ListVersions,
    planned: list[ShardPlan],
    by_lists: list[tuple[int, dict[str, str]]],
    options: dict[str, Any],
) -> list[int]:
    """Redo or re-key the shards whose keys differ only by changed lists (in place); the re-keyed ones' indices.

    Each list is diffed once per recorded version, then the shards' sidecars are read in parallel threads.
    """
    for _, changed in by_lists:
        for name, token in changed.items():
            versions.diff(name, token)
    decisions = in_parallel(lambda item: decide(versions, planned[item[0]].marker or {}, item[1], options), by_lists)
    rekeyed = []
    for (index, _), decision in zip(by_lists, decisions, strict=True):
        planned[index] = replace(planned[index], reasons=decision.redo, rekey=decision.rekey)
        if not decision.redo:
            rekeyed.append(index)
    return rekeyed


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
    if plan.redo or plan.vanished:
        memory = job.dedup.task_memory / 2**30
        return [
            f"  dedup: every global phase reruns over all {total:,} shards (its input changed); partition counts"
            f" follow the documents phase A keeps (task memory {memory:.2f} GiB)"
        ]
    from engine.dedup.plan import ShardInput, make_plan, plan_lines, read_marker
    from engine.runner.dedup import PHASES

    inputs = {
        s.shard.rel: ShardInput(
            rows=int((s.marker or {}).get("stats", {}).get("docs_kept", 0)), identity=plan.key.unit_key(s.fingerprint)
        )
        for s in plan.shards
    }
    dedup_plan, _ = make_plan(job, [s.shard.rel for s in plan.shards], inputs)
    finished = [phase for phase in PHASES if read_marker(dedup_plan, phase)]
    if len(finished) == len(PHASES):
        return ["  dedup: input unchanged: the global phases are reused; removal redoes only shards missing output"]
    if finished:
        return [f"  dedup: input unchanged; resumes after phase {finished[-1]!r} of an unfinished dedup"]
    head = f"  dedup: runs every global phase over all {total:,} shards (no finished dedup of this input)"
    return [head, *plan_lines(dedup_plan)]
