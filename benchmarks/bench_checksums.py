"""What page checksums cost: writing and reading the engine's Parquet files with and without CRC32 per page.

    python benchmarks/bench_checksums.py [--docs 20000] [--repeat 5]

Writes real web text (benchmarks/corpus.py, seeded variants of ../shared/corpora) as the engine writes kept text
(zstd, one row group per 2,048-row batch) with `write_page_checksum` off and on, and reads each file back with
`page_checksum_verification` off and on, alternating the variants within each repeat (best of `--repeat`), in
this process on one core. Prints MB/s and the on/off ratios and appends a JSON line to
benchmarks/results/checksums.jsonl. Timings on a shared machine are noisy: compare the ratios of one run.
"""

from __future__ import annotations

import argparse
import io
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402
import pyarrow as pa  # noqa: E402
import pyarrow.parquet as pq  # noqa: E402
from corpus import real_documents, variant  # noqa: E402

from engine.inspect.bench import append_record  # noqa: E402
from engine.provenance import git_state, machine  # noqa: E402

BATCH_ROWS = 2048


def corpus_table(docs: int, seed: int = 0) -> pa.Table:
    rng = np.random.default_rng(seed)
    base = real_documents()
    texts = [variant(base[i % len(base)], i // len(base), rng) for i in range(docs)]
    ids = [f"d{i}" for i in range(docs)]
    return pa.table({"id": ids, "text": pa.array(texts, type=pa.large_string())})


def write(table: pa.Table, *, checksums: bool) -> bytes:
    sink = io.BytesIO()
    with pq.ParquetWriter(sink, table.schema, compression="zstd", write_page_checksum=checksums) as writer:
        for start in range(0, table.num_rows, BATCH_ROWS):
            writer.write_table(table.slice(start, BATCH_ROWS))
    return sink.getvalue()


def read(data: bytes, *, verify: bool) -> int:
    parquet = pq.ParquetFile(io.BytesIO(data), page_checksum_verification=verify)
    return sum(batch.num_rows for batch in parquet.iter_batches(batch_size=BATCH_ROWS))


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--docs", type=int, default=20_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--results", default="benchmarks/results/checksums.jsonl")
    args = parser.parse_args()

    table = corpus_table(args.docs)
    text_mb = sum(len(t.encode()) for t in table["text"].to_pylist()) / 1e6
    best = {"write_off": np.inf, "write_on": np.inf, "read_off": np.inf, "read_on": np.inf}
    files = {False: write(table, checksums=False), True: write(table, checksums=True)}
    for _ in range(args.repeat):
        for checksums in (False, True):
            started = time.process_time()
            write(table, checksums=checksums)
            key = "write_on" if checksums else "write_off"
            best[key] = min(best[key], time.process_time() - started)
        for verify in (False, True):
            started = time.process_time()
            assert read(files[verify], verify=verify) == table.num_rows
            key = "read_on" if verify else "read_off"
            best[key] = min(best[key], time.process_time() - started)
    record = {
        "benchmark": "checksums",
        "timestamp": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "git": git_state(),
        "machine": machine(),
        "pyarrow": pa.__version__,
        "docs": args.docs,
        "text_mb": round(text_mb, 1),
        "file_mb": {"off": round(len(files[False]) / 1e6, 2), "on": round(len(files[True]) / 1e6, 2)},
        "cpu_seconds": {k: round(float(v), 4) for k, v in best.items()},
        "mb_per_second": {k: round(text_mb / float(v), 1) for k, v in best.items()},
        "write_ratio": round(float(best["write_on"] / best["write_off"]), 3),
        "read_ratio": round(float(best["read_on"] / best["read_off"]), 3),
    }
    print(json.dumps(record, indent=2))
    append_record(record, args.results)


if __name__ == "__main__":
    main()
