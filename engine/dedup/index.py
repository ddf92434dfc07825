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

The probe (`probe_task`, one per band partition): the night's new rows of partition `p`, the old rows of `p` that
share a `(band, key)` with one of them (a bitmap over the new keys' low bits filters the old rows, an exact
search confirms), and one star per colliding group (the least old node of a key stands for every old node of it:
they are in one component already). Its edges `(u, v)` go to the night's graph task (`engine.dedup.night`).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa

from engine.dedup.plan import DST, SRC, Plan, digest
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
                {"urls": list(r.urls), "sizes": list(r.sizes), "index": r.index, "rows": r.rows} for r in self.runs
            ],
            "clusters": list(self.clusters),
            "cluster_rows": list(self.cluster_rows),
            "pending": self.pending,
            "extra": self.extra,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> DedupState:
        runs = tuple(
            IndexRun(tuple(r["urls"]), tuple(int(s) for s in r["sizes"]), str(r["index"]), int(r["rows"]))
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
class Night:
    """How a build uses the state: `mode` is `full`, `night` (new shards only) or `unchanged`; `reason` says why
    (printed by `plan`); `state` is the state a night or an unchanged rerun builds on."""

    mode: str
    reason: str
    state: DedupState | None = None

    @property
    def first_new(self) -> int:
        """Position (build order) of the first shard the state does not cover."""
        return len(self.state.shards) if self.state is not None else 0


def choose(
    job: JobSpec,
    state: DedupState | None,
    shards: list[str],
    identities: list[str],
    rows: list[int],
    *,
    full: bool,
) -> Night:
    """Full rebuild, a night over new shards, or nothing new: from the state and the shards in build order."""
    if full:
        return Night("full", "--full")
    if state is None or not state.shards:
        return Night("full", "no dedup state of a finished build")
    if state.settings != state_settings(job):
        return Night("full", "dedup settings changed since the last build")
    old = len(state.shards)
    if tuple(shards[:old]) != state.shards:
        gone = sorted(set(state.shards) - set(shards))
        what = f"{len(gone):,} shard(s) vanished" if gone else "the build order changed"
        return Night("full", what)
    before = zip(shards, identities, state.identities, rows, state.rows, strict=False)
    changed = [rel for rel, a, b, r, s in before if a != b or r != s]
    if changed:
        return Night("full", f"{len(changed):,} shard(s) changed")
    if len(shards) == old:
        return Night("unchanged", "input unchanged", state)
    if len(state.runs) > MAX_RUNS:
        return Night("full", f"the band index holds {len(state.runs) - 1} nightly runs (compaction)")
    return Night("night", f"{len(shards) - old:,} new shard(s) probed against the band index", state)


def full_reason(job: JobSpec, state: DedupState | None, current: set[str], redone: set[str]) -> str | None:
    """Why a build over the shards `current` (phase A redoes `redone`) cannot be a night over new shards; None
    when it can (what `plan` prints before phase A has run)."""
    if state is None or not state.shards:
        return "no dedup state of a finished build"
    if state.pending is not None:
        return "an unfinished build left the dedup state half-written"
    if state.settings != state_settings(job):
        return "dedup settings changed since the last build"
    gone = set(state.shards) - current
    if gone:
        return f"{len(gone):,} shard(s) vanished"
    changed = set(state.shards) & redone
    if changed:
        return f"{len(changed):,} shard(s) changed"
    if len(state.runs) > MAX_RUNS:
        return f"the band index holds {len(state.runs) - 1} nightly runs (compaction)"
    return None


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
    """Edges of band partition `partition`: new rows among themselves and against the state's old rows."""
    parts = state.partitions
    new = read_arrays(list(night.urls), night.index, partition, parts, parts, plan.storage_options, BAND_COLUMNS)
    url = plan.object_url("probe", "p", partition)
    matched = 0
    if len(new[KEY]):
        distinct = np.unique(new[KEY])
        found = []
        for run in state.runs:
            old = read_arrays(list(run.urls), run.index, partition, parts, parts, plan.storage_options, BAND_COLUMNS)
            found.append(old_matches(old, distinct))
            del old
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
    "DedupState",
    "IndexRun",
    "Night",
    "choose",
    "full_reason",
    "mark_pending",
    "probe_task",
    "read_state",
    "state_settings",
    "write_state",
]
