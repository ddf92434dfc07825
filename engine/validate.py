"""What `validate` checks before anything runs: every step can run here, resources fit, the input has shards."""

from __future__ import annotations

import os

from engine.errors import SpecError
from engine.io.atomic import check_writable
from engine.io.paths import list_shards
from engine.spec import JobSpec


def validate_job(job: JobSpec, *, check_input: bool = True, on_cluster: bool = False) -> list[str]:
    """Everything `validate` checks before a run: inputs exist, models load, resources fit.

    `check_input=False` skips listing the input and probing the output (storage only the cluster can reach);
    `on_cluster=True` leaves `run.cpus_per_task` to the cluster's scheduler instead of comparing it with this
    machine's CPUs.
    Returns lines describing the job; raises `EngineError` subclasses naming what is wrong.
    """
    for index, step in enumerate(job.steps):
        try:
            step.check()
        except SpecError as error:
            msg = f"steps[{index}] ({step.type}): {error}"
            raise SpecError(msg) from None
    cpus = os.cpu_count() or 1
    if not on_cluster and job.run.cpus_per_task > cpus and not os.environ.get("RAY_ADDRESS"):
        msg = f"run.cpus_per_task={job.run.cpus_per_task} exceeds the {cpus} CPUs of this machine"
        raise SpecError(msg)
    if check_input:
        check_writable(job.output.path, job.output.storage_options)
        shards = list_shards(job.input.path, job.input.storage_options, job.input.glob)
        lines = [f"job {job.name!r}: {len(shards)} shard(s) under {job.input.path}"]
    else:
        lines = [f"job {job.name!r}: input {job.input.path} not checked"]
    lines += [f"  {i}. {step.type}" + (f" (as {step.name})" if step.name else "") for i, step in enumerate(job.steps)]
    if job.dedup is not None:
        lines.append(f"  then dedup: {job.dedup.type}")
    return lines
