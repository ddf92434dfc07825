"""The band shuffle (phase B: band rows to partitions, colliding keys to edges) three ways, on the same files.

    python benchmarks/shuffle_options.py --dir /tmp/scale/1000000-hub0 --option segments [--partitions P]

Options (issue 14), each reading the synthetic signature files of `bench_scale.py generate` through the
`count://` filesystem and ending with the star edges of every partition written to storage:

- `current`: today's `map_bands` + `find_edges` (one file per map task and partition, for bands and for sort
  keys; one per collisions task and partition for the edges), for reference under the same load.
- `segments`: each map task writes ONE object: a header of `P + 1` offsets, then one Parquet segment per
  destination partition (write-once name, a single PUT); one index task gathers the S headers into a
  partition-major index (one object); reduce task `p` reads its row of the index (one ranged GET) and its
  segment of every map object that has one (one ranged GET each), and writes its edges as one object.
- `rowgroups`: each map task writes ONE Parquet file whose row groups are its partitions (a `part` column,
  so the footer's statistics say which row group holds which partition); reduce task `p` reads every map
  file through `pyarrow.dataset` with the filter `part == p` (footer, then the matching row group).
- `raydata`: Ray Data reads the signature files (one read task per file), `repartition(P, keys=[band, key])`
  (hash shuffle through the object store, SHUFFLE_V2), then one `map_batches` call per block finds the edges
  and writes them. Storage calls made inside Ray Data tasks are counted through per-call files.

Every option reports the edge count and an order-free digest of the edges (equal across options means the
same edges), wall and CPU seconds, requests and bytes, the peak RSS of the largest task (or, for Ray Data,
of the largest worker process, sampled), and appends a JSON line to benchmarks/results/shuffle_options.jsonl.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import scale_data  # noqa: E402
import storage_counter  # noqa: E402
from bench_scale import append_record, partition_count, start_ray  # noqa: E402
from measured import MeasuringExecutor, process_tree_cpu, psutil_module  # noqa: E402

from engine.dedup.minhash import mix64  # noqa: E402
from engine.dedup.plan import NODE, node_ids  # noqa: E402
from engine.dedup.shuffle import KEY, band_rows, collision_edges, key_partitions  # noqa: E402
from engine.dedup.signatures import KEYS, signatures_file  # noqa: E402
from engine.io.paths import filesystem  # noqa: E402
from engine.provenance import git_state, machine  # noqa: E402
from engine.spec import JobSpec  # noqa: E402

RESULTS = HERE / "results" / "shuffle_options.jsonl"
MAGIC = 0x53454753_31  # "SEGS1"
PART = "part"
_BAND_SCHEMA = {"band": pl.Int32, KEY: pl.UInt64, NODE: pl.Int64}


@dataclass(frozen=True)
class Setup:
    """What every task needs: where to read and write, and the partition count."""

    signatures: tuple[str, ...]
    work: str
    partitions: int
    segment_format: str = "parquet"
    verify: bool = True

    def map_file(self, index: int, suffix: str) -> str:
        return f"{self.work}/bands/m={index:06d}.{suffix}"


# --------------------------------------------------------------------------------------------------
# The map side, shared: one signature file to band rows sorted by destination partition.


def sorted_band_rows(setup: Setup, index: int) -> tuple[pa.Table, np.ndarray]:
    """Band rows of signature file `index`, sorted by partition; the partition of each row (sorted)."""
    from engine.io.parquet import read_table

    table = read_table(setup.signatures[index], {}, columns=[KEYS])
    has_keys = np.asarray(table[KEYS].is_valid().to_numpy(zero_copy_only=False), dtype=bool)
    width = table.schema.field(KEYS).type.list_size
    flat = table[KEYS].filter(pa.array(has_keys)).combine_chunks().flatten()
    keys = np.asarray(flat.to_numpy(zero_copy_only=False), dtype=np.uint64).reshape(-1, width)
    rows = band_rows(keys, np.ones(len(keys), dtype=bool), node_ids(index, table.num_rows)[has_keys])
    parts = key_partitions(rows["band"].to_numpy().astype(np.int64), rows[KEY].to_numpy(), setup.partitions)
    order = np.argsort(parts, kind="stable")
    return rows.take(pa.array(order)), parts[order]


def encode(table: pa.Table, segment_format: str) -> bytes:
    sink = pa.BufferOutputStream()
    if segment_format == "ipc":
        options = pa.ipc.IpcWriteOptions(compression="zstd")
        with pa.ipc.new_stream(sink, table.schema, options=options) as writer:
            writer.write_table(table)
    else:
        pq.write_table(table, sink, compression="zstd")
    return bytes(sink.getvalue())


def decode(data: bytes, segment_format: str) -> pa.Table:
    if segment_format == "ipc":
        return pa.ipc.open_stream(pa.py_buffer(data)).read_all()
    return pq.read_table(pa.BufferReader(data))


def edges_digest(rows: pl.DataFrame, *, verify: bool) -> tuple[int, int, pl.DataFrame]:
    """The partition's star edges; the count and order-free digest of `(band, key, centre, leaf)` over every
    colliding group, which (unlike the distinct edges of a partition) do not depend on the partitioning."""
    edges = collision_edges(rows)
    if not verify:
        return 0, 0, edges
    stars = rows.with_columns(pl.col(NODE).min().over("band", KEY).alias("centre")).filter(
        pl.col(NODE) != pl.col("centre")
    )
    mixed = mix64(
        mix64(stars[KEY].to_numpy() ^ stars["band"].to_numpy().astype(np.uint64))
        ^ mix64(stars["centre"].to_numpy().astype(np.uint64)) * np.uint64(3)
        ^ stars[NODE].to_numpy().astype(np.uint64)
    )
    return stars.height, int(np.sum(mixed, dtype=np.uint64)), edges


# --------------------------------------------------------------------------------------------------
# Option a: one object per map task (header of offsets + segments), a gathered index, ranged reads.


def segments_map(setup: Setup, index: int) -> int:
    rows, parts = sorted_band_rows(setup, index)
    bounds = np.searchsorted(parts, np.arange(setup.partitions + 1))
    pieces = [
        encode(rows.slice(int(a), int(b - a)), setup.segment_format) if b > a else b""
        for a, b in zip(bounds[:-1], bounds[1:], strict=True)
    ]
    header_size = 8 * (setup.partitions + 3)
    offsets = header_size + np.concatenate([[0], np.cumsum([len(p) for p in pieces])])
    header = np.concatenate([[MAGIC, setup.partitions], offsets]).astype(np.int64).tobytes()
    fs, path = filesystem(setup.map_file(index, "seg"), {})
    fs.pipe_file(path, header + b"".join(pieces))  # write-once name: one PUT, no temporary + move
    return rows.num_rows


def segments_index(setup: Setup, _: int) -> int:
    """Gather every map object's header into one partition-major index: `(P, S, 2)` int64 (start, end)."""
    maps = len(setup.signatures)
    index = np.zeros((setup.partitions, maps, 2), dtype=np.int64)
    for m in range(maps):
        fs, path = filesystem(setup.map_file(m, "seg"), {})
        header = np.frombuffer(fs.cat_file(path, start=0, end=8 * (setup.partitions + 3)), dtype=np.int64)
        if header[0] != MAGIC or header[1] != setup.partitions:
            msg = f"{path}: not a segment file for {setup.partitions} partitions"
            raise RuntimeError(msg)
        index[:, m, 0], index[:, m, 1] = header[2:-1], header[3:]
    fs, path = filesystem(f"{setup.work}/bands/index.bin", {})
    fs.pipe_file(path, index.tobytes())
    return maps


def segments_reduce(setup: Setup, partition: int) -> tuple[int, int, int]:
    maps = len(setup.signatures)
    fs, path = filesystem(f"{setup.work}/bands/index.bin", {})
    row = 16 * maps
    ranges = np.frombuffer(fs.cat_file(path, start=partition * row, end=(partition + 1) * row), dtype=np.int64)
    ranges = ranges.reshape(maps, 2)
    wanted = [m for m in range(maps) if ranges[m, 1] > ranges[m, 0]]
    paths = [filesystem(setup.map_file(m, "seg"), {})[1] for m in wanted]
    blobs = fs.cat_ranges(paths, [int(ranges[m, 0]) for m in wanted], [int(ranges[m, 1]) for m in wanted])
    tables = [decode(blob, setup.segment_format) for blob in blobs]
    frame = pl.from_arrow(pa.concat_tables(tables)) if tables else pl.DataFrame(schema=_BAND_SCHEMA)
    assert isinstance(frame, pl.DataFrame)
    count, digest, edges = edges_digest(frame, verify=setup.verify)
    out_fs, out = filesystem(f"{setup.work}/edges/p={partition:05d}.parquet", {})
    out_fs.pipe_file(out, encode(edges.to_arrow(), "parquet"))
    return count, digest, int(frame.height)


# --------------------------------------------------------------------------------------------------
# Option a': one Parquet file per map task, a row group per partition, read through pyarrow.dataset.


def rowgroups_map(setup: Setup, index: int) -> int:
    rows, parts = sorted_band_rows(setup, index)
    rows = rows.append_column(PART, pa.array(parts.astype(np.int32)))
    bounds = np.searchsorted(parts, np.arange(setup.partitions + 1))
    fs, path = filesystem(setup.map_file(index, "parquet"), {})
    with fs.open(path, "wb") as handle, pq.ParquetWriter(handle, rows.schema, compression="zstd") as writer:
        for a, b in zip(bounds[:-1], bounds[1:], strict=True):
            if b > a:
                writer.write_table(rows.slice(int(a), int(b - a)), row_group_size=int(b - a))
    return rows.num_rows


def rowgroups_reduce(setup: Setup, partition: int) -> tuple[int, int, int]:
    import pyarrow.dataset as ds
    from pyarrow.fs import FSSpecHandler, PyFileSystem

    fs, _ = filesystem(f"{setup.work}/bands", {})
    paths = [filesystem(setup.map_file(m, "parquet"), {})[1] for m in range(len(setup.signatures))]
    dataset = ds.dataset(paths, format="parquet", filesystem=PyFileSystem(FSSpecHandler(fs)))
    table = dataset.to_table(filter=ds.field(PART) == partition, columns=["band", KEY, NODE])
    frame = pl.from_arrow(table)
    assert isinstance(frame, pl.DataFrame)
    count, digest, edges = edges_digest(frame, verify=setup.verify)
    out_fs, out = filesystem(f"{setup.work}/edges/p={partition:05d}.parquet", {})
    out_fs.pipe_file(out, encode(edges.to_arrow(), "parquet"))
    return count, digest, int(frame.height)


# --------------------------------------------------------------------------------------------------
# Option b: Ray Data's hash shuffle.


def _dump_counts(folder: str, before: dict[str, int]) -> None:
    """Storage counts of one Ray Data call, to a file of its own (the driver adds them up)."""
    counts = storage_counter.delta(before, storage_counter.snapshot())
    Path(folder, f"{os.getpid()}-{uuid.uuid4().hex}.json").write_text(json.dumps(counts))


def raydata_map(setup: Setup, counts_dir: str, batch: dict[str, Any]) -> pa.Table:
    before = storage_counter.snapshot()
    tables = []
    for index in batch["index"]:
        rows, _ = sorted_band_rows(setup, int(index))
        tables.append(rows)
    _dump_counts(counts_dir, before)
    return pa.concat_tables(tables)


def raydata_reduce(setup: Setup, counts_dir: str, block: pa.Table) -> pa.Table:
    before = storage_counter.snapshot()
    frame = pl.from_arrow(block.select(["band", KEY, NODE]))
    assert isinstance(frame, pl.DataFrame)
    count, digest, edges = edges_digest(frame, verify=setup.verify)
    out_fs, out = filesystem(f"{setup.work}/edges/b={uuid.uuid4().hex}.parquet", {})
    out_fs.pipe_file(out, encode(edges.to_arrow(), "parquet"))
    _dump_counts(counts_dir, before)
    return pa.table({"count": [count], "digest": [str(digest)], "rows": [block.num_rows]})


class RssSampler:
    """Samples every process of this process tree (Ray workers included) every `every` seconds: the largest
    RSS of one process and of the tree, and the CPU seconds of every process seen (also of processes that
    exit before the end, up to their last sample), counted from the first sample."""

    def __init__(self, every: float = 0.2) -> None:
        self.every, self.peak, self.peak_total = every, 0, 0
        self._first: dict[int, float] = {}
        self._last: dict[int, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def cpu_seconds(self) -> float:
        return sum(self._last[pid] - self._first[pid] for pid in self._last)

    def _run(self) -> None:
        psutil = psutil_module()
        me = psutil.Process()
        started = True
        while not self._stop.is_set():
            total = 0
            for proc in [me, *me.children(recursive=True)]:
                try:
                    rss = proc.memory_info().rss
                    times = proc.cpu_times()
                except psutil.Error:
                    continue
                cpu = times.user + times.system
                self._first.setdefault(proc.pid, cpu if started else 0.0)
                self._last[proc.pid] = cpu
                if proc.pid != me.pid:
                    self.peak = max(self.peak, rss)
                    total += rss
            started = False
            self.peak_total = max(self.peak_total, total)
            self._stop.wait(self.every)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


# --------------------------------------------------------------------------------------------------
# Driver


def current_reduce(plan: Any, partition: int) -> tuple[int, int, int]:
    from engine.dedup.shuffle import find_edges

    return find_edges(plan, partition), 0, 0


def run_tasks(setup: Setup, option: str, executor: Any) -> tuple[list[tuple[int, int, int]], MeasuringExecutor]:
    measuring = MeasuringExecutor(executor)
    maps = list(range(len(setup.signatures)))
    parts = list(range(setup.partitions))
    if option == "current":  # today's shuffle: bands and sort keys, one file per map task and partition
        from engine.dedup.plan import Plan
        from engine.dedup.shuffle import map_bands

        plan = Plan(setup.work, {}, setup.partitions, "bench", "first_seen", has_score=False, compression="zstd")
        measuring.map(functools.partial(map_bands, plan), list(enumerate(setup.signatures)), label="map")
        results = measuring.map(functools.partial(current_reduce, plan), parts, label="reduce")
    elif option == "segments":
        measuring.map(functools.partial(segments_map, setup), maps, label="map")
        measuring.map(functools.partial(segments_index, setup), [0], label="index")
        results = measuring.map(functools.partial(segments_reduce, setup), parts, label="reduce")
    else:
        measuring.map(functools.partial(rowgroups_map, setup), maps, label="map")
        results = measuring.map(functools.partial(rowgroups_reduce, setup), parts, label="reduce")
    return results, measuring


def run_raydata(setup: Setup) -> tuple[list[tuple[int, int, int]], Counter[str]]:
    import ray.data

    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = False
    with tempfile.TemporaryDirectory() as counts_dir:
        items = [{"index": i} for i in range(len(setup.signatures))]
        dataset = ray.data.from_items(items, override_num_blocks=len(items))
        dataset = dataset.map_batches(functools.partial(raydata_map, setup, counts_dir), batch_size=1)
        dataset = dataset.repartition(setup.partitions, keys=["band", KEY])
        dataset = dataset.map_batches(
            functools.partial(raydata_reduce, setup, counts_dir), batch_size=None, batch_format="pyarrow"
        )
        rows = dataset.take_all()
        counts: Counter[str] = Counter()
        for path in Path(counts_dir).glob("*.json"):
            counts.update(json.loads(path.read_text()))
    return [(int(r["count"]), int(r["digest"]), int(r["rows"])) for r in rows], counts


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dir", required=True)
    parser.add_argument("--option", choices=["current", "segments", "rowgroups", "raydata"], required=True)
    parser.add_argument("--partitions", type=int, default=None, help="default: the engine's automatic count")
    parser.add_argument("--segment-format", choices=["parquet", "ipc"], default="parquet")
    parser.add_argument("--no-verify", action="store_true", help="skip the star digest (timing runs)")
    parser.add_argument("--cpus", type=int, default=None)
    parser.add_argument("--results", default=str(RESULTS))
    args = parser.parse_args(argv)

    folder = Path(args.dir).resolve()
    truth = scale_data.load(str(folder))
    shards = truth["shards"]
    local_job = JobSpec.model_validate(
        {"input": {"path": "x"}, "output": {"path": str(folder)}, "dedup": {"type": "minhash"}}
    )
    partitions = args.partitions or partition_count(local_job, shards)
    dedup = scale_data.dedup_spec()
    work = folder / "_options" / args.option
    import shutil

    shutil.rmtree(work, ignore_errors=True)
    setup = Setup(
        signatures=tuple(f"count://{signatures_file(str(folder), dedup, rel)}" for rel in shards),
        work=f"count://{work}",
        partitions=partitions,
        segment_format=args.segment_format,
        verify=not args.no_verify,
    )
    cpus = start_ray(args.cpus)
    from engine.runner.ray import RayExecutor

    tree_cpu, started = process_tree_cpu(), time.perf_counter()
    phases: dict[str, Any] = {}
    with RssSampler() as sampler:
        if args.option == "raydata":
            results, counts = run_raydata(setup)
            task_cpu = None
            max_task_rss = None
        else:
            results, measuring = run_tasks(setup, args.option, RayExecutor())
            totals = measuring.totals()
            counts, task_cpu = Counter(totals.counts), totals.cpu
            max_task_rss = round(totals.max_task_peak_rss / 2**20, 1)
            phases = {name: phase.to_dict() for name, phase in measuring.phases.items()}
    wall = time.perf_counter() - started
    tree_cpu = process_tree_cpu() - tree_cpu
    docs = truth["spec"]["docs"]
    edges = sum(r[0] for r in results)
    digest = int(np.sum(np.array([r[1] for r in results], dtype=np.uint64), dtype=np.uint64))
    record = {
        "benchmark": "shuffle_options",
        "option": args.option,
        "segment_format": args.segment_format if args.option == "segments" else None,
        "git": git_state(),
        "machine": {**machine(), "ray_cpus": cpus},
        "command": " ".join(sys.argv),
        "docs": docs,
        "hub": truth["spec"]["hub"],
        "maps": len(shards),
        "partitions": partitions,
        "reduce_outputs": len(results),
        "band_rows": sum(r[2] for r in results),
        "verified": not args.no_verify,
        "star_rows": edges,
        "star_digest": str(digest),
        "wall_s": round(wall, 2),
        "task_cpu_s": round(task_cpu, 2) if task_cpu is not None else None,
        "process_tree_cpu_s": round(tree_cpu, 2),
        "sampled_tree_cpu_s": round(sampler.cpu_seconds(), 2),
        "cpu_us_per_doc": round(sampler.cpu_seconds() / docs * 1e6, 2),
        "max_task_peak_rss_mb": max_task_rss,
        "max_process_rss_mb": round(sampler.peak / 2**20, 1),
        "max_tree_rss_mb": round(sampler.peak_total / 2**20, 1),
        "requests": storage_counter.requests(counts),
        "counts": {k: v for k, v in sorted(counts.items()) if "@" not in k},
        "phases": phases,
    }
    append_record(record, Path(args.results))
    summary = ("option", "partitions", "star_rows", "star_digest", "wall_s", "process_tree_cpu_s", "requests")
    extra = {k: record[k] for k in ("sampled_tree_cpu_s", "max_process_rss_mb")}
    print(json.dumps({k: record[k] for k in summary} | extra))


if __name__ == "__main__":
    main()
