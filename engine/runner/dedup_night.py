"""The dedup driver's nightly paths: a night over new, changed and vanished shards, and a rerun with nothing new
(issue 11 item 3).

    bands      M' map tasks over the new and changed shards only: a new run of the band
               index (none when shards only vanished)                                    marker `bands`
    probe      P tasks: the new rows against the index's living old rows
               (engine.dedup.index)                                                      marker `probe`
    graph      one task: labels, merges, clusters that held a dead document clustered
               again, representatives of touched clusters, the clusters delta
               (engine.dedup.night)                                                      marker `graph`
    fates      shard-group tasks: new and changed shards' fate files, old ones only
               where they change                                                         marker `fates`
    removal    every living shard's task (a shard whose fates did not change is skipped by its key)
    state      the manifest of the new state (written last), then clean-up

The state was marked pending by this run before the first phase (`engine.dedup.index.mark_pending`): a crash
resumes this night (same digest) or makes the next different build a full one.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from engine.dedup.cleanup import BATCH, cleanup_task
from engine.dedup.index import Changes, DedupState, IndexRun, Night, is_tombstone, probe_task, write_state
from engine.dedup.night import GraphResult, NightFates, graph_task, night_fates_task
from engine.dedup.plan import Plan, Removal, ShardInput, index_objects, make_plan, read_marker, write_marker
from engine.dedup.removal import ShardRemoval
from engine.dedup.shuffle import map_bands
from engine.runner.dedup_removal import run_removal
from engine.runner.executor import Executor
from engine.spec import JobSpec


@dataclass
class DedupOutcome:
    """What dedup wrote: per shard (rows kept, duplicates removed, duplicate rows written) and cluster sizes."""

    shards: dict[str, ShardRemoval]
    clusters: int = 0
    cluster_sizes: dict[str, int] = field(default_factory=dict)
    """Clusters per fixed size bin (`engine.stats.cluster_size_bin`), merged from the representatives tasks."""
    largest_cluster: int = 0
    counts: dict[str, int] = field(default_factory=dict)
    """The counts the run used: band partitions P, map tasks M, shard groups G, graph partitions Q, and the
    estimated distinct edges and clustered documents Q was chosen from."""
    churn: dict[str, int] = field(default_factory=dict)
    """Against the last build, in shards whose content did not change: documents that left kept/ (now
    duplicates) and documents that returned to it (`left_kept`, `returned_to_kept`); on a night, the
    representatives demoted by a merge of clusters (`merged`) or by a better new copy (`better_copy`), and the
    duplicates kept again because their representative was in a changed or vanished shard
    (`representative_removed`) or their cluster split when such a shard's documents left it (`cluster_split`)."""
    mode: str = "full"
    """How the build used the last build's state: `full`, `night` (new shards only) or `unchanged`."""

    @property
    def kept(self) -> int:
        return sum(r.kept for r in self.shards.values())

    @property
    def duplicates(self) -> int:
        return sum(r.duplicates for r in self.shards.values())

    @property
    def duplicates_written(self) -> int:
        return sum(r.duplicates_written for r in self.shards.values())

    def removed(self) -> dict[str, int]:
        """Duplicates removed per shard."""
        return {rel: r.duplicates for rel, r in self.shards.items()}


def index_task(
    plan: Plan, executor: Executor, urls: list[str], sizes: list[int], partitions: int, folder: str, url: str = ""
) -> str:
    """The index of a folder's objects, gathered by one task; its URL (`url`, or the folder's under the run)."""
    index = url or plan.index_url(folder)
    item = (tuple(urls), tuple(sizes), partitions, index)
    executor.map(functools.partial(index_objects, plan), [item], label=f"dedup: {folder} index")
    return index


def finish_run(plan: Plan, executor: Executor, garbage: list[str]) -> None:
    """After removal: delete `garbage`, what is left of the run's shuffle, older runs, vanished shards' outputs and
    state folders the committed state no longer uses; then the run's `finished` marker."""
    if read_marker(plan, "finished") is not None:
        return
    chunks: list[tuple[str, tuple[str, ...]]] = [
        ("objects", tuple(garbage[i : i + BATCH])) for i in range(0, len(garbage), BATCH)
    ]
    chunks += [("leftovers", ()), ("runs", ()), ("vanished", ()), ("index", ())]
    executor.map(functools.partial(cleanup_task, plan), chunks, label="dedup: clean-up")
    write_marker(plan, "finished")


def unchanged_rerun(plan: Plan, removal: Removal, state: DedupState, executor: Executor) -> DedupOutcome:
    """Nothing new since the last build: removal answers from its summary, checks other shards' markers (rewrites
    only missing outputs)."""
    results = run_removal(plan, removal, executor)
    finish_run(plan, executor, [])
    summary = state.extra.get("summary", {})
    return DedupOutcome(
        {r.rel: r for r in results},
        int(summary.get("clusters", 0)),
        {str(k): int(v) for k, v in summary.get("cluster_sizes", {}).items()},
        int(summary.get("largest_cluster", 0)),
        {str(k): int(v) for k, v in summary.get("counts", {}).items()},
        {},
        mode="unchanged",
    )


def night_plan(job: JobSpec, inputs: Mapping[str, ShardInput], night: Night) -> tuple[Plan, Removal]:
    """A night's plan: its shards by node position (`Changes.layout`: a vanished shard stays as a tombstone of no
    rows, so no node id of the state moves); map tasks over the new shards, and one per changed shard."""
    state, changes = night.state, night.changes
    assert state is not None
    assert changes is not None
    laid = {rel: inputs[rel] for rel in changes.layout if not is_tombstone(rel)}
    laid.update({rel: ShardInput(rows=0, identity="vanished") for rel in changes.layout if is_tombstone(rel)})
    plan, removal = make_plan(
        job, list(changes.layout), laid, mode="night", partitions=state.partitions, mapped_from=changes.first_new
    )
    changed = [shard for shard in changes.new if shard < changes.first_new]
    if changed:  # one map task per changed shard (the tasks between them map nothing: `_night_bands`)
        bounds = {*plan.map_bounds, *changed, *(shard + 1 for shard in changed)}
        plan = dataclasses.replace(plan, map_bounds=tuple(sorted(bounds)))
    return plan, removal


def living_shards(plan: Plan, removal: Removal) -> tuple[Plan, Removal]:
    """The plan and removal parameters without a night's tombstones (removal finds a shard's files by name)."""
    keep = [i for i, rel in enumerate(plan.shards) if not is_tombstone(rel)]
    if len(keep) == len(plan.shards):
        return plan, removal

    def pick(values: tuple[Any, ...]) -> tuple[Any, ...]:
        return tuple(values[i] for i in keep) if values else values

    living = dataclasses.replace(plan, shards=pick(plan.shards), rows=pick(plan.rows), identities=pick(plan.identities))
    return living, dataclasses.replace(
        removal, identities=pick(removal.identities), input_urls=pick(removal.input_urls)
    )


def run_night(plan: Plan, removal: Removal, night: Night, executor: Executor) -> DedupOutcome:
    """New and changed shards against the state: only their band rows are mapped and probed, clusters that held a
    document of a changed or vanished shard are clustered again; fates change only where needed."""
    state, changes = night.state, night.changes
    assert state is not None
    assert changes is not None
    dying = set(changes.dead)
    runs = tuple(dataclasses.replace(r, dead=tuple(sorted(dying | set(r.dead)))) for r in state.runs)
    probed = dataclasses.replace(state, runs=runs)
    tonight = _night_bands(plan, changes, executor)
    probes = _probe(plan, probed, tonight, executor)
    graph = _graph(plan, probed, changes, probes, executor)
    fates = _fates(plan, changes, graph, executor)
    results = run_removal(*living_shards(plan, removal), executor)
    counts = {
        "band_partitions": plan.partitions,
        "map_tasks": plan.maps,
        "shard_groups": plan.groups,
        "edges": int(probes["edges"]),
        "clustered_documents": graph.clustered,
        "fates_rewritten": len(fates["written"]) - len(changes.new),
    }
    summary = {
        "clusters": graph.cluster_count,
        "cluster_sizes": graph.histogram,
        "largest_cluster": graph.largest,
        "counts": counts,
    }
    dead_rows = int(state.extra.get("dead_rows", 0)) + sum(state.rows[i] for i in changes.dead)
    new_state = DedupState(
        run=plan.run,
        settings=state.settings,
        partitions=state.partitions,
        shards=plan.shards,
        identities=plan.identities,
        rows=plan.rows,
        runs=(*runs, tonight) if tonight is not None else runs,
        clusters=graph.clusters,
        cluster_rows=graph.cluster_rows,
        extra={"cluster_base": graph.cluster_base, "summary": summary, "dead_rows": dead_rows},
    )
    write_state(plan.root, new_state, plan.storage_options)
    finish_run(plan, executor, [])
    churn = dict(graph.churn)
    return DedupOutcome(
        {r.rel: r for r in results},
        graph.cluster_count,
        dict(graph.histogram),
        graph.largest,
        counts,
        churn,
        mode="night",
    )


def _night_bands(plan: Plan, changes: Changes, executor: Executor) -> IndexRun | None:
    """The band rows of the night's new and changed shards (a new run of the index); None when there are none."""
    if not changes.new:
        return None
    done = read_marker(plan, "bands")
    if done is None:
        fresh = set(changes.new)
        mapping = dataclasses.replace(plan, rows=tuple(n if i in fresh else 0 for i, n in enumerate(plan.rows)))
        results = executor.map(
            functools.partial(map_bands, mapping), list(range(plan.maps)), label="dedup: band keys (new shards)"
        )
        urls, sizes = [r.url for r in results], [r.size for r in results]
        index = index_task(plan, executor, urls, sizes, plan.partitions, "bands", plan.state_url("bands", "index.bin"))
        rows = sum(plan.rows[i] for i in changes.new)
        write_marker(plan, "bands", urls=urls, sizes=sizes, index=index, rows=rows)
        done = read_marker(plan, "bands")
        assert done is not None
    return IndexRun(tuple(done["urls"]), tuple(int(s) for s in done["sizes"]), str(done["index"]), int(done["rows"]))


def _probe(plan: Plan, state: DedupState, runs: IndexRun | None, executor: Executor) -> dict[str, Any]:
    if runs is None:  # nothing new to probe (vanished shards only)
        return {"urls": [], "sizes": [], "edges": 0, "matched": 0}
    done = read_marker(plan, "probe")
    if done is None:
        results = executor.map(
            functools.partial(probe_task, plan, state, runs),
            list(range(state.partitions)),
            label="dedup: probe the band index",
        )
        write_marker(
            plan,
            "probe",
            urls=[r.url for r in results],
            sizes=[r.size for r in results],
            edges=sum(r.edges for r in results),
            matched=sum(r.matched for r in results),
        )
        done = read_marker(plan, "probe")
        assert done is not None
    return done


def _graph(plan: Plan, state: DedupState, changes: Changes, probes: dict[str, Any], executor: Executor) -> GraphResult:
    done = read_marker(plan, "graph")
    if done is None:
        item = (tuple(probes["urls"]), tuple(int(s) for s in probes["sizes"]))
        (result,) = executor.map(
            functools.partial(graph_task, plan, state, changes, item), [0], label="dedup: night graph"
        )
        write_marker(plan, "graph", **dataclasses.asdict(result))
        done = read_marker(plan, "graph")
        assert done is not None
    fields = {f.name for f in dataclasses.fields(GraphResult)}
    values = {k: v for k, v in done.items() if k in fields}
    for name in ("old_shards", "clusters", "cluster_rows"):
        values[name] = tuple(values[name])
    return GraphResult(**values)


def _fates(plan: Plan, changes: Changes, graph: GraphResult, executor: Executor) -> dict[str, Any]:
    done = read_marker(plan, "fates")
    if done is None:
        scan = graph.changed_labels > 0 or (plan.cluster_columns and graph.touched_labels > 0)
        shards = set(changes.new) | set(graph.old_shards)
        groups = list(range(plan.groups)) if scan else sorted({s % plan.groups for s in shards})
        results: list[NightFates] = executor.map(
            functools.partial(night_fates_task, plan, changes, graph), groups, label="dedup: fates"
        )
        written = sorted(s for r in results for s in r.written)
        write_marker(plan, "fates", written=written, left_kept=sum(r.left_kept for r in results))
        done = read_marker(plan, "fates")
        assert done is not None
    return done
