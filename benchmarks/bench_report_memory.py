"""The report's cost as the corpus grows: stats.json's size and the peak memory of `corpus-engine report`.

Issue 14: the report read every clusters/ file, opened every kept file for language counts and read every unit's
stats. It now reads stats.json (fixed-bin histograms every unit adds to) and nothing of the corpus. This script
runs the same job (language id + gopher_quality + doc_length, no dedup) over 4, 16 and 64 shards (copies of the
sample with fresh ids, run unit by unit without Ray), then times `corpus-engine report OUT` in a fresh process and
reads its peak RSS (ru_maxrss of the child).

    PYTHONPATH=$PWD /work/main/.venv/bin/python benchmarks/bench_report_memory.py [--shards 4 16 64] [--no-save]

Appends one JSON line to benchmarks/results/report_memory.jsonl unless --no-save.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "data" / "sample"
STEPS = [
    {"type": "language_id", "min_score": 0.3, "partition_by_language": True},
    {"type": "gopher_quality"},
    {"type": "doc_length", "min_words": 50},
]


def make_shards(folder: Path, shards: int) -> None:
    sample = pa.concat_tables(pq.read_table(p, columns=["id", "text"]) for p in sorted(SAMPLE.glob("*.parquet")))
    folder.mkdir(parents=True)
    for index in range(shards):
        ids = pc.binary_join_element_wise(pa.scalar(f"s{index}-"), sample["id"], "")
        pq.write_table(sample.set_column(0, "id", ids), folder / f"part-{index:04d}.parquet")


def run(src: Path, out: Path) -> None:
    sys.path.insert(0, str(REPO))
    from tests.inspect.test_whatif import run_units

    run_units(src, out, STEPS, keep_scores=False)


_REPORT = (
    "import resource, sys\n"
    "from engine.cli import main\n"
    "import engine.inspect.report, engine.inspect.plots\n"
    "if sys.argv[1] != '-': assert main(['report', sys.argv[1]]) == 0\n"
    "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)\n"
)


def report_cost(out: Path | str) -> dict[str, float]:
    """`corpus-engine report OUT` in a fresh process: its wall seconds and its own peak RSS (`-`: imports only)."""
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-c", _REPORT, str(out)], check=True, capture_output=True, text=True, cwd=REPO
    )
    seconds = time.perf_counter() - started
    peak_kib = int(done.stdout.strip().splitlines()[-1])
    return {"seconds": round(seconds, 2), "report_peak_rss_mib": round(peak_kib / 1024, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shards", type=int, nargs="+", default=[4, 16, 64])
    parser.add_argument("--no-save", action="store_true")
    args = parser.parse_args()
    results = []
    imports_only = report_cost("-")["report_peak_rss_mib"]
    print(json.dumps({"imports_only_peak_rss_mib": imports_only}), flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        for shards in sorted(args.shards):
            src, out = Path(tmp) / f"in-{shards}", Path(tmp) / f"out-{shards}"
            make_shards(src, shards)
            run(src, out)
            stats = json.loads((out / "stats.json").read_text())
            row = {
                "shards": shards,
                "docs": stats["docs_in"],
                "kept_files": len(list((out / "kept").rglob("*.parquet"))),
                "stats_json_bytes": (out / "stats.json").stat().st_size,
                **report_cost(out),
            }
            results.append(row)
            print(json.dumps(row), flush=True)
    if not args.no_save:
        revision = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True).stdout.strip()
        line = {
            "bench": "report_memory",
            "git": revision,
            "machine": {"cpu_count": os.cpu_count(), "platform": platform.platform()},
            "steps": STEPS,
            "imports_only_peak_rss_mib": imports_only,
            "results": results,
        }
        with (REPO / "benchmarks" / "results" / "report_memory.jsonl").open("a", encoding="utf-8") as handle:
            handle.write(json.dumps(line) + "\n")


if __name__ == "__main__":
    main()
