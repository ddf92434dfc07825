"""How long `what-if` takes on a large score sidecar: the sample job's sidecar copied up to about a million rows.

    python benchmarks/bench_whatif.py [--rows 1000000] [--files 40] [--repeat 3]

Runs jobs/sample.yaml's steps (the FineWeb preset, no dedup) over data/sample with `keep_scores: true` in this
process (no Ray), copies its score sidecar (ids made unique per copy, batches kept) into `--files` files of about
`--rows` rows in all, then times `what_if` for two settings: a threshold of the last step (every fate known) and
the language-id threshold (some fates unknown). Wall time, best of `--repeat`, in this process; appends a JSON
line to benchmarks/results/whatif.jsonl. Timings on a shared machine are noisy.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import pyarrow as pa  # noqa: E402
import pyarrow.compute as pc  # noqa: E402
import pyarrow.parquet as pq  # noqa: E402

from engine.inspect.bench import append_record  # noqa: E402
from engine.inspect.run_outputs import score_files  # noqa: E402
from engine.inspect.whatif import what_if  # noqa: E402
from engine.io.paths import list_shards  # noqa: E402
from engine.provenance import git_state, machine  # noqa: E402
from engine.runner.run import _write_stats, with_absolute_paths, write_resolved_job  # noqa: E402
from engine.runner.unit import run_unit  # noqa: E402
from engine.spec import load_job  # noqa: E402
from engine.stats import Stats  # noqa: E402

SETTINGS = {
    "last step (all fates known)": ["fineweb_quality.line_punct_thr=0.3"],
    "language id loosened (some fates unknown)": ["language_id.min_score=0.5"],
}


def sample_run(out: Path) -> None:
    """jobs/sample.yaml without dedup over data/sample, with the score sidecar, unit by unit in this process."""
    job = load_job(REPO / "jobs/sample.yaml", output=str(out))
    job = job.model_copy(
        update={"dedup": None, "input": job.input.model_copy(update={"path": str(REPO / "data/sample")})}
    )
    job = with_absolute_paths(job)
    write_resolved_job(job)
    total = Stats()
    for shard in list_shards(job.input.path, {}, job.input.glob):
        total = total + Stats.from_dict(run_unit(job, shard).stats)
    _write_stats(job, total, {})


def scale_sidecar(out: Path, rows: int, files: int) -> int:
    """Replace the run's sidecar by copies of it (unique ids) in `files` files of about `rows` rows in all."""
    tables = [pq.read_table(f) for f in score_files(str(out))]
    base = pa.concat_tables(tables)
    copies = max(1, rows // base.num_rows)
    for f in score_files(str(out)):
        Path(f).unlink()
    written = 0
    per_file = -(-copies // files)
    for index in range(files):
        parts = []
        for copy in range(index * per_file, min(copies, (index + 1) * per_file)):
            ids = pc.binary_join_element_wise(base["id"], pa.scalar(f"-{copy}"), "")
            parts.append(base.set_column(0, "id", ids))
        if parts:
            table = pa.concat_tables(parts)
            pq.write_table(table, out / "scores" / f"part-{index:04d}.parquet", compression="zstd")
            written += table.num_rows
    return written


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--files", type=int, default=40)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--results", default="benchmarks/results/whatif.jsonl")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "run"
        sample_run(out)
        rows = scale_sidecar(out, args.rows, args.files)
        seconds = {}
        for name, settings in SETTINGS.items():
            best = float("inf")
            for _ in range(args.repeat):
                started = time.perf_counter()
                result = what_if(str(out), settings)
                best = min(best, time.perf_counter() - started)
            assert result.docs == rows
            seconds[name] = {"settings": settings, "seconds": round(best, 3), "rows_per_second": round(rows / best)}
    record = {
        "benchmark": "whatif",
        "timestamp": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "git": git_state(),
        "machine": machine(),
        "rows": rows,
        "files": args.files,
        "repeat": args.repeat,
        "what_if": seconds,
    }
    print(json.dumps(record, indent=2))
    append_record(record, args.results)


if __name__ == "__main__":
    main()
