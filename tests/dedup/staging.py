"""Test helpers: a seeded corpus with known near-duplicates, staged as phase A would leave it."""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from typing import Any

import pyarrow as pa

from engine.dedup.signatures import signature_table, signatures_file
from engine.io.layout import KEPT, STAGE, join, shard_file
from engine.io.parquet import write_table
from engine.spec import JobSpec


def _vocabulary(size: int) -> list[str]:
    """Distinct letter-only words (digits would all normalise to 0)."""
    letters = "abcdefghijklmnopqrstuvwxyz"
    rng = random.Random(12345)
    words: set[str] = set()
    while len(words) < size:
        words.add("".join(rng.choice(letters) for _ in range(rng.randint(3, 9))))
    return sorted(words)


VOCABULARY = _vocabulary(5000)


def random_text(rng: random.Random, words: int) -> str:
    return " ".join(rng.choice(VOCABULARY) for _ in range(words))


def mutate(rng: random.Random, text: str, rate: float) -> str:
    """Replace about `rate` of the words by random ones."""
    words = text.split()
    for i in range(len(words)):
        if rng.random() < rate:
            words[i] = rng.choice(VOCABULARY)
    return " ".join(words)


def corpus(seed: int, *, originals: int = 30, copies: int = 2, words: int = 200) -> list[tuple[str, str, int]]:
    """`(id, text, group)` rows: originals, light mutations of them (1%), and exact copies; shuffled."""
    rng = random.Random(seed)
    rows = []
    for g in range(originals):
        text = random_text(rng, words)
        rows.append((f"doc-{g:03d}-0", text, g))
        for c in range(1, copies + 1):
            copy = mutate(rng, text, 0.01) if c % 2 else text
            rows.append((f"doc-{g:03d}-{c}", copy, g))
    rng.shuffle(rows)
    return rows


def make_job(
    output: str, dedup: dict[str, Any], steps: list[dict[str, Any]] | None = None, **output_options: Any
) -> JobSpec:
    """A dedup job over documents `stage` writes: their text is staged (`stage_text`), as phase A then leaves it."""
    return JobSpec.model_validate(
        {
            "input": {"path": "unused"},
            "output": {"path": output, **output_options},
            "steps": steps or [],
            "dedup": {"stage_text": True, **dedup},
        }
    )


def stage(job: JobSpec, shards: dict[str, pa.Table], *, batch_rows: int = 7) -> list[str]:
    """Write `_stage/kept` and the signature file of each shard as phase A does; the sorted names."""
    assert job.dedup is not None
    out, options = job.output.path, job.output.storage_options
    for rel, table in shards.items():
        write_table(table, shard_file(out, join(STAGE, KEPT), rel), options)
        batches = [table.slice(i, batch_rows) for i in range(0, max(table.num_rows, 1), batch_rows)]
        signatures = pa.concat_tables([signature_table(b, job.dedup) for b in batches])
        write_table(signatures, signatures_file(out, job.dedup, rel), options)
    return sorted(shards)


def split(
    rows: Sequence[tuple[str, str, int]], n_shards: int, **extra: Callable[[str, str], object]
) -> dict[str, pa.Table]:
    """Rows dealt into `n_shards` tables (`id`, `text`, plus `extra` columns computed from id and text)."""
    shards: dict[str, pa.Table] = {}
    for s in range(n_shards):
        part = rows[s::n_shards]
        columns: dict[str, pa.Array] = {
            "id": pa.array([r[0] for r in part], type=pa.string()),
            "text": pa.array([r[1] for r in part], type=pa.large_string()),
        }
        for name, fn in extra.items():
            columns[name] = pa.array([fn(r[0], r[1]) for r in part])
        shards[f"part-{s:03d}"] = pa.table(columns)
    return shards
