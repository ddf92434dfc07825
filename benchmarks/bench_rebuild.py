"""Nightly rebuild cost: a full build, then a rebuild after adding 1% new shards (and a no-change rerun).

    python benchmarks/bench_rebuild.py [--docs 40000] [--shards 100] [--job jobs/fineweb.yaml]

Runs on the embedded local Ray (started once, not timed), prints the three wall times and the fraction a 1%
rebuild costs of a full build, and appends a JSON line to benchmarks/results/rebuild.jsonl.
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


def timed_run(job_path: str, src: Path, out: Path) -> tuple[float, dict[str, object]]:
    started = time.perf_counter()
    stats = run_job(job_over(job_path, src, out))
    return time.perf_counter() - started, stats.to_dict()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--docs", type=int, default=40_000)
    parser.add_argument("--shards", type=int, default=100)
    parser.add_argument("--job", default="jobs/fineweb.yaml")
    parser.add_argument("--results", default="benchmarks/results/rebuild.jsonl")
    args = parser.parse_args()

    init_ray()
    with tempfile.TemporaryDirectory() as tmp:
        src, out = Path(tmp) / "in", Path(tmp) / "out"
        write_corpus(src, docs=args.docs, shards=args.shards, seed=0)
        full, full_stats = timed_run(args.job, src, out)
        unchanged, _ = timed_run(args.job, src, out)
        new = max(1, args.shards // 100)
        write_corpus(src, docs=args.docs * new // args.shards, shards=new, seed=1, first_shard=args.shards)
        incremental, incremental_stats = timed_run(args.job, src, out)

    record = {
        "benchmark": "rebuild",
        "git": git_state(),
        "machine": machine(),
        "job": args.job,
        "docs": args.docs,
        "shards": args.shards,
        "new_shards": new,
        "full_seconds": round(full, 2),
        "unchanged_rerun_seconds": round(unchanged, 2),
        "one_percent_rebuild_seconds": round(incremental, 2),
        "rebuild_fraction": round(incremental / full, 3),
        "full_shards_processed": full_stats["shards_processed"],
        "rebuild_shards_processed": incremental_stats["shards_processed"],
        "rebuild_shards_skipped": incremental_stats["shards_skipped"],
    }
    append_record(record, args.results)
    print(json.dumps(record, indent=1))


if __name__ == "__main__":
    main()
