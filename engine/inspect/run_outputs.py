"""Reading what a run left in its output folder: its resolved job and its score sidecar.

Shared by `what-if` and the report; nothing here writes.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import pyarrow as pa
import yaml

from engine.errors import EngineError, InputError
from engine.io.layout import RESOLVED_JOB_FILE, SCORES, join
from engine.io.parquet import read_schema, read_table
from engine.io.paths import filesystem, list_files
from engine.spec import JobSpec, parse_job


def load_run_job(run_dir: str, storage_options: dict[str, Any] | None = None) -> tuple[dict[str, Any], JobSpec]:
    """The run's job as written in `OUT/job.resolved.yaml`: the raw mapping and the validated spec.

    Raises:
        InputError: the folder holds no `job.resolved.yaml` (not a run's output folder).
    """
    options = storage_options or {}
    url = join(run_dir, RESOLVED_JOB_FILE)
    fs, path = filesystem(url, options)
    try:
        with fs.open(path, "r") as handle:
            raw = yaml.safe_load(handle.read())
    except FileNotFoundError:
        msg = f"{url} does not exist: {run_dir!r} is not the output folder of a run (OUT/job.resolved.yaml missing)"
        raise InputError(msg) from None
    if not isinstance(raw, dict):
        msg = f"{url}: not a job mapping; the run's output folder looks damaged"
        raise InputError(msg)
    raw = dict(raw)
    raw["preset"] = None  # the resolved job already lists the preset's steps
    return raw, parse_job(raw, source=url)


def score_files(run_dir: str, storage_options: dict[str, Any] | None = None) -> list[str]:
    """Every score sidecar file of a run, sorted; empty when the run kept no scores."""
    return list_files(join(run_dir, SCORES), storage_options or {}, "**/*.parquet")


def require_score_files(run_dir: str, job: JobSpec, storage_options: dict[str, Any] | None = None) -> list[str]:
    """The run's score files, or a clear error saying how to get them.

    Raises:
        InputError: the run was made without `output.keep_scores`, or its sidecar is missing.
    """
    files = score_files(run_dir, storage_options)
    if not files:
        how = (
            "the run was made without `output: {keep_scores: true}`"
            if not job.output.keep_scores
            else "the run's scores/ folder is empty or missing"
        )
        msg = (
            f"{join(run_dir, SCORES)} holds no score sidecar: {how}. Set `keep_scores: true` under `output:` in "
            "the job and run it again (finished shards are redone once, since the setting changes their outputs)."
        )
        raise InputError(msg)
    return files


def iter_score_batches(
    files: Sequence[str], storage_options: dict[str, Any] | None = None, columns: Sequence[str] | None = None
) -> Iterator[pa.Table]:
    """The sidecar, one file at a time (what-if is row-local, so memory stays bounded by the largest shard).

    `columns` (None: all) limits what is read; a column a file lacks is left out of that file's table.
    """
    for url in files:
        if columns is None:
            yield read_table(url, storage_options or {})  # page checksums verified
            continue
        present = set(read_schema(url, storage_options or {}).names)
        yield read_table(url, storage_options or {}, columns=[c for c in columns if c in present])


def run_job_and_header(output_path: str, storage_options: dict[str, Any]) -> tuple[JobSpec | None, str]:
    """The run's resolved job (None if missing or unreadable) and its header comment (engine/git revision)."""
    fs, path = filesystem(join(output_path, RESOLVED_JOB_FILE), storage_options)
    header = ""
    if fs.exists(path):
        with fs.open(path, "r") as handle:
            first = handle.readline()
        header = first.lstrip("# ").strip() if first.startswith("#") else ""
    try:
        _, job = load_run_job(output_path, storage_options)
    except (EngineError, yaml.YAMLError, OSError):
        return None, header  # an old or edited run: the report still shows what it can
    return job, header
