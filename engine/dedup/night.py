"""A night over new, changed and vanished shards: label the new documents against the last build's clusters,
cluster again those that held a dead document, rewrite only what changed.

`graph_task` (one task; its input is the probe's edges, `O(new documents)`): old nodes in the edges are replaced
by their labels (from their shards' fate files; a node in no fate file is a cluster of one, its own label), the
components of that small graph are computed in memory, and each component's representative is the best of the old
representatives it holds and its new documents (the clusters state keeps each label's best with its policy key;
`first_seen` ranks by node, so an old representative always beats a new document). A component holding several old
labels merges them: every representative but the winner becomes a duplicate (churn `merged`); under `longest` /
`highest_score` a new document may beat the old representative (churn `better_copy`). It writes, under the run's
prefix, the fates of the new documents (and of old documents of no cluster that now are duplicates), the old
labels touched (label -> new representative, its id, exact hash and the cluster's new size), and the clusters
delta into the state (`engine.dedup.index`).

Changed and vanished shards (docs/dedup-design.md 5.3): their old documents are dead. The clusters that held one
(`engine.dedup.dead`) are clustered again from their living members' band keys: those members enter the components
as themselves, not as their old label, so a cluster may split, lose its representative and restore a duplicate to
kept/ (churn `representative_removed`, or `cluster_split` when the old representative is alive but elsewhere); a
member alone after it loses its fate row.

`night_fates_task` (one per shard group): writes the fate files of its new and changed shards, and rewrites an old
shard's fate file only when a row that reaches the output changes (a duplicate's `duplicate_of`, reason, label;
every clustered row's cluster id and size when `add_cluster_columns` writes them): so removal reruns only for
those. Without cluster columns, an old fate file may keep an older `cluster_size` (the state's clusters hold the
sizes).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import polars as pl
import pyarrow as pa
import pyarrow.compute as pc

from engine.dedup.components import LABEL, components_in_memory
from engine.dedup.dead import affected_members, member_edges
from engine.dedup.index import CLUSTER_DELTA_SHARE, Changes, DedupState, index_url, is_tombstone, read_probe_edges
from engine.dedup.plan import NODE, ROW, ROW_BITS, ROW_MASK, Plan
from engine.dedup.representatives import (
    CLUSTERS_SCHEMA,
    FATE_SCHEMA,
    IDENTITY_KEY,
    best_per_label,
    frame_of,
)
from engine.dedup.signatures import EXACT, LENGTH, SCORE
from engine.io.parquet import read_table, write_table
from engine.schema import CLUSTER_ID, CLUSTER_SIZE, DUPLICATE_OF, ID, REASON
from engine.stats import binned_cluster_sizes

I64 = npt.NDArray[np.int64]
ALIVE = "alive"
WAS_DUPLICATE = "was_duplicate"
OLD_LABEL = "old_label"
DROPPED = -1
"""The label of a night's fate row that removes a document's row (clustered again, it is now alone)."""
WINNER = "winner"
COMPONENT = "component"
ORDER = "order"
INFO = {NODE: pl.Int64, ID: pl.String, LENGTH: pl.Int64, SCORE: pl.Float64, EXACT: pl.UInt64, CLUSTER_SIZE: pl.Int64}


@dataclass(frozen=True)
class GraphResult:
    """What the graph task wrote and found."""

    fates_url: str
    relabel_url: str
    changed_labels: int
    """Old labels whose representative changed (their members' fates change)."""
    touched_labels: int
    old_shards: tuple[int, ...]
    """Old shards holding a document of no cluster before that now has a fate row."""
    clusters: tuple[str, ...]
    cluster_rows: tuple[int, ...]
    cluster_base: int
    churn: dict[str, int]
    cluster_count: int
    histogram: dict[str, int]
    largest: int
    clustered: int


def read_clusters(state: DedupState, storage_options: dict[str, Any]) -> pl.DataFrame:
    """Every cluster of the state, the latest row of each label (later files win), the dead ones included."""
    frames = []
    for n, url in enumerate(state.clusters):
        table = read_table(url, storage_options).cast(CLUSTERS_SCHEMA)
        frames.append(frame_of(table).with_columns(pl.lit(n).alias(ORDER)))
    if not frames:
        return frame_of(CLUSTERS_SCHEMA.empty_table())
    both = pl.concat(frames, how="vertical_relaxed")
    return both.sort(ORDER).unique(subset=[LABEL], keep="last", maintain_order=False).drop(ORDER)


def node_labels(plan: Plan, nodes: I64) -> I64:
    """The label of each old node (sorted) from its shard's fate file; a node in no fate file is its own label."""
    labels = nodes.copy()
    shards = nodes >> ROW_BITS
    for shard in np.unique(shards).tolist():
        here = np.flatnonzero(shards == shard)
        table = read_table(plan.fates_url(shard), plan.storage_options, columns=[ROW, LABEL])
        rows = np.asarray(table[ROW].to_numpy(), dtype=np.int64)
        found = np.asarray(table[LABEL].to_numpy(), dtype=np.int64)
        wanted = nodes[here] & ROW_MASK
        at = np.minimum(np.searchsorted(rows, wanted), max(0, len(rows) - 1))
        hit = (rows[at] == wanted) if len(rows) else np.zeros(len(wanted), dtype=bool)
        labels[here[hit]] = found[at[hit]]
    return labels


def signature_info(plan: Plan, nodes: I64) -> pl.DataFrame:
    """`INFO` columns of documents `nodes` (sorted) from their signature files (a cluster of one: size 1)."""
    columns = [ID, LENGTH] + ([SCORE] if plan.has_score else []) + ([EXACT] if plan.exact_first else [])
    frames = []
    shards = nodes >> ROW_BITS
    for shard in np.unique(shards).tolist():
        mine = nodes[shards == shard]
        table = read_table(plan.signature_url(shard), plan.storage_options, columns=columns)
        picked = frame_of(table.take(pa.array(mine & ROW_MASK)))
        frames.append(picked.with_columns(pl.Series(NODE, mine), pl.lit(1, dtype=pl.Int64).alias(CLUSTER_SIZE)))
    return _uniform(frames)


def _uniform(frames: Sequence[pl.DataFrame]) -> pl.DataFrame:
    """`frames` with every `INFO` column (missing ones null), concatenated."""
    filled = [
        f.with_columns([pl.lit(None, dtype=t).alias(n) for n, t in INFO.items() if n not in f.columns]).select(
            [pl.col(n).cast(t) for n, t in INFO.items()]
        )
        for f in frames
    ]
    return pl.concat(filled, how="vertical") if filled else pl.DataFrame(schema=INFO)


def graph_task(
    plan: Plan, state: DedupState, changes: Changes, probes: tuple[tuple[str, ...], tuple[int, ...]], _: int
) -> GraphResult:
    """Label the night's new documents, merge old clusters they bridge, cluster again the members of clusters
    that held a dead document; write the fates and the clusters delta."""
    options = plan.storage_options
    fresh_shards = sorted(changes.new)
    clusters = read_clusters(state, options)
    alive = clusters.filter(pl.col(ALIVE))
    affected = affected_members(plan, changes, alive)
    u, v = read_probe_edges(list(probes[0]), list(probes[1]), options)
    au, av = member_edges(plan, affected.nodes)
    u, v = np.concatenate([u, au]), np.concatenate([v, av])
    nodes = np.unique(np.concatenate([u, v]))
    labelled = ~np.isin(nodes >> ROW_BITS, fresh_shards) & ~np.isin(nodes, affected.nodes)
    mapped = nodes.copy()
    mapped[labelled] = node_labels(plan, nodes[labelled])

    def relabel(x: I64) -> I64:
        return mapped[np.searchsorted(nodes, x)]

    members, components = components_in_memory(relabel(u), relabel(v))
    is_fresh = np.isin(members >> ROW_BITS, fresh_shards)
    old_members = members[~is_fresh]
    known = alive.filter(
        pl.col(LABEL).is_in(old_members.tolist()) & ~pl.col(LABEL).is_in(affected.labels.tolist())
    ).rename({LABEL: NODE})
    again = old_members[np.isin(old_members, affected.nodes)]
    singles = np.setdiff1d(np.setdiff1d(old_members, known[NODE].to_numpy()), again)
    new = members[is_fresh]
    candidates = _uniform(
        [known, signature_info(plan, singles), signature_info(plan, again), signature_info(plan, new)]
    )
    component = pl.DataFrame({NODE: members, COMPONENT: components})
    candidates = candidates.join(component, on=NODE).with_columns(pl.col(COMPONENT).alias(LABEL))
    best = best_per_label(candidates, plan.keep).select(
        LABEL,
        pl.col(NODE).alias(WINNER),
        pl.col(ID).alias("rep_id"),
        pl.col(EXACT).alias("rep_exact"),
        pl.col(LENGTH).alias("rep_length"),
        pl.col(SCORE).alias("rep_score"),
    )
    sizes = candidates.group_by(LABEL).agg(pl.col(CLUSTER_SIZE).sum().alias("new_size"))
    before = pl.DataFrame(
        {NODE: affected.nodes, WAS_DUPLICATE: affected.was_duplicate, OLD_LABEL: affected.old_labels},
        schema={NODE: pl.Int64, WAS_DUPLICATE: pl.Boolean, OLD_LABEL: pl.Int64},
    )
    ranked = (
        candidates.join(best, on=LABEL)
        .join(sizes, on=LABEL)
        .join(before, on=NODE, how="left")
        .with_columns(pl.col(WAS_DUPLICATE).fill_null(False))
    )
    fresh = _shard_of(pl.col(NODE)).is_in(fresh_shards)
    winner_fresh = _shard_of(pl.col(WINNER)).is_in(fresh_shards)
    olds = ranked.filter(~fresh)
    demoted = olds.filter((pl.col(NODE) != pl.col(WINNER)) & ~pl.col(WAS_DUPLICATE))
    lone = before.filter(~pl.col(NODE).is_in(members.tolist()))
    returned = pl.concat(
        [
            olds.filter((pl.col(NODE) == pl.col(WINNER)) & pl.col(WAS_DUPLICATE)).select(OLD_LABEL),
            lone.filter(pl.col(WAS_DUPLICATE)).select(OLD_LABEL),
        ]
    )
    rep_gone = _shard_of(pl.col(OLD_LABEL)).is_in(sorted(changes.dead))
    churn = {
        "merged": demoted.filter(~winner_fresh).height,
        "better_copy": demoted.filter(winner_fresh).height,
        "representative_removed": returned.filter(rep_gone).height,
        "cluster_split": returned.filter(~rep_gone).height,
    }
    churn["left_kept"] = churn["merged"] + churn["better_copy"]
    churn["returned_to_kept"] = churn["representative_removed"] + churn["cluster_split"]

    # Fates of new documents, of old documents clustered again, and of old documents of no cluster before (the
    # latter only when they change); documents clustered again that are now alone lose their row (DROPPED).
    reason = pl.lit(f"{plan.kind}/duplicate")
    if plan.exact_first:
        reason = pl.when(pl.col(EXACT) == pl.col("rep_exact")).then(pl.lit("exact/duplicate")).otherwise(reason)
    is_dup = pl.col(NODE) != pl.col(WINNER)
    # Old rows: every demoted representative (its shard's fate file may have no row for it), and with cluster
    # columns every document of no cluster before (its output gains the columns).
    keep_row = is_dup | pl.col(NODE).is_in(again.tolist())
    if plan.cluster_columns:
        keep_row = keep_row | pl.col(NODE).is_in(singles.tolist())
    single_rows = olds.filter(keep_row)
    fate_rows = pl.concat([ranked.filter(fresh), single_rows]).select(
        pl.col(NODE),
        (pl.col(NODE) % (1 << ROW_BITS)).alias(ROW),
        pl.col(ID),
        pl.when(is_dup).then(pl.col("rep_id")).alias(DUPLICATE_OF),
        pl.col("rep_id").alias(CLUSTER_ID),
        pl.col("new_size").alias(CLUSTER_SIZE),
        pl.when(is_dup).then(reason).alias(REASON),
        pl.col(WINNER).alias(LABEL),
    )
    dropped = lone.select(
        pl.col(NODE),
        (pl.col(NODE) % (1 << ROW_BITS)).alias(ROW),
        pl.lit(None, dtype=pl.String).alias(ID),
        pl.lit(None, dtype=pl.String).alias(DUPLICATE_OF),
        pl.lit(None, dtype=pl.String).alias(CLUSTER_ID),
        pl.lit(None, dtype=pl.Int64).alias(CLUSTER_SIZE),
        pl.lit(None, dtype=pl.String).alias(REASON),
        pl.lit(DROPPED, dtype=pl.Int64).alias(LABEL),
    )
    fate_rows = pl.concat([fate_rows, dropped], how="vertical_relaxed")
    fates_url = plan.url("night", "fates.parquet")
    write_table(fate_rows.to_arrow(), fates_url, options, compression=plan.compression)
    touched = ranked.filter(pl.col(NODE).is_in(known[NODE].to_list())).select(
        pl.col(NODE).alias(LABEL), WINNER, "rep_id", "rep_exact", "new_size"
    )
    relabel_url = plan.url("night", "relabel.parquet")
    write_table(touched.to_arrow(), relabel_url, options, compression=plan.compression)

    # The clusters delta: each component's representative, the labels merged away and those clustered again.
    gone = np.setdiff1d(affected.labels, best[WINNER].to_numpy())
    delta = pl.concat(
        [
            best.join(sizes, on=LABEL).select(
                pl.col(WINNER).alias(LABEL),
                pl.col("rep_id").alias(ID),
                pl.col("rep_length").alias(LENGTH),
                pl.col("rep_score").alias(SCORE),
                pl.col("rep_exact").alias(EXACT),
                pl.col("new_size").alias(CLUSTER_SIZE),
                pl.lit(True).alias(ALIVE),
            ),
            _dead_labels(demoted.filter(pl.col(NODE).is_in(known[NODE].to_list()))[NODE]),
            _dead_labels(pl.Series(NODE, gone, dtype=pl.Int64)),
        ]
    )
    final = (
        pl.concat([clusters.select(delta.columns), delta], how="vertical_relaxed")
        .unique(subset=[LABEL], keep="last", maintain_order=True)
        .filter(pl.col(ALIVE))
    )
    base = int(state.extra.get("cluster_base", len(state.clusters)))
    base_rows = sum(state.cluster_rows[:base])
    delta_rows = sum(state.cluster_rows[base:]) + delta.height
    files: tuple[str, ...]
    rows: tuple[int, ...]
    if delta_rows > CLUSTER_DELTA_SHARE * max(1, base_rows):
        url = index_url(plan.root, plan.run, "clusters", "base.parquet")
        write_table(final.sort(LABEL).to_arrow().cast(CLUSTERS_SCHEMA), url, options, compression=plan.compression)
        files, rows, base = (url,), (final.height,), 1
    else:
        url = index_url(plan.root, plan.run, "clusters", "delta.parquet")
        write_table(delta.to_arrow().cast(CLUSTERS_SCHEMA), url, options, compression=plan.compression)
        files, rows = (*state.clusters, url), (*state.cluster_rows, delta.height)
    counts = final[CLUSTER_SIZE].value_counts()
    histogram = binned_cluster_sizes({int(s): int(c) for s, c in counts.iter_rows()})
    return GraphResult(
        fates_url=fates_url,
        relabel_url=relabel_url,
        changed_labels=touched.filter(pl.col(LABEL) != pl.col(WINNER)).height,
        touched_labels=touched.height,
        old_shards=tuple(sorted({int(n) >> ROW_BITS for n in [*single_rows[NODE].to_list(), *lone[NODE].to_list()]})),
        clusters=files,
        cluster_rows=rows,
        cluster_base=base,
        churn=churn,
        cluster_count=final.height,
        histogram=dict(histogram),
        largest=int(final[CLUSTER_SIZE].max() or 0),  # type: ignore[arg-type]
        clustered=int(final[CLUSTER_SIZE].sum()),
    )


def _shard_of(node: pl.Expr) -> pl.Expr:
    return node // (1 << ROW_BITS)


def _dead_labels(labels: pl.Series) -> pl.DataFrame:
    """Clusters delta rows of labels that no longer exist (merged into another, or clustered again)."""
    return pl.DataFrame({LABEL: labels.cast(pl.Int64)}).select(
        pl.col(LABEL),
        pl.lit(None, dtype=pl.String).alias(ID),
        pl.lit(None, dtype=pl.Int64).alias(LENGTH),
        pl.lit(None, dtype=pl.Float64).alias(SCORE),
        pl.lit(None, dtype=pl.UInt64).alias(EXACT),
        pl.lit(0, dtype=pl.Int64).alias(CLUSTER_SIZE),
        pl.lit(False).alias(ALIVE),
    )


@dataclass(frozen=True)
class NightFates:
    """Fate files written (shard positions) and their duplicates; documents that left kept/ in old shards."""

    written: tuple[int, ...]
    duplicates: dict[int, int]
    left_kept: int = 0


def night_fates_task(plan: Plan, changes: Changes, graph: GraphResult, group: int) -> NightFates:
    """The fate files of shard group `group`: every new or changed shard's, and old ones' whose output-reaching
    rows change."""
    fresh = set(changes.new)
    options = plan.storage_options
    fates = pl.from_arrow(read_table(graph.fates_url, options))
    relabel = pl.from_arrow(read_table(graph.relabel_url, options))
    assert isinstance(fates, pl.DataFrame)
    assert isinstance(relabel, pl.DataFrame)
    scan = graph.changed_labels > 0 or (plan.cluster_columns and graph.touched_labels > 0)
    moving = relabel if plan.cluster_columns else relabel.filter(pl.col(LABEL) != pl.col(WINNER))
    wanted = pa.array(moving[LABEL].to_numpy(), type=pa.int64())
    written: list[int] = []
    duplicates: dict[int, int] = {}
    left = 0
    for shard in plan.group_shards(group):
        if is_tombstone(plan.shards[shard]):
            continue
        mine = fates.filter((pl.col(NODE) // (1 << ROW_BITS)) == shard).drop(NODE)
        if shard in fresh:
            table = _fate_table(mine)
        elif shard in graph.old_shards or (scan and _holds(plan, shard, wanted)):
            before = read_table(plan.fates_url(shard), options).cast(FATE_SCHEMA)
            table = _updated(plan, shard, before, relabel, mine)
            if _same(before, table, cluster_columns=plan.cluster_columns):
                continue
            left += _new_duplicates(before, table)
        else:
            continue
        if plan.identities:
            table = table.replace_schema_metadata({IDENTITY_KEY: plan.identities[shard].encode()})
        write_table(table, plan.fates_url(shard), options, compression=plan.compression)
        written.append(shard)
        duplicates[shard] = int(pc.sum(pc.is_valid(table[DUPLICATE_OF])).as_py() or 0)
    return NightFates(tuple(written), duplicates, left)


def _holds(plan: Plan, shard: int, labels: pa.Array) -> bool:
    """Whether an old shard's fate file has a member of one of `labels` (reads only the label column)."""
    column = read_table(plan.fates_url(shard), plan.storage_options, columns=[LABEL])[LABEL]
    return bool(pc.any(pc.is_in(column, value_set=labels)).as_py())


def _fate_table(frame: pl.DataFrame) -> pa.Table:
    return frame.sort(ROW).select(FATE_SCHEMA.names).to_arrow().cast(FATE_SCHEMA)


def _updated(plan: Plan, shard: int, before: pa.Table, relabel: pl.DataFrame, added: pl.DataFrame) -> pa.Table:
    """An old shard's fates after the night: rows of touched labels follow their new representative."""
    frame = frame_of(before)
    frame = frame.join(relabel, on=LABEL, how="left")
    if plan.exact_first and frame.filter(pl.col(WINNER).is_not_null()).height:
        exact = read_table(plan.signature_url(shard), plan.storage_options, columns=[EXACT])[EXACT]
        frame = frame.with_columns(pl.Series(EXACT, exact.take(pa.array(frame[ROW].to_numpy())).to_numpy()))
    elif plan.exact_first:  # no row follows a new representative: no reason to recompute
        frame = frame.with_columns(pl.lit(None, dtype=pl.UInt64).alias(EXACT))
    node = pl.lit(shard << ROW_BITS, dtype=pl.Int64) + pl.col(ROW)
    dup = node != pl.col(WINNER)
    reason = pl.lit(f"{plan.kind}/duplicate")
    if plan.exact_first:
        reason = pl.when(pl.col(EXACT) == pl.col("rep_exact")).then(pl.lit("exact/duplicate")).otherwise(reason)
    hit = pl.col(WINNER).is_not_null()
    frame = frame.with_columns(
        pl.when(hit).then(pl.when(dup).then(pl.col("rep_id"))).otherwise(pl.col(DUPLICATE_OF)).alias(DUPLICATE_OF),
        pl.when(hit).then(pl.col("rep_id")).otherwise(pl.col(CLUSTER_ID)).alias(CLUSTER_ID),
        pl.when(hit).then(pl.col("new_size")).otherwise(pl.col(CLUSTER_SIZE)).alias(CLUSTER_SIZE),
        pl.when(hit).then(pl.when(dup).then(reason)).otherwise(pl.col(REASON)).alias(REASON),
        pl.when(hit).then(pl.col(WINNER)).otherwise(pl.col(LABEL)).alias(LABEL),
    )
    both = pl.concat([frame.select(FATE_SCHEMA.names), added.select(FATE_SCHEMA.names)], how="vertical_relaxed")
    latest = both.unique(subset=[ROW], keep="last", maintain_order=True)
    return _fate_table(latest.filter(pl.col(LABEL) != DROPPED))


def _same(before: pa.Table, after: pa.Table, *, cluster_columns: bool) -> bool:
    """Whether the rows that reach the output (and the labels) are the same."""
    columns = [ROW, ID, DUPLICATE_OF, REASON, LABEL] + ([CLUSTER_ID, CLUSTER_SIZE] if cluster_columns else [])
    if not cluster_columns:  # a representative's row reaches no output: compare duplicates and labels
        before = before.filter(pc.is_valid(before[DUPLICATE_OF]))
        after = after.filter(pc.is_valid(after[DUPLICATE_OF]))
    return bool(before.select(columns).equals(after.select(columns)))


def _new_duplicates(before: pa.Table, after: pa.Table) -> int:
    was = set(before.filter(pc.is_valid(before[DUPLICATE_OF]))[ROW].to_pylist())
    now = set(after.filter(pc.is_valid(after[DUPLICATE_OF]))[ROW].to_pylist())
    return len(now - was)


def merge_histograms(results: Sequence[dict[str, int]]) -> dict[str, int]:
    total: Counter[str] = Counter()
    for result in results:
        total.update(result)
    return dict(total)
