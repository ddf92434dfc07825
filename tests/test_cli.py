"""The command line as a user runs it: exit codes and one-paragraph errors for every bad input."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

from engine.cli import main
from tests.io.test_parquet import overwrite_middle

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
    code, out, err = run_cli(["validate", str(job_file(tmp_path, sample_dir)), "--resolved"], capsys)
    assert code == 0
    assert "4 shard(s)" in err
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
    assert err.count(str(path)) <= 1  # the job file is named once


@pytest.mark.ray
def test_run_reports_bad_shards_and_exits_1(
    ray_local: None, tmp_path: Path, sample_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    src = tmp_path / "in"
    shutil.copytree(sample_dir, src, ignore=shutil.ignore_patterns("*.md"))
    (src / "part-002.parquet").write_bytes(b"garbage")
    pq.write_table(pa.table({"body": ["no text column here"]}), src / "part-009.parquet")
    pq.write_table(pa.table({"text": [1, 2]}), src / "part-010.parquet")
    overwrite_middle(src / "part-000.parquet")  # issue 12: this went through with rc 0, texts silently altered
    code, out, err = run_cli(["run", str(job_file(tmp_path, src)), "--quiet"], capsys)
    assert code == 1
    assert "4 shard(s) failed" in err
    assert "part-000.parquet is corrupt: could not verify page integrity, CRC checksum verification failed" in err
    assert err.count("part-000.parquet") == 1
    stats = json.loads((tmp_path / "out/stats.json").read_text())
    assert (stats["shards_failed"], stats["shards_processed"]) == (4, 2)  # part-001 and part-003 finished
    assert "part-002.parquet is not a readable Parquet file" in err
    assert err.count("part-002.parquet") == 1  # the message names the shard once (issue 12)
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


# ----------------------------------------------------------------------------------------------------------
# Issue 12: a resolved job runs to the same result; unwritable outputs; every error at once; reruns counted apart


def test_validate_resolved_prints_only_yaml_on_stdout(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run_cli(["validate", str(REPO / "jobs/sample.yaml"), "--resolved"], capsys)
    assert code == 0
    resolved = yaml.safe_load(out)  # stdout is one YAML document: redirectable into a job file
    assert resolved["preset"] is None
    assert [s["type"] for s in resolved["steps"]][:2] == ["url_filter", "language_id"]
    assert "ok: the job is valid" in err
    assert "4 shard(s)" in err
    assert "ok:" not in out
    assert out.startswith("# preset 'fineweb' expanded")


@pytest.mark.ray
def test_resolved_job_runs_to_the_identical_result(
    ray_local: None, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """jobs/sample.yaml (preset + dedup) and its OUT/job.resolved.yaml run alike (tests/test_readme.py runs the
    `validate --resolved > resolved.yaml` example the same way)."""
    sample = REPO / "jobs/sample.yaml"
    assert main(["run", str(sample), "--output", str(tmp_path / "job"), "--quiet"]) == 0
    assert main(["run", str(tmp_path / "job/job.resolved.yaml"), "--output", str(tmp_path / "again"), "--quiet"]) == 0
    capsys.readouterr()

    def outcome(out: Path) -> tuple[dict[str, object], list[str]]:
        stats = json.loads((out / "stats.json").read_text())
        kept = sorted(i for f in sorted((out / "kept").rglob("*.parquet")) for i in pq.read_table(f)["id"].to_pylist())
        keys = ("docs_in", "docs_kept", "duplicates", "dropped", "step_docs")
        return {k: stats[k] for k in keys}, kept

    expected = outcome(tmp_path / "job")
    assert expected[0]["docs_kept"] == len(expected[1]) > 0
    assert max(expected[0]["step_docs"].values()) <= expected[0]["docs_in"]  # each step ran once
    assert outcome(tmp_path / "again") == expected


def unwritable_outputs(tmp_path: Path) -> dict[str, str]:
    """Output paths no run can write, as root too (root ignores file permissions)."""
    a_file = tmp_path / "a-file"
    a_file.write_text("x")
    paths = {"proc": "/proc/corpus-engine-out", "under a file": str(a_file / "out")}
    if Path("/sys").is_dir():
        paths["sysfs"] = "/sys/corpus-engine-out"  # EACCES or EROFS, root or not
    if os.geteuid() != 0:
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o500)
        paths["no permission"] = str(locked / "out")
    return paths


@pytest.mark.parametrize("command", ["validate", "run"])
def test_unwritable_output_exits_2_with_one_paragraph(
    command: str, tmp_path: Path, sample_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    job = job_file(tmp_path, sample_dir)
    for name, path in unwritable_outputs(tmp_path).items():
        code, _, err = run_cli(
            [command, str(job), "--output", path, "--quiet"][: 4 if command == "validate" else 5], capsys
        )
        assert code == 2, name
        assert err.startswith(f"error: output path {path} cannot be written"), (name, err)
        assert "choose an output folder you can write to" in err
        assert err.count("\n") == 1, err  # one paragraph
        assert "Traceback" not in err


def test_validation_reports_every_error_at_once(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "job.yaml"
    path.write_text(
        "input: {path: in, colour: red}\noutput: {path: out, compresion: zstd}\nrun: {max_retries: -1}\n"
        "dedup: {type: minhash, bandz: 3}\nsteps:\n  - {type: doc_length, min_wrds: 5}\n  - {type: nope}\n"
        "extra: 1\n"
    )
    code, _, err = run_cli(["validate", str(path)], capsys)
    assert code == 2
    lines = err.splitlines()
    assert lines[0] == f"error: {path}: invalid job (7 problems)"
    expected = [
        "steps[0].min_wrds: unknown key (keys allowed for doc_length: max_chars, max_words, min_chars, min_words,",
        "steps[1].type: unknown step type 'nope'; known step types: ",
        "input.colour: unknown key (keys allowed: path, text_column, id_column, glob, storage_options, batch_rows,",
        "output.compresion: unknown key (keys allowed: path, storage_options, write_rejected, compression,",
        "dedup.bandz: unknown key (keys allowed: ",
        "run.max_retries: Input should be greater than or equal to 0",
        "extra: unknown key (keys allowed: name, input, output, preset, steps, dedup, run)",
    ]
    for line, start in zip(lines[1:], expected, strict=True):
        assert line.startswith(start), (line, start)


def test_missing_dedup_type_and_section(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    path = tmp_path / "job.yaml"
    path.write_text("output: {path: out}\ndedup: {bands: 3}\n")
    code, _, err = run_cli(["validate", str(path)], capsys)
    assert code == 2
    assert "input: missing (keys allowed: path, " in err
    assert "dedup.type: missing; one of: exact, minhash" in err


@pytest.mark.ray
def test_rerun_reports_reused_documents_apart(
    ray_local: None, tmp_path: Path, sample_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    job = job_file(tmp_path, sample_dir)
    assert main(["run", str(job), "--quiet"]) == 0
    first = capsys.readouterr().out
    assert "697 processed (" in first
    assert "reused from the last run" not in first
    assert main(["run", str(job), "--quiet"]) == 0
    again = capsys.readouterr().out
    assert "done: 697 docs in " in again
    assert ": 0 processed, 697 reused from the last run; shards: 0 processed, 4 skipped of 4" in again
    assert "docs/s" not in again
    stats = json.loads((tmp_path / "out/stats.json").read_text())
    assert (stats["docs_reused"], stats["docs_processed"], stats["docs_per_second"]) == (697, 0, None)


@pytest.mark.ray
def test_run_starts_its_own_ray_beside_a_stale_cluster_file_13(tmp_path: Path, sample_dir: Path) -> None:
    """A `ray_current_cluster` file left by a cluster that is gone: `run` starts its own Ray, with --num-cpus CPUs.

    Before, the embedded default called `ray.init()`, which joins whatever that file names (here nothing
    listens: the run failed; with a live `ray start` cluster it silently ran there).
    """
    ray_tmp = Path(tempfile.mkdtemp(prefix="rt", dir="/tmp"))  # short: Ray's socket paths must fit 107 bytes
    try:
        (ray_tmp / "ray").mkdir()
        (ray_tmp / "ray" / "ray_current_cluster").write_text("127.0.0.1:9\n")  # nothing listens there
        env = {**os.environ, "RAY_ADDRESS": "", "RAY_TMPDIR": str(ray_tmp)}
        out = tmp_path / "out"
        done = subprocess.run(
            [sys.executable, "-m", "engine", "run", str(job_file(tmp_path, sample_dir)), "--num-cpus", "1", "--quiet"],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=300,
            env=env,
            check=False,
        )
        assert done.returncode == 0, done.stderr[-3000:]
        stats = json.loads((out / "stats.json").read_text())
        assert stats["ray_cpus"] == 1
        assert stats["docs_in"] > 0
        assert list((ray_tmp / "ray").glob("session_*")), "Ray did not start under RAY_TMPDIR"
    finally:
        shutil.rmtree(ray_tmp, ignore_errors=True)


def test_num_cpus_must_be_a_positive_count(
    tmp_path: Path, sample_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["run", str(job_file(tmp_path, sample_dir)), "--num-cpus", "0"])
    assert exit_info.value.code == 2
    assert "at least 1" in capsys.readouterr().err
