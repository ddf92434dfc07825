"""MinHash dedup benchmarks: signature throughput, end to end against datatrove, peak memory per task.

Real text: /work/shared/corpora/dragnet-corrected-text (1,381 English pages, about 1,050 words each) and the
dolma-tests Common Crawl sample (697 multilingual pages); larger corpora are made by near-duplicating them
(`scaled_corpus`). Every command prints one JSON line per measurement (add `--out FILE` to append them).

    python benchmarks/bench_dedup.py signatures                    # engine vs datasketch vs rensa, 1 core
    /work/venv-bench/bin/python benchmarks/bench_dedup.py datatrove-signatures
    python benchmarks/bench_dedup.py make-shards --docs 20000 --shards 8 --dir /tmp/dd/in
    python benchmarks/bench_dedup.py engine-e2e --dir /tmp/dd/in --work /tmp/dd/engine --workers 2
    /work/venv-bench/bin/python benchmarks/bench_dedup.py datatrove-e2e --dir /tmp/dd/in --work /tmp/dd/dt --workers 2
    python benchmarks/bench_dedup.py agreement --engine /tmp/dd/engine --datatrove /tmp/dd/dt
    python benchmarks/bench_dedup.py memory --docs 100000,200000,400000 --partitions 2,4,8

Timings are wall-clock on a shared 2-core machine: compare numbers from the same run only.
"""

from __future__ import annotations

import argparse
import functools
import gzip
import json
import multiprocessing
import os
import platform
import random
import resource
import shutil
import sys
import tarfile
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
CORPORA = Path("/work/shared/corpora")

NGRAM, BANDS, ROWS, SEED = 5, 14, 8, 1


# ------------------------------------------------------------------------------------------------
# Corpora


def dragnet_texts() -> list[str]:
    """The 1,381 gold texts of the Dragnet benchmark, in archive order."""
    texts = []
    with tarfile.open(CORPORA / "dragnet-corrected-text" / "dragnet_Corrected.tar.gz") as archive:
        for member in archive.getmembers():
            if member.isfile():
                handle = archive.extractfile(member)
                assert handle is not None
                texts.append(handle.read().decode("utf-8", "replace"))
    return texts


def dolma_texts() -> list[str]:
    """The 670 non-empty pages of dolma's CC-MAIN-2019-30 test file (55 languages)."""
    path = next((CORPORA / "dolma-tests" / "data-history").rglob("*.jsonl.gz"))
    with gzip.open(path, "rt", encoding="utf-8") as handle:
        texts = [json.loads(line).get("text") or "" for line in handle]
    return [t for t in texts if t.strip()]


def mutate(rng: random.Random, words: list[str], rate: float, vocabulary: Sequence[str]) -> list[str]:
    """Each word is, with probability `rate`, replaced (1/2), deleted (1/4) or followed by a new word (1/4)."""
    out: list[str] = []
    for word in words:
        if rng.random() >= rate:
            out.append(word)
            continue
        kind = rng.random()
        if kind < 0.5:
            out.append(rng.choice(vocabulary))
        elif kind < 0.75:
            continue
        else:
            out.extend([word, rng.choice(vocabulary)])
    return out


def scaled_corpus(n_docs: int, seed: int = 0) -> tuple[list[str], list[str], list[int]]:
    """`(ids, texts, source)`: Dragnet's pages, then copies of random pages mutated at random edit rates.

    Edit rates 0 (exact copy), 0.01, 0.03, 0.1 give near-duplicates; 0.5 gives a new, unrelated-looking
    document (Jaccard ~0.01), so about 40% of the added documents are new text. `source` is the index of
    the page a document was made from.
    """
    rng = random.Random(seed)
    base = dragnet_texts()
    split = [t.split() for t in base]
    vocabulary = sorted({w for words in split for w in words})
    ids, texts, source = [], [], []
    for i in range(n_docs):
        if i < len(base):
            j, words = i, split[i]
        else:
            j = rng.randrange(len(base))
            words = mutate(rng, split[j], rng.choice([0.0, 0.01, 0.03, 0.1, 0.5, 0.5]), vocabulary)
        ids.append(f"d{i:08d}")
        texts.append(" ".join(words))
        source.append(j)
    order = list(range(n_docs))
    rng.shuffle(order)
    return [ids[i] for i in order], [texts[i] for i in order], [source[i] for i in order]


def emit(record: dict[str, Any], out: str | None) -> None:
    from engine.provenance import git_state

    record = {"bench": "dedup", "git": git_state(), "machine": platform.node(), "cpus": os.cpu_count(), **record}
    line = json.dumps(record, sort_keys=True)
    print(line, flush=True)
    if out:
        with open(out, "a", encoding="utf-8") as handle:
            handle.write(line + "\n")


# ------------------------------------------------------------------------------------------------
# Signatures per second, one core


def _best_of(repeat: int, fn: Callable[[], object]) -> float:
    """Best CPU seconds of this process over `repeat` runs (CPU time: the machine is shared)."""
    best = float("inf")
    for _ in range(repeat):
        started = time.process_time()
        fn()
        best = min(best, time.process_time() - started)
    return best


def word_ngrams(text: str) -> list[str]:
    words = text.split(" ") if text else []
    if len(words) < NGRAM:
        return [" ".join(words)] if words else []
    return [" ".join(words[i : i + NGRAM]) for i in range(len(words) - NGRAM + 1)]


def _sign_all(batches: list[Any], dedup: Any) -> None:
    from engine.dedup.signatures import signature_table

    for batch in batches:
        signature_table(batch, dedup)


def bench_signatures(args: argparse.Namespace) -> None:
    import pyarrow as pa

    from engine.dedup.normalise import normalise_texts
    from engine.spec import MinhashDedup

    for name, texts in (("dragnet", dragnet_texts()), ("dolma", dolma_texts())):
        n = len(texts)
        words = sum(len(t.split()) for t in texts) / n
        table = pa.table({"id": [str(i) for i in range(n)], "text": pa.array(texts, pa.large_string())})
        dedup = MinhashDedup()
        batches = [table.slice(i, 2048) for i in range(0, n, 2048)]
        seconds = _best_of(args.repeat, functools.partial(_sign_all, batches, dedup))
        emit(
            {
                "what": "signatures",
                "tool": "engine",
                "corpus": name,
                "docs": n,
                "words_per_doc": round(words),
                "docs_per_s_core": round(n / seconds),
            },
            args.out,
        )

        normalised = normalise_texts(table["text"]).to_pylist()
        shingled = [[s.encode() for s in word_ngrams(t)] for t in normalised]

        import datasketch

        def run_datasketch(shingled: list[list[bytes]] = shingled) -> None:
            for shingles in shingled:
                m = datasketch.MinHash(num_perm=BANDS * ROWS, seed=SEED)
                m.update_batch(shingles)

        # datasketch and rensa get pre-normalised, pre-shingled input: only their hashing is timed.
        seconds = _best_of(1, run_datasketch)
        emit(
            {
                "what": "signatures",
                "tool": "datasketch (hashing only)",
                "corpus": name,
                "docs": n,
                "docs_per_s_core": round(n / seconds),
            },
            args.out,
        )
        import rensa

        def run_rensa(shingled: list[list[bytes]] = shingled) -> None:
            for shingles in shingled:
                m = rensa.RMinHash(num_perm=BANDS * ROWS, seed=SEED)
                m.update(shingles)
                m.digest()

        seconds = _best_of(args.repeat, run_rensa)
        emit(
            {
                "what": "signatures",
                "tool": "rensa (hashing only)",
                "corpus": name,
                "docs": n,
                "docs_per_s_core": round(n / seconds),
            },
            args.out,
        )


def bench_datatrove_signatures(args: argparse.Namespace) -> None:
    """datatrove's own per-document path: simplify_text, word tokenizer, n-grams, xxhash64, 112 hashes."""
    from datatrove.pipeline.dedup.minhash import MinhashConfig, MinhashDedupSignature

    step = MinhashDedupSignature(output_folder="/tmp/unused-dt-sigs", config=MinhashConfig())
    for name, texts in (("dragnet", dragnet_texts()), ("dolma", dolma_texts())):
        sample = texts[: args.limit]

        def run(sample: list[str] = sample) -> None:
            for text in sample:
                shingles = step.get_shingles(text)
                if shingles.size:
                    step.get_signature(shingles)

        seconds = _best_of(1, run)
        emit(
            {
                "what": "signatures",
                "tool": "datatrove",
                "corpus": name,
                "docs": len(sample),
                "docs_per_s_core": round(len(sample) / seconds),
            },
            args.out,
        )


# ------------------------------------------------------------------------------------------------
# End to end on the same shards


def make_shards(args: argparse.Namespace) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    ids, texts, _ = scaled_corpus(args.docs, seed=args.seed)
    folder = Path(args.dir)
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    per = -(-len(ids) // args.shards)
    for s in range(args.shards):
        part = slice(s * per, (s + 1) * per)
        table = pa.table({"id": ids[part], "text": pa.array(texts[part], pa.large_string())})
        pq.write_table(table, folder / f"part-{s:04d}.parquet", row_group_size=2048)
    print(f"{len(ids)} docs in {args.shards} shards under {folder}")


def _measured(fn: Callable[[Any], Any], item: Any) -> tuple[Any, int, int, float]:
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    cpu = time.process_time()
    result = fn(item)
    return result, before, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, time.process_time() - cpu


class PoolExecutor:
    """`Executor` over a process pool; with `fresh=True` every task runs in a new forked process, so each
    task's peak RSS (`ru_maxrss`) is its own."""

    def __init__(self, workers: int, *, fresh: bool = False) -> None:
        context = multiprocessing.get_context("forkserver")
        context.set_forkserver_preload(["engine.runner.dedup", "polars", "pyarrow.parquet"])
        self.pool = context.Pool(workers, maxtasksperchild=1 if fresh else None)
        self.peaks: dict[str, list[tuple[int, int]]] = defaultdict(list)
        self.seconds: dict[str, float] = defaultdict(float)
        self.cpu: dict[str, float] = defaultdict(float)

    def map(self, fn: Callable[[Any], Any], items: Sequence[Any], *, label: str) -> list[Any]:
        started = time.perf_counter()
        out = self.pool.map(functools.partial(_measured, fn), items, chunksize=1)
        self.seconds[label] += time.perf_counter() - started
        self.peaks[label] += [(before, after) for _, before, after, _ in out]
        self.cpu[label] += sum(cpu for _, _, _, cpu in out)
        return [result for result, _, _, _ in out]

    def close(self) -> None:
        self.pool.close()
        self.pool.join()


def _phase_a(out: str, batch_rows: int, shard: str) -> int:
    """What the unit adds for dedup: signatures of every batch; plus the staged kept copy."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from engine.dedup.signatures import signature_table, signatures_file
    from engine.io.layout import KEPT, STAGE, join, shard_file
    from engine.spec import MinhashDedup

    dedup = MinhashDedup(partitions=None)
    rel = Path(shard).stem
    parquet = pq.ParquetFile(shard)
    stage_path = shard_file(out, join(STAGE, KEPT), rel)
    sig_path = signatures_file(out, dedup, rel)
    for path in (stage_path, sig_path):
        Path(path).parent.mkdir(parents=True, exist_ok=True)
    kept_writer = pq.ParquetWriter(stage_path, parquet.schema_arrow, compression="zstd")
    sig_writer = None
    rows = 0
    for batch in parquet.iter_batches(batch_size=batch_rows):
        table = pa.Table.from_batches([batch])
        signatures = signature_table(table, dedup)
        if sig_writer is None:
            sig_writer = pq.ParquetWriter(sig_path, signatures.schema, compression="zstd")
        kept_writer.write_table(table)
        sig_writer.write_table(signatures)
        rows += table.num_rows
    kept_writer.close()
    if sig_writer is not None:
        sig_writer.close()
    return rows


def engine_job(work: str, partitions: int | None, in_memory_max_edges: int) -> Any:
    from engine.spec import JobSpec

    dedup = {
        "type": "minhash",
        "partitions": partitions,
        "in_memory_max_edges": in_memory_max_edges,
        "add_cluster_columns": True,
        "stage_text": True,  # `_phase_a` stages the kept text (`_stage/kept`) for removal to copy
    }
    return JobSpec.model_validate({"input": {"path": "unused"}, "output": {"path": work}, "dedup": dedup})


def engine_e2e(args: argparse.Namespace) -> dict[str, Any]:
    from engine.runner.dedup import run_dedup

    shards = sorted(str(p) for p in Path(args.dir).glob("*.parquet"))
    shutil.rmtree(args.work, ignore_errors=True)
    executor = PoolExecutor(args.workers, fresh=args.fresh)
    started = time.perf_counter()
    driver_cpu = time.process_time()
    docs = sum(executor.map(functools.partial(_phase_a, args.work, 2048), shards, label="A: signatures"))
    signed = time.perf_counter()
    job = engine_job(args.work, args.partitions, args.in_memory_max_edges)
    removed = run_dedup(job, [Path(s).stem for s in shards], executor).removed()
    finished = time.perf_counter()
    cpu = sum(executor.cpu.values()) + time.process_time() - driver_cpu
    executor.close()
    peaks = {
        label: round(max(after - before for before, after in values) / 1024, 1)
        for label, values in executor.peaks.items()
    }
    absolute = {label: round(max(after for _, after in values) / 1024, 1) for label, values in executor.peaks.items()}
    record = {
        "what": "end_to_end",
        "tool": "engine",
        "docs": docs,
        "shards": len(shards),
        "workers": args.workers,
        "partitions": args.partitions,
        "duplicates": sum(removed.values()),
        "seconds": round(finished - started, 2),
        "signature_seconds": round(signed - started, 2),
        "docs_per_s_core": round(docs / (finished - started) / args.workers),
        "cpu_seconds": round(cpu, 2),
        "docs_per_cpu_s": round(docs / cpu),
        "signature_docs_per_cpu_s": round(docs / executor.cpu["A: signatures"]),
        "phase_seconds": {k: round(v, 2) for k, v in executor.seconds.items()},
        "phase_cpu_seconds": {k: round(v, 2) for k, v in executor.cpu.items()},
        "peak_task_mb_above_baseline": peaks if args.fresh else None,
        "peak_task_rss_mb": absolute if args.fresh else None,
    }
    emit(record, args.out)
    return record


def datatrove_e2e(args: argparse.Namespace) -> None:
    from datatrove.executor import LocalPipelineExecutor
    from datatrove.pipeline.dedup.minhash import (
        MinhashConfig,
        MinhashDedupBuckets,
        MinhashDedupCluster,
        MinhashDedupFilter,
        MinhashDedupSignature,
    )
    from datatrove.pipeline.readers import ParquetReader
    from datatrove.pipeline.writers import ParquetWriter

    work = Path(args.work)
    shutil.rmtree(work, ignore_errors=True)
    shards = sorted(Path(args.dir).glob("*.parquet"))
    config = MinhashConfig()
    logs = str(work / "logs")

    def reader() -> ParquetReader:
        return ParquetReader(args.dir, glob_pattern="*.parquet", id_key="id", text_key="text")

    stages = [
        LocalPipelineExecutor(
            pipeline=[reader(), MinhashDedupSignature(output_folder=str(work / "sigs"), config=config)],
            tasks=len(shards),
            workers=args.workers,
            logging_dir=f"{logs}/1",
            start_method="fork",
        ),
        LocalPipelineExecutor(
            pipeline=[
                MinhashDedupBuckets(input_folder=str(work / "sigs"), output_folder=str(work / "buckets"), config=config)
            ],
            tasks=config.num_buckets,
            workers=args.workers,
            logging_dir=f"{logs}/2",
            start_method="fork",
        ),
        LocalPipelineExecutor(
            pipeline=[
                MinhashDedupCluster(
                    input_folder=str(work / "buckets"),
                    output_folder=str(work / "remove"),
                    config=config,
                    save_cluster_id=True,
                )
            ],
            tasks=1,
            logging_dir=f"{logs}/3",
            start_method="fork",
        ),
        LocalPipelineExecutor(
            pipeline=[
                reader(),
                MinhashDedupFilter(
                    input_folder=str(work / "remove"),
                    load_cluster_ids=True,
                    exclusion_writer=ParquetWriter(str(work / "removed")),
                ),
                ParquetWriter(str(work / "kept")),
            ],
            tasks=len(shards),
            workers=args.workers,
            logging_dir=f"{logs}/4",
            start_method="fork",
        ),
    ]
    started = time.perf_counter()
    seconds = []
    for stage in stages:
        t = time.perf_counter()
        stage.run()
        seconds.append(round(time.perf_counter() - t, 2))
    total = time.perf_counter() - started
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime
    docs = sum(_count_rows(work / part) for part in ("kept", "removed"))
    emit(
        {
            "what": "end_to_end",
            "tool": "datatrove",
            "docs": docs,
            "shards": len(shards),
            "workers": args.workers,
            "duplicates": _count_rows(work / "removed"),
            "seconds": round(total, 2),
            "stage_seconds": seconds,
            "docs_per_s_core": round(docs / total / args.workers),
            "cpu_seconds_incl_imports": round(cpu, 2),
            "docs_per_cpu_s": round(docs / cpu),
        },
        args.out,
    )


def _count_rows(folder: Path) -> int:
    import pyarrow.parquet as pq

    return sum(pq.read_metadata(path).num_rows for path in folder.glob("*.parquet"))


def _datatrove_clusters(work: Path) -> dict[str, str]:
    """id -> cluster label for every document datatrove put in a cluster (removed or kept)."""
    import pyarrow.parquet as pq

    labels = {}
    for part in ("kept", "removed"):
        for path in (work / part).glob("*.parquet"):
            rows = pq.read_table(path, columns=["id", "metadata"]).to_pylist()
            for row in rows:
                cluster = (row.get("metadata") or {}).get("minhash_cluster_id")
                if cluster is not None and cluster != -1:
                    labels[row["id"]] = f"dt{cluster}"
    return labels


def _engine_clusters(work: Path) -> dict[str, str]:
    import pyarrow.parquet as pq

    labels = {}
    for path in (work / "kept").glob("*.parquet"):
        table = pq.read_table(path, columns=["id", "cluster_id"])
        for doc, cluster in zip(table["id"].to_pylist(), table["cluster_id"].to_pylist(), strict=True):
            if cluster is not None:
                labels[doc] = cluster
    for path in (work / "rejected").glob("*.duplicates.parquet"):
        table = pq.read_table(path, columns=["id", "duplicate_of"])
        labels.update(zip(table["id"].to_pylist(), table["duplicate_of"].to_pylist(), strict=True))
    return labels


def pair_agreement(a: dict[str, str], b: dict[str, str]) -> dict[str, Any]:
    """Duplicate pairs (same cluster) found by both, by `a` only, by `b` only (from cluster contingency)."""
    from collections import Counter

    def pairs(n: int) -> int:
        return n * (n - 1) // 2

    sizes_a, sizes_b = Counter(a.values()), Counter(b.values())
    both = Counter((a[d], b[d]) for d in a.keys() & b.keys())
    common = sum(pairs(n) for n in both.values())
    pairs_a, pairs_b = sum(pairs(n) for n in sizes_a.values()), sum(pairs(n) for n in sizes_b.values())
    same_sets = sum(1 for d in a.keys() & b.keys() if sizes_a[a[d]] == sizes_b[b[d]] == both[(a[d], b[d])])
    return {
        "pairs_a": pairs_a,
        "pairs_b": pairs_b,
        "pairs_both": common,
        "share_of_a_pairs_in_b": round(common / pairs_a, 4) if pairs_a else None,
        "share_of_b_pairs_in_a": round(common / pairs_b, 4) if pairs_b else None,
        "clustered_docs_a": len(a),
        "clustered_docs_b": len(b),
        "docs_with_identical_cluster": same_sets,
    }


def agreement(args: argparse.Namespace) -> None:
    engine = _engine_clusters(Path(args.engine))
    datatrove = _datatrove_clusters(Path(args.datatrove))
    result = pair_agreement(engine, datatrove)
    emit({"what": "agreement", "a": "engine", "b": "datatrove", **result}, args.out)


# ------------------------------------------------------------------------------------------------
# Peak memory per task vs corpus size and partitions


def snippet_corpus(n_docs: int, seed: int = 0, words: int = 40) -> tuple[list[str], list[str]]:
    """`(ids, texts)`: short documents of `words` words drawn from Dragnet's vocabulary with its word
    frequencies (so new documents are unrelated), 30% of them near-copies (edit rate 0 to 0.05) of an earlier
    one: cheap to sign, so the global phases can be measured at scale."""
    from collections import Counter

    import numpy as np

    rng = random.Random(seed)
    counts = Counter(w for t in dragnet_texts() for w in t.split())
    vocabulary = sorted(counts)
    weights = np.array([counts[w] for w in vocabulary], dtype=np.float64)
    draws = np.random.default_rng(seed).choice(len(vocabulary), size=(n_docs, words), p=weights / weights.sum())
    texts: list[str] = []
    for row in draws:
        if texts and rng.random() < 0.3:
            copy = mutate(rng, texts[rng.randrange(len(texts))].split(), rng.choice([0.0, 0.02, 0.05]), vocabulary)
            texts.append(" ".join(copy))
        else:
            texts.append(" ".join(vocabulary[k] for k in row))
    return [f"s{i:09d}" for i in range(n_docs)], texts


def _folder_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*.parquet")) if path.exists() else 0


def memory(args: argparse.Namespace) -> None:
    """Phase A once per corpus size, then phases B-D at each partition count, one process per task."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from engine.dedup.signatures import dedup_root
    from engine.runner.dedup import run_dedup

    base = Path(args.work)
    for docs in [int(x) for x in args.docs.split(",")]:
        ids, texts = snippet_corpus(docs, seed=args.seed)
        folder = base / f"in-{docs}"
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
        per = args.shard_docs
        for s in range(0, docs, per):
            table = pa.table({"id": ids[s : s + per], "text": pa.array(texts[s : s + per], pa.large_string())})
            pq.write_table(table, folder / f"part-{s // per:05d}.parquet", row_group_size=2048)
        shards = sorted(str(p) for p in folder.glob("*.parquet"))
        out = str(base / f"out-{docs}")
        shutil.rmtree(out, ignore_errors=True)
        executor = PoolExecutor(args.workers)
        executor.map(functools.partial(_phase_a, out, 2048), shards, label="A: signatures")
        executor.close()
        for partitions in [int(x) for x in args.partitions.split(",")]:
            job = engine_job(out, partitions, 0)
            executor = PoolExecutor(args.workers, fresh=True)
            started = time.perf_counter()
            removed = run_dedup(job, [Path(s).stem for s in shards], executor).removed()
            seconds = time.perf_counter() - started
            executor.close()
            work = Path(dedup_root(out, job.dedup)) / "work"
            peaks: dict[str, list[tuple[int, int]]] = defaultdict(list)
            for label, values in executor.peaks.items():
                peaks[label.split(" step ")[0] + (" (all star steps)" if " step " in label else "")] += values
            emit(
                {
                    "what": "memory",
                    "components_steps": sum(1 for label in executor.peaks if " step " in label),
                    "docs": docs,
                    "shards": len(shards),
                    "partitions": partitions,
                    "duplicates": sum(removed.values()),
                    "seconds_b_to_d": round(seconds, 2),
                    "cpu_seconds_b_to_d": round(sum(executor.cpu.values()), 2),
                    "cpu_seconds": {
                        label: round(
                            sum(v for k, v in executor.cpu.items() if k.split(" step ")[0] == label.split(" (")[0]), 2
                        )
                        for label in peaks
                    },
                    "tasks": {label: len(v) for label, v in peaks.items()},
                    "peak_task_mb_above_baseline": {
                        label: round(max(a - b for b, a in v) / 1024, 1) for label, v in peaks.items()
                    },
                    "baseline_mb": round(min(b for v in executor.peaks.values() for b, _ in v) / 1024, 1),
                    "signature_mb": round(_folder_bytes(Path(dedup_root(out, job.dedup)) / "signatures") / 2**20, 2),
                    "shuffle_mb": {
                        name: round(_folder_bytes(work / name) / 2**20, 2)
                        for name in ("bands", "keys", "cc", "members", "clusters")
                    },
                },
                args.out,
            )
        shutil.rmtree(folder, ignore_errors=True)
        shutil.rmtree(out, ignore_errors=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", help="append JSON lines to this file")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("signatures")
    p.add_argument("--repeat", type=int, default=3)
    p = sub.add_parser("datatrove-signatures")
    p.add_argument("--limit", type=int, default=400)
    p = sub.add_parser("make-shards")
    p.add_argument("--docs", type=int, default=20000)
    p.add_argument("--shards", type=int, default=8)
    p.add_argument("--dir", required=True)
    p.add_argument("--seed", type=int, default=0)
    for name in ("engine-e2e", "datatrove-e2e"):
        p = sub.add_parser(name)
        p.add_argument("--dir", required=True)
        p.add_argument("--work", required=True)
        p.add_argument("--workers", type=int, default=2)
        p.add_argument("--partitions", type=int, default=None)
        p.add_argument("--in-memory-max-edges", type=int, default=2_000_000)
        p.add_argument("--fresh", action="store_true", help="one process per task (peak memory per task)")
    p = sub.add_parser("agreement")
    p.add_argument("--engine", required=True)
    p.add_argument("--datatrove", required=True)
    p = sub.add_parser("memory")
    p.add_argument("--docs", default="100000,200000,400000")
    p.add_argument("--partitions", default="2,4,8")
    p.add_argument("--shard-docs", type=int, default=25000)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--work", default="/tmp/dedup-memory")
    p.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    commands: dict[str, Callable[[argparse.Namespace], Any]] = {
        "signatures": bench_signatures,
        "datatrove-signatures": bench_datatrove_signatures,
        "make-shards": make_shards,
        "engine-e2e": engine_e2e,
        "datatrove-e2e": datatrove_e2e,
        "agreement": agreement,
        "memory": memory,
    }
    commands[args.command](args)


if __name__ == "__main__":
    main()
