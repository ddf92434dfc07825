"""The global dedup phases, each a set of independent tasks that read and write Parquet through fsspec.

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

import functools
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
import pyarrow.compute as pc

from engine.dedup.bands import (
    DST,
    KEY,
    NODE,
    ROW_BITS,
    SRC,
    band_rows,
    collision_edges,
    key_partitions,
    node_ids,
    node_partitions,
)
from engine.dedup.components import (
    LABEL,
    both_directions,
    components_in_memory,
    edge_digest,
    large_star,
    small_star,
)
from engine.dedup.config import MinhashDedup
from engine.dedup.signatures import EXACT, KEYS, LENGTH, SCORE, dedup_root, signatures_file
from engine.io.layout import KEPT, REJECTED, STAGE, join, shard_file
from engine.io.markers import read_json, write_json
from engine.io.parquet import PartitionedWriter, iter_batches, open_parquet, read_table, write_table
from engine.io.paths import all_exist, filesystem, fingerprint, full_url
from engine.runner.executor import Executor
from engine.schema import CLUSTER_ID, CLUSTER_SIZE, DUPLICATE_OF, ID, REASON
from engine.spec import JobSpec

SHARD = "shard"
ROW = "row"

BYTES_PER_PARTITION = 128 << 20
"""Auto partition count: one partition per this many bytes of signature files (about 1M documents at
~135 bytes each), so that a band-collision task holds about 14M band rows (~1.3 GB peak, measured:
docs/scaling.md) whatever the corpus size."""

MAX_STEPS = 200
"""Components steps before giving up (large-star/small-star needs O(log^2 n) rounds)."""

_STAGE_KEPT = f"{STAGE}/{KEPT}"


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
        staged = _maybe_fingerprint(shard_file(out, _STAGE_KEPT, rel), options)
        if signatures is None and staged is not None:
            msg = (
                f"shard {rel}: {shard_file(out, _STAGE_KEPT, rel)} exists but its signature file "
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
    from engine.runner.unit import partition_column

    removal_settings = {
        "run": run,
        "partition_column": partition_column(job),
        "write_duplicates": dedup.write_duplicates,
        "add_cluster_columns": dedup.add_cluster_columns,
        "compression": job.output.compression,
    }
    removal = Removal(
        output=out,
        partition_column=partition_column(job),
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


def _list_parquet(plan: Plan, folder: str) -> list[str]:
    """URLs of the Parquet files under `folder` (committed ones only), sorted."""
    fs, path = filesystem(folder, plan.storage_options)
    fs.invalidate_cache(path)  # object stores cache listings; another task may have written here since
    try:
        found = fs.find(path)
    except FileNotFoundError:
        return []
    return sorted(full_url(fs, p) for p in found if p.endswith(".parquet"))


def _read_folder(plan: Plan, folder: str, schema: dict[str, Any]) -> pl.DataFrame:
    """Every Parquet file under `folder` as one frame (`schema` when there is none)."""
    frames: list[pl.DataFrame] = []
    for url in _list_parquet(plan, folder):
        frame = pl.from_arrow(read_table(url, plan.storage_options))
        if isinstance(frame, pl.DataFrame) and frame.height:
            frames.append(frame)
    if not frames:
        return pl.DataFrame(schema=schema)
    return pl.concat(frames, how="vertical_relaxed")


def _write_partitioned(
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


def _clear(plan: Plan, *folders: str) -> None:
    for folder in folders:
        fs, path = filesystem(plan.url(folder), plan.storage_options)
        if fs.exists(path):
            fs.rm(path, recursive=True)


def _marker(plan: Plan, name: str) -> dict[str, Any] | None:
    data = read_json(plan.url("_markers", f"{name}.json"), plan.storage_options)
    return data if data is not None and data.get("run") == plan.run else None


def _mark(plan: Plan, name: str, **extra: Any) -> None:
    write_json(plan.url("_markers", f"{name}.json"), {"run": plan.run, **extra}, plan.storage_options)


_LATER = {
    "bands": ("edges", "cc-step-", "components", "clusters"),
    "edges": ("cc-step-", "components", "clusters"),
    "components": ("clusters",),
    "clusters": (),
}


def _invalidate_after(plan: Plan, phase: str) -> None:
    """Drop the markers of the phases after `phase`, which is being redone (they read its output)."""
    fs, path = filesystem(plan.url("_markers"), plan.storage_options)
    if not fs.exists(path):
        return
    for found in fs.find(path):
        name = found.rsplit("/", 1)[-1].removesuffix(".json")
        if any(name == later or (later.endswith("-") and name.startswith(later)) for later in _LATER[phase]):
            fs.rm(found)


def _remove_vanished(plan: Plan, shards: Sequence[str]) -> None:
    """Remove the final outputs (and removal markers) of shards that are no longer in the input."""
    fs, path = filesystem(plan.url("removal"), plan.storage_options)
    if not fs.exists(path):
        return
    current = set(shards)
    for found in fs.find(path):
        if not found.endswith(".json"):
            continue
        rel = found[len(path.rstrip("/")) + 1 :].removesuffix(".json")
        if rel in current:
            continue
        marker = read_json(full_url(fs, found), plan.storage_options) or {}
        for url in marker.get("outputs", []):
            out_fs, out_path = filesystem(url, plan.storage_options)
            if out_fs.exists(out_path):
                out_fs.rm(out_path)
        fs.rm(found)


def _part(p: int) -> str:
    return f"p={p:05d}"


# --------------------------------------------------------------------------------------------------
# Phase B: band shuffle and collisions.

_EDGE_SCHEMA = {SRC: pl.Int64, DST: pl.Int64}
_LABEL_SCHEMA = {NODE: pl.Int64, LABEL: pl.Int64}


def map_bands(plan: Plan, item: tuple[int, str]) -> int:
    """One shard's signatures to band rows (by key hash) and sort-key rows (by node hash); rows mapped."""
    index, url = item
    fs, path = filesystem(url, plan.storage_options)
    if not fs.exists(path):
        return 0
    table = read_table(url, plan.storage_options)
    has_keys = np.asarray(table[KEYS].is_valid().to_numpy(zero_copy_only=False), dtype=bool)
    nodes = node_ids(index, table.num_rows)
    width = table.schema.field(KEYS).type.list_size
    valid = pa.array(has_keys, type=pa.bool_())
    flat = table[KEYS].filter(valid).combine_chunks().flatten()
    keys = np.asarray(flat.to_numpy(zero_copy_only=False), dtype=np.uint64).reshape(-1, width)
    rows = band_rows(keys, np.ones(len(keys), dtype=bool), nodes[has_keys])
    name = f"s={index:06d}"
    band_frame = pl.from_arrow(rows)
    assert isinstance(band_frame, pl.DataFrame)
    partitions = key_partitions(rows["band"].to_numpy().astype(np.int64), rows[KEY].to_numpy(), plan.partitions)
    _write_partitioned(plan, band_frame, partitions, plan.url("bands"), name)
    sort_keys = {
        NODE: pa.array(nodes[has_keys]),
        ID: table[ID].filter(valid),
        LENGTH: table[LENGTH].filter(valid),
    }
    if plan.has_score:
        sort_keys[SCORE] = table[SCORE].filter(valid)
    if plan.exact_first:
        sort_keys[EXACT] = table[EXACT].filter(valid)
    key_frame = pl.from_arrow(pa.table(sort_keys))
    assert isinstance(key_frame, pl.DataFrame)
    _write_partitioned(plan, key_frame, node_partitions(nodes[has_keys], plan.partitions), plan.url(KEYS), name)
    return int(has_keys.sum())


def find_edges(plan: Plan, partition: int) -> int:
    """Colliding band keys of one partition to star edges, written for components step 0; edges found."""
    rows = _read_folder(plan, plan.url("bands", _part(partition)), {"band": pl.Int32, KEY: pl.UInt64, NODE: pl.Int64})
    edges = collision_edges(rows)
    _write_edges(plan, both_directions(edges), 0, partition)
    return edges.height


def _write_edges(plan: Plan, edges: pl.DataFrame, step: int, source: int) -> None:
    partitions = node_partitions(edges[SRC].to_numpy(), plan.partitions)
    _write_partitioned(plan, edges, partitions, plan.url("cc", f"step-{step:05d}"), f"from={source:05d}")


# --------------------------------------------------------------------------------------------------
# Phase C: connected components.


def components_task(plan: Plan, partition: int) -> int:
    """Connected components of the whole (small) graph in one task; labels written by node partition."""
    del partition
    edges = _read_folder(plan, plan.url("cc", "step-00000"), _EDGE_SCHEMA)
    labels = components_in_memory(edges.filter(pl.col(SRC) < pl.col(DST)))
    partitions = node_partitions(labels[NODE].to_numpy(), plan.partitions)
    _write_partitioned(plan, labels, partitions, plan.url("cc", "labels-memory"), "labels")
    return labels.height


def star_task(plan: Plan, step: int, partition: int) -> tuple[int, int]:
    """One large-star (even steps) or small-star (odd steps) task; `(edges, digest)` of its input."""
    edges = _read_folder(plan, plan.url("cc", f"step-{step:05d}", _part(partition)), _EDGE_SCHEMA).unique()
    count, digest = edge_digest(edges)
    if step % 2 == 0:
        out, labels = large_star(edges)
        url = plan.url("cc", f"labels-{step:05d}", _part(partition), "labels.parquet")
        write_table(labels.to_arrow(), url, plan.storage_options, compression=plan.compression)
    else:
        out = small_star(edges)
    _write_edges(plan, both_directions(out), step + 1, partition)
    return count, digest


def connected_components(plan: Plan, executor: Executor, *, edges: int, in_memory_max_edges: int) -> str:
    """Run (or resume) phase C; the folder holding the final labels."""
    done = _marker(plan, "components")
    if done is not None:
        return str(done["labels"])
    _invalidate_after(plan, "components")
    if edges <= in_memory_max_edges:
        _clear(plan, "cc/labels-memory")
        executor.map(functools.partial(components_task, plan), [0], label="dedup: components (one task)")
        labels = "cc/labels-memory"
    else:
        labels = _star_rounds(plan, executor)
    _mark(plan, "components", labels=labels)
    return labels


def _star_rounds(plan: Plan, executor: Executor) -> str:
    digests: dict[int, int] = {}
    for step in range(MAX_STEPS):
        name = f"cc-step-{step:05d}"
        done = _marker(plan, name)
        if done is None:
            _clear(plan, f"cc/step-{step + 1:05d}", f"cc/labels-{step:05d}")
            kind = "large-star" if step % 2 == 0 else "small-star"
            results = executor.map(
                functools.partial(star_task, plan, step),
                list(range(plan.partitions)),
                label=f"dedup: components step {step} ({kind})",
            )
            digest = int(np.sum(np.array([d for _, d in results], dtype=np.uint64), dtype=np.uint64))
            _mark(plan, name, edges=sum(c for c, _ in results), digest=str(digest))
            _clear(plan, f"cc/step-{step:05d}")
            if step >= 2 and step % 2 == 0:
                _clear(plan, f"cc/labels-{step - 2:05d}")
            done = _marker(plan, name)
            assert done is not None
        digests[step] = int(done["digest"])
        if step >= 2 and step % 2 == 0 and digests[step] == digests[step - 2]:
            return f"cc/labels-{step:05d}"
    msg = f"connected components did not converge in {MAX_STEPS} steps; this is a bug, please report it"
    raise RuntimeError(msg)


# --------------------------------------------------------------------------------------------------
# Representatives: smallest (policy key, id, node) of each component.


def join_labels(plan: Plan, labels: str, partition: int) -> int:
    """Labels of one node partition joined with the nodes' sort keys, sent on by label; rows joined."""
    label_frame = _read_folder(plan, plan.url(labels, _part(partition)), _LABEL_SCHEMA)
    if label_frame.height == 0:
        return 0
    key_schema = _key_schema(plan)
    keys = _read_folder(plan, plan.url(KEYS, _part(partition)), key_schema)
    members = label_frame.join(keys, on=NODE, how="inner")
    if members.height != label_frame.height:
        missing = label_frame.height - members.height
        msg = f"dedup partition {partition}: {missing} labelled nodes lack sort keys"
        raise RuntimeError(msg)
    partitions = node_partitions(members[LABEL].to_numpy(), plan.partitions)
    _write_partitioned(plan, members, partitions, plan.url("members"), f"from={partition:05d}")
    return members.height


def _key_schema(plan: Plan) -> dict[str, Any]:
    schema: dict[str, Any] = {NODE: pl.Int64, ID: pl.String, LENGTH: pl.Int64}
    if plan.has_score:
        schema[SCORE] = pl.Float64
    if plan.exact_first:
        schema[EXACT] = pl.UInt64
    return schema


def sort_columns(keep: str) -> tuple[list[pl.Expr], list[bool]]:
    """Sort expressions (and descending flags) ranking a cluster's members, best first; ties by id, node."""
    if keep == "longest":
        return [pl.col(LENGTH), pl.col(ID), pl.col(NODE)], [True, False, False]
    if keep == "highest_score":
        return [pl.col(SCORE).fill_nan(None), pl.col(ID), pl.col(NODE)], [True, False, False]
    return [pl.col(ID), pl.col(NODE)], [False, False]


def choose_representatives(plan: Plan, partition: int) -> int:
    """Pick each cluster's representative; every member's fate, sent on by shard; clusters decided."""
    schema: dict[str, Any] = {LABEL: pl.Int64, **_key_schema(plan)}
    members = _read_folder(plan, plan.url("members", _part(partition)), schema)
    if members.height == 0:
        return 0
    by, descending = sort_columns(plan.keep)
    ranked = members.sort([pl.col(LABEL), *by], descending=[False, *descending], nulls_last=True)
    ranked = ranked.with_columns(
        pl.col(ID).first().over(LABEL).alias(CLUSTER_ID),
        pl.col(NODE).first().over(LABEL).alias("representative"),
        pl.len().over(LABEL).cast(pl.Int64).alias(CLUSTER_SIZE),
    )
    reason = pl.lit(f"{plan.kind}/duplicate")
    if plan.exact_first:
        is_exact = pl.col(EXACT) == pl.col(EXACT).first().over(LABEL)
        reason = pl.when(is_exact).then(pl.lit("exact/duplicate")).otherwise(reason)
    fates = ranked.select(
        (pl.col(NODE) // (1 << ROW_BITS)).alias(SHARD),
        (pl.col(NODE) % (1 << ROW_BITS)).alias(ROW),
        pl.col(ID),
        pl.when(pl.col(NODE) != pl.col("representative")).then(pl.col(CLUSTER_ID)).alias(DUPLICATE_OF),
        pl.col(CLUSTER_ID),
        pl.col(CLUSTER_SIZE),
        pl.when(pl.col(NODE) != pl.col("representative")).then(reason).alias(REASON),
    )
    partitions = fates[SHARD].to_numpy() % plan.partitions
    _write_partitioned(plan, fates, partitions, plan.url("clusters"), f"from={partition:05d}")
    return int(ranked[LABEL].n_unique())


# --------------------------------------------------------------------------------------------------
# Phase D: removal, one task per shard.

_FATE_SCHEMA: dict[str, Any] = {
    SHARD: pl.Int64,
    ROW: pl.Int64,
    ID: pl.String,
    DUPLICATE_OF: pl.String,
    CLUSTER_ID: pl.String,
    CLUSTER_SIZE: pl.Int64,
    REASON: pl.String,
}


def remove_duplicates(plan: Plan, removal: Removal, item: tuple[int, str]) -> int:
    """Write shard `rel`'s final kept documents (and its removed duplicates); duplicates removed."""
    index, rel = item
    options = plan.storage_options
    marker_url = plan.url("removal", f"{rel}.json")
    previous = read_json(marker_url, options)
    if previous is not None and previous.get("run") == removal.run and all_exist(previous["outputs"], options):
        return int(previous["duplicates"])
    staged = shard_file(removal.output, _STAGE_KEPT, rel)
    fs, path = filesystem(staged, options)
    if not fs.exists(path):
        return 0
    fates = (
        _read_folder(plan, plan.url("clusters", _part(index % plan.partitions)), _FATE_SCHEMA)
        .filter(pl.col(SHARD) == index)
        .sort(ROW)
    )
    fate_rows = fates[ROW].to_numpy()
    fate_table = fates.to_arrow()
    with open_parquet(staged, options) as parquet:
        schema = parquet.schema_arrow
    kept_schema = schema
    if removal.add_cluster_columns:
        kept_schema = kept_schema.append(pa.field(CLUSTER_ID, pa.string()))
        kept_schema = kept_schema.append(pa.field(CLUSTER_SIZE, pa.int64()))
    kept = PartitionedWriter(
        removal.output,
        KEPT,
        rel,
        kept_schema,
        partition_column=removal.partition_column,
        storage_options=options,
        compression=plan.compression,
    )
    writers = [kept]
    duplicates_writer = None
    if removal.write_duplicates:
        dup_schema = kept_schema.append(pa.field(REASON, pa.string())).append(pa.field(DUPLICATE_OF, pa.string()))
        duplicates_writer = PartitionedWriter(
            removal.output,
            REJECTED,
            f"{rel}.duplicates",
            dup_schema,
            storage_options=options,
            compression=plan.compression,
        )
        writers.append(duplicates_writer)
    removed = 0
    offset = 0
    try:
        for batch in iter_batches(staged, options, removal.batch_rows):
            table = pa.Table.from_batches([batch])
            n = table.num_rows
            lo, hi = np.searchsorted(fate_rows, [offset, offset + n])
            local = fate_rows[lo:hi] - offset
            fate_slice = fate_table.slice(int(lo), int(hi - lo))
            _check_ids(table, local, fate_slice, rel)
            position = np.full(n, -1, dtype=np.int64)
            position[local] = np.arange(len(local))
            take = pa.array(position, mask=position < 0)
            duplicate_of = fate_slice[DUPLICATE_OF].take(take)
            reasons = fate_slice[REASON].take(take)
            if removal.add_cluster_columns:
                table = table.append_column(CLUSTER_ID, fate_slice[CLUSTER_ID].take(take))
                table = table.append_column(CLUSTER_SIZE, fate_slice[CLUSTER_SIZE].take(take))
            is_duplicate = pc.is_valid(duplicate_of)
            kept.write(table.filter(pc.invert(is_duplicate)))
            n_dups = int(pc.sum(is_duplicate).as_py() or 0)
            removed += n_dups
            if duplicates_writer is not None and n_dups:
                dups = table.filter(is_duplicate)
                dups = dups.append_column(REASON, reasons.filter(is_duplicate))
                dups = dups.append_column(DUPLICATE_OF, duplicate_of.filter(is_duplicate))
                duplicates_writer.write(dups)
            offset += n
        if len(fate_rows) and int(fate_rows[-1]) >= offset:
            msg = f"shard {rel}: dedup refers to row {int(fate_rows[-1])} but {staged} holds {offset} rows"
            raise RuntimeError(msg)
        outputs: list[str] = []
        for writer in writers:
            outputs.extend(writer.close())
    except BaseException:
        for writer in writers:
            writer.abort()
        raise
    if previous is not None:
        stale = [u for u in previous.get("outputs", []) if u not in outputs]
        for url in stale:
            stale_fs, stale_path = filesystem(url, options)
            if stale_fs.exists(stale_path):
                stale_fs.rm(stale_path)
    write_json(marker_url, {"run": removal.run, "duplicates": removed, "outputs": sorted(outputs)}, options)
    return removed


def _check_ids(table: pa.Table, local: npt.NDArray[np.int64], fates: pa.Table, rel: str) -> None:
    if len(local) == 0:
        return
    ids = table[ID].take(pa.array(local))
    if not pc.all(pc.equal(ids.cast(pa.string()), fates[ID])).as_py():
        msg = (
            f"shard {rel}: the staged kept documents and their signatures disagree (ids differ); "
            "delete the shard's _units marker and rerun so phase A rewrites both"
        )
        raise RuntimeError(msg)


# --------------------------------------------------------------------------------------------------
# The driver.


def run_dedup(job: JobSpec, shards: list[str], executor: Executor) -> dict[str, int]:
    """Run (or resume) phases B, C and D over every shard; duplicates removed per shard.

    `shards` are the input shards' relative names, sorted; each has its staged kept documents and its
    signatures from phase A. The final kept documents are written to `kept/`.
    """
    dedup = job.dedup
    if dedup is None:
        msg = "run_dedup needs a job with a `dedup:` section"
        raise ValueError(msg)
    shards = sorted(shards)
    plan, removal = make_plan(job, shards)
    out = job.output.path
    signature_urls = [signatures_file(out, dedup, rel) for rel in shards]

    _remove_vanished(plan, shards)
    if _marker(plan, "bands") is None:
        _invalidate_after(plan, "bands")
        _clear(plan, "bands", KEYS, "cc", "members", "clusters")
        executor.map(functools.partial(map_bands, plan), list(enumerate(signature_urls)), label="dedup: band keys")
        _mark(plan, "bands")
    edges_marker = _marker(plan, "edges")
    if edges_marker is None:
        _invalidate_after(plan, "edges")
        _clear(plan, "cc", "members", "clusters")
        counts = executor.map(
            functools.partial(find_edges, plan), list(range(plan.partitions)), label="dedup: collisions"
        )
        _mark(plan, "edges", edges=sum(counts))
        edges_marker = _marker(plan, "edges")
        assert edges_marker is not None
    labels = connected_components(
        plan, executor, edges=int(edges_marker["edges"]), in_memory_max_edges=dedup.in_memory_max_edges
    )
    if _marker(plan, "clusters") is None:
        _invalidate_after(plan, "clusters")
        _clear(plan, "members", "clusters")
        parts = list(range(plan.partitions))
        executor.map(functools.partial(join_labels, plan, labels), parts, label="dedup: cluster members")
        clusters = executor.map(functools.partial(choose_representatives, plan), parts, label="dedup: representatives")
        _mark(plan, "clusters", clusters=sum(clusters))
    removed = executor.map(
        functools.partial(remove_duplicates, plan, removal), list(enumerate(shards)), label="dedup: removal"
    )
    return dict(zip(shards, removed, strict=True))


__all__ = ["Plan", "auto_partitions", "run_dedup"]
