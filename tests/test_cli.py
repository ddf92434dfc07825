"""The command line as a user runs it: exit codes and one-paragraph errors for every bad input."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from engine.cli import main

REPO = Path(__file__).resolve().parents[1]


def job_file(tmp_path: Path, src: Path | str, steps: str = "[{type: doc_length, min_words: 50}]") -> Path:
    path = tmp_path / "job.yaml"
    path.write_text(f"name: t\ninput: {{path: '{src}'}}\noutput: {{path: '{tmp_path / 'out'}'}}\nsteps: {steps}\n")
    return path


def run_cli(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(args)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_validate_ok(tmp_path: Path, sample_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_cli(["validate", str(job_file(tmp_path, sample_dir)), "--resolved"], capsys)
    assert code == 0
    assert "4 shard(s)" in out
    assert "min_words: 50" in out


@pytest.mark.parametrize(
    ("setup", "message"),
    [
        ("missing_input", "does not exist"),
        ("empty_folder", "holds no shard matching"),
        ("unknown_step", "unknown step type 'gopher_qualty'; known step types:"),
        ("invalid_yaml", "invalid YAML at line"),
        ("unknown_key", "steps[0].min_wrds: unknown key"),
    ],
)
def test_bad_jobs_exit_2_with_one_paragraph(
    setup: str, message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str], sample_dir: Path
) -> None:
    if setup == "missing_input":
        path = job_file(tmp_path, tmp_path / "nope")
    elif setup == "empty_folder":
        (tmp_path / "empty").mkdir()
        path = job_file(tmp_path, tmp_path / "empty")
    elif setup == "unknown_step":
        path = job_file(tmp_path, sample_dir, "[{type: gopher_qualty}]")
    elif setup == "unknown_key":
        path = job_file(tmp_path, sample_dir, "[{type: doc_length, min_wrds: 5}]")
    else:
        path = tmp_path / "job.yaml"
        path.write_text("input: {path: x\n")
    code, _, err = run_cli(["validate", str(path)], capsys)
    assert code == 2
    assert message in err
    assert "Traceback" not in err


@pytest.mark.ray
def test_run_reports_bad_shards_and_exits_1(
    ray_local: None, tmp_path: Path, sample_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    src = tmp_path / "in"
    shutil.copytree(sample_dir, src, ignore=shutil.ignore_patterns("*.md"))
    (src / "part-002.parquet").write_bytes(b"garbage")
    pq.write_table(pa.table({"body": ["no text column here"]}), src / "part-009.parquet")
    pq.write_table(pa.table({"text": [1, 2]}), src / "part-010.parquet")
    code, out, err = run_cli(["run", str(job_file(tmp_path, src)), "--quiet"], capsys)
    assert code == 1
    assert "3 shard(s) failed" in err
    assert "part-002.parquet is not a readable Parquet file" in err
    assert "part-009.parquet has no text column 'text'" in err
    assert "part-010.parquet: column 'text' has type int64" in err
    assert "Traceback" not in err


@pytest.mark.ray
def test_readme_run_command_end_to_end(tmp_path: Path) -> None:
    """`python -m engine run jobs/sample.yaml` in a fresh process, as README tells a newcomer."""
    env = {**os.environ, "RAY_ADDRESS": ""}
    done = subprocess.run(
        [sys.executable, "-m", "engine", "run", "jobs/sample.yaml", "--output", str(tmp_path / "out")],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "[filter] shards 4/4" in done.stderr
    assert "counted in the files' Parquet footers" in done.stdout
    assert (tmp_path / "out/stats.json").exists()
    assert "Traceback" not in done.stderr
