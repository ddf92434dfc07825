"""Every task's worker process starts with its thread pools sized to the task's CPUs, embedded and on a cluster.

Real Ray in a separate process (a fresh Ray, not the session's): polars and Arrow report the pool size they
actually built, so the check fails if the caps reach a worker after its libraries loaded, or not at all.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from engine.runner.ray import THREAD_CAP_VARIABLES, thread_caps
from tests.faults.corpus import many_shards

REPO = Path(__file__).resolve().parents[2]


def run_driver(*args: str) -> dict[str, Any]:
    env = {**os.environ, "RAY_ADDRESS": "", "PYTHONPATH": str(REPO)}
    for name in THREAD_CAP_VARIABLES:  # the driver's own environment must not be what caps the workers
        env.pop(name, None)
    done = subprocess.run(
        [sys.executable, "-m", "tests.runner.thread_caps_driver", *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    (line,) = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    result: dict[str, Any] = json.loads(line.removeprefix("RESULT "))
    return result


def test_thread_caps_follow_the_tasks_cpus() -> None:
    assert set(thread_caps(1.0).values()) == {"1"}
    assert set(thread_caps(0.25).values()) == {"1"}  # a fractional task still gets one thread
    assert set(thread_caps(2.5).values()) == {"2"}
    assert set(thread_caps(8).values()) == {"8"}
    assert set(thread_caps(1.0)) == set(THREAD_CAP_VARIABLES)


@pytest.mark.cluster
def test_every_task_on_a_three_node_cluster_runs_one_thread_per_pool(tmp_path: Path, sample_dir: Path) -> None:
    src = many_shards(sample_dir, tmp_path / "in", shards=6)
    result = run_driver("cluster", str(src), str(tmp_path / "out"))
    assert result["nodes"] == 3
    assert result["job"]["shards_processed"] == 6
    probes = result["probes"]["1.0"]
    assert len({p["node"] for p in probes}) == 3, "the probes did not reach every node"
    for answer in probes:
        assert answer["polars"] == 1, answer
        assert answer["arrow"] == 1, answer
        assert set(answer["env"].values()) == {"1"}, answer


@pytest.mark.cluster
def test_embedded_ray_workers_inherit_the_caps_and_bigger_tasks_get_theirs() -> None:
    result = run_driver("embedded")
    for cpus, threads in (("1.0", 1), ("2.0", 2)):
        for answer in result["probes"][cpus]:
            assert answer["polars"] == threads, (cpus, answer)
            assert answer["arrow"] == threads, (cpus, answer)
            assert set(answer["env"].values()) == {str(threads)}, (cpus, answer)
