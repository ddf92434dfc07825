"""Kill a worker node of a 3-node Ray cluster in the middle of a job: the job finishes, output unchanged."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.faults.corpus import final_files, many_shards

pytestmark = pytest.mark.cluster
REPO = Path(__file__).resolve().parents[2]
SHARDS = 60


def test_lost_worker_node_does_not_change_the_output(tmp_path: Path, sample_dir: Path) -> None:
    src = many_shards(sample_dir, tmp_path / "in", shards=SHARDS)
    reference, disturbed = tmp_path / "reference", tmp_path / "disturbed"
    env = {**os.environ, "RAY_ADDRESS": ""}
    done = subprocess.run(
        [sys.executable, "-m", "tests.faults.node_failure_driver", str(src), str(reference), str(disturbed)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    (line,) = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    result = json.loads(line.removeprefix("RESULT "))
    assert result["killed_after"], "the node was never killed"
    assert result["killed_after"][0] < SHARDS, "the job had finished before the node was killed"
    assert result["alive_nodes"] == 2
    for key in ("docs_in", "docs_kept", "docs_dropped", "dropped"):
        assert result["disturbed"][key] == result["reference"][key], key
    # A task whose node died after its marker was written is retried and finds its shard already done.
    disturbed_stats = result["disturbed"]
    assert disturbed_stats["shards_processed"] + disturbed_stats["shards_skipped"] == SHARDS
    assert disturbed_stats["shards_failed"] == 0
    assert final_files(disturbed) == final_files(reference)
