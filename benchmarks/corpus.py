"""Seeded benchmark corpora built from real web text in ../shared/corpora (nothing committed, nothing downloaded).

`real_documents()` gives the dolma CC-MAIN sample (670 non-empty documents, many languages) and the dragnet
corrected texts (1,381 English articles). `write_corpus()` scales them to any size as Parquet shards: copy k of a
document has its paragraphs rotated by k and every `1/noise` word replaced by a seeded random word, so copies are
not near-duplicates of each other (a dedup stage removes only what the real text duplicates).
"""

from __future__ import annotations

import gzip
import json
import os
import tarfile
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from engine.spec import JobSpec, load_job

# The team's real-data folder beside the repo, or CORPUS_ENGINE_SHARED (as for the tests) from a clone elsewhere.
SHARED = Path(os.environ.get("CORPUS_ENGINE_SHARED") or Path(__file__).resolve().parents[2] / "shared") / "corpora"
DOLMA = "dolma-tests/data-history/formats/gz/CC-MAIN-20190717121559-20190717143559-00140.jsonl.gz"
DRAGNET = "dragnet-corrected-text/dragnet_Corrected.tar.gz"


def real_documents(shared: Path = SHARED) -> list[str]:
    """Every non-empty real document available, in a fixed order."""
    with gzip.open(shared / DOLMA, "rt", encoding="utf-8") as handle:
        docs = [json.loads(line)["text"] for line in handle]
    with tarfile.open(shared / DRAGNET) as archive:
        for member in sorted(archive.getmembers(), key=lambda m: m.name):
            if member.isfile() and member.name.endswith(".txt"):
                docs.append(archive.extractfile(member).read().decode("utf-8", errors="replace"))  # type: ignore[union-attr]
    return [d for d in docs if d.strip()]


def variant(text: str, copy: int, rng: np.random.Generator, noise: int = 4) -> str:
    """Copy `copy` of a document: paragraphs rotated, one word in `noise` replaced (copy 0 is the original)."""
    if copy == 0:
        return text
    paragraphs = text.split("\n")
    shift = copy % len(paragraphs)
    paragraphs = paragraphs[shift:] + paragraphs[:shift]
    words = "\n".join(paragraphs).split(" ")
    for i in rng.choice(len(words), size=max(1, len(words) // noise), replace=False):
        words[i] = f"w{rng.integers(1_000_000)}"
    return " ".join(words)


def job_over(job_path: str, src: Path, out: Path) -> JobSpec:
    """The job file `job_path` pointed at the corpus in `src`, writing to `out`."""
    job = load_job(job_path, output=str(out))
    return job.model_copy(update={"input": job.input.model_copy(update={"path": str(src)})})


def write_corpus(
    target: Path, *, docs: int, shards: int, seed: int = 0, first_shard: int = 0, urls: bool = False
) -> Path:
    """Write `docs` documents as `shards` zstd Parquet shards (`shard-NNNNN.parquet`) under `target`.

    With `urls`, documents get a `url` on a domain of their own shard (`news<shard>.com/<seed>-<row>`), so a
    blocklist entry hits exactly one shard.
    """
    rng = np.random.default_rng(seed)
    base = real_documents()
    texts = [variant(base[i % len(base)], i // len(base), rng) for i in range(docs)]
    target.mkdir(parents=True, exist_ok=True)
    per = -(-docs // shards)
    for index in range(shards):
        part = texts[index * per : (index + 1) * per]
        ids = [f"s{seed}-{index * per + j}" for j in range(len(part))]
        table = pa.table({"id": ids, "text": pa.array(part, type=pa.large_string())})
        if urls:
            shard = first_shard + index
            table = table.append_column("url", pa.array([f"news{shard}.com/{seed}-{j}" for j in range(len(part))]))
        pq.write_table(
            table, target / f"shard-{first_shard + index:05d}.parquet", compression="zstd", write_page_checksum=True
        )
    return target
