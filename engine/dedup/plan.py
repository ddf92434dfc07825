"""The global dedup's plan: what every task gets (paths, parameters, partition counts), node ids, markers.

Each phase is a set of independent tasks that read and write segmented objects (`engine.io.segments`) through
fsspec, one module each (`shuffle`, `components`, `representatives`, `removal`); `engine.runner.dedup` sequences
them and writes each phase's marker when all its tasks are done.

Layout under `OUT/_dedup/<parameters>/` (`<parameters>` names everything that changes signatures, e.g.
`minhash-n5-b14-r8-s1-c500000-rensa2-noscore`). `<run>` is the run digest (`make_plan`), `<hh>` two hex digits
of a hash of the object's number (object stores rate-limit requests per key prefix):

    signatures/<rel>.parquet                 phase A (engine.dedup.signatures): id, band keys, sort-key columns
    shuffle/<run>/_markers/<phase>.json       a finished phase: its objects and sizes, counts, heavy nodes
    shuffle/<run>/edges/<hh>/p=<i>.seg        star edges of collisions task i, by node (components.py)
    shuffle/<run>/cc/step-<k>/<hh>/q=<i>.seg  edges leaving components step k, task i, Q segments by node
    shuffle/<run>/cc/labels-<k>/<hh>/q=<i>.seg  labels (node -> component) of large-star step k, G segments by
                                             shard group
    shuffle/<run>/members/<hh>/g=<i>.seg      per-label partial best members of shard group i, Q segments by label
    shuffle/<run>/members/<hh>/g=<i>.rows     the clustered members of shard group i (node, label, id, exact)
    shuffle/<run>/reps/<hh>/q=<i>.seg         each label's representative and size, G segments by shard group
    shuffle/<run>/<folder>/index.bin          the partition-major index of a folder's objects (io/segments.py)
    state/fates/<rel>.parquet                 the fate of every clustered document of shard <rel> (its deletion
                                             vector: row, id, duplicate_of, cluster_id, cluster_size, reason)
    state/removal/<rel>.json                  removal's marker of shard <rel> (run, files and rows written)
    state/index/manifest.json                 the state the next night builds on (engine.dedup.index): the band
    state/index/<run>/bands/<hh>/m=<i>.seg    index (map objects of a full build and of each night since), and
    state/index/<run>/clusters/*.parquet      each cluster's representative, ranking keys and size

A node is a document: `shard_index << 32 | row` (shard index in the sorted shard list, row in its signature
file). Every marker lives under the run's own prefix, so a changed input set (a new digest) starts clean and an
unchanged one resumes after the last finished phase or components step; markers are trusted, nothing is listed.
After the run, its shuffle objects and every older run's prefix are deleted by tasks (the markers stay).

Partition counts are chosen from memory and a request budget (`make_plan`, `graph_partitions`): see
docs/dedup-design.md, section 4.3.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from engine.dedup.kept_rows import kept_rows_url, recorded_input
from engine.dedup.minhash import mix64
from engine.dedup.signatures import dedup_root
from engine.io.layout import KEPT, STAGE, join, shard_file
from engine.io.markers import read_json, write_json
from engine.io.parquet import WriteLayout, footer_rows
from engine.io.paths import fingerprint
from engine.io.segments import gather_index, pow2ceil
from engine.spec import InputSpec, JobSpec, MinhashDedup
from engine.steps.base import Step
from engine.version import __version__

SHARD = "shard"
ROW = "row"
NODE = "node"
SRC = "u"
DST = "v"

ROW_BITS = 32
ROW_MASK = (1 << ROW_BITS) - 1
STAGE_KEPT = f"{STAGE}/{KEPT}"

# Memory and storage per row, measured on the synthetic corpus of benchmarks/bench_scale.py (docs/dedup-design.md).
BAND_ROW_BYTES = 50
"""Peak bytes a collisions task holds per band row it reduces (18 bytes of columns, fingerprints, the stars:
30 at one partition, 50 at sixteen, where an edge shared by several bands is found once in each partition)."""
MAP_ROW_BYTES = 120
"""Peak bytes a map task holds per band row it writes (the signatures read, the rows, their order, encoding)."""
EDGE_ROW_BYTES = 120
"""Peak bytes a components step holds per distinct directed edge row of its partition (the rows, their
deduplication, the star's output and its deduplication, the writer's order)."""
MEMBER_ROW_BYTES = 300
"""Peak bytes a representatives task holds per member partial (label, node, id, sort keys, count)."""
BAND_ROW_STORED = 10
"""Bytes per band row in a zstd Arrow IPC segment (64-bit keys do not compress)."""
MIN_SEGMENT_BYTES = 256 << 10
"""The request budget: map tasks group shards until the average band segment holds at least this many bytes, so
the band shuffle's GETs stay below `band bytes / MIN_SEGMENT_BYTES` (linear in the documents, never S x P)."""
EDGES_PER_DOC_WRITTEN = 4
"""Collisions write their edges finely enough for this many distinct edges per document; the graph partition
count chosen from the real edge count then reads contiguous ranges (or, above it, filters finer)."""
SHARDS_PER_GROUP = 4
"""Shards per shard group (the unit of the members and fates tasks)."""
HEAVY_SHARE = 16
"""A node holding more than 1/HEAVY_SHARE of a graph task's rows is heavy: its edges are spread over partitions."""
SPLIT_SHARE = 64
"""A band key with more local rows in one map task than 1/(SPLIT_SHARE x maps) of a partition's rows is dealt
into sub-buckets over several partitions (a page copied a million times does not land in one task)."""
MAX_PARTITIONS = 1 << 16


def node_ids(shard_index: int, n_rows: int) -> npt.NDArray[np.int64]:
    """Node ids of the `n_rows` documents of shard number `shard_index` (in the sorted shard list)."""
    if n_rows > ROW_MASK:
        msg = f"a shard holds {n_rows} kept documents; at most {ROW_MASK} are supported, split the shard"
        raise ValueError(msg)
    return (np.int64(shard_index) << np.int64(ROW_BITS)) + np.arange(n_rows, dtype=np.int64)


def node_keys(nodes: npt.NDArray[np.int64]) -> npt.NDArray[np.uint64]:
    """The 64-bit partitioning key of each node (edges, labels and members are partitioned by its top bits)."""
    return mix64(nodes.astype(np.uint64))


@dataclass(frozen=True)
class ShardInput:
    """What phase A says of one shard: its signature rows, the identity of its outputs (JSON) and, for removal
    without staged text, its input's URL (None: the one phase A recorded)."""

    rows: int
    identity: Any
    url: str | None = None


@dataclass(frozen=True)
class Plan:
    """Where a dedup run works, with what parameters and partition counts; passed to every task (no data)."""

    root: str
    storage_options: dict[str, Any]
    run: str
    shards: tuple[str, ...]
    keep: str
    has_score: bool
    compression: str
    kind: str
    exact_first: bool
    bands: int
    docs: int
    partitions: int
    map_bounds: tuple[int, ...]
    groups: int
    edge_partitions: int
    task_memory: int
    split_rows: int
    report_rows: int
    heavy_degree: int
    rows: tuple[int, ...] = field(default=(), repr=False)
    identities: tuple[str, ...] = field(default=(), repr=False)
    """Per shard, a digest of what phase A said of it (its staged file's identity and rows)."""
    cluster_columns: bool = False
    """Removal writes `cluster_id` / `cluster_size` (every clustered row's fate reaches the output)."""
    mode: str = "full"
    """`full` (every global phase over every shard), `night` (new shards against the state) or `unchanged`."""

    @property
    def maps(self) -> int:
        return len(self.map_bounds) - 1

    def url(self, *parts: str) -> str:
        """A path under this run's shuffle prefix."""
        return join(self.root, "shuffle", self.run, *parts)

    def object_url(self, folder: str, name: str, number: int, suffix: str = "seg") -> str:
        """`shuffle/<run>/<folder>/<hh>/<name>=<number>.<suffix>`: objects spread over 256 key prefixes."""
        spread = int(mix64(np.array([number], dtype=np.uint64))[0]) >> 56
        return self.url(folder, f"{spread:02x}", f"{name}={number:06d}.{suffix}")

    def index_url(self, folder: str) -> str:
        return self.url(folder, "index.bin")

    def state_url(self, *parts: str) -> str:
        """A path under `state/index/<run>/`: what this run leaves for the next night (engine.dedup.index)."""
        return join(self.root, "state", "index", self.run, *parts)

    def band_url(self, task: int) -> str:
        """Map task `task`'s band object: kept in the state as a run of the band index."""
        spread = int(mix64(np.array([task], dtype=np.uint64))[0]) >> 56
        return self.state_url("bands", f"{spread:02x}", f"m={task:06d}.seg")

    def clusters_url(self, partition: int) -> str:
        """The clusters state written by representatives task `partition` (engine.dedup.index)."""
        return self.state_url("clusters", f"q={partition:06d}.parquet")

    def signature_url(self, shard_index: int) -> str:
        return join(self.root, "signatures", f"{self.shards[shard_index]}.parquet")

    def fates_url(self, shard_index: int) -> str:
        return join(self.root, "state", "fates", f"{self.shards[shard_index]}.parquet")

    def removal_marker_url(self, rel: str) -> str:
        return join(self.root, "state", "removal", f"{rel}.json")

    def group_shards(self, group: int) -> list[int]:
        """The shards of shard group `group` (shard `s` belongs to group `s mod G`)."""
        return list(range(group, len(self.shards), self.groups))

    def map_shards(self, task: int) -> list[int]:
        """The shards whose band rows map task `task` writes (a contiguous run)."""
        return list(range(self.map_bounds[task], self.map_bounds[task + 1]))


@dataclass(frozen=True)
class Removal:
    """Phase D's parameters (besides the plan)."""

    output: str
    partition_column: str | None
    write_duplicates: bool
    add_cluster_columns: bool
    batch_rows: int
    settings: str
    """Digest of the settings a shard's removal output depends on (besides its staged file and its fates)."""
    identities: tuple[str, ...] = field(default=(), repr=False)
    """Per shard, a digest of what phase A said of it (its staged file's identity and rows)."""
    layout: WriteLayout = field(default_factory=WriteLayout)
    """How kept/ and duplicates files are cut into row groups and parts (the job's `output` settings)."""
    force: bool = False
    """Rewrite every shard even when its marker's key matches (a full rebuild)."""
    stage_text: bool = True
    """Whether phase A staged the kept text (`_stage/kept/`), or only its rows (`_stage/rows/`: removal rebuilds
    the text from the input, `engine.dedup.kept_rows`)."""
    input: InputSpec | None = field(default=None, repr=False)
    """How the input is read (without staged text)."""
    rewriters: tuple[tuple[int, Step], ...] = field(default=(), repr=False)
    """The job's steps that rewrite text, with their indices (without staged text: removal reruns them)."""
    input_urls: tuple[str | None, ...] = field(default=(), repr=False)
    """Per shard, its input's URL when the driver knows it (else the one phase A recorded)."""


@dataclass(frozen=True)
class Graph:
    """The graph phases' partition count `Q` (fixed once the collisions are counted) and heavy-node threshold."""

    partitions: int
    heavy_degree: int


def band_partitions(docs: int, bands: int, task_memory: int) -> int:
    """`P`: enough band partitions that a collisions task holds at most `task_memory` bytes of band rows."""
    return min(MAX_PARTITIONS, pow2ceil(docs * bands * BAND_ROW_BYTES / task_memory))


def map_groups(rows: Sequence[int], bands: int, partitions: int, task_memory: int) -> tuple[int, ...]:
    """Boundaries of the map tasks' contiguous shard runs: `M` tasks with about equal rows.

    `M` is as small as the request budget asks (average segment >= `MIN_SEGMENT_BYTES`) and as large as a map
    task's memory needs (its band rows within `task_memory`), never more than one task per shard.
    """
    shards = len(rows)
    if shards == 0:
        return (0,)
    band_rows = sum(rows) * bands
    by_requests = math.ceil(band_rows * BAND_ROW_STORED / (partitions * MIN_SEGMENT_BYTES))
    by_memory = math.ceil(band_rows * MAP_ROW_BYTES / task_memory)
    maps = min(shards, max(1, by_requests, by_memory))
    cumulative = np.cumsum(np.asarray(rows, dtype=np.int64))
    targets = cumulative[-1] * np.arange(1, maps) / maps
    inner = np.searchsorted(cumulative, targets, side="left") + 1
    bounds = sorted({0, shards, *(int(b) for b in inner if 0 < b < shards)})
    return tuple(bounds)


def graph_budget(docs: int, bands: int, partitions: int, task_memory: int) -> float:
    """Bytes a graph task may hold: `task_memory`, and no more than a collisions task holds."""
    return max(1.0, min(float(task_memory), docs * bands * BAND_ROW_BYTES / partitions))


def graph_partitions(plan: Plan, edges: int, nodes: int = 0) -> Graph:
    """`Q` from the distinct edges and clustered documents: no graph or representatives task holds more than
    `graph_budget`."""
    budget = graph_budget(plan.docs, plan.bands, plan.partitions, plan.task_memory)
    held = max(2 * edges * EDGE_ROW_BYTES, nodes * MEMBER_ROW_BYTES)
    partitions = min(MAX_PARTITIONS, pow2ceil(held / budget))
    return Graph(partitions=partitions, heavy_degree=plan.heavy_degree)


def make_plan(
    job: JobSpec,
    shards: Sequence[str],
    inputs: Mapping[str, ShardInput],
    *,
    task_memory: int | None = None,
    full: bool = False,
    mode: str = "full",
    partitions: int | None = None,
    mapped_from: int = 0,
    run: str | None = None,
) -> tuple[Plan, Removal]:
    """The run's plan from what phase A reported of each shard (no storage request).

    The run digest covers the dedup settings, the mode and every shard's identity, so an unchanged input resumes
    and a changed one starts a new run. `full` (a full rebuild) makes removal rewrite every shard; the digest does
    not change, so the next plain run reuses what the full one wrote. A night (`mode="night"`) maps only the shards
    from `mapped_from` on, with the band index's `partitions`; `run` reuses a finished run's digest (`unchanged`).
    """
    dedup = job.dedup
    if dedup is None:
        msg = "make_plan needs a job with a `dedup:` section"
        raise ValueError(msg)
    memory = task_memory or dedup.task_memory
    rows = tuple(int(inputs[rel].rows) for rel in shards)
    docs = sum(rows)
    bands = dedup.bands if isinstance(dedup, MinhashDedup) else 1
    if partitions is None:
        if dedup.partitions:
            partitions = min(MAX_PARTITIONS, pow2ceil(dedup.partitions))
        else:
            partitions = band_partitions(docs, bands, memory)
    map_bounds = tuple(mapped_from + b for b in map_groups(rows[mapped_from:], bands, partitions, memory))
    groups = max(1, min(len(shards), math.ceil(len(shards) / SHARDS_PER_GROUP)))
    budget = graph_budget(docs, bands, partitions, memory)
    edge_partitions = min(4096, pow2ceil(2 * docs * EDGES_PER_DOC_WRITTEN * EDGE_ROW_BYTES / budget))
    maps = len(map_bounds) - 1
    split_rows = max(256, int(docs * bands / partitions) // (SPLIT_SHARE * max(1, maps)))
    heavy_degree = max(1024, int(budget / EDGE_ROW_BYTES) // HEAVY_SHARE)
    report_rows = max(2, min(split_rows, heavy_degree // (2 * max(1, maps))))
    core = dedup.model_dump(exclude={"write_duplicates", "add_cluster_columns"})
    identities = [[rel, inputs[rel].identity, inputs[rel].rows] for rel in shards]
    counts = [partitions, list(map_bounds), groups, edge_partitions, memory, split_rows]
    if run is None:
        run = digest({"dedup": core, "counts": counts, "inputs": identities, "mode": mode})
    plan = Plan(
        root=dedup_root(job.output.path, dedup),
        storage_options=dict(job.output.storage_options),
        run=run,
        shards=tuple(shards),
        keep=dedup.keep,
        has_score=dedup.score_column is not None,
        compression=job.output.compression,
        kind=dedup.type,
        exact_first=isinstance(dedup, MinhashDedup) and dedup.exact_first,
        bands=bands,
        docs=docs,
        partitions=partitions,
        map_bounds=map_bounds,
        groups=groups,
        edge_partitions=edge_partitions,
        task_memory=memory,
        split_rows=split_rows,
        report_rows=report_rows,
        heavy_degree=heavy_degree,
        rows=rows,
        identities=tuple(digest(identity) for identity in identities),
        cluster_columns=dedup.add_cluster_columns,
        mode=mode,
    )
    removal_settings: dict[str, Any] = {
        "partition_column": job.partition_column(),
        "write_duplicates": dedup.write_duplicates,
        "add_cluster_columns": dedup.add_cluster_columns,
        "compression": job.output.compression,
        "layout": job.output.layout_config(),
    }
    rewriters = tuple((i, step) for i, step in enumerate(job.steps) if step.rewrites_text)
    if not dedup.stage_text:  # the text is rebuilt from the input: the key holds how (a staged job's stays as it was)
        removal_settings["rebuilt_from_input"] = {
            "reader": job.input.model_dump(mode="json", exclude={"path", "storage_options", "batch_rows"}),
            "rewriters": [[i, step.model_dump(mode="json"), step_behaviour(step)] for i, step in rewriters],
        }
    removal = Removal(
        output=job.output.path,
        partition_column=job.partition_column(),
        write_duplicates=dedup.write_duplicates,
        add_cluster_columns=dedup.add_cluster_columns,
        batch_rows=job.input.batch_rows,
        settings=digest(removal_settings),
        identities=plan.identities,
        layout=job.output.write_layout(),
        force=full,
        stage_text=dedup.stage_text,
        input=job.input,
        rewriters=rewriters,
        input_urls=tuple(inputs[rel].url for rel in shards),
    )
    return plan, removal


def plan_lines(plan: Plan) -> list[str]:
    """The counts a run uses and what they cost in storage requests (printed by `plan` and `run`)."""
    maps, parts = plan.maps, plan.partitions
    band_bytes = plan.docs * plan.bands * BAND_ROW_STORED
    gets = min(maps * parts, maps + max(1, band_bytes // MIN_SEGMENT_BYTES))
    return [
        f"  dedup: {plan.docs:,} documents x {plan.bands} band keys in {len(plan.shards):,} shards:"
        f" P = {parts:,} band partitions (task memory {plan.task_memory / 2**30:.2f} GiB), M = {maps:,} map tasks,"
        f" G = {plan.groups:,} shard groups",
        f"  dedup: band shuffle ~{maps + parts + 2:,} objects, ~{gets + maps + parts:,} GETs of ~"
        f"{band_bytes / max(1, maps * parts) / 2**10:,.0f} KiB segments; graph partitions Q follow the edge count",
    ]


def step_behaviour(step: Step) -> str:
    """A step's behaviour version (the engine's version for a step class that declares none)."""
    version = type(step).version
    return str(version) if version is not None else f"engine-{__version__}"


def digest(data: Any) -> str:
    return hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()[:20]


def probe_shards(job: JobSpec, rels: Sequence[str]) -> list[ShardInput]:
    """`ShardInput`s read from storage (a task, for a driver called without phase A's results): each shard's
    signature rows from its Parquet footer, its identity from the fingerprints of its signature and staged files
    (without staged text: of its `_stage/rows` file and of the input it records).

    Raises:
        FileNotFoundError: a staged file exists without its signature file.
    """
    dedup = job.dedup
    assert dedup is not None
    out, options = job.output.path, job.output.storage_options
    found = []
    for rel in rels:
        signatures = join(dedup_root(out, dedup), "signatures", f"{rel}.parquet")
        staged = staged_url(out, rel) if dedup.stage_text else kept_rows_url(out, rel)
        try:
            signature_id = fingerprint(signatures, options)
        except FileNotFoundError:
            try:
                fingerprint(staged, options)
            except FileNotFoundError:
                found.append(ShardInput(rows=0, identity=None))
                continue
            msg = f"shard {rel}: {staged} exists but its signature file {signatures} does not; rerun the job"
            raise FileNotFoundError(msg) from None
        rows = footer_rows(signatures, options)
        identity: list[dict[str, Any] | None] = [signature_id, fingerprint(staged, options)]
        if not dedup.stage_text:  # removal reads the input again: its content is part of what removal writes
            url, _ = recorded_input(staged, options)
            try:
                identity.append(fingerprint(url, job.input.storage_options))
            except FileNotFoundError:
                identity.append(None)  # removal says what is missing, if it has to run
        found.append(ShardInput(rows=rows, identity=identity))
    return found


# --------------------------------------------------------------------------------------------------
# Markers: the resume points, under the run's prefix.


def read_marker(plan: Plan, name: str) -> dict[str, Any] | None:
    data = read_json(plan.url("_markers", f"{name}.json"), plan.storage_options)
    return data if data is not None and data.get("run") == plan.run else None


def write_marker(plan: Plan, name: str, **extra: Any) -> None:
    write_json(plan.url("_markers", f"{name}.json"), {"run": plan.run, **extra}, plan.storage_options)


def index_objects(plan: Plan, objects: tuple[tuple[str, ...], tuple[int, ...], int, str]) -> int:
    """An index task: the footers of `(urls, sizes, partitions, index_url)` gathered into the index; its rows."""
    urls, sizes, partitions, index_url = objects
    return int(gather_index(list(urls), list(sizes), partitions, index_url, plan.storage_options).sum())


def staged_url(output: str, rel: str) -> str:
    return shard_file(output, STAGE_KEPT, rel)
