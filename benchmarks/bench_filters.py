"""Throughput of the four heuristic steps, ours against datatrove 0.10.1's, in the same run on the same documents.

Single process, single thread (per core numbers): docs/s and MB/s (UTF-8) for gopher_repetition, gopher_quality,
c4_quality (FineWeb settings), fineweb_quality, and the four in sequence (each step sees every document, as when
measuring a step alone; in a pipeline later steps only see survivors). Peak RSS of the process is reported.
Appends one JSON line per run to benchmarks/results/bench_filters.jsonl unless --no-save.

    /work/venv-bench/bin/python benchmarks/bench_filters.py [--repeat 3] [--datatrove-docs 400]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
os.environ.setdefault("POLARS_MAX_THREADS", "1")  # per-core numbers: one polars thread
os.environ.setdefault("RAYON_NUM_THREADS", "1")

from compare_datatrove_filters import datatrove_filters, load_documents  # noqa: E402

STEPS = ("gopher_repetition", "gopher_quality", "c4_quality", "fineweb_quality")


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def bench_ours(docs: list[dict[str, Any]], repeat: int, batch_rows: int) -> dict[str, float]:
    from engine.batch import make_batch
    from engine.steps import build_step

    batches = [
        make_batch(
            {"id": [d["id"] for d in docs[i : i + batch_rows]], "text": [d["text"] for d in docs[i : i + batch_rows]]}
        )
        for i in range(0, len(docs), batch_rows)
    ]
    steps = {
        name: build_step({"type": name, **({"filter_no_terminal_punct": False} if name == "c4_quality" else {})})
        for name in STEPS
    }
    for batch in batches[:1]:  # warm up (regex compilation, lazy imports)
        for step in steps.values():
            step.apply(batch)
    out: dict[str, float] = {}
    for name in (*STEPS, "all_four"):
        best = float("inf")
        for _ in range(repeat):
            started = time.perf_counter()
            for batch in batches:
                if name == "all_four":
                    for step in steps.values():
                        step.apply(batch)
                else:
                    steps[name].apply(batch)
            best = min(best, time.perf_counter() - started)
        out[name] = best
    return out


def bench_datatrove(docs: list[dict[str, Any]]) -> dict[str, float]:
    from datatrove.data import Document

    factories = datatrove_filters()
    steps = {name: factories[name]() for name in STEPS}
    # warm up spaCy
    steps["gopher_quality"].filter(Document(text="Warm up the tokenizer.", id="w"))
    out: dict[str, float] = {}
    for name in STEPS:
        started = time.perf_counter()
        for d in docs:
            steps[name].filter(Document(text=d["text"], id=d["id"]))
        out[name] = time.perf_counter() - started
    # The four in sequence per document, as datatrove's pipeline runs them (its word splitter caches the last
    # few texts, so the second and third word-based filters reuse the first one's words).
    started = time.perf_counter()
    for d in docs:
        for name in STEPS:
            steps[name].filter(Document(text=d["text"], id=d["id"]))
    out["all_four"] = time.perf_counter() - started
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--batch-rows", type=int, default=2048)
    parser.add_argument("--datatrove-docs", type=int, default=400, help="documents timed for datatrove (0: skip)")
    parser.add_argument("--no-save", action="store_true")
    args = parser.parse_args()
    docs = load_documents()
    mb = sum(len(d["text"].encode("utf-8")) for d in docs) / 1e6
    ours = bench_ours(docs, args.repeat, args.batch_rows)
    rss_ours = peak_rss_mb()
    sample = docs[:: max(1, len(docs) // args.datatrove_docs)][: args.datatrove_docs] if args.datatrove_docs else []
    sample_mb = sum(len(d["text"].encode("utf-8")) for d in sample) / 1e6
    ref = bench_datatrove(sample) if sample else {}
    print(f"{len(docs)} docs, {mb:.1f} MB (datatrove timed on {len(sample)} docs, {sample_mb:.2f} MB); one core")
    print(
        f"{'step':18s} {'ours docs/s':>12s} {'ours MB/s':>10s} {'datatrove docs/s':>17s} {'dt MB/s':>8s} {'ratio':>7s}"
    )
    rows = {}
    for name in (*STEPS, "all_four"):
        o_dps, o_mbs = len(docs) / ours[name], mb / ours[name]
        r_dps = len(sample) / ref[name] if ref else float("nan")
        r_mbs = sample_mb / ref[name] if ref else float("nan")
        rows[name] = {"ours_docs_s": o_dps, "ours_mb_s": o_mbs, "datatrove_docs_s": r_dps, "datatrove_mb_s": r_mbs}
        print(f"{name:18s} {o_dps:12.0f} {o_mbs:10.2f} {r_dps:17.1f} {r_mbs:8.3f} {o_dps / r_dps:7.1f}x")
    print(f"peak RSS after our steps: {rss_ours:.0f} MB; after datatrove too: {peak_rss_mb():.0f} MB")
    if not args.no_save:
        try:
            revision = subprocess.run(
                ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=False
            ).stdout.strip()
        except OSError:
            revision = ""
        record = {
            "bench": "bench_filters",
            "git": revision,
            "machine": platform.node(),
            "cpu_count": os.cpu_count(),
            "docs": len(docs),
            "mb": mb,
            "datatrove_docs": len(sample),
            "steps": rows,
            "peak_rss_mb": rss_ours,
            "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }
        out = Path(__file__).resolve().parent / "results" / "bench_filters.jsonl"
        out.parent.mkdir(parents=True, exist_ok=True)
        with out.open("a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
