"""Removal over every shard with the removal summary: a night that changed nothing costs O(1) requests in removal.

Without it, each shard's removal task reads the shard's marker (HEAD + GET) and fate file, and checks each output
(a HEAD), only to find nothing changed: O(shards) round trips every night. The removal summary
(`state/removal-summary.json`, written by the driver after every shard's removal is done, and only when it would
change) records per shard: `removal_inputs` (a digest of the removal settings and phase A's identity of the
shard: everything its output depends on besides its fates), the listing fingerprint of its fate file, what
removal wrote (counts, the key) and the listing fingerprint of every output file. The next run lists
`state/fates/` and the output folders (`kept/`, `rejected/`: a LIST per 1,000 files) and answers for a shard from
the summary only while its digest equals the one now, its fate file is unchanged and every output is still there
unchanged (a user deleting or editing a `kept/` file is noticed); every other shard's task checks it as before
(`engine.dedup.removal`: its marker's key, its outputs). A full rebuild trusts nothing. An interrupted removal
leaves the last summary: the shards it rewrote no longer match it (their outputs' fingerprints changed).
"""

from __future__ import annotations

import functools
from collections.abc import Iterable
from typing import Any

from engine.dedup.plan import Plan, Removal
from engine.dedup.removal import ShardRemoval, removal_inputs, remove_duplicates
from engine.io.layout import join
from engine.io.markers import read_json, write_json
from engine.io.paths import filesystem
from engine.runner.executor import Executor
from engine.runner.summary import listed_fingerprints, relative_to, under

REMOVAL_SUMMARY_FORMAT = 1


def removal_summary_url(plan: Plan) -> str:
    """Beside `state/removal/` (whose markers the vanished-shard clean-up lists), not in it."""
    return join(plan.root, "state", "removal-summary.json")


def run_removal(plan: Plan, removal: Removal, executor: Executor) -> list[ShardRemoval]:
    """Every shard's removal, in shard order: from the summary where it answers, else by the shard's task."""
    options = plan.storage_options
    previous = None if removal.force else read_json(removal_summary_url(plan), options)
    if previous is not None and previous.get("format") != REMOVAL_SUMMARY_FORMAT:
        previous = None
    recorded: dict[str, Any] = (previous or {}).get("shards") or {}
    trusted: dict[int, ShardRemoval] = {}
    rewrite: set[int] = set()
    if recorded:
        outputs = (under(removal.output, o) for item in recorded.values() for o in item.get("outputs") or {})
        listed = _listing(plan, removal.output, outputs)
        for shard, rel in enumerate(plan.shards):
            item = recorded.get(rel)
            if item is None or not _same_inputs(plan, removal, shard, item, listed):
                continue
            if _same_outputs(plan, removal.output, item, listed):
                trusted[shard] = _from_summary(removal.output, rel, item)
            else:  # an output deleted or changed since removal wrote it: the marker's key would not notice
                rewrite.add(shard)
    todo = [shard for shard in range(len(plan.shards)) if shard not in trusted]
    done = dict(trusted)
    if todo:
        task = functools.partial(_remove, plan, removal, frozenset(rewrite))
        done.update(zip(todo, executor.map(task, todo, label="dedup: removal"), strict=True))
    if todo or set(recorded) != set(plan.shards):
        _write_summary(plan, removal, done, {plan.shards[s]: recorded[plan.shards[s]] for s in trusted})
    return [done[shard] for shard in range(len(plan.shards))]


def _remove(plan: Plan, removal: Removal, rewrite: frozenset[int], shard: int) -> ShardRemoval:
    return remove_duplicates(plan, removal, shard, rewrite=shard in rewrite)


def _same_inputs(plan: Plan, removal: Removal, shard: int, item: dict[str, Any], listed: dict[str, Any]) -> bool:
    """The summary's entry was made from what the shard's removal depends on now: its `removal_inputs` and its
    fate file (as listed now)."""
    if item.get("inputs") != removal_inputs(removal, shard):
        return False
    return bool(item.get("fates") == listed.get(filesystem(plan.fates_url(shard), plan.storage_options)[1]))


def _same_outputs(plan: Plan, out: str, item: dict[str, Any], listed: dict[str, Any]) -> bool:
    """Every output the entry records is listed now with the fingerprint it had."""
    outputs: dict[str, Any] = item.get("outputs") or {}
    return all(listed.get(filesystem(under(out, o), plan.storage_options)[1]) == fp for o, fp in outputs.items())


def _from_summary(out: str, rel: str, item: dict[str, Any]) -> ShardRemoval:
    return ShardRemoval(
        rel,
        int(item["kept"]),
        int(item["duplicates"]),
        int(item["duplicates_written"]),
        tuple(under(out, o) for o in sorted(item["outputs"])),
        {str(k): int(v) for k, v in (item.get("by_language") or {}).items()},
        str(item.get("key", "")),
    )


def _listing(plan: Plan, out: str, outputs: Iterable[str]) -> dict[str, dict[str, Any]]:
    """Fingerprints of `state/fates/` and of the top folders under the output that `outputs` are in, as listed."""
    tops = sorted({relative_to(out, url).split("/", 1)[0] for url in outputs} - {""})
    return listed_fingerprints(
        [join(plan.root, "state", "fates"), *(join(out, top) for top in tops)], plan.storage_options
    )


def _write_summary(
    plan: Plan, removal: Removal, done: dict[int, ShardRemoval], kept_items: dict[str, dict[str, Any]]
) -> None:
    """Record every shard: the entries still valid as they were, the others from what removal returned and a
    listing now (a shard an output of which is not listed is left out: its task checks it next time)."""
    options, out = plan.storage_options, removal.output
    fresh = {shard: result for shard, result in done.items() if plan.shards[shard] not in kept_items}
    listed = _listing(plan, out, (url for result in fresh.values() for url in result.outputs))
    shards = dict(kept_items)
    for shard, result in fresh.items():
        outputs = {relative_to(out, o): listed.get(filesystem(o, options)[1]) for o in result.outputs}
        if any(fp is None for fp in outputs.values()):
            continue
        shards[result.rel] = {
            "inputs": removal_inputs(removal, shard),
            "fates": listed.get(filesystem(plan.fates_url(shard), options)[1]),
            "key": result.key,
            "kept": result.kept,
            "duplicates": result.duplicates,
            "duplicates_written": result.duplicates_written,
            "by_language": result.duplicates_by_language,
            "outputs": outputs,
        }
    data = {"format": REMOVAL_SUMMARY_FORMAT, "shards": dict(sorted(shards.items()))}
    write_json(removal_summary_url(plan), data, options)
