"""The Python API for notebooks and benchmarks: load a job, build and apply a step, run a job.

`run_job` is also what `corpus-engine run` calls: the run (engine.runner), then its report (engine.inspect).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import pyarrow as pa

from engine.batch import Verdict
from engine.errors import RunFailed
from engine.spec import JobSpec, load_job
from engine.stats import Stats
from engine.steps.base import Step
from engine.steps.base import build_step as _build_step


def build_step(mapping: Mapping[str, Any] | str, **parameters: Any) -> Step:
    """A step from its YAML mapping, or from its type name and keyword parameters.

    >>> build_step({"type": "doc_length", "min_words": 50})
    >>> build_step("doc_length", min_words=50)
    """
    if isinstance(mapping, str):
        mapping = {"type": mapping, **parameters}
    return _build_step(mapping)


def apply_step(step: Step, batch: pa.Table) -> tuple[pa.Table, Verdict]:
    """Apply one step to a table with `id` and `text`: the (possibly rewritten) table and the verdict."""
    return step.apply(batch)


def run_job(
    job: JobSpec | str | Path,
    *,
    output: str | None = None,
    address: str | None = None,
    show_progress: bool = False,
    on_plan: Callable[[list[str]], None] | None = None,
    full: bool = False,
) -> Stats:
    """Run a job (a `JobSpec` or a YAML path) on Ray, embedded by default or joining `address`; write its report.

    `on_plan` receives the plan's summary (what is redone and why) before anything runs. `full=True` is a full
    rebuild: every shard and every dedup phase is redone, ignoring what earlier runs left (the dedup's build
    order is kept, so `first_seen` representatives stay put). Returns the run's total stats; raises `RunFailed`
    if any shard failed (the others finish).
    """
    from engine.runner.run import run_on_ray

    job = _job(job, output)
    try:
        stats = run_on_ray(job, address=address, show_progress=show_progress, on_plan=on_plan, full=full)
    except RunFailed:
        _write_report(job)
        raise
    _write_report(job)
    return stats


def plan_job(job: JobSpec | str | Path, *, output: str | None = None, full: bool = False) -> list[str]:
    """What a run of `job` (with `full`: a full rebuild) would redo and why, as the lines `corpus-engine plan`
    prints; runs nothing."""
    from engine.runner.plan import make_run_plan, plan_lines, with_absolute_paths

    return plan_lines(make_run_plan(with_absolute_paths(_job(job, output)), full=full))


def _job(job: JobSpec | str | Path, output: str | None) -> JobSpec:
    """A job from a `JobSpec` or a YAML path, with `output` (if given) as its output path."""
    if not isinstance(job, JobSpec):
        return load_job(job, output=output)
    if output is not None:
        return job.model_copy(update={"output": job.output.model_copy(update={"path": output})})
    return job


def _write_report(job: JobSpec) -> None:
    """OUT/report.html from the stats the run just wrote; a report problem never fails a finished run."""
    from engine.inspect.report import write_report

    try:
        write_report(job.output.path, job.output.storage_options)
    except Exception as error:  # noqa: BLE001 - the report is a view of results already committed
        logging.getLogger(__name__).warning("report not written: %s: %s", type(error).__name__, error)


__all__ = ["apply_step", "build_step", "load_job", "plan_job", "run_job"]
