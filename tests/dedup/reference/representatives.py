"""Reference (frozen, see the package).

Representatives: each cluster's best member by `(policy key, id, node)`, and every member's fate.

Two tasks per partition: `join_labels` joins a node partition's component labels with the nodes' sort keys and
sends the rows on by label; `choose_representatives` ranks each cluster's members and writes every member's fate
(representative or duplicate, cluster id and size) partitioned by shard, for removal.
"""

from __future__ import annotations

from typing import Any

import polars as pl

from engine.dedup.signatures import EXACT, KEYS, LENGTH, SCORE
from engine.schema import CLUSTER_ID, CLUSTER_SIZE, DUPLICATE_OF, ID, REASON
from tests.dedup.reference.components import LABEL, LABEL_SCHEMA
from tests.dedup.reference.plan import (
    NODE,
    ROW,
    ROW_BITS,
    SHARD,
    Plan,
    node_partitions,
    part_dir,
    read_folder,
    write_partitioned,
)


def join_labels(plan: Plan, labels: str, partition: int) -> int:
    """Labels of one node partition joined with the nodes' sort keys, sent on by label; rows joined."""
    label_frame = read_folder(plan, plan.url(labels, part_dir(partition)), LABEL_SCHEMA)
    if label_frame.height == 0:
        return 0
    key_schema = _key_schema(plan)
    keys = read_folder(plan, plan.url(KEYS, part_dir(partition)), key_schema)
    members = label_frame.join(keys, on=NODE, how="inner")
    if members.height != label_frame.height:
        missing = label_frame.height - members.height
        msg = f"dedup partition {partition}: {missing} labelled nodes lack sort keys"
        raise RuntimeError(msg)
    partitions = node_partitions(members[LABEL].to_numpy(), plan.partitions)
    write_partitioned(plan, members, partitions, plan.url("members"), f"from={partition:05d}")
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
    return [pl.col(NODE)], [False]  # first_seen by node since registries (plan step 6); was (id, node)


def choose_representatives(plan: Plan, partition: int) -> int:
    """Pick each cluster's representative; every member's fate, sent on by shard; clusters decided."""
    schema: dict[str, Any] = {LABEL: pl.Int64, **_key_schema(plan)}
    members = read_folder(plan, plan.url("members", part_dir(partition)), schema)
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
    write_partitioned(plan, fates, partitions, plan.url("clusters"), f"from={partition:05d}")
    return int(ranked[LABEL].n_unique())
