"""Reference (frozen, see the package).

The dedup driver: runs (or resumes) phases B, C, representatives and D as tasks of an executor.

The phases themselves live in `engine.dedup` (one module each) and never know how they are scheduled; this
module sequences them, writes each phase's marker when all its tasks are done, and skips finished phases on a
rerun (their markers carry the hash of the run's inputs: `engine.dedup.plan`).
"""

from __future__ import annotations

import functools

import numpy as np

from engine.dedup.signatures import KEYS, signatures_file
from engine.runner.executor import Executor
from engine.spec import JobSpec
from tests.dedup.reference.components import MAX_STEPS, components_task, star_task
from tests.dedup.reference.plan import (
    Plan,
    clear,
    invalidate_after,
    make_plan,
    read_marker,
    remove_vanished_shards,
    write_marker,
)
from tests.dedup.reference.removal import remove_duplicates
from tests.dedup.reference.representatives import choose_representatives, join_labels
from tests.dedup.reference.shuffle import find_edges, map_bands


def connected_components(plan: Plan, executor: Executor, *, edges: int, in_memory_max_edges: int) -> str:
    """Run (or resume) phase C; the folder holding the final labels."""
    done = read_marker(plan, "components")
    if done is not None:
        return str(done["labels"])
    invalidate_after(plan, "components")
    if edges <= in_memory_max_edges:
        clear(plan, "cc/labels-memory")
        executor.map(functools.partial(components_task, plan), [0], label="dedup: components (one task)")
        labels = "cc/labels-memory"
    else:
        labels = _star_rounds(plan, executor)
    write_marker(plan, "components", labels=labels)
    return labels


def _star_rounds(plan: Plan, executor: Executor) -> str:
    digests: dict[int, int] = {}
    for step in range(MAX_STEPS):
        name = f"cc-step-{step:05d}"
        done = read_marker(plan, name)
        if done is None:
            clear(plan, f"cc/step-{step + 1:05d}", f"cc/labels-{step:05d}")
            kind = "large-star" if step % 2 == 0 else "small-star"
            results = executor.map(
                functools.partial(star_task, plan, step),
                list(range(plan.partitions)),
                label=f"dedup: components step {step} ({kind})",
            )
            digest = int(np.sum(np.array([d for _, d in results], dtype=np.uint64), dtype=np.uint64))
            write_marker(plan, name, edges=sum(c for c, _ in results), digest=str(digest))
            clear(plan, f"cc/step-{step:05d}")
            if step >= 2 and step % 2 == 0:
                clear(plan, f"cc/labels-{step - 2:05d}")
            done = read_marker(plan, name)
            assert done is not None
        digests[step] = int(done["digest"])
        if step >= 2 and step % 2 == 0 and digests[step] == digests[step - 2]:
            return f"cc/labels-{step:05d}"
    msg = f"connected components did not converge in {MAX_STEPS} steps; this is a bug, please report it"
    raise RuntimeError(msg)


def run_dedup(job: JobSpec, shards: list[str], executor: Executor) -> dict[str, int]:
    """Run (or resume) phases B, C and D over every shard; duplicates removed per shard.

    `shards` are the input shards' relative names, sorted; each has its staged kept documents and its
    signatures from phase A. The final kept documents are written to `kept/`.
    """
    dedup = job.dedup
    if dedup is None:
        msg = "run_dedup needs a job with a `dedup:` section"
        raise ValueError(msg)
    shards = sorted(shards)
    plan, removal = make_plan(job, shards)
    out = job.output.path
    signature_urls = [signatures_file(out, dedup, rel) for rel in shards]

    remove_vanished_shards(plan, shards)
    if read_marker(plan, "bands") is None:
        invalidate_after(plan, "bands")
        clear(plan, "bands", KEYS, "cc", "members", "clusters")
        executor.map(functools.partial(map_bands, plan), list(enumerate(signature_urls)), label="dedup: band keys")
        write_marker(plan, "bands")
    edges_marker = read_marker(plan, "edges")
    if edges_marker is None:
        invalidate_after(plan, "edges")
        clear(plan, "cc", "members", "clusters")
        counts = executor.map(
            functools.partial(find_edges, plan), list(range(plan.partitions)), label="dedup: collisions"
        )
        write_marker(plan, "edges", edges=sum(counts))
        edges_marker = read_marker(plan, "edges")
        assert edges_marker is not None
    labels = connected_components(
        plan, executor, edges=int(edges_marker["edges"]), in_memory_max_edges=dedup.in_memory_max_edges
    )
    if read_marker(plan, "clusters") is None:
        invalidate_after(plan, "clusters")
        clear(plan, "members", "clusters")
        parts = list(range(plan.partitions))
        executor.map(functools.partial(join_labels, plan, labels), parts, label="dedup: cluster members")
        clusters = executor.map(functools.partial(choose_representatives, plan), parts, label="dedup: representatives")
        write_marker(plan, "clusters", clusters=sum(clusters))
    removed = executor.map(
        functools.partial(remove_duplicates, plan, removal), list(enumerate(shards)), label="dedup: removal"
    )
    return dict(zip(shards, removed, strict=True))
