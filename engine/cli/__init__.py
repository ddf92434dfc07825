"""`corpus-engine` / `python -m engine`: the command line, one module per command group.

Exit codes: 0 success; 1 the run failed (some shards, listed); 2 the job, its input or output path, or the command
line is invalid.
Errors the user can act on are printed as one paragraph, never as a traceback.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from engine.cli.inspect import add_bench_command, add_rehydrate_command, add_report_command, add_what_if_command
from engine.cli.jobs import add_job_commands
from engine.cli.models import add_train_quality_command
from engine.cli.submit import add_submit_commands
from engine.errors import EngineError, InputError, OutputError, RunFailed, SpecError

EXIT_OK, EXIT_FAILED, EXIT_INVALID = 0, 1, 2


def _fail(message: str, code: int) -> int:
    print(f"error: {message}", file=sys.stderr)
    return code


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="corpus-engine", description=(__doc__ or "").splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    add_job_commands(commands)
    add_bench_command(commands)
    add_what_if_command(commands)
    add_report_command(commands)
    add_rehydrate_command(commands)
    add_train_quality_command(commands)
    add_submit_commands(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.handler(args))
    except (SpecError, InputError, OutputError) as error:
        return _fail(str(error), EXIT_INVALID)
    except RunFailed as error:
        return _fail(str(error), EXIT_FAILED)
    except EngineError as error:
        return _fail(str(error), EXIT_FAILED)
    except KeyboardInterrupt:
        return _fail("interrupted; rerun the same command to resume (finished shards are skipped)", 130)


if __name__ == "__main__":
    sys.exit(main())
