"""`validate`, `plan` and `run`: check a job file, say what a run would redo, run it on Ray (embedded or joining)."""

from __future__ import annotations

import argparse
import sys
from typing import Any

import yaml

from engine.api import plan_job, run_job
from engine.spec import JobSpec, load_job
from engine.stats import DUPLICATE_ROWS, KEPT_ROWS, REJECTED_ROWS, STAGED_ROWS, Stats
from engine.steps.fineweb2 import FineWeb2Language, resolved_languages
from engine.validate import validate_job

FULL_HELP = "redo every shard and every dedup phase, ignoring what earlier runs left (dedup keeps its build order)"


def cmd_validate(args: argparse.Namespace) -> int:
    """Print what the job will do; with --resolved, stdout holds only the resolved job (a job file) and the rest
    goes to stderr, so `validate JOB --resolved > resolved.yaml` writes a job that runs to the same result."""
    job = load_job(args.job, output=args.output)
    notes = sys.stderr if args.resolved else sys.stdout
    for line in validate_job(job):
        print(line, file=notes)
    if args.resolved:
        print(job.resolved_yaml(), end="")
        languages = list(args.language or ())
        for step in job.steps:
            if isinstance(step, FineWeb2Language) and step.languages and not languages:
                languages = list(step.languages)
        if languages:
            table = {"per_language": resolved_languages(job.steps, languages)}
            print(yaml.safe_dump(table, sort_keys=False, allow_unicode=True), end="", file=notes)
        elif any(getattr(step, "per_language", None) is not None for step in job.steps):
            hint = "# per-language settings: add --language NAME (e.g. --language tha_Thai) to see what it gets"
            print(hint, file=notes)
    print("ok: the job is valid", file=notes)
    return 0


def conservation_lines(stats: Stats, *, write_rejected: bool) -> list[str]:
    """The conservation check as counted: rows read, and rows in the written files (from their Parquet footers)."""
    written = stats.written
    total = stats.docs_kept + stats.docs_dropped + stats.duplicates
    lines = [
        f"  kept {stats.docs_kept:,} + dropped {stats.docs_dropped:,} + duplicates {stats.duplicates:,}"
        f" = {total:,} of {stats.docs_in:,} documents read"
    ]
    staged = written[STAGED_ROWS]
    first = f"{staged:,} staged for dedup" if staged else f"{written[KEPT_ROWS]:,} in kept/"
    if write_rejected:
        second = f"{written[REJECTED_ROWS]:,} in rejected/"
    else:
        second = f"{stats.docs_dropped:,} dropped (counted by the steps; rejected/ not written)"
    lines.append(f"  counted in the files' Parquet footers: {stats.docs_in:,} rows read = {first} + {second}")
    if staged:
        duplicates = written[DUPLICATE_ROWS]
        where = "in rejected/*.duplicates" if duplicates == stats.duplicates else "removed (not written)"
        lines.append(
            f"  dedup: {staged:,} staged = {written[KEPT_ROWS]:,} in kept/ + {stats.duplicates:,} duplicates {where}"
        )
    return lines


def summary(stats: Stats, job: JobSpec) -> str:
    """The lines printed after a run: totals, the counted conservation lines, the top drop reasons.

    Throughput counts only the documents processed in this run; documents of skipped shards are reused.
    """
    processed = stats.docs_processed
    rate = f" ({processed / stats.seconds:,.0f} docs/s)" if processed and stats.seconds > 0 else ""
    reused = f", {stats.docs_reused:,} reused from the last run" if stats.docs_reused else ""
    rekeyed = f" ({stats.shards_rekeyed} re-keyed)" if stats.shards_rekeyed else ""
    lines = [
        f"done: {stats.docs_in:,} docs in {stats.seconds:.1f}s: {processed:,} processed{rate}{reused};"
        f" shards: {stats.shards_processed} processed, {stats.shards_skipped} skipped{rekeyed} of {stats.shards_total}",
        *conservation_lines(stats, write_rejected=job.output.write_rejected),
    ]
    for reason, count in stats.dropped.most_common(8):
        lines.append(f"  {count:>10,}  {reason}")
    lines.append(f"  output: {job.output.path}")
    return "\n".join(lines)


def cmd_plan(args: argparse.Namespace) -> int:
    job = load_job(args.job, output=args.output)
    for line in plan_job(job, full=args.full):
        print(line)
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    job = load_job(args.job, output=args.output)
    if args.num_cpus is not None:
        job = job.model_copy(update={"run": job.run.model_copy(update={"num_cpus": args.num_cpus})})
    show = not args.quiet
    if show:
        print(f"running {job.name!r} -> {job.output.path}", file=sys.stderr)

    def print_plan(lines: list[str]) -> None:
        print("\n".join(lines), flush=True)

    stats = run_job(job, address=args.address, show_progress=show, on_plan=print_plan, full=args.full)
    print(summary(stats, job))
    return 0


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        msg = f"expected a whole number of CPUs, at least 1; got {text!r}"
        raise argparse.ArgumentTypeError(msg)
    return value


def add_job_commands(commands: Any) -> None:
    """Register `validate`, `plan` and `run` on the CLI's subcommands (`commands` from `add_subparsers`)."""
    validate = commands.add_parser("validate", help="check a job file, its inputs and models, before running")
    validate.add_argument("job", help="job YAML file")
    validate.add_argument("--output", help="override output.path")
    validate.add_argument("--resolved", action="store_true", help="print the job with defaults filled in")
    validate.add_argument(
        "--language",
        action="append",
        help="with --resolved: the settings this FineWeb-2 language gets (repeat for several)",
    )
    validate.set_defaults(handler=cmd_validate)

    plan = commands.add_parser("plan", help="what a run would redo and why, without running anything")
    plan.add_argument("job", help="job YAML file")
    plan.add_argument("--output", help="override output.path")
    plan.add_argument("--full", action="store_true", help="plan a full rebuild (what `run --full` redoes)")
    plan.set_defaults(handler=cmd_plan)

    run = commands.add_parser("run", help="run a job on Ray (embedded unless --address or RAY_ADDRESS)")
    run.add_argument("job", help="job YAML file")
    run.add_argument("--output", help="override output.path")
    run.add_argument("--address", help="Ray cluster address (default: start Ray in-process)")
    run.add_argument(
        "--num-cpus",
        type=_positive,
        help="CPUs of the embedded Ray (default: run.num_cpus in the job, else every CPU of the machine)",
    )
    run.add_argument("--quiet", action="store_true", help="no progress display")
    run.add_argument("--full", action="store_true", help=FULL_HELP)
    run.set_defaults(handler=cmd_run)
