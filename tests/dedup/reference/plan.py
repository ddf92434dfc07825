"""Reference (frozen, see the package).

The global dedup phases' shared ground: the plan every task gets, node addressing, and storage helpers.

Each phase is a set of independent tasks that read and write Parquet through fsspec, one module each
(`shuffle`, `components`, `representatives`, `removal`); `engine.runner.dedup` sequences them.

Layout under `OUT/_dedup/<parameters>/` (`<parameters>` names everything that changes signatures, e.g.
`minhash-n5-b14-r8-s1-c500000-rensa2-noscore`):

    signatures/<rel>.parquet          phase A (engine.dedup.signatures): id, band keys, sort-key columns
    work/_markers/<phase>.json         a finished phase, with the hash of its inputs (the resume points)
    work/bands/p=<p>/s=<shard>.parquet (band, key, node) rows, partitioned by hash(band, key)
    work/keys/p=<p>/s=<shard>.parquet  (node, id, length[, score]) rows, partitioned by hash(node)
    work/cc/step-<k>/p=<p>/from=<q>.parquet  edges (both directions) entering components step k
    work/cc/labels-<k>/p=<p>.parquet   (node, label): label = smallest node of the node's component
    work/members/p=<p>/from=<q>.parquet  labelled nodes with their sort keys, partitioned by hash(label)
    work/clusters/p=<p>/from=<q>.parquet  every clustered document: shard, row, representative, size
    work/removal/<rel>.json            phase D marker of one shard (duplicates removed, files written)

Phases: B (band shuffle: one task per signature file, then one per partition emitting star edges),
C (connected components: in one task when small, else alternating large-star/small-star steps, one task per
partition each, every step a resume point), representatives (join labels with sort keys, then per cluster
the smallest `(policy key, id, node)`), D (one task per shard: drop duplicates from `_stage/kept`, write
`kept/` and the duplicates). Every marker carries the hash of the run's inputs (dedup parameters, partition
count and the fingerprints of every signature and staged file), so a changed input set redoes the later
phases and an unchanged one resumes after the last finished phase or step. The chosen documents do not
depend on the partition count, the executor or the order in which tasks finish.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import polars as pl
import pyarrow as pa

from engine.dedup.minhash import mix64
from engine.dedup.signatures import dedup_root, signatures_file
from engine.io.layout import KEPT, STAGE, join, shard_file
from engine.io.markers import read_json, write_json
from engine.io.parquet import read_table, write_table
from engine.io.paths import filesystem, fingerprint, list_files, relative_path, remove_files
from engine.spec import JobSpec, MinhashDedup

SHARD = "shard"
ROW = "row"
NODE = "node"
SRC = "u"
DST = "v"

ROW_BITS = 32
ROW_MASK = (1 << ROW_BITS) - 1

BYTES_PER_PARTITION = 128 << 20
"""Auto partition count: one partition per this many bytes of signature files (about 1M documents at
~135 bytes each), so that a band-collision task holds about 14M band rows (~1.3 GB peak, measured:
docs/scaling.md) whatever the corpus size."""

STAGE_KEPT = f"{STAGE}/{KEPT}"


def node_ids(shard_index: int, n_rows: int) -> npt.NDArray[np.int64]:
    """Node ids of the `n_rows` documents of shard number `shard_index` (in the sorted shard list)."""
    if n_rows > ROW_MASK:
        msg = f"a shard holds {n_rows} kept documents; at most {ROW_MASK} are supported, split the shard"
        raise ValueError(msg)
    return (np.int64(shard_index) << np.int64(ROW_BITS)) + np.arange(n_rows, dtype=np.int64)


def node_partitions(nodes: npt.NDArray[np.int64], partitions: int) -> npt.NDArray[np.int64]:
    """Partition of each node (edges, labels and sort keys are partitioned this way)."""
    return (mix64(nodes.astype(np.uint64)) % np.uint64(partitions)).astype(np.int64)


# --------------------------------------------------------------------------------------------------
# The plan every task receives (small and picklable: paths and parameters, never data).


@dataclass(frozen=True)
class Plan:
    """Where a dedup run works and with what parameters; passed to every task."""

    work: str
    storage_options: dict[str, Any]
    partitions: int
    run: str
    keep: str
    has_score: bool
    compression: str
    kind: str = "minhash"
    exact_first: bool = False

    def url(self, *parts: str) -> str:
        return join(self.work, *parts)


@dataclass(frozen=True)
class Removal:
    """Phase D's parameters (besides the plan)."""

    output: str
    partition_column: str | None
    write_duplicates: bool
    add_cluster_columns: bool
    batch_rows: int
    run: str


def auto_partitions(signature_bytes: int) -> int:
    """Shuffle partitions for a corpus whose signature files hold `signature_bytes` bytes."""
    return max(1, math.ceil(signature_bytes / BYTES_PER_PARTITION))


def _maybe_fingerprint(url: str, storage_options: dict[str, Any]) -> dict[str, Any] | None:
    try:
        return fingerprint(url, storage_options)
    except FileNotFoundError:
        return None


def make_plan(job: JobSpec, shards: Sequence[str]) -> tuple[Plan, Removal]:
    """The run's plan: fingerprints every input, fixes the partition count, hashes it all."""
    dedup = job.dedup
    if dedup is None:
        msg = "make_plan needs a job with a `dedup:` section"
        raise ValueError(msg)
    out, options = job.output.path, job.output.storage_options
    inputs = []
    signature_bytes = 0
    for rel in shards:
        signatures = _maybe_fingerprint(signatures_file(out, dedup, rel), options)
        staged = _maybe_fingerprint(shard_file(out, STAGE_KEPT, rel), options)
        if signatures is None and staged is not None:
            msg = (
                f"shard {rel}: {shard_file(out, STAGE_KEPT, rel)} exists but its signature file "
                f"{signatures_file(out, dedup, rel)} does not; rerun the job so phase A rewrites it"
            )
            raise FileNotFoundError(msg)
        signature_bytes += int(signatures["size"]) if signatures else 0
        inputs.append([rel, signatures, staged])
    partitions = dedup.partitions or auto_partitions(signature_bytes)
    core = dedup.model_dump(exclude={"write_duplicates", "add_cluster_columns"})
    run = _digest({"dedup": core, "partitions": partitions, "inputs": inputs})
    plan = Plan(
        work=join(dedup_root(out, dedup), "work"),
        storage_options=dict(options),
        partitions=partitions,
        run=run,
        keep=dedup.keep,
        has_score=dedup.score_column is not None,
        compression=job.output.compression,
        kind=dedup.type,
        exact_first=isinstance(dedup, MinhashDedup) and dedup.exact_first,
    )
    removal_settings = {
        "run": run,
        "partition_column": job.partition_column(),
        "write_duplicates": dedup.write_duplicates,
        "add_cluster_columns": dedup.add_cluster_columns,
        "compression": job.output.compression,
    }
    removal = Removal(
        output=out,
        partition_column=job.partition_column(),
        write_duplicates=dedup.write_duplicates,
        add_cluster_columns=dedup.add_cluster_columns,
        batch_rows=job.input.batch_rows,
        run=_digest(removal_settings),
    )
    return plan, removal


def _digest(data: Any) -> str:
    return hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()[:20]


# --------------------------------------------------------------------------------------------------
# Storage helpers.


def read_folder(plan: Plan, folder: str, schema: dict[str, Any]) -> pl.DataFrame:
    """Every Parquet file under `folder` as one frame (`schema` when there is none)."""
    frames: list[pl.DataFrame] = []
    for url in list_files(folder, plan.storage_options, "**/*.parquet"):
        frame = pl.from_arrow(read_table(url, plan.storage_options))
        if isinstance(frame, pl.DataFrame) and frame.height:
            frames.append(frame)
    if not frames:
        return pl.DataFrame(schema=schema)
    return pl.concat(frames, how="vertical_relaxed")


def write_partitioned(
    plan: Plan, frame: pl.DataFrame, partitions: npt.NDArray[np.int64], folder: str, name: str
) -> None:
    """Rows of `frame` to `folder/p=<partition>/<name>.parquet`, one file per partition present."""
    if frame.height == 0:
        return
    table = frame.to_arrow()
    order = np.argsort(partitions, kind="stable")
    table = table.take(pa.array(order))
    present, starts, counts = np.unique(partitions[order], return_index=True, return_counts=True)
    for part, start, count in zip(present.tolist(), starts.tolist(), counts.tolist(), strict=True):
        url = join(folder, f"p={part:05d}", f"{name}.parquet")
        write_table(table.slice(start, count), url, plan.storage_options, compression=plan.compression)


def clear(plan: Plan, *folders: str) -> None:
    for folder in folders:
        fs, path = filesystem(plan.url(folder), plan.storage_options)
        if fs.exists(path):
            fs.rm(path, recursive=True)


def read_marker(plan: Plan, name: str) -> dict[str, Any] | None:
    data = read_json(plan.url("_markers", f"{name}.json"), plan.storage_options)
    return data if data is not None and data.get("run") == plan.run else None


def write_marker(plan: Plan, name: str, **extra: Any) -> None:
    write_json(plan.url("_markers", f"{name}.json"), {"run": plan.run, **extra}, plan.storage_options)


_LATER = {
    "bands": ("edges", "cc-step-", "components", "clusters"),
    "edges": ("cc-step-", "components", "clusters"),
    "components": ("clusters",),
    "clusters": (),
}


def invalidate_after(plan: Plan, phase: str) -> None:
    """Drop the markers of the phases after `phase`, which is being redone (they read its output)."""
    for url in list_files(plan.url("_markers"), plan.storage_options, "*.json"):
        name = url.rsplit("/", 1)[-1].removesuffix(".json")
        if any(name == later or (later.endswith("-") and name.startswith(later)) for later in _LATER[phase]):
            remove_files([url], plan.storage_options)


def remove_vanished_shards(plan: Plan, shards: Sequence[str]) -> None:
    """Remove the final outputs (and removal markers) of shards that are no longer in the input."""
    folder = plan.url("removal")
    current = set(shards)
    for url in list_files(folder, plan.storage_options, "**/*.json"):
        rel = relative_path(url, folder, plan.storage_options).removesuffix(".json")
        if rel in current:
            continue
        marker = read_json(url, plan.storage_options) or {}
        remove_files([*marker.get("outputs", []), url], plan.storage_options)


def part_dir(p: int) -> str:
    return f"p={p:05d}"
