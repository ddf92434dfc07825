"""What probing a kept band index costs a nightly rebuild: one partition read, decoded and matched.

    python benchmarks/bench_index_probe.py [--entries 14000000] [--new-share 0.01] [--match-share 0.3]

The incremental design (docs/dedup-design.md) keeps every published document's band keys as a sorted index
partitioned like the band shuffle; a night merges its new band rows against each partition. This measures one
partition of `--entries` rows `(bandkey uint64, node int64)`, sorted by key, stored as zstd Parquet: bytes per
entry on storage, CPU to read and decode it, and CPU to find which of `new-share x entries` new keys (a
`match-share` of them present) hit it (`np.searchsorted`). Appends a JSON line to
benchmarks/results/index_probe.jsonl.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from bench_scale import append_record  # noqa: E402

from engine.provenance import git_state, machine  # noqa: E402


def best_cpu(repeat: int, fn: object) -> float:
    best = float("inf")
    for _ in range(repeat):
        started = time.process_time()
        fn()  # type: ignore[operator]
        best = min(best, time.process_time() - started)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entries", type=int, default=14_000_000, help="entries of one index partition")
    parser.add_argument("--new-share", type=float, default=0.01)
    parser.add_argument("--match-share", type=float, default=0.3)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--results", default=str(HERE / "results" / "index_probe.jsonl"))
    args = parser.parse_args()

    rng = np.random.default_rng(0)
    keys = np.sort(rng.integers(0, np.iinfo(np.uint64).max, size=args.entries, dtype=np.uint64))
    shards = rng.integers(0, 3000, size=args.entries, dtype=np.int64)
    nodes = (shards << 32) + rng.integers(0, 1_000_000, size=args.entries, dtype=np.int64)
    new = int(args.entries * args.new_share)
    hits = rng.choice(keys, size=int(new * args.match_share), replace=False)
    probes = np.concatenate([hits, rng.integers(0, np.iinfo(np.uint64).max, size=new - len(hits), dtype=np.uint64)])
    probes.sort()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "partition.parquet"
        pq.write_table(pa.table({"key": keys, "node": nodes}), path, compression="zstd", row_group_size=1 << 20)
        size = path.stat().st_size

        def read() -> pa.Table:
            return pq.read_table(path)

        def probe() -> int:
            table = read()
            old = table["key"].to_numpy()
            at = np.searchsorted(old, probes)
            found = (at < len(old)) & (old[np.minimum(at, len(old) - 1)] == probes)
            return int(found.sum())

        read_cpu = best_cpu(args.repeat, read)
        probe_cpu = best_cpu(args.repeat, probe)
        matched = probe()
    record = {
        "benchmark": "index_probe",
        "git": git_state(),
        "machine": machine(),
        "command": " ".join(sys.argv),
        "entries": args.entries,
        "new_keys": new,
        "matched": matched,
        "bytes_per_entry": round(size / args.entries, 2),
        "read_decode_ns_per_entry": round(read_cpu / args.entries * 1e9, 2),
        "probe_ns_per_entry": round(probe_cpu / args.entries * 1e9, 2),
    }
    append_record(record, Path(args.results))
    print(json.dumps(record))


if __name__ == "__main__":
    main()
