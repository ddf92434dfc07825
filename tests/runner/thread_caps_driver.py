"""Run by test_thread_caps in its own process: which thread pools the engine's tasks get, on a real Ray.

    python -m tests.runner.thread_caps_driver cluster SRC OUT   # a 3-node ray.cluster_utils.Cluster, joined by address
    python -m tests.runner.thread_caps_driver embedded          # the embedded Ray `init_ray()` starts

`cluster` first runs a real job on the cluster (joined with --address, as `corpus-engine run --address` does), then
probes the worker processes through the executor a run uses. Prints one JSON line: every probe's answer.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import ray

from engine.runner.ray import THREAD_CAP_VARIABLES, RayExecutor, init_ray
from engine.runner.run import run_on_ray
from tests.faults.corpus import job_spec

PROBES = 12
ROUNDS = 8


def probe(_: int) -> dict[str, Any]:
    """What this task's worker process sees: its node, polars' and Arrow's pool sizes, the cap variables."""
    import polars as pl
    import pyarrow as pa

    time.sleep(0.3)  # keep each CPU busy a little so that every node takes some of the probes
    return {
        "node": ray.get_runtime_context().get_node_id(),
        "pid": os.getpid(),
        "polars": pl.thread_pool_size(),
        "arrow": pa.cpu_count(),
        "env": {name: os.environ.get(name) for name in THREAD_CAP_VARIABLES},
    }


def main() -> None:
    mode = sys.argv[1]
    result: dict[str, Any] = {}
    cluster = None
    if mode == "cluster":
        from ray.cluster_utils import Cluster

        cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False})
        for _ in range(2):
            cluster.add_node(num_cpus=1)
        cluster.wait_for_nodes()
        src, out = Path(sys.argv[2]), Path(sys.argv[3])
        stats = run_on_ray(job_spec(src, out), address=cluster.address)
        result["job"] = {"docs_in": stats.docs_in, "shards_processed": stats.shards_processed}
        result["nodes"] = len([node for node in ray.nodes() if node["Alive"]])
    else:
        init_ray()
    result["probes"] = {}
    for cpus in [1.0] if mode == "cluster" else [1.0, 2.0]:
        executor, answers = RayExecutor(cpus_per_task=cpus), []
        nodes = {node["NodeID"] for node in ray.nodes() if node["Alive"]}
        for _ in range(ROUNDS):  # a loaded machine may start one node's workers long after another's
            answers += executor.map(probe, list(range(PROBES)), label="probe")
            if {answer["node"] for answer in answers} >= nodes:
                break
        result["probes"][str(cpus)] = answers
    print("RESULT " + json.dumps(result), flush=True)
    ray.shutdown()
    if cluster is not None:
        cluster.shutdown()


if __name__ == "__main__":
    main()
