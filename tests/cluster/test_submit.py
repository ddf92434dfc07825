"""`corpus-engine submit | status | logs`: what gets shipped and how the token is found (no Ray), then the real
thing against a Ray head started here with token authentication on (marked `cluster`).

The head runs on 127.0.0.1 with its own temp dir, HOME (token file) and free ports, in its own process group:
teardown kills exactly that group, never other Ray instances on the machine (`ray stop` would kill them all).
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pyarrow.parquet as pq
import pytest

import engine
from engine.cli import main
from engine.errors import InputError, SpecError
from engine.runner.submit import SubmitError, build_runtime_env, check_for_cluster, entrypoint, resolve_token
from engine.spec import JobSpec, parse_job
from tests.readme_examples import missing_lines
from tests.readme_examples import session as readme_session

REPO = Path(__file__).resolve().parents[2]
RAY = Path(sys.executable).parent / "ray"
START_TIMEOUT = 180.0
JOB_TIMEOUT = 300.0


# --- without a cluster: token lookup, checks, what is shipped ---------------------------------------------


@pytest.fixture
def no_token_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """HOME is an empty temp dir and no RAY_AUTH_* variable is set; returns HOME."""
    for name in ("RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH", "RAY_API_SERVER_ADDRESS", "RAY_ADDRESS"):
        monkeypatch.delenv(name, raising=False)
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    return home


def test_token_is_found_in_rays_order(no_token_env: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert resolve_token() == (None, "$RAY_AUTH_TOKEN, $RAY_AUTH_TOKEN_PATH, ~/.ray/auth_token")
    (no_token_env / ".ray").mkdir()
    (no_token_env / ".ray" / "auth_token").write_text("from-home\n")
    assert resolve_token()[0] == "from-home"
    named = tmp_path / "named"
    named.write_text("from-path")
    monkeypatch.setenv("RAY_AUTH_TOKEN_PATH", str(named))
    assert resolve_token()[0] == "from-path"
    monkeypatch.setenv("RAY_AUTH_TOKEN", "from-env")
    assert resolve_token() == ("from-env", "$RAY_AUTH_TOKEN")
    flag = tmp_path / "flag"
    flag.write_text(" from-flag \n")
    assert resolve_token(str(flag)) == ("from-flag", f"--token-file {flag}")


@pytest.mark.parametrize("content", [None, ""], ids=["missing", "empty"])
def test_unusable_token_file_is_an_error(tmp_path: Path, content: str | None) -> None:
    path = tmp_path / "token"
    if content is not None:
        path.write_text(content)
    with pytest.raises(SubmitError, match="--token-file"):
        resolve_token(str(path))


def sample_job(output: str, input_path: str = "data/sample") -> JobSpec:
    return parse_job({"name": "t", "input": {"path": input_path}, "output": {"path": output}, "steps": []})


def test_relative_output_is_refused_before_submitting() -> None:
    with pytest.raises(SpecError, match="relative local path.*--output"):
        check_for_cluster(sample_job("out/sample"), REPO)


def test_local_input_outside_the_working_dir_is_refused(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match="outside the working directory"):
        check_for_cluster(sample_job(str(tmp_path / "out"), "../elsewhere"), REPO)


def test_cluster_check_uses_the_leads_validation(tmp_path: Path) -> None:
    lines = check_for_cluster(sample_job(str(tmp_path / "out")), REPO)
    assert lines[0] == "job 't': 4 shard(s) under data/sample"


def test_remote_input_only_the_cluster_sees_needs_no_input_check(tmp_path: Path) -> None:
    job = sample_job(str(tmp_path / "out"), "memory://nowhere/in")  # nothing there, as seen from this machine
    with pytest.raises(InputError, match="pass --no-input-check"):
        check_for_cluster(job, REPO)
    assert check_for_cluster(job, REPO, check_input=False) == ["job 't': input memory://nowhere/in not checked"]


def test_only_the_data_the_job_reads_is_shipped(tmp_path: Path) -> None:
    from ray._private.runtime_env.packaging import create_package

    work = tmp_path / "work"
    for rel in [
        "jobs/j.yaml",
        "data/sample/a.parquet",
        "data/sample/sub/b.parquet",
        "data/big/c.parquet",
        "data/other.parquet",
        "out/x/kept.parquet",
        ".git/HEAD",
        ".venv/bin/python",
        "pkg/__pycache__/m.pyc",
        "pkg/m.py",
    ]:
        (work / rel).parent.mkdir(parents=True, exist_ok=True)
        (work / rel).write_text("x")
    env = build_runtime_env(sample_job("s3://b/o"), work, excludes=["*.md"])
    assert env["working_dir"] == str(work)
    assert env["env_vars"] == {"PYTHONUNBUFFERED": "1"}
    assert "py_modules" in env  # the engine is not inside this working dir: it is shipped alongside

    archive = tmp_path / "pkg.zip"
    create_package(str(work), archive, include_gitignore=True, excludes=env["excludes"])
    shipped = {name for name in zipfile.ZipFile(archive).namelist() if not name.endswith("/")}
    assert shipped == {"jobs/j.yaml", "data/sample/a.parquet", "data/sample/sub/b.parquet", "pkg/m.py"}

    remote = build_runtime_env(sample_job("s3://b/o", "s3://bucket/in"), work)
    assert {"/data/big", "/data/other.parquet", "/data/sample"} <= set(remote["excludes"])


def test_data_excludes_spare_the_shipped_engines_own_data(tmp_path: Path) -> None:
    """Ray applies `excludes` to py_modules as well: the engine's data/ (blocklists) must survive them."""
    from ray._private.runtime_env.packaging import create_package

    package = Path(engine.__file__).resolve().parent
    own = sorted(p.relative_to(package).as_posix() for p in (package / "data").rglob("*") if p.is_file())
    assert own, "the engine ships data files (blocklists); this test needs one"
    work = tmp_path / "work"
    colliding = work / Path(own[0]).parts[0] / Path(own[0]).parts[1]  # e.g. work/data/url
    (colliding.parent / "corpus.parquet").parent.mkdir(parents=True)
    (colliding.parent / "corpus.parquet").write_text("x")
    colliding.mkdir(parents=True, exist_ok=True)
    env = build_runtime_env(sample_job("s3://b/o", "s3://bucket/in"), work)
    assert env["py_modules"] == [str(package)]
    assert "/data/corpus.parquet" in env["excludes"]

    archive = tmp_path / "engine.zip"
    create_package(str(package), archive, include_gitignore=True, excludes=env["excludes"])
    shipped = set(zipfile.ZipFile(archive).namelist())
    assert set(own) <= shipped


def test_the_engine_is_shipped_with_the_working_dir_when_it_lives_there() -> None:
    env = build_runtime_env(sample_job("s3://b/o"), REPO, extra={"working_dir": "/elsewhere", "pip": ["x"]})
    assert env["working_dir"] == str(REPO)
    assert "py_modules" not in env
    assert env["pip"] == ["x"]


def test_runtime_env_must_not_carry_the_token() -> None:
    with pytest.raises(SpecError, match="RAY_AUTH_TOKEN"):
        build_runtime_env(sample_job("s3://b/o"), REPO, extra={"env_vars": {"RAY_AUTH_TOKEN": "t"}})


def test_entrypoint_is_the_same_run_command_joining_the_cluster() -> None:
    assert entrypoint(Path("jobs/my job.yaml"), "s3://b/o") == (
        "python -m engine run 'jobs/my job.yaml' --address auto --output s3://b/o"
    )


def test_submit_without_an_address_says_how_to_give_one(
    no_token_env: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(REPO)
    code = main(["submit", "jobs/sample.yaml", "--output", str(tmp_path / "out")])
    assert code == 1
    assert "pass --address http://HEAD:8265" in capsys.readouterr().err


# --- against a real head ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Head:
    address: str
    token: str
    root: Path


def _free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    try:
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def _clean_env(**extra: str) -> dict[str, str]:
    """This process's environment without any Ray address or token, plus `extra`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RAY_ADDRESS", "RAY_API_SERVER", "RAY_AUTH"))}
    return {**env, **extra}


def _wait_ready(address: str, token: str, head: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    request = urllib.request.Request(f"{address}/api/jobs/", headers={"Authorization": f"Bearer {token}"})
    while time.monotonic() < deadline:
        if head.poll() is not None:
            pytest.fail(f"ray start exited with {head.returncode}:\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(request, timeout=2) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.5)
    pytest.fail(f"the Ray head did not answer on {address} within {START_TIMEOUT:.0f}s:\n{log.read_text()[-3000:]}")


def _stop_group(head: subprocess.Popen[bytes]) -> None:
    """SIGTERM then SIGKILL the head's own process group (gcs, raylet, dashboard, workers, job drivers)."""
    for sig, grace in ((signal.SIGTERM, 3.0), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(head.pid, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline:
            try:
                os.killpg(head.pid, 0)
            except ProcessLookupError:
                head.wait(timeout=5)
                return
            head.poll()
            time.sleep(0.2)
    head.wait(timeout=5)


@pytest.fixture(scope="module")
def ray_head() -> Iterator[Head]:
    """`ray start --head --block` on 127.0.0.1 with RAY_AUTH_MODE=token and a token in a private HOME."""
    root = Path(tempfile.mkdtemp(prefix="ce-head-", dir="/tmp"))  # short: Ray's socket paths must stay < 108 chars
    home = root / "home"
    (home / ".ray").mkdir(parents=True)
    token = secrets.token_hex(32)  # what `ray get-auth-token --generate` writes
    (home / ".ray" / "auth_token").write_text(token)
    gcs, dashboard, client, agent = _free_ports(4)
    env = _clean_env(HOME=str(home), RAY_AUTH_MODE="token", PATH=f"{RAY.parent}{os.pathsep}{os.environ['PATH']}")
    command = [
        str(RAY),
        "start",
        "--head",
        "--block",
        "--node-ip-address=127.0.0.1",
        f"--port={gcs}",
        "--dashboard-host=127.0.0.1",
        f"--dashboard-port={dashboard}",
        f"--ray-client-server-port={client}",
        f"--dashboard-agent-listen-port={agent}",
        "--num-cpus=1",
        f"--temp-dir={root / 'ray'}",
        "--disable-usage-stats",
        "--include-dashboard=true",
    ]
    log = root / "head.log"
    with log.open("wb") as out:
        head = subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        address = f"http://127.0.0.1:{dashboard}"
        _wait_ready(address, token, head, log)
        yield Head(address, token, root)
    finally:
        _stop_group(head)
        shutil.rmtree(root, ignore_errors=True)


def _cli(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "engine", *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=JOB_TIMEOUT,
        check=False,
    )


@pytest.mark.cluster
def test_submit_sample_job_succeeds(
    ray_head: Head, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    env = _clean_env(HOME=str(tmp_path), RAY_AUTH_TOKEN=ray_head.token)
    done = _cli(["submit", "jobs/sample.yaml", "--address", ray_head.address, "--output", str(out)], env)
    report = f"stdout:\n{done.stdout[-4000:]}\nstderr:\n{done.stderr[-4000:]}"
    assert done.returncode == 0, report
    match = re.search(r"submitted job (\S+)", done.stdout)
    assert match is not None, report
    job_id = match.group(1)
    assert f"job {job_id} SUCCEEDED" in done.stderr, report
    # the run's own summary, streamed from the cluster
    assert "counted in the files' Parquet footers" in done.stdout, report
    # README's session shows what this submission prints (issue 12: it showed another job's numbers).
    shown = readme_session("submit")
    (submit_command,) = [c for c in shown if c.startswith("corpus-engine submit")]
    missing = missing_lines(shown[submit_command], done.stdout + done.stderr)
    assert not missing, f"README shows lines this submission does not print: {missing}\n{report}"

    stats = json.loads((out / "stats.json").read_text())
    assert stats["docs_in"] == 697
    assert stats["conserved"] is True
    assert stats["shards_processed"] == 4
    kept = sum(pq.read_metadata(path).num_rows for path in (out / "kept").rglob("*.parquet"))
    assert kept == stats["docs_kept"] > 0

    # status and logs of the same job, in-process, with the token from a file this time.
    token_file = tmp_path / "token"
    token_file.write_text(ray_head.token + "\n")
    monkeypatch.delenv("RAY_AUTH_TOKEN", raising=False)
    capsys.readouterr()
    cluster = ["--address", ray_head.address, "--token-file", str(token_file)]
    assert main(["status", job_id, *cluster]) == 0
    status = capsys.readouterr().out
    assert f"{job_id}: SUCCEEDED" in status
    (status_command,) = [c for c in shown if c.startswith("corpus-engine status")]
    assert not missing_lines(shown[status_command], status)
    assert main(["logs", job_id, *cluster]) == 0
    assert "counted in the files' Parquet footers" in capsys.readouterr().out


@pytest.mark.cluster
@pytest.mark.parametrize(
    ("use_wrong_token", "status"),
    [(False, "401 Unauthorized"), (True, "403 Forbidden")],
    ids=["no-token", "wrong-token"],
)
def test_submit_without_the_token_is_refused(
    ray_head: Head, tmp_path: Path, *, use_wrong_token: bool, status: str
) -> None:
    args = ["submit", "jobs/sample.yaml", "--address", ray_head.address, "--output", str(tmp_path / "out")]
    if use_wrong_token:
        wrong = tmp_path / "wrong_token"
        wrong.write_text(secrets.token_hex(32))
        args += ["--token-file", str(wrong)]
    done = _cli(args, _clean_env(HOME=str(tmp_path)))  # HOME without ~/.ray/auth_token
    assert done.returncode == 1, done.stderr
    assert "Traceback" not in done.stderr
    message = done.stderr.strip()
    assert message.startswith(f"error: the Ray cluster at {ray_head.address} refused the request ({status})")
    assert "\n" not in message  # one paragraph
    for how in ("RAY_AUTH_TOKEN=", "~/.ray/auth_token", "--token-file", "ray get-auth-token"):
        assert how in message
    assert "submitted job" not in done.stdout
    assert not (tmp_path / "out").exists()
