"""`submit`, `status` and `logs`: run a job on a Ray cluster and follow it (engine.runner.submit does the work)."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Any

from engine.runner.submit import (
    DEFAULT_TOKEN_FILE,
    TOKEN_ENV,
    TOKEN_PATH_ENV,
    Cluster,
    build_runtime_env,
    check_for_cluster,
    entrypoint,
    inside_workdir,
    load_runtime_env,
)
from engine.spec import load_job


def cmd_submit(args: argparse.Namespace) -> int:
    # Ray's packaging notes ("Ignoring upload ... .gitignore", ".git is now ignored by default") are noise here.
    for name in ("ray._private.runtime_env.packaging", "ray._private.runtime_env.working_dir"):
        logging.getLogger(name).setLevel(logging.ERROR)
    workdir = Path.cwd().resolve()
    job = load_job(args.job, output=args.output)
    job_rel = inside_workdir(Path(args.job), workdir, "job file")
    lines = check_for_cluster(job, workdir, check_input=not args.no_input_check)
    runtime_env = build_runtime_env(
        job, workdir, extra=load_runtime_env(args.runtime_env), excludes=list(args.exclude or [])
    )
    cluster = Cluster(args.address, token_file=args.token_file)
    for line in lines:
        print(line, file=sys.stderr)
    with cluster.errors():
        job_id = cluster.client.submit_job(
            entrypoint=entrypoint(job_rel, args.output),
            runtime_env=runtime_env,
            metadata={"corpus_engine_job": job.name},
        )
    print(f"submitted job {job_id}", flush=True)
    where = f"--address {cluster.address}"
    print(f"  status: corpus-engine status {job_id} {where}", file=sys.stderr)
    print(f"  logs:   corpus-engine logs {job_id} {where} --follow", file=sys.stderr)
    if args.no_follow:
        return 0
    return _follow(cluster, job_id)


def _follow(cluster: Cluster, job_id: str) -> int:
    try:
        status = cluster.follow(job_id)
    except KeyboardInterrupt:
        print(
            f"\nstopped following; job {job_id} keeps running on the cluster"
            f" (corpus-engine status {job_id} --address {cluster.address})",
            file=sys.stderr,
        )
        return 130
    print(f"job {job_id} {status}", file=sys.stderr)
    return 0 if status == "SUCCEEDED" else 1


def cmd_status(args: argparse.Namespace) -> int:
    cluster = Cluster(args.address, token_file=args.token_file)
    with cluster.errors():
        info = cluster.client.get_job_info(args.job_id)
    status = str(info.status.value)
    print(f"{args.job_id}: {status}")
    if info.message:
        print(f"  {info.message}")
    print(f"  entrypoint: {info.entrypoint}")
    return 1 if status in ("FAILED", "STOPPED") else 0


def cmd_logs(args: argparse.Namespace) -> int:
    cluster = Cluster(args.address, token_file=args.token_file)
    if args.follow:
        return _follow(cluster, args.job_id)
    with cluster.errors():
        print(cluster.client.get_job_logs(args.job_id), end="")
    return 0


def _cluster_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--address", help="the head's dashboard URL, http://HEAD:8265 (default: $RAY_API_SERVER_ADDRESS)"
    )
    parser.add_argument(
        "--token-file",
        help=f"file holding the cluster's token (default: ${TOKEN_ENV}, ${TOKEN_PATH_ENV}, {DEFAULT_TOKEN_FILE})",
    )


def add_submit_commands(commands: Any) -> None:
    """Add `submit`, `status` and `logs` to the CLI's subcommands (`commands` from `add_subparsers`)."""
    submit = commands.add_parser("submit", help="run a job on a Ray cluster (Ray Job Submission API)")
    submit.add_argument("job", help="job YAML file, inside the current directory (which is shipped)")
    submit.add_argument("--output", help="override output.path (object storage or an absolute shared path)")
    _cluster_options(submit)
    submit.add_argument("--no-follow", action="store_true", help="print the job id and return at once")
    submit.add_argument(
        "--no-input-check",
        action="store_true",
        help="do not list the input from here (storage only the cluster can read)",
    )
    submit.add_argument("--runtime-env", help="runtime_env YAML to merge (e.g. cluster/runtime_env.yaml)")
    submit.add_argument("--exclude", action="append", help="extra working-dir exclude pattern (repeatable)")
    submit.set_defaults(handler=cmd_submit)

    status = commands.add_parser("status", help="a submitted job's status (exit 1 if it failed or was stopped)")
    status.add_argument("job_id")
    _cluster_options(status)
    status.set_defaults(handler=cmd_status)

    logs = commands.add_parser("logs", help="a submitted job's logs")
    logs.add_argument("job_id")
    _cluster_options(logs)
    logs.add_argument("--follow", action="store_true", help="stream until the job ends (exit 1 unless it succeeded)")
    logs.set_defaults(handler=cmd_logs)
