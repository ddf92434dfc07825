"""A whole run: list the shards, run phase A on every one (skipping finished ones), then dedup; write the totals.

`run_on_ray` drives; the phases run as tasks through `engine.runner.ray`. It returns the run's totals and writes
`OUT/stats.json`; the report (`engine.inspect.report`) is written by whoever called it, from those totals.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Sequence

import yaml

from engine.errors import RunFailed
from engine.io.atomic import write_text
from engine.io.layout import RESOLVED_JOB_FILE, STATS_FILE, UNITS, join
from engine.io.markers import read_json, write_json
from engine.io.paths import Shard, absolute, list_files, list_shards, relative_path, remove_files
from engine.provenance import git_state
from engine.runner.dedup import run_dedup
from engine.runner.progress import Progress
from engine.runner.ray import RayExecutor, describe_failure, init_ray, run_unit_task
from engine.runner.unit import UnitResult
from engine.spec import JobSpec
from engine.stats import Stats
from engine.version import __version__


def with_absolute_paths(job: JobSpec) -> JobSpec:
    """Local input and output paths made absolute, so workers anywhere see the same files."""
    return job.model_copy(
        update={
            "input": job.input.model_copy(update={"path": absolute(job.input.path)}),
            "output": job.output.model_copy(update={"path": absolute(job.output.path)}),
        }
    )


def remove_vanished(job: JobSpec, shards: Sequence[Shard]) -> int:
    """Delete the outputs of shards that were processed before but are no longer in the input."""
    out, options = job.output.path, job.output.storage_options
    units = join(out, UNITS)
    current = {s.rel for s in shards}
    removed = 0
    for url in list_files(units, options, "**/*.marker.json"):
        rel = relative_path(url, units, options).removesuffix(".marker.json")
        if rel in current:
            continue
        marker = read_json(url, options) or {}
        remove_files(
            [
                *marker.get("outputs", []),
                join(out, UNITS, f"{rel}.stats.json"),
                join(out, UNITS, f"{rel}.marker.json"),
            ],
            options,
        )
        removed += 1
    return removed


def write_resolved_job(job: JobSpec) -> None:
    """Save the job with defaults filled in (and the engine's revision) next to the output."""
    header = f"# resolved by corpus-engine {__version__} (git {git_state()['revision'] or 'unknown'})\n"
    text = header + yaml.safe_dump(job.resolved(), sort_keys=False)
    write_text(join(job.output.path, RESOLVED_JOB_FILE), text, job.output.storage_options)


def run_on_ray(job: JobSpec, *, address: str | None = None, show_progress: bool = False) -> Stats:
    """Run every phase of `job` on Ray and return the run's totals (also written to OUT/stats.json).

    Raises:
        InputError: the input path is missing or empty.
        RunFailed: some shards failed (every other shard finished and is reusable by the next run).
        ConservationError: documents went missing (a bug).
    """
    started = time.perf_counter()
    job = with_absolute_paths(job)
    shards = list_shards(job.input.path, job.input.storage_options, job.input.glob)
    write_resolved_job(job)
    remove_vanished(job, shards)
    init_ray(address)
    executor = RayExecutor(
        max_in_flight=job.run.max_in_flight,
        max_retries=job.run.max_retries,
        cpus_per_task=job.run.cpus_per_task,
        show_progress=show_progress,
    )

    progress = Progress("filter", len(shards), enabled=show_progress)

    def on_result(result: UnitResult | BaseException) -> None:
        if isinstance(result, BaseException):
            progress.update(failed=True)
            return
        stats = result.stats
        progress.update(docs=stats["docs_in"], dropped=stats["docs_dropped"], skipped=result.status == "skipped")

    results = executor.map_settled(functools.partial(run_unit_task, job), shards, on_result=on_result)
    progress.finish()

    total = Stats(shards_total=len(shards))
    failures: dict[str, str] = {}
    for shard, result in zip(shards, results, strict=True):
        if isinstance(result, BaseException):
            failures[shard.url] = describe_failure(result)
            continue
        unit = Stats.from_dict(result.stats)
        unit.shards_total = unit.shards_processed = unit.shards_skipped = 0
        total = total + unit
        total.shards_processed += result.status == "processed"
        total.shards_skipped += result.status == "skipped"
    total.shards_failed = len(failures)
    if failures:
        total.seconds = time.perf_counter() - started
        _write_stats(job, total, failures)
        raise RunFailed(failures)

    if job.dedup is not None:
        duplicates = run_dedup(job, [s.rel for s in shards], executor)
        removed = sum(duplicates.values())
        total.docs_kept -= removed
        total.duplicates += removed
    total.seconds = time.perf_counter() - started
    total.check_conservation(f"run {job.name!r}")
    _write_stats(job, total, failures)
    return total


def _write_stats(job: JobSpec, total: Stats, failures: dict[str, str]) -> None:
    data = total.to_dict()
    data["docs_per_second"] = round(total.docs_in / total.seconds, 1) if total.seconds else None
    data["conserved"] = total.is_conserved()
    data["failed_shards"] = failures
    data["job"] = job.name
    data["engine_version"] = __version__
    write_json(join(job.output.path, STATS_FILE), data, job.output.storage_options)
