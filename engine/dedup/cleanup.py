"""Clean-up after a dedup run, done by tasks: the run's shuffle objects, older runs, vanished shards' outputs.

Objects are deleted by name (the driver knows every object a phase wrote from its tasks' results), in bulk
requests on object stores (`fs.rm` of a list: up to 1,000 keys per DELETE on S3); only the `shuffle/` folder (one
level), the removal markers and a legacy `work/` folder are listed.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from engine.dedup.index import read_state
from engine.dedup.plan import Plan
from engine.io.layout import join
from engine.io.markers import read_json
from engine.io.paths import filesystem, list_files, relative_path

BATCH = 1000
"""Objects per clean-up task (one bulk DELETE on S3)."""


def remove_objects(urls: Sequence[str], storage_options: dict[str, Any]) -> int:
    """Delete the objects `urls` (those already gone are ignored); how many were asked for."""
    if not urls:
        return 0
    fs, _ = filesystem(urls[0], storage_options)
    paths = [filesystem(url, storage_options)[1] for url in urls]
    try:
        fs.rm(paths)
    except FileNotFoundError:
        for path in paths:
            try:
                fs.rm(path)
            except FileNotFoundError:
                continue
    return len(urls)


def remove_other_runs(plan: Plan) -> list[str]:
    """Delete every other run's shuffle prefix (and the folder the design before segments used); their names."""
    fs, root = filesystem(plan.url(), plan.storage_options)
    parent = root.rstrip("/").rsplit("/", 1)[0]
    removed = []
    try:
        entries = fs.ls(parent, detail=False)
    except FileNotFoundError:
        entries = []
    for entry in entries:
        name = str(entry).rstrip("/").rsplit("/", 1)[-1]
        if name != plan.run:
            fs.rm(entry, recursive=True)
            removed.append(name)
    legacy = filesystem(join(plan.root, "work"), plan.storage_options)[1]
    if fs.exists(legacy):
        fs.rm(legacy, recursive=True)
        removed.append("work")
    return removed


def remove_vanished_shards(plan: Plan) -> list[str]:
    """Remove the final outputs, fate files and removal markers of shards no longer in the input; their names."""
    folder = join(plan.root, "state", "removal")
    current = set(plan.shards)
    gone = []
    for url in list_files(folder, plan.storage_options, "**/*.json"):
        rel = relative_path(url, folder, plan.storage_options).removesuffix(".json")
        if rel in current:
            continue
        marker = read_json(url, plan.storage_options) or {}
        fates = join(plan.root, "state", "fates", f"{rel}.parquet")
        remove_objects([*marker.get("outputs", []), fates, url], plan.storage_options)
        gone.append(rel)
    return gone


def remove_leftovers(plan: Plan) -> int:
    """Delete whatever is left of this run's shuffle but its markers (after removal); how many folders."""
    fs, root = filesystem(plan.url(), plan.storage_options)
    try:
        entries = [str(e).rstrip("/") for e in fs.ls(root, detail=False)]
    except FileNotFoundError:
        return 0
    folders = [e for e in entries if e.rsplit("/", 1)[-1] != "_markers"]
    for folder in folders:
        fs.rm(folder, recursive=True)
    return len(folders)


def remove_unused_index(plan: Plan) -> list[str]:
    """Delete the `state/index/<run>` folders the committed state no longer refers to; their names."""
    state = read_state(plan.root, plan.storage_options)
    if state is None or state.pending is not None:
        return []
    used = state.referenced_runs()
    fs, folder = filesystem(join(plan.root, "state", "index"), plan.storage_options)
    try:
        entries = [str(e).rstrip("/") for e in fs.ls(folder, detail=False)]
    except FileNotFoundError:
        return []
    removed = []
    for entry in entries:
        name = entry.rsplit("/", 1)[-1]
        if name not in used and name != "manifest.json":
            fs.rm(entry, recursive=True)
            removed.append(name)
    return removed


def cleanup_task(plan: Plan, item: tuple[str, tuple[str, ...]]) -> int:
    """One clean-up task: `("objects", urls)`, `("leftovers", ())` (this run's objects but its markers), `("reset",
    ())` (this run's objects and markers), `("runs", ())` (older runs), `("vanished", ())` or `("index", ())` (state
    folders the committed state no longer uses); how much it removed."""
    kind, urls = item
    if kind == "objects":
        return remove_objects(urls, plan.storage_options)
    if kind == "leftovers":
        return remove_leftovers(plan)
    if kind == "reset":
        return remove_objects(list_files(plan.url(), plan.storage_options), plan.storage_options)
    if kind == "runs":
        return len(remove_other_runs(plan))
    if kind == "index":
        return len(remove_unused_index(plan))
    return len(remove_vanished_shards(plan))
