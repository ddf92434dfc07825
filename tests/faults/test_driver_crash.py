"""Kill the driver (SIGKILL) in the middle of a job; rerunning the same command finishes it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from engine import run_job
from tests.faults.corpus import final_files, job_spec, job_yaml, many_shards

pytestmark = pytest.mark.ray
REPO = Path(__file__).resolve().parents[2]
SHARDS = 60


def test_driver_killed_mid_job_resumes_with_identical_output(ray_local: None, tmp_path: Path, sample_dir: Path) -> None:
    src = many_shards(sample_dir, tmp_path / "in", shards=SHARDS)
    undisturbed = run_job(job_spec(src, tmp_path / "reference"))

    out = tmp_path / "out"
    command = [sys.executable, "-m", "engine", "run", str(job_yaml(src, out, tmp_path / "job.yaml")), "--quiet"]
    env = {**os.environ, "RAY_ADDRESS": ""}
    driver = subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and driver.poll() is None:
        if len(list((out / "_units").glob("*.marker.json"))) >= 3:
            driver.send_signal(signal.SIGKILL)
            break
        time.sleep(0.01)
    driver.wait(timeout=60)
    finished_before = len(list((out / "_units").glob("*.marker.json")))
    if driver.returncode == 0 or finished_before == SHARDS:
        pytest.fail(f"the job finished before it could be killed ({finished_before} markers); use more shards")
    assert driver.returncode == -signal.SIGKILL

    rerun = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=300, check=False)
    assert rerun.returncode == 0, rerun.stderr
    stats = json.loads((out / "stats.json").read_text())
    # A worker may finish the shard it was running after the driver died: more may be skipped, never fewer.
    assert stats["shards_skipped"] >= finished_before
    assert stats["shards_processed"] >= 1
    assert stats["shards_processed"] + stats["shards_skipped"] == SHARDS
    assert stats["conserved"] is True
    assert (stats["docs_in"], stats["docs_kept"]) == (undisturbed.docs_in, undisturbed.docs_kept)
    assert final_files(out) == final_files(tmp_path / "reference")
