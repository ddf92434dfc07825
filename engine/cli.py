"""`corpus-engine` / `python -m engine`: validate | run (more commands plug in through `add_*_command`).

Exit codes: 0 success; 1 the run failed (some shards, listed); 2 the job or the command line is invalid.
Errors the user can act on are printed as one paragraph, never as a traceback.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

import yaml

from engine.bench import add_bench_command
from engine.errors import EngineError, InputError, RunFailed, SpecError
from engine.quality import add_train_quality_command
from engine.report import add_report_command
from engine.spec import JobSpec, load_job
from engine.stats import Stats
from engine.submit import add_submit_commands
from engine.whatif import add_what_if_command

EXIT_OK, EXIT_FAILED, EXIT_INVALID = 0, 1, 2


def _fail(message: str, code: int) -> int:
    print(f"error: {message}", file=sys.stderr)
    return code


def validate_job(job: JobSpec, *, check_input: bool = True, on_cluster: bool = False) -> list[str]:
    """Everything `validate` checks before a run: inputs exist, models load, resources fit.

    `check_input=False` skips listing the input (storage only the cluster can read); `on_cluster=True` leaves
    `run.cpus_per_task` to the cluster's scheduler instead of comparing it with this machine's CPUs.
    Returns lines describing the job; raises `EngineError` subclasses naming what is wrong.
    """
    import os

    from engine.io.paths import list_shards

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
        shards = list_shards(job.input.path, job.input.storage_options, job.input.glob)
        lines = [f"job {job.name!r}: {len(shards)} shard(s) under {job.input.path}"]
    else:
        lines = [f"job {job.name!r}: input {job.input.path} not checked"]
    lines += [f"  {i}. {step.type}" + (f" (as {step.name})" if step.name else "") for i, step in enumerate(job.steps)]
    if job.dedup is not None:
        lines.append(f"  then dedup: {job.dedup.type}")
    return lines


def cmd_validate(args: argparse.Namespace) -> int:
    job = load_job(args.job, output=args.output)
    for line in validate_job(job):
        print(line)
    if args.resolved:
        print(yaml.safe_dump(job.resolved(), sort_keys=False), end="")
    print("ok: the job is valid")
    return EXIT_OK


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
    from engine.runner.ray import run_on_ray

    job = load_job(args.job, output=args.output)
    show = not args.quiet
    if show:
        print(f"running {job.name!r} -> {job.output.path}", file=sys.stderr)
    stats = run_on_ray(job, address=args.address, show_progress=show)
    print(summary(stats, job.output.path))
    return EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="corpus-engine", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

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
    add_bench_command(commands)
    add_what_if_command(commands)
    add_report_command(commands)
    add_train_quality_command(commands)
    add_submit_commands(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.handler(args))
    except (SpecError, InputError) as error:
        return _fail(str(error), EXIT_INVALID)
    except RunFailed as error:
        return _fail(str(error), EXIT_FAILED)
    except EngineError as error:
        return _fail(str(error), EXIT_FAILED)
    except KeyboardInterrupt:
        return _fail("interrupted; rerun the same command to resume (finished shards are skipped)", 130)


if __name__ == "__main__":
    sys.exit(main())
