"""MinHash dedup against ground truth: brute-force Jaccard on the engine's own shingles vs the LSH S-curve.

Corpus `mutated` (default): Dragnet's 1,381 real pages plus, for `--originals` of them, copies mutated at
known word edit rates (replace/delete/insert; `bench_dedup.mutate`). Corpus `sample`: the repo's
data/sample shards (real Common Crawl text, natural duplicates only).

For every pair of documents sharing a shingle, the exact Jaccard similarity of their shingle sets (the same
word 5-gram hashes the engine uses) is computed with a sparse matrix product. Then:

- candidate pairs (documents sharing at least one band key) per Jaccard bin, against the S-curve
  `P(J) = 1 - (1 - J**rows)**bands` (the probability that two documents with similarity J share a band);
- recall of pairs with J >= 0.8: as candidates (expected: mean of P(J) over those pairs) and as members of
  the same final cluster (connected components add pairs linked through a third document);
- precision of removed documents: the share of removed documents whose Jaccard with the document kept in
  their place is >= 0.8 (and >= 0.5).

    python benchmarks/dedup_ground_truth.py [--corpus mutated|sample] [--originals 300] [--out FILE]
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

from bench_dedup import dragnet_texts, mutate  # noqa: E402

EDIT_RATES = [0.0, 0.01, 0.02, 0.03, 0.05, 0.08, 0.1, 0.15, 0.2, 0.3]
BINS = [0.0, 0.3, 0.5, 0.6, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95, 1.0, 1.01]


def mutated_corpus(originals: int, seed: int) -> tuple[list[str], list[str]]:
    rng = random.Random(seed)
    base = dragnet_texts()
    split = [t.split() for t in base]
    vocabulary = sorted({w for words in split for w in words})
    ids = [f"o{i:05d}" for i in range(len(base))]
    texts = list(base)
    for i in rng.sample(range(len(base)), originals):
        for rate in EDIT_RATES:
            ids.append(f"o{i:05d}-e{rate:.2f}")
            texts.append(" ".join(mutate(rng, split[i], rate, vocabulary)))
    return ids, texts


def sample_corpus() -> tuple[list[str], list[str]]:
    import pyarrow.parquet as pq

    ids, texts = [], []
    for path in sorted((REPO / "data" / "sample").glob("*.parquet")):
        table = pq.read_table(path)
        text_column = "text" if "text" in table.column_names else table.column_names[0]
        for i, text in enumerate(table[text_column].to_pylist()):
            if text and text.strip():
                ids.append(f"{path.stem}-{i:06d}")
                texts.append(text)
    return ids, texts


def jaccard_pairs(texts: list[str], ngram: int, max_chars: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """`(i, j, J)` for every pair i < j sharing at least one shingle."""
    import pyarrow as pa
    import scipy.sparse as sp

    from engine.dedup.minhash import shingle_hashes

    shingles = shingle_hashes(pa.array(texts, pa.large_string()), ngram=ngram, seed=1, max_chars=max_chars)
    rows = np.repeat(np.arange(len(texts)), shingles.counts)
    uniq, cols = np.unique(shingles.hashes, return_inverse=True)
    matrix = sp.csr_matrix((np.ones(len(cols), dtype=np.float32), (rows, cols)), shape=(len(texts), len(uniq)))
    matrix.data[:] = 1.0  # sets, not multisets (duplicates summed by csr construction)
    sizes = np.asarray(matrix.sum(axis=1)).ravel()
    inter = sp.triu(matrix @ matrix.T, k=1).tocoo()
    union = sizes[inter.row] + sizes[inter.col] - inter.data
    return inter.row, inter.col, inter.data / np.maximum(union, 1)


def candidate_pairs(keys: np.ndarray, has_keys: np.ndarray) -> set[tuple[int, int]]:
    """Pairs of documents sharing a band key (all pairs in each bucket)."""
    pairs: set[tuple[int, int]] = set()
    docs = np.flatnonzero(has_keys)
    for band in range(keys.shape[1]):
        order = docs[np.argsort(keys[docs, band], kind="stable")]
        values = keys[order, band]
        boundaries = np.flatnonzero(np.diff(values)) + 1
        for group in np.split(order, boundaries):
            if len(group) > 1:
                members = sorted(group.tolist())
                pairs.update((a, b) for k, a in enumerate(members) for b in members[k + 1 :])
    return pairs


def s_curve(j: np.ndarray, bands: int, rows: int) -> np.ndarray:
    return 1.0 - (1.0 - j**rows) ** bands


def run(args: argparse.Namespace) -> dict[str, object]:
    import pyarrow as pa

    from engine.dedup.signatures import signature_table
    from engine.runner.dedup import run_dedup
    from engine.runner.executor import SerialExecutor
    from engine.spec import MinhashDedup
    from tests.dedup.staging import make_job, stage

    ids, texts = mutated_corpus(args.originals, args.seed) if args.corpus == "mutated" else sample_corpus()
    dedup = MinhashDedup(bands=args.bands, rows=args.rows)
    table = pa.table({"id": ids, "text": pa.array(texts, pa.large_string())})
    signatures = signature_table(table, dedup)
    keys = np.asarray(signatures["keys"].combine_chunks().flatten().to_numpy(zero_copy_only=False), dtype=np.uint64)
    has_keys = np.asarray(signatures["keys"].is_valid().to_numpy(zero_copy_only=False), dtype=bool)
    full = np.zeros((len(ids), args.bands), dtype=np.uint64)
    full[has_keys] = keys.reshape(-1, args.bands)
    candidates = candidate_pairs(full, has_keys)

    i, j, jac = jaccard_pairs(texts, dedup.ngram, dedup.max_chars)
    is_candidate = np.array([(a, b) in candidates for a, b in zip(i.tolist(), j.tolist(), strict=True)], bool)
    bins = []
    for lo, hi in zip(BINS[:-1], BINS[1:], strict=True):
        in_bin = (jac >= lo) & (jac < hi)
        if in_bin.any():
            bins.append(
                {
                    "jaccard": f"[{lo:.2f}, {min(hi, 1.0):.2f}{']' if hi > 1 else ')'}",
                    "pairs": int(in_bin.sum()),
                    "candidate_rate": round(float(is_candidate[in_bin].mean()), 4),
                    "s_curve_expected": round(float(s_curve(jac[in_bin], args.bands, args.rows).mean()), 4),
                }
            )
    unshared = len(candidates) - int(is_candidate.sum())  # candidate pairs without a common shingle: none

    # Clusters and removals through the real phases (SerialExecutor, local temporary output).
    with tempfile.TemporaryDirectory() as tmp:
        job = make_job(tmp, dedup.model_dump() | {"add_cluster_columns": True})
        per = -(-len(ids) // 4)
        shards = {f"part-{s}": table.slice(s * per, per) for s in range(4)}
        rels = stage(job, shards, batch_rows=2048)
        run_dedup(job, rels, SerialExecutor())
        import pyarrow.parquet as pq

        cluster: dict[str, str] = {}
        removed: dict[str, str] = {}
        for rel in rels:
            kept = pq.read_table(Path(tmp) / "kept" / f"{rel}.parquet", columns=["id", "cluster_id"])
            for doc, c in zip(kept["id"].to_pylist(), kept["cluster_id"].to_pylist(), strict=True):
                if c is not None:
                    cluster[doc] = c
            dups = pq.read_table(Path(tmp) / "rejected" / f"{rel}.duplicates.parquet", columns=["id", "duplicate_of"])
            removed.update(zip(dups["id"].to_pylist(), dups["duplicate_of"].to_pylist(), strict=True))
            cluster.update(removed)

    true = jac >= 0.8
    same_cluster = np.array(
        [
            cluster.get(ids[a]) is not None and cluster.get(ids[a]) == cluster.get(ids[b])
            for a, b in zip(i[true].tolist(), j[true].tolist(), strict=True)
        ],
        bool,
    )
    lookup = {(min(a, b), max(a, b)): float(s) for a, b, s in zip(i.tolist(), j.tolist(), jac.tolist(), strict=True)}
    index = {doc: k for k, doc in enumerate(ids)}
    removed_j = np.array([lookup.get(tuple(sorted((index[d], index[r]))), 0.0) for d, r in removed.items()])
    false_candidates = is_candidate & ~true
    result = {
        "what": "ground_truth",
        "corpus": args.corpus,
        "docs": len(ids),
        "bands": args.bands,
        "rows": args.rows,
        "pairs_sharing_a_shingle": int(len(jac)),
        "pairs_j_ge_0.8": int(true.sum()),
        "candidate_recall_j_ge_0.8": round(float(is_candidate[true].mean()), 4) if true.any() else None,
        "s_curve_expected_recall_j_ge_0.8": round(float(s_curve(jac[true], args.bands, args.rows).mean()), 4)
        if true.any()
        else None,
        "cluster_recall_j_ge_0.8": round(float(same_cluster.mean()), 4) if true.any() else None,
        "candidate_pairs_j_lt_0.8": int(false_candidates.sum()),
        "s_curve_expected_candidates_j_lt_0.8": round(float(s_curve(jac[~true], args.bands, args.rows).sum()), 1),
        "candidate_pairs_without_common_shingle": unshared,
        "removed": len(removed),
        "removed_precision_j_ge_0.8": round(float((removed_j >= 0.8).mean()), 4) if len(removed_j) else None,
        "removed_precision_j_ge_0.5": round(float((removed_j >= 0.5).mean()), 4) if len(removed_j) else None,
        "bins": bins,
    }
    from engine.provenance import git_state

    line = json.dumps({"bench": "dedup_ground_truth", "git": git_state(), "args": vars(args), **result}, sort_keys=True)
    print(line)
    if args.out:
        with open(args.out, "a", encoding="utf-8") as handle:
            handle.write(line + "\n")
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--corpus", choices=["mutated", "sample"], default="mutated")
    parser.add_argument("--originals", type=int, default=300)
    parser.add_argument("--bands", type=int, default=14)
    parser.add_argument("--rows", type=int, default=8)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", help="append the JSON line to this file (benchmarks/results/dedup_ground_truth.jsonl)")
    run(parser.parse_args())


if __name__ == "__main__":
    main()
