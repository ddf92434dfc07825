"""Scheduling on Ray: units as tasks with retries and bounded in-flight work, then the global phases.

The only module that imports Ray. Ray starts in-process by default (the embedded default: no cluster
needed) or joins `--address` / `RAY_ADDRESS`. Behaviour never depends on where a task ran.
"""

from __future__ import annotations

import functools
import logging
import os
import time
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import yaml

from engine import __version__
from engine.errors import RunFailed
from engine.io.layout import RESOLVED_JOB_FILE, STATS_FILE, UNITS, join
from engine.io.markers import read_json, write_json
from engine.io.paths import Shard, absolute, filesystem, list_shards
from engine.progress import Progress
from engine.provenance import git_state
from engine.runner.unit import UnitResult, remove_outputs, run_unit
from engine.spec import JobSpec
from engine.stats import Stats

Item = TypeVar("Item")
Result = TypeVar("Result")

log = logging.getLogger(__name__)


def init_ray(address: str | None = None) -> None:
    """Join `address` (or RAY_ADDRESS), or start Ray in this process; quietly, and only once."""
    import ray

    if ray.is_initialized():
        return
    address = address or os.environ.get("RAY_ADDRESS") or None
    options: dict[str, Any] = {"logging_level": logging.WARNING, "log_to_driver": False}
    if address is None:
        options["include_dashboard"] = False
        # Ray's default for a new local cluster (token auth on) is right; its notice about it is noise here.
        logging.getLogger("ray._private.authentication.authentication_token_setup").setLevel(logging.ERROR)
        # One task per CPU: keep polars inside a task to one thread instead of every core.
        options["runtime_env"] = {"env_vars": {"POLARS_MAX_THREADS": "1"}}
    ray.init(address=address, **options)


def _call(fn: Callable[[Item], Result], item: Item) -> Result:
    return fn(item)


@functools.cache
def _metrics() -> dict[str, Any]:
    """Ray metrics of this worker process (exported to the dashboard / Prometheus of a cluster)."""
    from ray.util.metrics import Counter

    tags = ("job",)
    return {
        "docs": Counter("corpus_engine_docs_processed", "Documents read by phase-A units.", tag_keys=tags),
        "kept": Counter("corpus_engine_docs_kept", "Documents kept by phase-A units.", tag_keys=tags),
        "dropped": Counter(
            "corpus_engine_docs_dropped", "Documents dropped, by step/rule.", tag_keys=("job", "reason")
        ),
        "bytes_read": Counter("corpus_engine_bytes_read", "Text bytes read.", tag_keys=tags),
        "bytes_kept": Counter("corpus_engine_bytes_kept", "Text bytes kept.", tag_keys=tags),
        "shards": Counter("corpus_engine_shards", "Shards finished, by status.", tag_keys=("job", "status")),
    }


def run_unit_task(job: JobSpec, shard: Shard) -> UnitResult:
    """`run_unit` as a Ray task: also records the unit's counters as Ray metrics."""
    result = run_unit(job, shard)
    metrics, tags = _metrics(), {"job": job.name}
    metrics["shards"].inc(1, tags={**tags, "status": result.status})
    if result.status == "processed":
        stats = result.stats
        counts = [
            ("docs", stats["docs_in"], tags),
            ("kept", stats["docs_kept"], tags),
            ("bytes_read", stats["bytes_in"], tags),
            ("bytes_kept", stats["bytes_kept"], tags),
        ]
        counts += [("dropped", n, {**tags, "reason": reason}) for reason, n in stats["dropped"].items()]
        for name, value, metric_tags in counts:
            if value > 0:  # Ray counters accept only positive increments
                metrics[name].inc(value, tags=metric_tags)
    return result


def _describe(error: BaseException) -> str:
    """The user-facing message of a task failure (the original exception, not Ray's wrapper)."""
    cause = getattr(error, "cause", None)
    if isinstance(cause, BaseException):
        error = cause
    text = str(error).strip() or type(error).__name__
    return text if type(error).__module__.startswith("engine") else f"{type(error).__name__}: {text}"


class RayExecutor:
    """Runs tasks as Ray tasks: retried after worker loss or storage errors, at most `max_in_flight` at once."""

    def __init__(
        self,
        *,
        max_in_flight: int | None = None,
        max_retries: int = 3,
        cpus_per_task: float = 1.0,
        show_progress: bool = False,
    ) -> None:
        import ray

        resources: dict[str, float] = ray.cluster_resources()  # type: ignore[no-untyped-call]
        cpus = int(resources.get("CPU", 1))
        self.max_in_flight = max_in_flight or max(2, 2 * cpus)
        self.show_progress = show_progress
        self._remote: Any = ray.remote(_call).options(
            num_cpus=cpus_per_task, max_retries=max_retries, retry_exceptions=[OSError]
        )

    def map_settled(
        self,
        fn: Callable[[Item], Result],
        items: Sequence[Item],
        *,
        on_result: Callable[[Result | BaseException], None] | None = None,
    ) -> list[Result | BaseException]:
        """Run every task; each slot holds its result or the exception it finally failed with."""
        import ray

        fn_ref = ray.put(fn)
        results: list[Result | BaseException] = [RuntimeError("not run")] * len(items)
        pending: dict[Any, int] = {}
        next_item = 0
        while next_item < len(items) or pending:
            while next_item < len(items) and len(pending) < self.max_in_flight:
                pending[self._remote.remote(fn_ref, items[next_item])] = next_item
                next_item += 1
            done, _ = ray.wait(list(pending), num_returns=1)
            index = pending.pop(done[0])
            try:
                results[index] = ray.get(done[0])
            except Exception as error:  # noqa: BLE001 - the runner boundary: record, report, go on
                results[index] = error
            if on_result is not None:
                on_result(results[index])
        return results

    def map(self, fn: Callable[[Item], Result], items: Sequence[Item], *, label: str) -> list[Result]:
        """Run every task and return results in item order; raise `RunFailed` if any task failed."""
        progress = Progress(label, len(items), enabled=self.show_progress, counts_docs=False)
        results = self.map_settled(fn, items, on_result=lambda r: progress.update(failed=isinstance(r, BaseException)))
        progress.finish()
        failures = {f"{label}[{i}]": _describe(r) for i, r in enumerate(results) if isinstance(r, BaseException)}
        if failures:
            raise RunFailed(failures)
        return results  # type: ignore[return-value]


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
    fs, units = filesystem(join(out, UNITS), options)
    if not fs.exists(units):
        return 0
    current = {s.rel for s in shards}
    removed = 0
    for path in fs.glob(f"{units}/**/*.marker.json"):
        rel = path[len(units) + 1 :].removesuffix(".marker.json")
        if rel in current:
            continue
        marker = read_json(join(out, UNITS, f"{rel}.marker.json"), options) or {}
        remove_outputs(
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
    fs, path = filesystem(join(job.output.path, RESOLVED_JOB_FILE), job.output.storage_options)
    fs.makedirs(path.rsplit("/", 1)[0], exist_ok=True)
    header = f"# resolved by corpus-engine {__version__} (git {git_state()['revision'] or 'unknown'})\n"
    with fs.open(path, "w") as handle:
        handle.write(header + yaml.safe_dump(job.resolved(), sort_keys=False))


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
            failures[shard.url] = _describe(result)
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
        _write_report(job)
        raise RunFailed(failures)

    if job.dedup is not None:
        from engine.dedup.phases import run_dedup

        duplicates = run_dedup(job, [s.rel for s in shards], executor)
        removed = sum(duplicates.values())
        total.docs_kept -= removed
        total.duplicates += removed
    total.seconds = time.perf_counter() - started
    total.check_conservation(f"run {job.name!r}")
    _write_stats(job, total, failures)
    _write_report(job)
    return total


def _write_report(job: JobSpec) -> None:
    """OUT/report.html from the stats just written; a report problem never fails a finished run."""
    from engine.report import write_report

    try:
        write_report(job.output.path, job.output.storage_options)
    except Exception as error:  # noqa: BLE001 - the report is a view of results already committed
        log.warning("report not written: %s: %s", type(error).__name__, error)


def _write_stats(job: JobSpec, total: Stats, failures: dict[str, str]) -> None:
    data = total.to_dict()
    data["docs_per_second"] = round(total.docs_in / total.seconds, 1) if total.seconds else None
    data["conserved"] = total.is_conserved()
    data["failed_shards"] = failures
    data["job"] = job.name
    data["engine_version"] = __version__
    write_json(join(job.output.path, STATS_FILE), data, job.output.storage_options)
