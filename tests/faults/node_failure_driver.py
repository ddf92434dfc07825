"""Run by test_node_failure in its own process: a 3-node Ray cluster on this machine, one node killed mid-job.

    python -m tests.faults.node_failure_driver SRC REFERENCE_OUT DISTURBED_OUT

Prints one JSON line: the totals of both runs and how many shards had finished when the node was killed.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from pathlib import Path

import ray
from ray.cluster_utils import Cluster

from engine import run_job
from tests.faults.corpus import job_spec


def main() -> None:
    src, reference, disturbed = (Path(a) for a in sys.argv[1:4])
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False})
    workers = [cluster.add_node(num_cpus=1) for _ in range(2)]
    cluster.wait_for_nodes()
    ray.init(address=cluster.address, log_to_driver=False, logging_level="ERROR")

    undisturbed = run_job(job_spec(src, reference))

    killed_after: list[int] = []

    def kill_a_node_when_work_is_under_way() -> None:
        while True:
            done = len(list((disturbed / "_units").glob("*.marker.json")))
            if done >= 3:
                cluster.remove_node(workers[0], allow_graceful=False)
                killed_after.append(done)
                return
            time.sleep(0.01)

    killer = threading.Thread(target=kill_a_node_when_work_is_under_way, daemon=True)
    killer.start()
    stats = run_job(job_spec(src, disturbed))
    killer.join(timeout=30)
    deadline = time.monotonic() + 60  # the GCS notices a dead node after its health checks fail
    while (alive := sum(1 for node in ray.nodes() if node["Alive"])) > 2 and time.monotonic() < deadline:
        time.sleep(0.5)
    print(
        "RESULT "
        + json.dumps(
            {
                "reference": undisturbed.to_dict(),
                "disturbed": stats.to_dict(),
                "killed_after": killed_after,
                "alive_nodes": alive,
            }
        ),
        flush=True,
    )
    ray.shutdown()
    cluster.shutdown()


if __name__ == "__main__":
    main()
