"""`bench`, `what-if` and `report`: the commands that measure a job on a sample or read a finished run."""

from __future__ import annotations

import argparse
import sys
from types import ModuleType
from typing import Any

from engine.inspect import bench, rehydrate, report, whatif
from engine.spec import load_job


def _summary(module: ModuleType) -> str | None:
    return (module.__doc__ or "").splitlines()[0] or None


def cmd_bench(args: argparse.Namespace) -> int:
    job = load_job(args.job)
    sample = bench.load_sample(job, sample=args.sample, shards_path=args.shards)
    if sample.docs == 0:
        print("error: the sample holds no documents", file=sys.stderr)
        return 2
    measured = bench.run_bench(job, sample)
    record = bench.to_record(measured)
    print(bench.format_table(record))
    if args.examples > 0:
        print(bench.format_examples(bench.examples(measured, args.examples)))
    bench.append_record(record, args.json_out)
    print(f"appended to {args.json_out}")
    return 0


def add_bench_command(commands: Any) -> None:
    """Register `bench` on the CLI's subcommands (`commands` from `add_subparsers`)."""
    parser = commands.add_parser(
        "bench",
        help="every step alone and the whole pipeline on a sample, in-process on one core",
        description=_summary(bench),
    )
    parser.add_argument("job", help="job YAML file")
    source = parser.add_mutually_exclusive_group()
    source.add_argument(
        "--sample",
        type=int,
        metavar="N",
        help=f"documents to take from the job's input, spread over up to {bench.MAX_SAMPLED_SHARDS} shards "
        f"(default {bench.DEFAULT_SAMPLE})",
    )
    source.add_argument("--shards", metavar="PATH", help="benchmark every document of the shards under PATH instead")
    parser.add_argument("--examples", type=int, default=3, metavar="K", help="example documents per rule (0: none)")
    parser.add_argument(
        "--json-out",
        default=bench.DEFAULT_RESULTS,
        metavar="FILE",
        help=f"JSON lines file to append to ({bench.DEFAULT_RESULTS})",
    )
    parser.set_defaults(handler=cmd_bench)


def cmd_what_if(args: argparse.Namespace) -> int:
    result = whatif.what_if(args.run_dir, args.set)
    print(whatif.format_what_if(result))
    return 0


def add_what_if_command(commands: Any) -> None:
    """Register `what-if` on the CLI's subcommands (`commands` from `add_subparsers`)."""
    parser = commands.add_parser(
        "what-if",
        help="re-try thresholds on a finished run from its score sidecar (no text read, no model run)",
        description=_summary(whatif),
    )
    parser.add_argument("run_dir", help="output folder of a run made with `output: {keep_scores: true}`")
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        required=True,
        metavar="STEP.PARAM=VALUE",
        help="a changed parameter (step label or steps[i]; value read as YAML); repeat for several",
    )
    parser.set_defaults(handler=cmd_what_if)


def cmd_report(args: argparse.Namespace) -> int:
    url = report.write_report(args.run_dir, {})
    print(f"report written: {url}")
    return 0


def add_report_command(commands: Any) -> None:
    """Register `report` on the CLI's subcommands (`commands` from `add_subparsers`)."""
    parser = commands.add_parser(
        "report",
        help="(re)write RUN_DIR/report.html from the run's stats (and scores, if kept)",
        description=_summary(report),
    )
    parser.add_argument("run_dir", help="output folder of a run (holds stats.json)")
    parser.set_defaults(handler=cmd_report)


def cmd_rehydrate(args: argparse.Namespace) -> int:
    try:
        done = rehydrate.rehydrate(args.run_dir, args.to, args.weights)
    except ValueError as error:  # a malformed weights table (storage and input errors: main's handler)
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(rehydrate.format_rehydrated(done, args.to))
    return 0


def add_rehydrate_command(commands: Any) -> None:
    """Register `rehydrate` on the CLI's subcommands (`commands` from `add_subparsers`)."""
    parser = commands.add_parser(
        "rehydrate",
        help="copy a deduplicated run's kept/ with each document repeated by its cluster size (FineWeb-2)",
        description=_summary(rehydrate),
    )
    parser.add_argument("run_dir", help="output folder of a run made with `dedup: {add_cluster_columns: true}`")
    parser.add_argument("--to", required=True, metavar="DEST", help="folder to write the re-hydrated files to")
    parser.add_argument(
        "--weights",
        default=rehydrate.FINEWEB2_WEIGHTS,
        metavar="TABLE",
        help=f"copies per cluster-size range, N = the size itself (default: FineWeb-2's, {rehydrate.FINEWEB2_WEIGHTS})",
    )
    parser.set_defaults(handler=cmd_rehydrate)
