"""`validate` and `run`: check a job file, then run it on Ray (embedded, or joining a cluster)."""

from __future__ import annotations

import argparse
import sys
from typing import Any

import yaml

from engine.api import run_job
from engine.spec import load_job
from engine.stats import Stats
from engine.validate import validate_job


def cmd_validate(args: argparse.Namespace) -> int:
    job = load_job(args.job, output=args.output)
    for line in validate_job(job):
        print(line)
    if args.resolved:
        print(yaml.safe_dump(job.resolved(), sort_keys=False), end="")
    print("ok: the job is valid")
    return 0


def summary(stats: Stats, output: str) -> str:
    """The lines printed after a run: totals, the conservation line, the top drop reasons."""
    rate = stats.docs_in / max(stats.seconds, 1e-9)
    lines = [
        f"done: {stats.docs_in:,} docs in {stats.seconds:.1f}s ({rate:,.0f} docs/s);"
        f" shards: {stats.shards_processed} processed, {stats.shards_skipped} skipped of {stats.shards_total}",
        f"  kept {stats.docs_kept:,} + dropped {stats.docs_dropped:,} + duplicates {stats.duplicates:,}"
        f" = {stats.docs_kept + stats.docs_dropped + stats.duplicates:,} (conservation holds)",
    ]
    for reason, count in stats.dropped.most_common(8):
        lines.append(f"  {count:>10,}  {reason}")
    lines.append(f"  output: {output}")
    return "\n".join(lines)


def cmd_run(args: argparse.Namespace) -> int:
    job = load_job(args.job, output=args.output)
    show = not args.quiet
    if show:
        print(f"running {job.name!r} -> {job.output.path}", file=sys.stderr)
    stats = run_job(job, address=args.address, show_progress=show)
    print(summary(stats, job.output.path))
    return 0


def add_job_commands(commands: Any) -> None:
    """Register `validate` and `run` on the CLI's subcommands (`commands` from `add_subparsers`)."""
    validate = commands.add_parser("validate", help="check a job file, its inputs and models, before running")
    validate.add_argument("job", help="job YAML file")
    validate.add_argument("--output", help="override output.path")
    validate.add_argument("--resolved", action="store_true", help="print the job with defaults filled in")
    validate.set_defaults(handler=cmd_validate)

    run = commands.add_parser("run", help="run a job on Ray (embedded unless --address or RAY_ADDRESS)")
    run.add_argument("job", help="job YAML file")
    run.add_argument("--output", help="override output.path")
    run.add_argument("--address", help="Ray cluster address (default: start Ray in-process)")
    run.add_argument("--quiet", action="store_true", help="no progress display")
    run.set_defaults(handler=cmd_run)
