"""A corpus of many small shards built from the sample, for fault tests (shards finish one by one)."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from engine.spec import JobSpec, parse_job


def many_shards(sample_dir: Path, target: Path, *, shards: int) -> Path:
    """Write `shards` shards under `target`, each a slice of the sample's documents."""
    table = pa.concat_tables(pq.read_table(p) for p in sorted(sample_dir.glob("*.parquet")))
    target.mkdir(parents=True)
    per = -(-table.num_rows // shards)
    for index in range(shards):
        pq.write_table(table.slice(index * per, per), target / f"shard-{index:03d}.parquet", row_group_size=8)
    return target


def job_yaml(src: Path, out: Path, path: Path) -> Path:
    """A job file over `src` writing to `out`."""
    path.write_text(
        f"name: faults\ninput: {{path: '{src}', batch_rows: 4}}\noutput: {{path: '{out}'}}\n"
        "steps:\n  - {type: doc_length, min_words: 50}\n"
    )
    return path


def job_spec(src: Path, out: Path) -> JobSpec:
    return parse_job(
        {
            "name": "faults",
            "input": {"path": str(src), "batch_rows": 4},
            "output": {"path": str(out)},
            "steps": [{"type": "doc_length", "min_words": 50}],
        }
    )


def final_files(out: Path) -> dict[str, bytes]:
    """Every committed Parquet output (kept and rejected) by relative path, with its bytes."""
    return {
        str(p.relative_to(out)): p.read_bytes()
        for area in ("kept", "rejected")
        for p in sorted((out / area).rglob("*.parquet"))
    }
