"""The dedup driver: runs (or resumes) the global phases as tasks of an executor, then removal and clean-up.

The phases live in `engine.dedup` (one module each) and never know how they are scheduled; this module sequences
them, writes each phase's marker when all its tasks (and its index task) are done, and skips finished phases on a
rerun (markers live under the run digest's prefix: `engine.dedup.plan`). The driver holds the plan and one small
result per task (sizes, counts, digests, heavy-node reports): `O(S + P + Q)` numbers, never documents.

    bands       M map tasks, then the index task (predicts hub centres)           marker `bands`
    edges       P collisions tasks, then the index task of the edge set           marker `edges`
    components  one task (small graphs) or large-star/small-star steps of Q tasks,
                each step followed by its index task                               markers `cc-step-<k>`, `components`
    members     G shard-group tasks, then the index of their partials             marker `members`
    reps        Q label-partition tasks, then their index                          marker `representatives`
    fates       G shard-group tasks: one fate file per shard                       marker `fates`
    removal     S shard tasks, each with its own marker (state/removal/<rel>.json), but for the shards the
                removal summary answers for (engine.runner.dedup_removal)
    state       state/index/manifest.json: the band objects (kept as the band index's base), the clusters
    clean-up    tasks deleting what a finished phase no longer needs, older runs, vanished shards, unused state

That is a full build. `decide` reads the state the last build left (engine.dedup.index): a build that adds,
changes or removes shards is a night (engine.runner.dedup_night: new band rows probed against the index, only
touched clusters relabelled, those that held a changed or vanished shard's documents clustered again), one with
nothing new runs removal's checks alone; anything else (dead documents past 5% of the index, other settings, a
state left half-written by a killed build) is a full build.
"""

from __future__ import annotations

import functools
from collections import Counter
from collections.abc import Mapping
from typing import Any

import numpy as np

from engine.dedup.cleanup import BATCH, cleanup_task
from engine.dedup.components import (
    MAX_STEPS,
    EdgeObjects,
    EdgeSource,
    HeavyReport,
    HeavyTable,
    components_task,
    index_edges,
    sketch_count,
    star_task,
)
from engine.dedup.index import (
    DedupState,
    IndexRun,
    Night,
    choose,
    mark_pending,
    read_state,
    state_settings,
    write_state,
)
from engine.dedup.plan import (
    Graph,
    Plan,
    Removal,
    ShardInput,
    graph_partitions,
    make_plan,
    probe_shards,
    read_marker,
    write_marker,
)
from engine.dedup.representatives import FatesResult, Objects, fates_task, members_task, representatives_task
from engine.dedup.shuffle import BandShuffle, find_edges, map_bands, predicted_hubs
from engine.dedup.signatures import dedup_root
from engine.dedup.state import read_registry, register, write_registry
from engine.runner.dedup_night import (
    DedupOutcome,
    finish_run,
    index_task,
    night_plan,
    run_night,
    unchanged_rerun,
)
from engine.runner.dedup_removal import run_removal
from engine.runner.executor import Executor
from engine.spec import JobSpec

PHASES = ("bands", "edges", "components", "members", "representatives", "fates")
"""The markers of the global phases, in order (components steps have their own, `cc-step-<k>`)."""
PROBE_BATCH = 64
"""Shards a probing task reads footers and fingerprints of (only when phase A's results are not given)."""


def run_dedup(
    job: JobSpec,
    shards: list[str],
    executor: Executor,
    *,
    inputs: Mapping[str, ShardInput] | None = None,
    full: bool = False,
) -> DedupOutcome:
    """Run (or resume) the global dedup over every shard and write the final `kept/` (and duplicates).

    `shards` are the input shards' relative names; each has its staged kept documents and its signatures from
    phase A. `inputs` is what phase A reported of each (rows and the identity of its outputs, e.g. the unit's
    reuse key); without it, tasks read the signature files' footers and fingerprints. `full`: every global phase
    and every shard's removal is redone, whatever their markers say; the registry (build order) is kept, so
    `first_seen` keeps the representatives already published.
    """
    if job.dedup is None:
        msg = "run_dedup needs a job with a `dedup:` section"
        raise ValueError(msg)
    root, storage_options = dedup_root(job.output.path, job.dedup), job.output.storage_options
    previous = read_registry(root, storage_options)
    registry = register(previous, shards)
    shards = registry.order()  # build order: node ids, and so `first_seen`, follow it
    if registry != previous:
        write_registry(root, registry, storage_options)
    if inputs is None:
        inputs = probe(job, shards, executor)
    plan, removal, night = decide(job, shards, inputs, full=full)
    if night.mode == "unchanged":
        assert night.state is not None
        return unchanged_rerun(plan, removal, night.state, executor)
    mark_pending(plan.root, read_state(plan.root, storage_options), plan.run, storage_options)
    if night.mode == "night":
        return run_night(plan, removal, night, executor)
    driver = _Driver(plan, executor)
    if full:
        driver.reset()
    else:
        driver.check_finished()
    bands = driver.bands()
    source, graph = driver.collisions(bands)
    if driver.edges <= job.dedup.in_memory_max_edges:
        labels = driver.components_in_memory(source, graph)
    else:
        labels = driver.star_rounds(source, graph)
    partials, members = driver.members(graph, labels)
    representatives, clusters, histogram, largest = driver.representatives(graph, partials)
    churn = driver.fates(representatives, members)
    results = run_removal(plan, removal, executor)
    counts = {
        "band_partitions": plan.partitions,
        "map_tasks": plan.maps,
        "shard_groups": plan.groups,
        "graph_partitions": graph.partitions,
        "edges": driver.edges,
        "clustered_documents": driver.nodes,
        "components_steps": driver.steps,
    }
    done = read_marker(plan, "representatives")
    bands_done = read_marker(plan, "bands")
    assert done is not None
    assert bands_done is not None
    base = IndexRun(tuple(bands_done["urls"]), tuple(bands_done["sizes"]), str(bands_done["index"]), sum(plan.rows))
    summary = {"clusters": clusters, "cluster_sizes": histogram, "largest_cluster": largest, "counts": counts}
    state = DedupState(
        run=plan.run,
        settings=state_settings(job),
        partitions=plan.partitions,
        shards=plan.shards,
        identities=plan.identities,
        rows=plan.rows,
        runs=(base,),
        clusters=tuple(done["clusters_urls"]),
        cluster_rows=tuple(int(n) for n in done["clusters_rows"]),
        extra={"cluster_base": len(done["clusters_urls"]), "summary": summary},
    )
    write_state(plan.root, state, storage_options)
    driver.finish()
    return DedupOutcome({r.rel: r for r in results}, clusters, histogram, largest, counts, churn, mode="full")


def decide(
    job: JobSpec, shards: list[str], inputs: Mapping[str, ShardInput], *, full: bool
) -> tuple[Plan, Removal, Night]:
    """The plan of this build and how it uses the last build's state (full, a night over new shards, nothing)."""
    assert job.dedup is not None
    plan, removal = make_plan(job, shards, inputs, full=full)
    state = read_state(plan.root, job.output.storage_options)
    night = choose(job, state, shards, list(plan.identities), list(plan.rows), full=full)
    if night.mode == "full" or state is None:
        return plan, removal, night
    if night.mode == "unchanged":
        if state.pending is not None:
            return plan, removal, Night("full", "an unfinished build left the dedup state half-written")
        plan, removal = make_plan(job, shards, inputs, mode="unchanged", run=state.run)
        return plan, removal, night
    plan, removal = night_plan(job, inputs, night)
    if state.pending not in (None, plan.run):
        return *make_plan(job, shards, inputs), Night("full", "an unfinished build left the dedup state half-written")
    return plan, removal, night


def probe(job: JobSpec, shards: list[str], executor: Executor) -> dict[str, ShardInput]:
    """`ShardInput` of every shard, read by tasks (`PROBE_BATCH` shards each)."""
    chunks = [tuple(shards[i : i + PROBE_BATCH]) for i in range(0, len(shards), PROBE_BATCH)]
    found = executor.map(functools.partial(probe_shards, job), chunks, label="dedup: probe shards")
    return dict(zip(shards, [entry for chunk in found for entry in chunk], strict=True))


class _Driver:
    """Runs the phases of one plan, each skipped when its marker says it is done."""

    def __init__(self, plan: Plan, executor: Executor) -> None:
        self.plan, self.executor = plan, executor
        self.edges = 0
        self.nodes = 0
        self.steps = 0
        self.garbage: list[str] = []

    def check_finished(self) -> None:
        """A finished run kept only its markers: if one was deleted since, its phase's inputs are gone too, so
        every global phase is redone (its markers removed first)."""
        if read_marker(self.plan, "finished") is None:
            return
        if all(read_marker(self.plan, name) is not None for name in PHASES):
            return
        self.reset()

    def reset(self) -> None:
        """Delete this run's markers and shuffle objects: every global phase is redone (a full rebuild)."""
        self.executor.map(functools.partial(cleanup_task, self.plan), [("reset", ())], label="dedup: clean-up")

    def _forget(self, *urls: str) -> None:
        """Objects no longer needed once the current marker is written (deleted by the next clean-up)."""
        self.garbage.extend(urls)

    def _collect(self) -> None:
        """Delete what finished phases no longer need (tasks of `BATCH` objects)."""
        if not self.garbage:
            return
        chunks = [("objects", tuple(self.garbage[i : i + BATCH])) for i in range(0, len(self.garbage), BATCH)]
        self.executor.map(functools.partial(cleanup_task, self.plan), chunks, label="dedup: clean-up")
        self.garbage.clear()

    def _index(self, urls: list[str], sizes: list[int], partitions: int, folder: str, url: str = "") -> str:
        return index_task(self.plan, self.executor, urls, sizes, partitions, folder, url)

    def bands(self) -> BandShuffle:
        plan = self.plan
        done = read_marker(plan, "bands")
        if done is None:
            results = self.executor.map(
                functools.partial(map_bands, plan), list(range(plan.maps)), label="dedup: band keys"
            )
            urls, sizes = [r.url for r in results], [r.size for r in results]
            index = self._index(urls, sizes, plan.partitions, "bands", url=plan.state_url("bands", "index.bin"))
            heavy = predicted_hubs(results, plan.heavy_degree)
            write_marker(plan, "bands", urls=urls, sizes=sizes, index=index, heavy=list(heavy))
            done = read_marker(plan, "bands")
            assert done is not None
        return BandShuffle(tuple(done["urls"]), str(done["index"]), tuple(done["heavy"]))

    def collisions(self, bands: BandShuffle) -> tuple[EdgeSource, Graph]:
        plan = self.plan
        done = read_marker(plan, "edges")
        if done is None:
            results = self.executor.map(
                functools.partial(find_edges, plan, bands, plan.heavy_degree),
                list(range(plan.partitions)),
                label="dedup: collisions",
            )
            edges = sketch_count([r.sketch for r in results])
            nodes = sketch_count([r.nodes for r in results])
            graph = graph_partitions(plan, edges, nodes)
            objects = EdgeObjects(
                tuple(r.url for r in results),
                tuple(r.size for r in results),
                plan.edge_partitions,
                plan.index_url("edges"),
                tuple(r.report for r in results),
                bands.heavy,
            )
            table, following = self._index_edges(graph, objects)
            write_marker(
                plan,
                "edges",
                edges=edges,
                nodes=nodes,
                edges_found=sum(r.edges for r in results),
                partitions=graph.partitions,
                next_heavy=list(following),
                **_source_json(objects, table),
            )
            self._collect()  # the band objects stay: they are the base of the band index (engine.dedup.index)
            done = read_marker(plan, "edges")
            assert done is not None
        self.edges = int(done["edges"])
        self.nodes = int(done.get("nodes", 0))
        graph = Graph(partitions=int(done["partitions"]), heavy_degree=plan.heavy_degree)
        return _source(done, plan.edge_partitions), graph

    def _index_edges(self, graph: Graph, objects: EdgeObjects) -> tuple[HeavyTable, tuple[int, ...]]:
        call = functools.partial(index_edges, self.plan, graph, objects)
        ((table, following),) = self.executor.map(call, [0], label="dedup: edges index")
        return table, following

    def components_in_memory(self, source: EdgeSource, graph: Graph) -> Objects:
        plan = self.plan
        done = read_marker(plan, "components")
        if done is None:
            ((url, size, _),) = self.executor.map(
                functools.partial(components_task, plan, graph, source), [0], label="dedup: components (one task)"
            )
            index = self._index([url], [size], plan.groups, "cc/labels-memory")
            write_marker(plan, "components", urls=[url], sizes=[size], index=index)
            self._forget(*source.urls, source.index)
            self._collect()
            done = read_marker(plan, "components")
            assert done is not None
        return Objects(tuple(done["urls"]), tuple(done["sizes"]), str(done["index"]))

    def star_rounds(self, source: EdgeSource, graph: Graph) -> Objects:
        plan = self.plan
        done = read_marker(plan, "components")
        if done is not None:
            self.steps = int(done.get("steps", 0))
            return Objects(tuple(done["urls"]), tuple(done["sizes"]), str(done["index"]))
        heavy_next = source.next_heavy
        digests: dict[int, int] = {}
        labels: dict[int, tuple[list[str], list[int]]] = {}
        for step in range(MAX_STEPS):
            name = f"cc-step-{step:05d}"
            marker = read_marker(plan, name)
            if marker is None:
                kind = "large-star" if step % 2 == 0 else "small-star"
                results = self.executor.map(
                    functools.partial(star_task, plan, graph, step, source),
                    list(range(graph.partitions)),
                    label=f"dedup: components step {step} ({kind})",
                )
                digest = int(np.sum(np.array([r.digest for r in results], dtype=np.uint64), dtype=np.uint64))
                objects = EdgeObjects(
                    tuple(r.url for r in results),
                    tuple(r.size for r in results),
                    graph.partitions,
                    plan.index_url(f"cc/step-{step + 1:05d}"),
                    tuple(r.report for r in results),
                    heavy_next,
                )
                table, following = self._index_edges(graph, objects)
                write_marker(
                    plan,
                    name,
                    edges=sum(r.count for r in results),
                    digest=str(digest),
                    labels=[r.labels_url for r in results if r.labels_url],
                    labels_sizes=[r.labels_size for r in results if r.labels_url],
                    next_heavy=list(following),
                    **_source_json(objects, table),
                )
                self._forget(*source.urls, source.index)
                if step >= 2 and step % 2 == 0:
                    self._forget(*labels.pop(step - 2, ([], []))[0])
                self._collect()
                marker = read_marker(plan, name)
                assert marker is not None
            digests[step] = int(marker["digest"])
            if step % 2 == 0:
                labels[step] = (list(marker["labels"]), [int(s) for s in marker["labels_sizes"]])
            if step >= 2 and step % 2 == 0 and digests[step] == digests[step - 2]:
                urls, sizes = labels[step]
                index = self._index(urls, sizes, plan.groups, f"cc/labels-{step:05d}")
                write_marker(plan, "components", urls=urls, sizes=sizes, index=index, steps=step + 1)
                self.steps = step + 1
                self._forget(*marker["urls"], str(marker["index"]), *labels.get(step - 2, ([], []))[0])
                self._collect()
                return Objects(tuple(urls), tuple(sizes), index)
            source = _source(marker, graph.partitions, sorted_runs=True)
            heavy_next = source.next_heavy
        msg = f"connected components did not converge in {MAX_STEPS} steps; this is a bug, please report it"
        raise RuntimeError(msg)

    def members(self, graph: Graph, labels: Objects) -> tuple[Objects, list[tuple[str, int]]]:
        plan = self.plan
        done = read_marker(plan, "members")
        if done is None:
            results = self.executor.map(
                functools.partial(members_task, plan, graph, labels),
                list(range(plan.groups)),
                label="dedup: cluster members",
            )
            urls, sizes = [r.url for r in results], [r.size for r in results]
            index = self._index(urls, sizes, graph.partitions, "members")
            write_marker(
                plan,
                "members",
                urls=urls,
                sizes=sizes,
                index=index,
                rows=[[r.rows_url, r.rows_size] for r in results],
                members=sum(r.members for r in results),
            )
            self._forget(*labels.urls, labels.index)
            self._collect()
            done = read_marker(plan, "members")
            assert done is not None
        rows = [(str(url), int(size)) for url, size in done["rows"]]
        return Objects(tuple(done["urls"]), tuple(done["sizes"]), str(done["index"])), rows

    def representatives(self, graph: Graph, partials: Objects) -> tuple[Objects, int, dict[str, int], int]:
        """Representatives by label partition; the clusters, their fixed-bin size histogram and the largest."""
        plan = self.plan
        done = read_marker(plan, "representatives")
        if done is None:
            results = self.executor.map(
                functools.partial(representatives_task, plan, graph, partials),
                list(range(graph.partitions)),
                label="dedup: representatives",
            )
            urls, sizes = [r.url for r in results], [r.size for r in results]
            index = self._index(urls, sizes, plan.groups, "reps")
            histogram: Counter[str] = Counter()
            for result in results:
                histogram.update(result.sizes)
            write_marker(
                plan,
                "representatives",
                urls=urls,
                sizes=sizes,
                index=index,
                clusters=sum(r.clusters for r in results),
                cluster_sizes=dict(histogram),
                largest_cluster=max((r.largest for r in results), default=0),
                clusters_urls=[r.clusters_url for r in results],
                clusters_rows=[r.clusters for r in results],
            )
            self._forget(*partials.urls, partials.index)
            self._collect()
            done = read_marker(plan, "representatives")
            assert done is not None
        objects = Objects(tuple(done["urls"]), tuple(done["sizes"]), str(done["index"]))
        histogram_json = {str(k): int(v) for k, v in done["cluster_sizes"].items()}
        return objects, int(done["clusters"]), histogram_json, int(done["largest_cluster"])

    def fates(self, representatives: Objects, members: list[tuple[str, int]]) -> dict[str, int]:
        """Fate files by shard group; the churn against the last build's fates (`left_kept`, `returned_to_kept`)."""
        plan = self.plan
        done = read_marker(plan, "fates")
        if done is None:
            groups = list(range(plan.groups))
            results = self.executor.map(
                functools.partial(_fates_of_group, plan, representatives, tuple(members)), groups, label="dedup: fates"
            )
            churn = {
                "left_kept": sum(r.left_kept for r in results),
                "returned_to_kept": sum(r.returned_to_kept for r in results),
            }
            write_marker(plan, "fates", duplicates=sum(sum(r.duplicates.values()) for r in results), churn=churn)
            self._forget(*representatives.urls, representatives.index, *(url for url, _ in members))
            done = read_marker(plan, "fates")
            assert done is not None
        return {str(k): int(v) for k, v in (done.get("churn") or {}).items()}

    def finish(self) -> None:
        """After removal: delete what is left of the run's shuffle, older runs, and vanished shards' outputs."""
        finish_run(self.plan, self.executor, self.garbage)
        self.garbage.clear()


def _fates_of_group(
    plan: Plan, representatives: Objects, members: tuple[tuple[str, int], ...], group: int
) -> FatesResult:
    return fates_task(plan, representatives, members[group], group)


def _source_json(objects: EdgeObjects, table: HeavyTable) -> dict[str, Any]:
    return {
        "urls": list(objects.urls),
        "sizes": list(objects.sizes),
        "index": objects.index,
        "heavy_nodes": list(table.nodes),
        "heavy_minima": list(table.minima),
    }


def _source(marker: dict[str, Any], partitions: int, *, sorted_runs: bool = False) -> EdgeSource:
    table = HeavyTable(tuple(int(n) for n in marker["heavy_nodes"]), tuple(int(m) for m in marker["heavy_minima"]))
    following = tuple(int(n) for n in marker["next_heavy"])
    return EdgeSource(tuple(marker["urls"]), str(marker["index"]), partitions, table, following, sorted_runs)


__all__ = ["DedupOutcome", "HeavyReport", "decide", "run_dedup"]
