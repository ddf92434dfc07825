"""Ray: starting or joining it, and running tasks on it with retries and bounded in-flight work.

With `engine.runner.submit` (the job-submission client), the only modules that import Ray. Ray starts
in-process by default (the embedded default: no cluster needed) or joins `--address` / `RAY_ADDRESS`.
Behaviour never depends on where a task ran.
"""

from __future__ import annotations

import functools
import logging
import math
import os
import time
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from engine.errors import RunFailed
from engine.io.paths import Shard
from engine.runner.keys import JobKey
from engine.runner.progress import Progress
from engine.runner.unit import UnitResult, run_unit
from engine.spec import JobSpec
from engine.stats import reset_peak_rss, task_peak_rss

Item = TypeVar("Item")
Result = TypeVar("Result")


# What each library a task loads reads to size its thread pool when the worker process starts: polars, Arrow's
# CPU pool (OMP_NUM_THREADS, also OpenMP), OpenBLAS under NumPy, Rust's rayon (rensa's MinHash), MKL if present.
THREAD_CAP_VARIABLES = (
    "POLARS_MAX_THREADS",
    "OMP_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "MKL_NUM_THREADS",
    "RAYON_NUM_THREADS",
)

# The Ray this process started itself (its GCS address) and the environment its worker processes inherit.
_embedded: dict[str, Any] = {}


def thread_caps(cpus_per_task: float) -> dict[str, str]:
    """Environment that sizes every thread pool a task's libraries start to the task's CPUs (at least one).

    Without it, a 1-CPU task on a 64-core node starts polars and Arrow pools of 64 threads each, and the node's
    tasks oversubscribe its cores many times over. The variables must be set before the libraries load, so they
    are in the environment Ray starts each worker process with (`init_ray`, `RayExecutor`).
    """
    threads = str(max(1, math.floor(cpus_per_task)))
    return dict.fromkeys(THREAD_CAP_VARIABLES, threads)


def init_ray(
    address: str | None = None,
    *,
    num_cpus: int | None = None,
    cpus_per_task: float = 1.0,
    runtime_env: dict[str, Any] | None = None,
) -> None:
    """Join `address` (or RAY_ADDRESS), or start a Ray of this process's own; quietly, and only once.

    Without an address the embedded Ray is always a new one (`address="local"`), with `num_cpus` CPUs (default:
    the machine's): never a cluster Ray would otherwise find on this machine (`ray start`, another run, or the
    stale `ray_current_cluster` file a dead one left). `num_cpus` does not apply when joining a cluster.

    An embedded Ray is started with `thread_caps(cpus_per_task)` in its environment, which every worker process
    inherits (cheaper than a per-task `runtime_env`, which makes Ray start a separate pool of workers: ~5 s
    before the first task on this machine); the executor adds the caps to the tasks wherever workers lack them.
    `runtime_env` (embedded only) is the job's Ray runtime environment (benchmarks: a worker setup hook).
    """
    import ray

    if ray.is_initialized():
        return
    address = address or os.environ.get("RAY_ADDRESS") or None
    options: dict[str, Any] = {"logging_level": logging.WARNING, "log_to_driver": False}
    if address is not None:
        ray.init(address=address, **options)
        return
    options["include_dashboard"] = False
    if num_cpus is not None:
        options["num_cpus"] = num_cpus
    if runtime_env is not None:
        options["runtime_env"] = runtime_env
    # Ray's default for a new local cluster (token auth on) is right; its notice about it is noise here.
    logging.getLogger("ray._private.authentication.authentication_token_setup").setLevel(logging.ERROR)
    caps = thread_caps(cpus_per_task)
    saved = {name: os.environ.get(name) for name in caps}
    os.environ.update(caps)  # the raylet starts now and its workers inherit this; the driver's own stays as it was
    try:
        ray.init(address="local", **options)
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
    _embedded.clear()
    _embedded.update(gcs=ray.get_runtime_context().gcs_address, env=caps)


def worker_environment() -> dict[str, str]:
    """The thread caps every worker of the connected Ray already starts with (those of an embedded Ray), or {}."""
    import ray

    if ray.is_initialized() and _embedded.get("gcs") == ray.get_runtime_context().gcs_address:
        return dict(_embedded["env"])
    return {}


def task_options(cpus_per_task: float) -> dict[str, Any]:
    """Ray task options that start every task's worker process with the thread caps.

    Nothing beyond `num_cpus` where workers inherit the caps (the embedded Ray), else a `runtime_env` (a joined
    cluster, or a Ray this process did not start). Task-level `env_vars` are merged into the job's runtime_env,
    so a submitted job keeps its own variables.
    """
    caps = thread_caps(cpus_per_task)
    options: dict[str, Any] = {"num_cpus": cpus_per_task}
    inherited = worker_environment()
    if any(inherited.get(name) != value for name, value in caps.items()):
        options["runtime_env"] = {"env_vars": caps}
    return options


def _call(fn: Callable[[Item], Result], item: Item) -> tuple[Result, int]:
    """A task: `fn(item)` and the peak resident memory of the worker process while it ran."""
    reset_peak_rss()
    result = fn(item)
    return result, task_peak_rss()


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


def run_unit_task(job: JobSpec, key: JobKey, item: tuple[Shard, dict[str, Any]], *, force: bool = False) -> UnitResult:
    """`run_unit` as a Ray task (the shard, its input fingerprint and the run's key from the driver's plan;
    `force`: redo it even if its marker matches, for a full rebuild).

    Also records the unit's counters as Ray metrics.
    """
    shard, input_fingerprint = item
    result = run_unit(job, shard, key=key, input_fingerprint=input_fingerprint, force=force)
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


def describe_failure(error: BaseException) -> str:
    """The user-facing message of a task failure (the original exception, not Ray's wrapper)."""
    cause = getattr(error, "cause", None)
    if isinstance(cause, BaseException):
        error = cause
    text = str(error).strip() or type(error).__name__
    return text if type(error).__module__.startswith("engine") else f"{type(error).__name__}: {text}"


class RayExecutor:
    """Runs tasks as Ray tasks: retried after worker loss or storage errors, at most `max_in_flight` at once.

    Per label (a phase: `filter`, `dedup: collisions`, ...), `peak_rss_bytes` keeps the resident memory of the
    largest task that ran under it and `seconds` the wall time spent running its tasks.

    Every task's worker process starts with its thread pools capped to `cpus_per_task` (`thread_caps`).
    """

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
        self.cpus = cpus
        self.max_in_flight = max_in_flight or max(2, 2 * cpus)
        self.show_progress = show_progress
        self.peak_rss_bytes: dict[str, int] = {}
        self.seconds: dict[str, float] = {}
        self._remote: Any = ray.remote(_call).options(
            max_retries=max_retries, retry_exceptions=[OSError], **task_options(cpus_per_task)
        )

    def map_settled(
        self,
        fn: Callable[[Item], Result],
        items: Sequence[Item],
        *,
        label: str,
        on_result: Callable[[Result | BaseException], None] | None = None,
    ) -> list[Result | BaseException]:
        """Run every task; each slot holds its result or the exception it finally failed with."""
        import ray

        started = time.perf_counter()
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
                results[index], peak = ray.get(done[0])
                self.peak_rss_bytes[label] = max(self.peak_rss_bytes.get(label, 0), peak)
            except Exception as error:  # noqa: BLE001 - the runner boundary: record, report, go on
                results[index] = error
            if on_result is not None:
                on_result(results[index])
        self.seconds[label] = self.seconds.get(label, 0.0) + time.perf_counter() - started
        return results

    def map(self, fn: Callable[[Item], Result], items: Sequence[Item], *, label: str) -> list[Result]:
        """Run every task and return results in item order; raise `RunFailed` if any task failed."""
        progress = Progress(label, len(items), enabled=self.show_progress, counts_docs=False)
        results = self.map_settled(
            fn, items, label=label, on_result=lambda r: progress.update(failed=isinstance(r, BaseException))
        )
        progress.finish()
        failures = {f"{label}[{i}]": describe_failure(r) for i, r in enumerate(results) if isinstance(r, BaseException)}
        if failures:
            raise RunFailed(failures)
        return results  # type: ignore[return-value]
