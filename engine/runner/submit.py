"""Running a job on a Ray cluster through the Ray Job Submission API (`corpus-engine submit | status | logs`).

`submit` validates the job here first (the same checks as `validate`), then ships the current directory as the
job's working directory (with the job file; minus `.git`, virtualenvs, `out/` and data the job does not read; plus
the `engine` package when it is installed rather than in that directory), and starts
`python -m engine run JOB --address auto` on the cluster's head. It prints the job id and follows the job's logs
until it ends: exit code 0 if the job succeeded, 1 otherwise.

Token authentication: the cluster's token is read from `--token-file`, else `RAY_AUTH_TOKEN`, else the file named
by `RAY_AUTH_TOKEN_PATH`, else `~/.ray/auth_token` (Ray's own order, so a machine set up for `ray job submit`
works unchanged). It is sent as an `Authorization: Bearer` header, never put in the job's environment or logs.

Ray is imported inside the functions that talk to the cluster, as in `engine.runner.ray`.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shlex
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from engine.errors import EngineError, InputError, SpecError
from engine.spec import JobSpec
from engine.validate import validate_job

if TYPE_CHECKING:
    from ray.job_submission import JobSubmissionClient

TOKEN_ENV = "RAY_AUTH_TOKEN"
TOKEN_PATH_ENV = "RAY_AUTH_TOKEN_PATH"
DEFAULT_TOKEN_FILE = "~/.ray/auth_token"
ADDRESS_ENVS = ("RAY_API_SERVER_ADDRESS", "RAY_ADDRESS")

# Never shipped: version control, environments, caches, outputs. Ray also honours the working directory's
# .gitignore and .rayignore.
WORKING_DIR_EXCLUDES = (
    ".git",
    ".venv",
    "venv",
    "out/",
    "__pycache__/",
    "*.pyc",
    ".hypothesis/",
    ".pytest_cache/",
    ".ruff_cache/",
    ".mypy_cache/",
    "*.egg-info/",
)
# Top-level folders that hold corpora: shipped only down the path to a local input under them.
DATA_DIRS = ("data",)


class SubmitError(EngineError):
    """The cluster could not be reached, refused the request, or does not know the job."""


def is_local(path: str) -> bool:
    """A path on this machine's filesystem (no URL scheme other than file://)."""
    return "://" not in path or path.startswith("file://")


def resolve_token(token_file: str | None = None) -> tuple[str | None, str]:
    """The cluster token and where it came from, in Ray's order; (None, sources tried) when there is none.

    Raises:
        SubmitError: `--token-file` names a file that cannot be read or is empty.
    """
    if token_file is not None:
        path = Path(token_file).expanduser()
        try:
            token = path.read_text(encoding="utf-8").strip()
        except OSError as error:
            msg = f"--token-file {token_file!r} cannot be read: {error.strerror or error}"
            raise SubmitError(msg) from None
        if not token:
            msg = f"--token-file {token_file!r} is empty; it should hold the cluster's token (`ray get-auth-token`)"
            raise SubmitError(msg)
        return token, f"--token-file {token_file}"
    token = os.environ.get(TOKEN_ENV, "").strip()
    if token:
        return token, f"${TOKEN_ENV}"
    candidates = [os.environ.get(TOKEN_PATH_ENV), DEFAULT_TOKEN_FILE]
    for candidate in [c for c in candidates if c]:
        path = Path(candidate).expanduser()
        with contextlib.suppress(OSError, UnicodeDecodeError):
            token = path.read_text(encoding="utf-8").strip()
            if token:
                return token, str(path)
    return None, f"${TOKEN_ENV}, ${TOKEN_PATH_ENV}, {DEFAULT_TOKEN_FILE}"


def _refused(address: str, status: str, token_source: str, *, sent_token: bool) -> str:
    how = (
        f"Pass the cluster's token in one of these ways: set {TOKEN_ENV}=<token>; or write it to"
        f" {DEFAULT_TOKEN_FILE} (or to a file named by {TOKEN_PATH_ENV}); or pass --token-file PATH."
        " On the head node, `ray get-auth-token` prints the token the cluster was started with."
    )
    if sent_token:
        return (
            f"the Ray cluster at {address} refused the request ({status}): the token from {token_source} is not"
            f" this cluster's token. {how}"
        )
    return (
        f"the Ray cluster at {address} refused the request ({status}): it has token authentication on and no"
        f" token was found (looked in {token_source}). {how}"
    )


@contextlib.contextmanager
def cluster_errors(address: str, token_source: str, *, sent_token: bool) -> Iterator[None]:
    """Turn the job client's errors into one-paragraph `SubmitError`s that say how to fix them."""
    import aiohttp
    import requests
    from ray.exceptions import AuthenticationError

    unreachable = (ConnectionError, requests.ConnectionError, requests.Timeout, aiohttp.ClientConnectionError)
    try:
        yield
    except AuthenticationError as error:
        text = str(error)
        status = "403 Forbidden" if "Authentication failed" in text or "Forbidden" in text else "401 Unauthorized"
        raise SubmitError(_refused(address, status, token_source, sent_token=sent_token)) from None
    except unreachable as error:
        msg = (
            f"cannot reach the Ray dashboard at {address} ({error}). Is the head node running, and is its"
            " dashboard port (default 8265) reachable from here (e.g. `ssh -L 8265:localhost:8265 HEAD`)?"
        )
        raise SubmitError(msg) from None
    except RuntimeError as error:
        msg = f"the Ray cluster at {address} answered with an error: {str(error).strip()}"
        raise SubmitError(msg) from None


class Cluster:
    """A job client for one cluster address, with the token attached and errors made readable."""

    def __init__(self, address: str | None, *, token_file: str | None = None) -> None:
        from ray.job_submission import JobSubmissionClient

        self.address = resolve_address(address)
        token, self.token_source = resolve_token(token_file)
        self.sent_token = token is not None
        headers = {"Authorization": f"Bearer {token}"} if token else None
        with self.errors():
            self.client: JobSubmissionClient = JobSubmissionClient(self.address, headers=headers)

    def errors(self) -> contextlib.AbstractContextManager[None]:
        """Map client errors for this cluster (see `cluster_errors`)."""
        return cluster_errors(self.address, self.token_source, sent_token=self.sent_token)

    def follow(self, job_id: str, *, out: Any = None) -> str:
        """Stream the job's logs to `out` until the job ends; return its final status."""
        from ray.job_submission import JobStatus

        out = out or sys.stdout

        async def tail() -> None:
            async for chunk in self.client.tail_job_logs(job_id):
                out.write(chunk)
                out.flush()

        with self.errors():
            asyncio.run(tail())
            # The log stream ends when the driver exits; the status turns terminal moments later.
            while not (status := self.client.get_job_status(job_id)).is_terminal():
                time.sleep(0.5)
        return str(status.value) if isinstance(status, JobStatus) else str(status)


def resolve_address(address: str | None) -> str:
    """The dashboard URL: `--address`, else RAY_API_SERVER_ADDRESS, else an http(s) RAY_ADDRESS."""
    if address:
        return address
    for name in ADDRESS_ENVS:
        value = os.environ.get(name, "")
        if value.startswith(("http://", "https://")):
            return value
    msg = "no cluster address: pass --address http://HEAD:8265 (the head's dashboard) or set RAY_API_SERVER_ADDRESS"
    raise SubmitError(msg)


def inside_workdir(path: Path, root: Path, what: str) -> Path:
    resolved = path.resolve()
    try:
        return resolved.relative_to(root)
    except ValueError:
        msg = (
            f"{what} {str(path)!r} is outside the working directory {str(root)!r}, which is what gets shipped to the"
            " cluster; run the command from the project directory that holds it"
        )
        raise SpecError(msg) from None


def check_for_cluster(job: JobSpec, workdir: Path, *, check_input: bool = True) -> list[str]:
    """`validate`'s checks as the cluster will see the job; returns `validate`'s description lines.

    - The output must be a URL or an absolute path: a relative one would land in the job's temporary working
      directory on the head node and be deleted with it.
    - A relative local input must be inside the working directory (it is shipped with it).
    - `run.cpus_per_task` is checked against the cluster by Ray, not against this machine's CPUs.
    - With `check_input=False` (the input is on storage only the cluster can see: a cluster-local mount, a
      bucket readable through the nodes' instance role) the input is not listed; every other check runs.

    Raises:
        SpecError: a path cannot work on a cluster, or `validate` fails.
        InputError: the input does not exist or has no shards (hint: `--no-input-check`).
    """
    if is_local(job.output.path) and not Path(job.output.path.removeprefix("file://")).is_absolute():
        msg = (
            f"output.path {job.output.path!r} is a relative local path: on a cluster it would be written inside the"
            " job's temporary working directory on the head node and lost. Pass --output with object storage"
            " (s3://bucket/prefix) or an absolute path every node shares (e.g. $PWD/out/NAME on a one-machine cluster)"
        )
        raise SpecError(msg)
    if is_local(job.input.path) and not Path(job.input.path.removeprefix("file://")).is_absolute():
        inside_workdir(workdir / job.input.path.removeprefix("file://"), workdir, "input.path")
    try:
        return validate_job(job, check_input=check_input, on_cluster=True)
    except InputError as error:
        if is_local(job.input.path):
            raise
        msg = (
            f"{error} (checked from this machine; if only the cluster can read {job.input.path}, e.g. through its"
            " nodes' instance role, pass --no-input-check)"
        )
        raise InputError(msg) from None


def working_dir_excludes(
    job: JobSpec, workdir: Path, extra: list[str] | None = None, *, spare: Path | None = None
) -> list[str]:
    """Ray `excludes` patterns: the fixed list, plus every data folder entry the job's input does not need.

    Ray applies `excludes` to `py_modules` too (patterns are relative to each root): a data entry whose path
    also exists under `spare` (the shipped engine package, which has its own `data/`) is not excluded.
    """
    needed: Path | None = None
    if is_local(job.input.path):
        candidate = (workdir / job.input.path.removeprefix("file://")).resolve()
        with contextlib.suppress(ValueError):
            needed = candidate.relative_to(workdir)
    unneeded: list[Path] = []
    for name in DATA_DIRS:
        current = workdir / name
        # Keep the chain of folders down to the input; exclude every sibling along the way.
        chain = needed.parts[1:] if needed is not None and needed.parts[:1] == (name,) else ()
        depth = 0
        while current.is_dir():
            keep = chain[depth] if depth < len(chain) else None
            if keep is None and depth > 0:
                break  # inside the input itself: ship all of it
            unneeded += [entry.relative_to(workdir) for entry in current.iterdir() if entry.name != keep]
            if keep is None:
                break
            current, depth = current / keep, depth + 1
    data = ["/" + rel.as_posix() for rel in sorted(unneeded) if spare is None or not (spare / rel).exists()]
    return [*WORKING_DIR_EXCLUDES, *data, *(extra or [])]


def load_runtime_env(path: str | None) -> dict[str, Any]:
    """A runtime_env YAML (e.g. cluster/runtime_env.yaml) to merge into the job's, or {}.

    Raises:
        SpecError: the file is missing or is not a YAML mapping.
    """
    if path is None:
        return {}
    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as error:
        msg = f"--runtime-env {path!r} cannot be read as YAML: {error}"
        raise SpecError(msg) from None
    if not isinstance(data, dict):
        msg = f"--runtime-env {path!r} must be a YAML mapping (pip, env_vars, excludes, ...)"
        raise SpecError(msg)
    return data


def build_runtime_env(
    job: JobSpec, workdir: Path, *, extra: dict[str, Any] | None = None, excludes: list[str] | None = None
) -> dict[str, Any]:
    """The job's Ray runtime_env: working dir, the engine package, excludes, plus `extra` (pip, env_vars, ...).

    The working directory is always this machine's, and so is the engine: when the `engine` package is not
    inside the working directory (an installed engine), it is shipped as `py_modules`, so the job runs the
    engine that validated it whatever is installed on the nodes.
    """
    extra = dict(extra or {})
    extra.pop("working_dir", None)
    extra_excludes = list(extra.pop("excludes", []) or []) + list(excludes or [])
    env_vars = {"PYTHONUNBUFFERED": "1", **(extra.pop("env_vars", None) or {})}
    for name in (TOKEN_ENV, TOKEN_PATH_ENV):
        if name in env_vars:
            msg = f"runtime_env.env_vars must not carry {name}: the nodes hold the cluster token themselves"
            raise SpecError(msg)
    package = Path(__file__).resolve().parents[1]  # the `engine` package
    shipped = package.parent != workdir
    runtime_env: dict[str, Any] = {
        **extra,
        "working_dir": str(workdir),
        "excludes": list(
            dict.fromkeys(working_dir_excludes(job, workdir, extra_excludes, spare=package if shipped else None))
        ),
        "env_vars": env_vars,
    }
    if shipped:
        runtime_env["py_modules"] = [*(extra.get("py_modules") or []), str(package)]
    return runtime_env


def entrypoint(job_file: Path, output: str | None) -> str:
    """The command the head runs: the same `run` a user types, joining the cluster."""
    args = ["python", "-m", "engine", "run", job_file.as_posix(), "--address", "auto"]
    if output is not None:
        args += ["--output", output]
    return shlex.join(args)
