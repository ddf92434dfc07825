"""The dedup state of the last build, and the probe of a night's new band rows against it (issue 11 item 3).

A build leaves, under `state/index/` of its dedup folder (docs/dedup-design.md, section 5):

    state/index/manifest.json                  what the state holds (written last: the commit point)
    state/index/<run>/bands/<hh>/m=<i>.seg     band rows `(key, band, node)` of the shards mapped by build `<run>`,
                                               P segments by the top bits of the key (the band map's own objects)
    state/index/<run>/bands/index.bin          their partition-major index (io/segments.py)
    state/index/<run>/clusters/*.parquet       per cluster (label = its representative's node): the
                                               representative's id, length, score, exact hash, the cluster size,
                                               `alive` (false: the label was merged into another)

A full build's band map objects are the base of the band index (kept, not deleted: no extra write); each night
adds a *run*: the band map objects of its new shards. The clusters of a full build are its representatives;
a night writes a delta of the labels it touched (later files win); when the deltas outgrow a share of the base,
the night writes the whole table as the new base. Every clustered node's label is in its shard's fate file
(column `label`), so members need no other state.

The manifest lists the shards the state covers (build order, identities, rows), the band partition count `P` the
index was written with (nights map and probe with it), the runs and the clusters files. A build that is about to
rewrite fate files first writes the manifest with `pending: <run>`; a later run whose digest is another treats
the state as unusable and rebuilds in full (a state written half is never used).

Changed and vanished shards (docs/dedup-design.md 5.3, 8.1): a night's node ids are positions in its layout (the
state's shards, a vanished one kept as a tombstone so that no node id moves, then the new shards); a changed shard
keeps its position. Their positions join the `dead` list of every earlier run; the manifest counts the dead rows,
and past `DEAD_SHARE` of the index the build is a full one (a new index).

The probe (`probe_task`, one per band partition): the night's new rows of partition `p`, the living old rows of `p`
that share a `(band, key)` with one of them (a bitmap over the new keys' low bits filters the old rows, an exact
search confirms, rows of a run's dead positions are dropped), and one star per colliding group (the least old node
of a key stands for every old node of it: they are in one component already). Its edges `(u, v)` go to the night's
graph task (`engine.dedup.night`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa

from engine.dedup.plan import DST, ROW_BITS, SRC, Plan, digest
from engine.dedup.shuffle import BAND, BAND_COLUMNS, KEY, NODE, collision_edges
from engine.io.layout import join
from engine.io.markers import read_json, write_json
from engine.io.segments import read_arrays, read_object, write_segments
from engine.spec import JobSpec

STATE_FORMAT = 1
MAX_RUNS = 32
"""Band index runs (nights) kept beside the base; beyond, the next build is a full one (which writes a new base):
each run costs every probe task one more object to read."""
CLUSTER_DELTA_SHARE = 0.25
"""When the clusters deltas hold more rows than this share of the base, a night writes the whole table anew."""
DEAD_SHARE = 0.05
"""When the dead rows of the band index (vanished and changed shards' old rows) would exceed this share of it, the
build is a full one (which writes a new index)."""
TOMBSTONE = "\x00vanished:"
EDGE_COLUMNS: dict[str, npt.DTypeLike] = {SRC: np.int64, DST: np.int64}

I64 = npt.NDArray[np.int64]
U64 = npt.NDArray[np.uint64]


@dataclass(frozen=True)
class IndexRun:
    """The band map objects of one build (the base, or a night's new shards) and their index."""

    urls: tuple[str, ...]
    sizes: tuple[int, ...]
    index: str
    rows: int
    dead: tuple[int, ...] = ()
    """Shard positions whose rows in this run are dead (the shard vanished or changed since: docs/dedup-design.md
    5.3); the probe skips them."""


@dataclass(frozen=True)
class DedupState:
    """What `state/index/manifest.json` says the last build left."""

    run: str
    settings: str
    partitions: int
    shards: tuple[str, ...]
    identities: tuple[str, ...]
    rows: tuple[int, ...]
    runs: tuple[IndexRun, ...]
    clusters: tuple[str, ...]
    cluster_rows: tuple[int, ...]
    pending: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "format": STATE_FORMAT,
            "run": self.run,
            "settings": self.settings,
            "partitions": self.partitions,
            "shards": list(self.shards),
            "identities": list(self.identities),
            "rows": list(self.rows),
            "runs": [
                {"urls": list(r.urls), "sizes": list(r.sizes), "index": r.index, "rows": r.rows, "dead": list(r.dead)}
                for r in self.runs
            ],
            "clusters": list(self.clusters),
            "cluster_rows": list(self.cluster_rows),
            "pending": self.pending,
            "extra": self.extra,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> DedupState:
        runs = tuple(
            IndexRun(
                tuple(r["urls"]),
                tuple(int(s) for s in r["sizes"]),
                str(r["index"]),
                int(r["rows"]),
                tuple(int(p) for p in r.get("dead", ())),
            )
            for r in data["runs"]
        )
        return cls(
            run=str(data["run"]),
            settings=str(data["settings"]),
            partitions=int(data["partitions"]),
            shards=tuple(data["shards"]),
            identities=tuple(data["identities"]),
            rows=tuple(int(r) for r in data["rows"]),
            runs=runs,
            clusters=tuple(data["clusters"]),
            cluster_rows=tuple(int(r) for r in data["cluster_rows"]),
            pending=data.get("pending"),
            extra=dict(data.get("extra") or {}),
        )

    def referenced_runs(self) -> set[str]:
        """The build folders (`state/index/<run>`) whose objects this state uses."""
        names = {_run_of(url) for r in self.runs for url in (*r.urls, r.index)}
        return names | {_run_of(url) for url in self.clusters}


def _run_of(url: str) -> str:
    """The `<run>` of an object under `state/index/<run>/`."""
    return url.split("/state/index/", 1)[1].split("/", 1)[0]


def manifest_url(root: str) -> str:
    return join(root, "state", "index", "manifest.json")


def index_url(root: str, run: str, *parts: str) -> str:
    """A path under `state/index/<run>/`."""
    return join(root, "state", "index", run, *parts)


def state_settings(job: JobSpec) -> str:
    """A digest of every dedup setting the state depends on (signatures, policy, ranking)."""
    assert job.dedup is not None
    return digest(job.dedup.model_dump(exclude={"write_duplicates", "task_memory"}))


def read_state(root: str, storage_options: dict[str, Any]) -> DedupState | None:
    """The state the last build left; None when there is none, or of a format this engine does not read."""
    data = read_json(manifest_url(root), storage_options)
    if data is None or data.get("format") != STATE_FORMAT:
        return None
    try:
        return DedupState.from_json(data)
    except (KeyError, TypeError, ValueError):
        return None


def write_state(root: str, state: DedupState, storage_options: dict[str, Any]) -> None:
    write_json(manifest_url(root), state.to_json(), storage_options)


def mark_pending(root: str, previous: DedupState | None, run: str, storage_options: dict[str, Any]) -> None:
    """Before a build rewrites fate files: the state says which run is changing it (none other may use it)."""
    if previous is not None and previous.pending == run:
        return
    if previous is None:
        previous = DedupState("", "", 0, (), (), (), (), (), (), None)
    write_state(root, replace(previous, pending=run), storage_options)


@dataclass(frozen=True)
class Changes:
    """What a night changes against the state: its shards by node position (`layout`: the state's, a vanished
    shard kept as a tombstone so that no node id moves, then the new shards), the positions whose rows are new
    (changed and new shards) and those whose rows in the state die (changed and vanished shards)."""

    layout: tuple[str, ...]
    new: tuple[int, ...]
    dead: tuple[int, ...]
    added: int
    changed: int
    vanished: int
    indexed: int
    """Shards the band index holds (living ones, before the night)."""

    @property
    def first_new(self) -> int:
        """Position of the first shard the state does not cover."""
        return len(self.layout) - self.added

    def describe(self) -> str:
        """`2 new, 1 changed and 1 vanished shard(s)` (kinds of none left out)."""
        kinds = [
            f"{n:,} {kind}"
            for n, kind in ((self.added, "new"), (self.changed, "changed"), (self.vanished, "vanished"))
            if n
        ]
        if not kinds:
            return "no shard changed"
        head = ", ".join(kinds[:-1])
        return f"{head} and {kinds[-1]} shard(s)" if head else f"{kinds[-1]} shard(s)"


@dataclass(frozen=True)
class Night:
    """How a build uses the state: `mode` is `full`, `night` (new, changed or vanished shards) or `unchanged`;
    `reason` says why (printed by `plan`); `state` is the state a night or an unchanged rerun builds on; `changes`
    what a night changes."""

    mode: str
    reason: str
    state: DedupState | None = None
    changes: Changes | None = None


def tombstone(rel: str) -> str:
    """The name a vanished shard keeps in a night's layout (never a file name: it starts with a NUL)."""
    return TOMBSTONE + rel


def is_tombstone(rel: str) -> bool:
    return rel.startswith(TOMBSTONE)


def night_changes(state: DedupState, shards: Sequence[str], changed: set[str]) -> Changes | str:
    """The changes of a build over `shards` (build order) whose shards `changed` have new content, or why it must
    be a full build (the build order moved, or too many of the index's rows would be dead)."""
    current = set(shards)
    alive = [rel for rel in state.shards if not is_tombstone(rel)]
    staying = [rel for rel in alive if rel in current]
    if list(shards[: len(staying)]) != staying:
        return "the build order changed"
    layout = tuple(rel if is_tombstone(rel) or rel in current else tombstone(rel) for rel in state.shards)
    dead = tuple(
        i for i, rel in enumerate(state.shards) if not is_tombstone(rel) and (rel not in current or rel in changed)
    )
    remade = tuple(i for i in dead if state.shards[i] in current)
    new_rels = tuple(shards[len(staying) :])
    layout = (*layout, *new_rels)
    new = (*remade, *range(len(state.shards), len(layout)))
    dying = sum(state.rows[i] for i in dead)
    indexed = sum(r.rows for r in state.runs)
    share = (int(state.extra.get("dead_rows", 0)) + dying) / max(1, indexed)
    if dead and share > DEAD_SHARE:
        what = f"{len(dead):,} changed or vanished shard(s)"
        return f"{what}: {share:.1%} of the band index would be dead (> {DEAD_SHARE:.0%})"
    return Changes(layout, new, dead, len(new_rels), len(remade), len(dead) - len(remade), len(alive))


def night_reason(changes: Changes) -> str:
    """What a night does (`plan` prints it)."""
    if not changes.dead:
        return f"{changes.describe()} probed against the band index of {changes.indexed:,} shards"
    head = f"{changes.describe()} against the band index of {changes.indexed:,} shards"
    again = "clusters that held a changed or vanished shard's documents clustered again"
    return f"{head}: new rows probed, {again}" if changes.new else f"{head}: {again}"


def choose(
    job: JobSpec,
    state: DedupState | None,
    shards: list[str],
    identities: list[str],
    rows: list[int],
    *,
    full: bool,
) -> Night:
    """Full rebuild, a night over new, changed or vanished shards, or nothing new: from the state and the shards in
    build order (with their identities and rows)."""
    if full:
        return Night("full", "--full")
    if state is None or not state.shards:
        return Night("full", "no dedup state of a finished build")
    if state.settings != state_settings(job):
        return Night("full", "dedup settings changed since the last build")
    known = {rel: (identity, n) for rel, identity, n in zip(state.shards, state.identities, state.rows, strict=True)}
    changed = {rel for rel, a, r in zip(shards, identities, rows, strict=True) if rel in known and known[rel] != (a, r)}
    changes = night_changes(state, shards, changed)
    if isinstance(changes, str):
        return Night("full", changes)
    if not changes.new and not changes.dead:
        return Night("unchanged", "input unchanged", state)
    if len(state.runs) > MAX_RUNS:
        return Night("full", f"the band index holds {len(state.runs) - 1} nightly runs (compaction)")
    return Night("night", night_reason(changes), state, changes)


def full_reason(job: JobSpec, state: DedupState | None, shards: Sequence[str], redone: set[str]) -> Changes | str:
    """Before phase A has run (what `plan` prints): why a build over `shards` (build order; phase A redoes
    `redone`) cannot be a night, or the night's changes."""
    if state is None or not state.shards:
        return "no dedup state of a finished build"
    if state.pending is not None:
        return "an unfinished build left the dedup state half-written"
    if state.settings != state_settings(job):
        return "dedup settings changed since the last build"
    changes = night_changes(state, shards, set(state.shards) & redone)
    if not isinstance(changes, str) and len(state.runs) > MAX_RUNS:
        return f"the band index holds {len(state.runs) - 1} nightly runs (compaction)"
    return changes


# --------------------------------------------------------------------------------------------------
# The probe


@dataclass(frozen=True)
class ProbeResult:
    url: str
    size: int
    edges: int
    matched: int


def _bitmap(keys: U64) -> tuple[npt.NDArray[np.bool_], np.uint64]:
    """A bitmap over the low bits of `keys` (about 32 entries per key, at most 4 MiB so that the lookups of every
    old row stay in cache): a fast first filter of the old rows."""
    size = int(min(1 << 22, max(1 << 16, 1 << int(np.ceil(np.log2(max(1, len(keys)) * 32))))))  # cache-sized
    mask = np.uint64(size - 1)
    bitmap = np.zeros(size, dtype=np.bool_)
    bitmap[(keys & mask).astype(np.int64)] = True
    return bitmap, mask


def old_matches(rows: dict[str, npt.NDArray[Any]], keys: U64) -> dict[str, Any]:
    """The old rows whose key is one of the (sorted, distinct) new `keys` (bands are compared by the stars)."""
    if len(rows[KEY]) == 0 or len(keys) == 0:
        return {name: values[:0] for name, values in rows.items()}
    bitmap, mask = _bitmap(keys)
    candidates = np.flatnonzero(bitmap[np.bitwise_and(rows[KEY], mask).view(np.int64)])  # a view: no copy
    cand_keys = rows[KEY][candidates]
    at = np.minimum(np.searchsorted(keys, cand_keys), len(keys) - 1)
    hit = keys[at] == cand_keys
    chosen = candidates[hit]
    return {name: values[chosen] for name, values in rows.items()}


def least_per_group(rows: dict[str, npt.NDArray[Any]]) -> dict[str, npt.NDArray[Any]]:
    """One row per `(key, band)`: its least node (every old node of a key is in one component already)."""
    if len(rows[KEY]) == 0:
        return rows
    order = np.lexsort((rows[NODE], rows[BAND], rows[KEY]))
    keys, bands, nodes = rows[KEY][order], rows[BAND][order], rows[NODE][order]
    first = np.ones(len(keys), dtype=bool)
    first[1:] = (keys[1:] != keys[:-1]) | (bands[1:] != bands[:-1])
    return {KEY: keys[first], BAND: bands[first], NODE: nodes[first]}


def probe_task(plan: Plan, state: DedupState, night: IndexRun, partition: int) -> ProbeResult:
    """Edges of band partition `partition`: new rows among themselves and against the state's living old rows."""
    parts = state.partitions
    new = read_arrays(list(night.urls), night.index, partition, parts, parts, plan.storage_options, BAND_COLUMNS)
    url = plan.object_url("probe", "p", partition)
    matched = 0
    if len(new[KEY]):
        distinct = np.unique(new[KEY])
        found = []
        for run in state.runs:
            old = read_arrays(list(run.urls), run.index, partition, parts, parts, plan.storage_options, BAND_COLUMNS)
            match = old_matches(old, distinct)
            del old
            if run.dead:  # rows of shards that vanished or changed since the run was written
                alive = ~np.isin(match[NODE] >> ROW_BITS, np.asarray(run.dead, dtype=np.int64))
                match = {name: values[alive] for name, values in match.items()}
            found.append(match)
        olds = {name: np.concatenate([f[name] for f in found]) for name in BAND_COLUMNS}
        olds = least_per_group(olds)
        matched = len(olds[KEY])
        u, v = collision_edges(
            np.concatenate([new[KEY], olds[KEY]]),
            np.concatenate([new[BAND], olds[BAND]]),
            np.concatenate([new[NODE], olds[NODE]]),
        )
    else:
        u = v = np.zeros(0, dtype=np.int64)
    table = pa.table({SRC: pa.array(u, type=pa.int64()), DST: pa.array(v, type=pa.int64())})
    size = write_segments(url, [(0, table)], 1, plan.storage_options)
    return ProbeResult(url, size, len(u), matched)


def read_probe_edges(urls: list[str], sizes: list[int], storage_options: dict[str, Any]) -> tuple[I64, I64]:
    """Every probe task's edges."""
    us, vs = [np.zeros(0, dtype=np.int64)], [np.zeros(0, dtype=np.int64)]
    for url, size in zip(urls, sizes, strict=True):
        for table in read_object(url, size, 1, storage_options):
            us.append(np.asarray(table[SRC].to_numpy(), dtype=np.int64))
            vs.append(np.asarray(table[DST].to_numpy(), dtype=np.int64))
    return np.concatenate(us), np.concatenate(vs)


__all__ = [
    "Changes",
    "DedupState",
    "IndexRun",
    "Night",
    "choose",
    "full_reason",
    "is_tombstone",
    "night_changes",
    "mark_pending",
    "probe_task",
    "read_state",
    "state_settings",
    "tombstone",
    "write_state",
]
