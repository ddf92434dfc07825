"""End-to-end throughput of a job on the embedded local Ray: docs/s per core per step and overall, peak memory.

    python benchmarks/bench_pipeline.py [--docs 20000] [--shards 20] [--job jobs/fineweb.yaml]

Ray is started once before timing. Per-step docs/s are measured inside the units (one core each); the
end-to-end figure is documents / wall time / CPUs. Appends a JSON line to benchmarks/results/pipeline.jsonl.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from corpus import job_over, write_corpus  # noqa: E402

from engine import run_job  # noqa: E402
from engine.inspect.bench import append_record  # noqa: E402
from engine.provenance import git_state, machine  # noqa: E402
from engine.runner.ray import init_ray  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--docs", type=int, default=20_000)
    parser.add_argument("--shards", type=int, default=20)
    parser.add_argument("--job", default="jobs/fineweb.yaml")
    parser.add_argument("--results", default="benchmarks/results/pipeline.jsonl")
    args = parser.parse_args()

    import ray

    init_ray()
    cpus = int(ray.cluster_resources().get("CPU", 1))
    with tempfile.TemporaryDirectory() as tmp:
        src = write_corpus(Path(tmp) / "in", docs=args.docs, shards=args.shards)
        megabytes = sum(p.stat().st_size for p in src.glob("*.parquet")) / 1e6
        job = job_over(args.job, src, Path(tmp) / "out")
        started = time.perf_counter()
        stats = run_job(job)
        wall = time.perf_counter() - started

    record = {
        "benchmark": "pipeline",
        "git": git_state(),
        "machine": {**machine(), "ray_cpus": cpus},
        "job": args.job,
        "docs": stats.docs_in,
        "parquet_mb": round(megabytes, 1),
        "wall_seconds": round(wall, 2),
        "docs_per_second_per_core": round(stats.docs_in / wall / cpus, 1),
        "step_docs_per_second_per_core": stats.to_dict()["step_docs_per_second"],
        "kept": stats.docs_kept,
        "dropped": stats.docs_dropped,
        "duplicates": stats.duplicates,
        "peak_worker_rss_mb": round(stats.peak_rss_bytes / 2**20, 1),
    }
    append_record(record, args.results)
    print(json.dumps(record, indent=1))


if __name__ == "__main__":
    main()
