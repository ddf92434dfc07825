"""Issue 13's chain and signature lines, this checkout against an earlier revision, interleaved in one process.

    git archive <revision> | tar -x -C /tmp/before
    python benchmarks/bench_paired_revisions.py --before /tmp/before [--docs 10000] [--repeat 2]

On a shared machine two benchmark runs minutes apart see different load; here every batch runs through both
versions back to back (ABBA order), each on its own freshly read copy (no words cached across the two), and
CPU time is summed per version. The earlier revision's `gopher_repetition` n-gram grouping
(`_group_all_sizes`) and MinHash `normalised_words` are loaded from `--before` and swapped in: the functions this
branch changed; everything else is this checkout's. Appends one JSON line to
benchmarks/results/paired_revisions.jsonl.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from types import ModuleType
from typing import Any

os.environ.setdefault("POLARS_MAX_THREADS", "1")
HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from bench_side_by_side import STEP_PARAMS, STEPS, our_batches  # noqa: E402

LINES = ("chain", "signatures")


def load(name: str, path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", required=True, help="an exported tree of the earlier revision")
    parser.add_argument("--docs", type=int, default=10_000)
    parser.add_argument("--shards", type=int, default=10)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--results", default=str(HERE / "results" / "paired_revisions.jsonl"))
    args = parser.parse_args()

    from corpus import write_corpus

    import engine.dedup.minhash as minhash
    import engine.steps.base as base
    import engine.steps.gopher as gopher
    from engine.dedup.signatures import signature_table
    from engine.pipeline import process_batch
    from engine.provenance import git_state, machine
    from engine.spec import MinhashDedup
    from engine.steps import build_step

    before = Path(args.before)
    register = base.register
    base.register = lambda cls: cls  # type: ignore[assignment]  # the old module's steps are not registered again
    try:
        old_gopher = load("before_gopher", before / "engine" / "steps" / "gopher.py")
    finally:
        base.register = register
    old_normalise = load("before_normalise", before / "engine" / "dedup" / "normalise.py")
    new_groups, new_words = gopher._group_all_sizes, minhash.normalised_words

    def use(*, old: bool) -> None:
        gopher._group_all_sizes = old_gopher._group_all_sizes if old else new_groups  # type: ignore[attr-defined]
        minhash.normalised_words = old_normalise.normalised_words if old else new_words  # type: ignore[attr-defined]

    steps = [build_step({"type": name, **STEP_PARAMS.get(name, {})}) for name in STEPS]
    dedup = MinhashDedup()
    work = Path(tempfile.mkdtemp(prefix="paired-"))
    folder = write_corpus(work / "corpus", docs=args.docs, shards=args.shards)
    for old in (True, False):  # regexes compiled, caches warm
        use(old=old)
        warm = our_batches(folder)[0][0].slice(0, 50)
        process_batch(warm, steps)
        signature_table(warm, dedup)
    seconds: dict[str, float] = {}
    docs = 0
    for rep in range(args.repeat):
        copies = our_batches(folder), our_batches(folder)
        for i in range(len(copies[0])):
            docs += copies[0][i][0].num_rows
            for k, old in enumerate((True, False) if (i + rep) % 2 == 0 else (False, True)):
                use(old=old)
                batch, verdict = copies[k][i]
                label = "before" if old else "after"
                started = time.process_time()
                process_batch(batch, steps, input_verdict=verdict)
                seconds[f"chain_{label}"] = seconds.get(f"chain_{label}", 0.0) + time.process_time() - started
                started = time.process_time()
                signature_table(batch, dedup)
                seconds[f"signatures_{label}"] = seconds.get(f"signatures_{label}", 0.0) + time.process_time() - started
    rates = {name: round(docs / value, 1) for name, value in seconds.items()}
    record: dict[str, Any] = {
        "benchmark": "paired_revisions",
        "git": git_state(),
        "before": str(before),
        "machine": machine(),
        "load_average": os.getloadavg(),
        "docs": docs,
        "docs_per_cpu_second": rates,
        "speedup": {
            line: round(rates[f"{line}_after"] / rates[f"{line}_before"], 3) for line in ("chain", "signatures")
        },
        "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    shutil.rmtree(work, ignore_errors=True)
    print(json.dumps(record["docs_per_cpu_second"]), json.dumps(record["speedup"]))
    with Path(args.results).open("a", encoding="utf-8") as handle:
        handle.write(json.dumps(record, sort_keys=True) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
