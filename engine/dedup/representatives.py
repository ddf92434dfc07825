"""Representatives: each cluster's best member by `(policy key, id, node)`, and every clustered document's fate.

Three tasks, every step combinable so that a cluster of a million copies costs no task more than its share:

- `members_task` (one per shard group `g`: shards `s` with `s mod G == g`): reads the group's labels (one ranged
  GET per labels object) and the sort keys of its clustered rows from the group's signature files, ranks them, and
  writes per label its best member and member count (a *partial*: label, node, id, length, [score], [exact], count,
  group) as one object of `Q` segments by the top bits of `mix64(label)`; and the group's clustered members
  (node, label, id, [exact]) as a second, single-segment object.
- `representatives_task` (one per label partition): picks each label's best partial (the same ranking: the best of
  the groups' bests is the best) and adds up the counts (the cluster size), then writes, for every (label, group)
  pair it saw, `(label, node, id, [exact], size)` of the representative into segment `group` of one object.
- `fates_task` (one per shard group): joins its members with their representatives and writes one Parquet fate
  file per shard of the group, `state/fates/<rel>.parquet`: `row, id, duplicate_of, cluster_id, cluster_size,
  reason` for every clustered row (sorted by row; `duplicate_of` and `reason` null for the representative). It is
  the shard's deletion vector, read by its removal task.

Ranking: `first_seen` by node (build order: the shard's first build, its name, the row; `engine.dedup.state`);
`longest` by `(-length, id, node)`; `highest_score` by `(-score, id, node)` with missing or NaN scores last.
The representative's id is the cluster id.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.compute as pc

from engine.dedup.components import LABEL, LABEL_COLUMNS
from engine.dedup.plan import NODE, ROW, ROW_BITS, ROW_MASK, Graph, Plan, node_keys
from engine.dedup.signatures import EXACT, LENGTH, SCORE
from engine.errors import InputError
from engine.io.parquet import read_table, write_table
from engine.io.paths import filesystem
from engine.io.segments import (
    read_arrays,
    read_object,
    read_partition,
    write_grouped,
    write_partitioned,
    write_segments,
)
from engine.schema import CLUSTER_ID, CLUSTER_SIZE, DUPLICATE_OF, ID, REASON
from engine.stats import binned_cluster_sizes

FATE_SCHEMA = pa.schema(
    [
        pa.field(ROW, pa.int64()),
        pa.field(ID, pa.string()),
        pa.field(DUPLICATE_OF, pa.string()),
        pa.field(CLUSTER_ID, pa.string()),
        pa.field(CLUSTER_SIZE, pa.int64()),
        pa.field(REASON, pa.string()),
        pa.field(LABEL, pa.int64()),
    ]
)
"""A fate file: one row per clustered document of the shard, sorted by row (its position in the staged file);
`label` is its representative's node (the nightly state: engine.dedup.index)."""
CLUSTERS_SCHEMA = pa.schema(
    [
        pa.field(LABEL, pa.int64()),
        pa.field(ID, pa.string()),
        pa.field(LENGTH, pa.int64()),
        pa.field(SCORE, pa.float64()),
        pa.field(EXACT, pa.uint64()),
        pa.field(CLUSTER_SIZE, pa.int64()),
        pa.field("alive", pa.bool_()),
    ]
)
"""The clusters state (engine.dedup.index): per label (its representative's node) the representative's ranking
keys and id, and the cluster's size."""

COUNT = "count"
GROUP = "group"
REPRESENTATIVE = "representative"


@dataclass(frozen=True)
class Objects:
    """A set of segmented objects and their index."""

    urls: tuple[str, ...]
    sizes: tuple[int, ...]
    index: str


@dataclass(frozen=True)
class MembersResult:
    url: str
    size: int
    rows_url: str
    rows_size: int
    members: int


@dataclass(frozen=True)
class RepresentativesResult:
    url: str
    size: int
    clusters_url: str
    """The clusters of this label partition, for the nightly state (`CLUSTERS_SCHEMA`)."""
    clusters: int
    sizes: dict[str, int]
    """Clusters per fixed size bin (`engine.stats.cluster_size_bin`): merged into the run's stats."""
    largest: int


def sort_columns(keep: str) -> tuple[list[pl.Expr], list[bool]]:
    """Sort expressions (and descending flags) ranking a cluster's members, best first; ties by id, then node."""
    if keep == "longest":
        return [pl.col(LENGTH), pl.col(ID), pl.col(NODE)], [True, False, False]
    if keep == "highest_score":
        return [pl.col(SCORE).fill_nan(None), pl.col(ID), pl.col(NODE)], [True, False, False]
    return [pl.col(NODE)], [False]  # first_seen: the smallest node, first in build order (engine.dedup.state)


def best_per_label(frame: pl.DataFrame, keep: str) -> pl.DataFrame:
    """The best row of each label (by the policy's ranking), in label order."""
    by, descending = sort_columns(keep)
    ranked = frame.sort([pl.col(LABEL), *by], descending=[False, *descending], nulls_last=True)
    return ranked.unique(subset=[LABEL], keep="first", maintain_order=True)


def key_columns(plan: Plan) -> list[str]:
    """The signature columns ranking members (besides the id)."""
    columns = [LENGTH]
    if plan.has_score:
        columns.append(SCORE)
    if plan.exact_first:
        columns.append(EXACT)
    return columns


def frame_of(table: pa.Table) -> pl.DataFrame:
    frame = pl.from_arrow(table)
    assert isinstance(frame, pl.DataFrame)
    return frame


def members_task(plan: Plan, graph: Graph, labels: Objects, group: int) -> MembersResult:
    """Partial bests and members of shard group `group`; what it wrote."""
    found = read_arrays(
        list(labels.urls), labels.index, group, plan.groups, plan.groups, plan.storage_options, LABEL_COLUMNS
    )
    nodes, first = np.unique(found[NODE], return_index=True)  # a heavy node's label may come from several tasks
    node_labels = found[LABEL][first]
    del found
    columns = key_columns(plan)
    pieces = []
    for shard in plan.group_shards(group):
        here = (nodes >> ROW_BITS) == shard
        if not here.any():
            continue
        rows = nodes[here] & ROW_MASK
        signatures = read_table(plan.signature_url(shard), plan.storage_options, columns=[ID, *columns])
        if int(rows[-1]) >= signatures.num_rows:
            msg = f"{plan.signature_url(shard)} holds {signatures.num_rows} rows; dedup refers to row {int(rows[-1])}"
            raise RuntimeError(msg)
        picked = signatures.take(pa.array(rows))
        pieces.append(
            picked.append_column(NODE, pa.array(nodes[here], type=pa.int64())).append_column(
                LABEL, pa.array(node_labels[here], type=pa.int64())
            )
        )
    schema = {NODE: pl.Int64, LABEL: pl.Int64, ID: pl.String, LENGTH: pl.Int64, SCORE: pl.Float64, EXACT: pl.UInt64}
    members = (
        pl.concat([frame_of(p) for p in pieces], how="vertical_relaxed")
        if pieces
        else pl.DataFrame(schema={k: v for k, v in schema.items() if k in {NODE, LABEL, ID, *columns}})
    )
    members = members.with_columns(pl.col(ID).cast(pl.String))
    counts = members.group_by(LABEL).agg(pl.len().cast(pl.Int64).alias(COUNT))
    partials = best_per_label(members, plan.keep).join(counts, on=LABEL).with_columns(pl.lit(group).alias(GROUP))
    url = plan.object_url("members", "g", group)
    table = partials.to_arrow()
    size, _ = write_partitioned(
        url, table, node_keys(partials[LABEL].to_numpy()), graph.partitions, plan.storage_options
    )
    kept = [NODE, LABEL, ID] + ([EXACT] if plan.exact_first else [])
    rows_url = plan.object_url("members", "g", group, suffix="rows")
    rows_size = write_segments(rows_url, [(0, members.select(kept).to_arrow())], 1, plan.storage_options)
    return MembersResult(url, size, rows_url, rows_size, members.height)


def representatives_task(plan: Plan, graph: Graph, partials: Objects, partition: int) -> RepresentativesResult:
    """The representative and size of every label of one label partition, sent to the groups holding its members."""
    tables = list(
        read_partition(
            list(partials.urls), partials.index, partition, graph.partitions, graph.partitions, plan.storage_options
        )
    )
    url = plan.object_url("reps", "q", partition)
    clusters_url = plan.clusters_url(partition)
    if not tables:
        write_table(CLUSTERS_SCHEMA.empty_table(), clusters_url, plan.storage_options, compression=plan.compression)
        size = write_segments(url, [], plan.groups, plan.storage_options)
        return RepresentativesResult(url, size, clusters_url, 0, {}, 0)
    frame = pl.concat([frame_of(t) for t in tables], how="vertical_relaxed")
    best = best_per_label(frame, plan.keep)
    sizes = frame.group_by(LABEL).agg(pl.col(COUNT).sum().cast(pl.Int64).alias(CLUSTER_SIZE))
    chosen = [LABEL, pl.col(NODE).alias(REPRESENTATIVE), ID] + ([EXACT] if plan.exact_first else [])
    representatives = best.select(chosen).join(sizes, on=LABEL)
    state = best.join(sizes, on=LABEL).select(
        pl.col(NODE).alias(LABEL),
        pl.col(ID),
        pl.col(LENGTH),
        (pl.col(SCORE) if plan.has_score else pl.lit(None, dtype=pl.Float64)).alias(SCORE),
        (pl.col(EXACT) if plan.exact_first else pl.lit(None, dtype=pl.UInt64)).alias(EXACT),
        pl.col(CLUSTER_SIZE),
        pl.lit(True).alias("alive"),
    )
    table = state.sort(LABEL).to_arrow().cast(CLUSTERS_SCHEMA)
    write_table(table, clusters_url, plan.storage_options, compression=plan.compression)
    pairs = frame.select(LABEL, GROUP).unique().join(representatives, on=LABEL)
    table = pairs.drop(GROUP).to_arrow()
    size, _ = write_grouped(url, table, pairs[GROUP].to_numpy().astype(np.int64), plan.groups, plan.storage_options)
    by_size = sizes[CLUSTER_SIZE].value_counts()
    histogram = binned_cluster_sizes(dict(by_size.iter_rows()))
    largest = max(by_size[CLUSTER_SIZE].to_list(), default=0)
    return RepresentativesResult(url, size, clusters_url, representatives.height, dict(histogram), largest)


@dataclass(frozen=True)
class FatesResult:
    """Duplicates per shard of a group, and the churn against the fates of the last build (same shard content
    only): documents that were kept and are now duplicates, and duplicates that are kept again."""

    duplicates: dict[int, int]
    left_kept: int = 0
    returned_to_kept: int = 0


IDENTITY_KEY = b"corpus_engine_shard_identity"


def churn(plan: Plan, shard: int, duplicate_ids: set[str]) -> tuple[int, int]:
    """`(left kept, returned to kept)` of one shard against its previous fate file, when that file describes the
    same content (phase A's identity, stored in its metadata); `(0, 0)` otherwise (a new or changed shard)."""
    url = plan.fates_url(shard)
    fs, path = filesystem(url, plan.storage_options)
    if not plan.identities or not fs.exists(path):
        return 0, 0
    try:
        previous = read_table(url, plan.storage_options, columns=[ID, DUPLICATE_OF])
    except InputError:
        return 0, 0
    metadata = previous.schema.metadata or {}
    if metadata.get(IDENTITY_KEY) != plan.identities[shard].encode():
        return 0, 0
    before = set(previous.filter(pc.is_valid(previous[DUPLICATE_OF]))[ID].to_pylist())
    return len(duplicate_ids - before), len(before - duplicate_ids)


def fates_task(plan: Plan, representatives: Objects, members: tuple[str, int], group: int) -> FatesResult:
    """Every clustered row's fate, one Parquet file per shard of the group; duplicates per shard and churn."""
    tables = read_partition(
        list(representatives.urls), representatives.index, group, plan.groups, plan.groups, plan.storage_options
    )
    reps = [frame_of(t) for t in tables]
    rows = read_object(members[0], members[1], 1, plan.storage_options)
    duplicates: dict[int, int] = {}
    schema: dict[str, Any] = {
        ROW: pl.Int64,
        ID: pl.String,
        DUPLICATE_OF: pl.String,
        CLUSTER_ID: pl.String,
        CLUSTER_SIZE: pl.Int64,
        REASON: pl.String,
        LABEL: pl.Int64,
    }
    if rows and reps:
        member_frame = pl.concat([frame_of(t) for t in rows], how="vertical_relaxed")
        rep_frame = pl.concat(reps, how="vertical_relaxed")
        rep_frame = rep_frame.rename({ID: CLUSTER_ID} | ({EXACT: "rep_exact"} if plan.exact_first else {}))
        joined = member_frame.join(rep_frame, on=LABEL, how="left")
        missing = joined.filter(pl.col(REPRESENTATIVE).is_null()).height
        if missing:
            msg = f"dedup shard group {group}: {missing} clustered documents have no representative; this is a bug"
            raise RuntimeError(msg)
        is_duplicate = pl.col(NODE) != pl.col(REPRESENTATIVE)
        reason = pl.lit(f"{plan.kind}/duplicate")
        if plan.exact_first:
            reason = pl.when(pl.col(EXACT) == pl.col("rep_exact")).then(pl.lit("exact/duplicate")).otherwise(reason)
        fates = joined.select(
            (pl.col(NODE) // (1 << ROW_BITS)).alias("shard"),
            (pl.col(NODE) % (1 << ROW_BITS)).alias(ROW),
            pl.col(ID),
            pl.when(is_duplicate).then(pl.col(CLUSTER_ID)).alias(DUPLICATE_OF),
            pl.col(CLUSTER_ID),
            pl.col(CLUSTER_SIZE),
            pl.when(is_duplicate).then(reason).alias(REASON),
            pl.col(REPRESENTATIVE).alias(LABEL),
        ).sort("shard", ROW)
    else:
        fates = pl.DataFrame(schema={"shard": pl.Int64, **schema})
    by_shard = {int(key[0]): part for key, part in fates.partition_by("shard", as_dict=True).items()}
    left = returned = 0
    for shard in plan.group_shards(group):
        part = by_shard.get(shard)
        table = FATE_SCHEMA.empty_table() if part is None else part.drop("shard").to_arrow().cast(FATE_SCHEMA)
        removed = table.filter(pc.is_valid(table[DUPLICATE_OF]))
        gone, back = churn(plan, shard, set(removed[ID].to_pylist()))
        left, returned = left + gone, returned + back
        if plan.identities:
            table = table.replace_schema_metadata({IDENTITY_KEY: plan.identities[shard].encode()})
        write_table(table, plan.fates_url(shard), plan.storage_options, compression=plan.compression)
        duplicates[shard] = removed.num_rows
    return FatesResult(duplicates, left, returned)
