"""A whole run: plan it, run phase A on the shards the plan redoes, then dedup; check and write the totals.

`run_on_ray` drives; the phases run as tasks through `engine.runner.ray`. The plan (`engine.runner.plan`) decides
which shards are redone (their reuse key changed, or they are new) and which are reused (not even scheduled);
the run acts on exactly that plan. It returns the run's totals and writes `OUT/stats.json`; the report
(`engine.inspect.report`) is written by whoever called it, from those totals.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Sequence

from engine.dedup.plan import ShardInput
from engine.errors import RunFailed
from engine.io.atomic import TMP_MARK, check_writable, remove_temporary, write_text
from engine.io.layout import RESOLVED_JOB_FILE, STATS_FILE, TMP, UNITS, join, unit_marker_file
from engine.io.markers import read_json, write_json
from engine.io.paths import list_files, remove_files
from engine.provenance import git_state
from engine.runner.dedup import run_dedup
from engine.runner.keys import save_key
from engine.runner.plan import (
    OUTPUTS_KEY,
    Finished,
    RunPlan,
    ShardPlan,
    in_parallel,
    make_run_plan,
    plan_lines,
    with_absolute_paths,
)
from engine.runner.progress import Progress
from engine.runner.ray import RayExecutor, describe_failure, init_ray, run_unit_task
from engine.runner.summary import write_summary
from engine.runner.unit import UnitResult
from engine.spec import JobSpec
from engine.stats import DUPLICATE_ROWS, KEPT_ROWS, Stats
from engine.version import __version__

FILTER_PHASE = "filter"  # the phase-A units' label in `phase_peak_rss_bytes` (dedup phases carry their own)


def remove_vanished(job: JobSpec, vanished: Sequence[str]) -> None:
    """Delete the outputs, stats and markers of shards that were processed before but are no longer in the input."""
    out, options = job.output.path, job.output.storage_options
    for rel in vanished:
        marker_url = join(out, UNITS, f"{rel}.marker.json")
        marker = read_json(marker_url, options) or {}
        remove_files([*marker.get("outputs", []), join(out, UNITS, f"{rel}.stats.json"), marker_url], options)


def rekey_units(plan: RunPlan) -> None:
    """Give the re-keyed shards their new key: rewrite their markers only (parallel small writes), no output."""
    job = plan.job
    out, options = job.output.path, job.output.storage_options

    def rekey(shard: ShardPlan) -> None:
        url = unit_marker_file(out, shard.shard.rel)  # read again: the plan keeps no marker
        marker = {**(read_json(url, options) or {}), "key": plan.key.unit_key(shard.fingerprint)}
        marker[OUTPUTS_KEY] = shard.outputs_key(plan.key)  # still the key its outputs were made under
        write_json(url, marker, options)

    in_parallel(rekey, plan.rekeyed)


def remove_run_leftovers(job: JobSpec) -> None:
    """Delete temporary files a killed driver left at the output's top level (stats, resolved job, report)."""
    options = job.output.storage_options
    remove_files(list_files(job.output.path, options, f"*{TMP_MARK}*"), options)


def write_resolved_job(job: JobSpec) -> None:
    """Save the job with defaults filled in (and the engine's revision) next to the output."""
    header = f"# resolved by corpus-engine {__version__} (git {git_state()['revision'] or 'unknown'})\n"
    text = header + job.resolved_yaml()
    write_text(join(job.output.path, RESOLVED_JOB_FILE), text, job.output.storage_options)


def run_on_ray(
    job: JobSpec,
    *,
    address: str | None = None,
    show_progress: bool = False,
    on_plan: Callable[[list[str]], None] | None = None,
    full: bool = False,
) -> Stats:
    """Run every phase of `job` on Ray and return the run's totals (also written to OUT/stats.json).

    `on_plan` receives the plan's summary lines before anything runs (the CLI prints them). `full`: a full
    rebuild, every unit and every dedup phase redone whatever was done before; the dedup's build order is kept.

    Raises:
        InputError: the input path is missing or empty.
        OutputError: the output path cannot be written (checked before anything runs).
        SpecError: an asset a step reads is missing.
        RunFailed: some shards failed (with dedup, kept/ then waits for every shard).
        ConservationError: the rows written do not account for the rows read (a bug).
    """
    started = time.perf_counter()
    job = with_absolute_paths(job)
    check_writable(job.output.path, job.output.storage_options)
    plan = make_run_plan(job, full=full)
    if on_plan is not None:
        on_plan(plan_lines(plan))
    write_resolved_job(job)
    save_key(job, plan.key)
    if plan.lists is not None:
        plan.lists.save()  # before any marker refers to the lists' current versions
    remove_run_leftovers(job)
    remove_vanished(job, plan.vanished)
    rekey_units(plan)
    executor = None
    ray_start_seconds = 0.0
    if plan.redo or job.dedup is not None:
        ray_started = time.perf_counter()
        init_ray(address, num_cpus=job.run.num_cpus, cpus_per_task=job.run.cpus_per_task)
        ray_start_seconds = time.perf_counter() - ray_started
        executor = RayExecutor(
            max_in_flight=job.run.max_in_flight,
            max_retries=job.run.max_retries,
            cpus_per_task=job.run.cpus_per_task,
            show_progress=show_progress,
        )
    total, failures, kept_by_shard, finished = _phase_a(job, plan, executor, show_progress=show_progress)
    if failures:
        total.seconds = time.perf_counter() - started
        _record_memory(total, executor)
        _write_stats(job, total, failures, executor, ray_start_seconds)
        raise RunFailed(failures, consequence=_failure_consequence(job, total))
    total.check_written(f"run {job.name!r}", rejected_written=job.output.write_rejected)
    if not plan.summary_current:  # an unchanged night leaves the summary as it is
        write_summary(job.output.path, job.output.storage_options, finished.entries, finished.stats)
    remove_temporary(join(job.output.path, TMP), job.output.storage_options)  # every unit finished: nothing is live
    if plan.lists is not None:
        plan.lists.prune()  # every marker now refers to the lists' current versions

    if job.dedup is not None and executor is not None:
        inputs = {
            s.shard.rel: ShardInput(rows=kept_by_shard[s.shard.rel], identity=s.outputs_key(plan.key), url=s.shard.url)
            for s in plan.shards
        }
        outcome = run_dedup(job, [s.shard.rel for s in plan.shards], executor, inputs=inputs, full=full)
        total.docs_kept = outcome.kept  # counted by removal's writers, checked against the files' footers
        total.duplicates += outcome.duplicates
        total.written[KEPT_ROWS] += outcome.kept
        total.written[DUPLICATE_ROWS] += outcome.duplicates_written
        for removal in outcome.shards.values():
            total.duplicates_by_language.update(removal.duplicates_by_language)
        total.cluster_sizes.update(outcome.cluster_sizes)
        total.largest_cluster = max(total.largest_cluster, outcome.largest_cluster)
        total.churn.update(outcome.churn)
        total.check_dedup_written(f"run {job.name!r}", duplicates_written=job.dedup.write_duplicates)
    total.seconds = time.perf_counter() - started
    total.check_conservation(f"run {job.name!r}")
    _record_memory(total, executor)
    _write_stats(job, total, failures, executor, ray_start_seconds)
    return total


def _phase_a(
    job: JobSpec, plan: RunPlan, executor: RayExecutor | None, *, show_progress: bool
) -> tuple[Stats, dict[str, str], dict[str, int], Finished]:
    """Run the units the plan redoes; the totals of every shard (reused ones as the plan summed them), the
    failures, the documents each shard kept (what dedup reads) and what the run's summary records."""
    progress = Progress("filter", len(plan.shards), enabled=show_progress)
    total = Stats(shards_total=len(plan.shards)) + plan.reused_stats
    finished = Finished(plan)
    total.shards_skipped = len(plan.reuse)
    total.shards_rekeyed = len(plan.rekeyed)
    total.docs_reused = plan.reused_stats.docs_in  # reused from the last run, counted apart from throughput
    kept_by_shard = {s.shard.rel: s.recorded.docs_kept for s in plan.reuse if s.recorded is not None}
    for _ in plan.reuse:
        progress.update(skipped=True)  # no documents: docs/s shows only what this run processes

    def add(planned: ShardPlan, result: UnitResult) -> None:
        nonlocal total
        unit = finished.add(planned, result)
        kept_by_shard[planned.shard.rel] = unit.docs_kept
        total = total + unit
        total.shards_processed += result.status == "processed"
        total.shards_skipped += result.status == "skipped"
        if result.status == "skipped":
            total.docs_reused += unit.docs_in

    def on_result(result: UnitResult | BaseException) -> None:
        if isinstance(result, BaseException):
            progress.update(failed=True)
            return
        if result.status == "skipped":
            progress.update(skipped=True)
            return
        progress.update(docs=result.stats["docs_in"], dropped=result.stats["docs_dropped"])

    redo = plan.redo
    results: list[UnitResult | BaseException] = []
    if redo and executor is not None:
        items = [(s.shard, s.fingerprint) for s in redo]
        results = executor.map_settled(
            functools.partial(run_unit_task, job, plan.key, force=plan.full),
            items,
            label=FILTER_PHASE,
            on_result=on_result,
        )
    progress.finish()
    failures: dict[str, str] = {}
    for planned, result in zip(redo, results, strict=True):
        if isinstance(result, BaseException):
            failures[planned.shard.url] = describe_failure(result)
        else:
            add(planned, result)
    total.shards_failed = len(failures)
    return total, failures, kept_by_shard, finished


def _record_memory(total: Stats, executor: RayExecutor | None) -> None:
    """The largest task of each phase this run ran (shards reused from an earlier run ran nothing)."""
    if executor is None:
        return
    total.phase_peak_rss_bytes = dict(sorted(executor.peak_rss_bytes.items()))
    total.peak_rss_bytes = max([total.peak_rss_bytes, *executor.peak_rss_bytes.values()])


def _failure_consequence(job: JobSpec, total: Stats) -> str | None:
    """What a failed shard means for the rest of the run's output (None: the default, other shards are final)."""
    if job.dedup is None:
        return None
    finished = total.shards_processed + total.shards_skipped
    return (
        "dedup (and so kept/) waits for every shard, so this run wrote nothing to kept/ and none of its documents"
        f" is final; the {finished:,} other shard(s) finished filtering and are reused when the job is rerun after"
        " the failed ones are fixed"
    )


def _write_stats(
    job: JobSpec,
    total: Stats,
    failures: dict[str, str],
    executor: RayExecutor | None = None,
    ray_start_seconds: float = 0.0,
) -> None:
    data = total.to_dict()
    # Where the wall time went: starting (or joining) Ray, then each phase's tasks (the driver's own work is the rest).
    data["ray_cpus"] = executor.cpus if executor is not None else None  # the cluster's CPUs (embedded: --num-cpus)
    data["ray_start_seconds"] = round(ray_start_seconds, 3)
    data["phase_seconds"] = {k: round(v, 3) for k, v in sorted((executor.seconds if executor else {}).items())}
    processed = total.docs_processed
    data["docs_per_second"] = round(processed / total.seconds, 1) if total.seconds and processed else None
    data["conserved"] = total.is_conserved()
    data["failed_shards"] = failures
    data["job"] = job.name
    data["engine_version"] = __version__
    if failures and job.dedup is not None:
        # Nothing reached kept/: the documents the steps kept wait in _stage/ for dedup, which needs every shard.
        data["docs_kept"] = None
        data["docs_staged"] = total.docs_kept
        data["dedup"] = (
            f"not run: dedup waits for every shard ({len(failures)} failed); kept/ holds nothing of this run"
        )
    write_json(join(job.output.path, STATS_FILE), data, job.output.storage_options)
