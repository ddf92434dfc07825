"""What exact duplicate n-gram scores cost gopher_repetition: this checkout against an earlier revision's step.

    python benchmarks/bench_gopher_exact.py [--before main] [--repeat 7]

Loads `engine/steps/gopher.py` as it was at `--before` (`git show`) beside the current one and runs both
`GopherRepetition` steps, alternately, on the real documents of benchmarks/corpus.py (dolma CC sample and Dragnet,
2,051 documents, batches of 2,048), best of `--repeat` in process CPU time, in this process on one core. Also
counts the positions the duplicate-n-gram walk visits in each. Appends a JSON line to
benchmarks/results/gopher_exact.jsonl. The ratio of one run is what counts on a shared machine.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
import types
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

import numpy as np  # noqa: E402
from corpus import real_documents  # noqa: E402

from engine.batch import make_batch  # noqa: E402
from engine.inspect.bench import append_record  # noqa: E402
from engine.provenance import git_state, machine  # noqa: E402
from engine.steps import gopher  # noqa: E402


def module_at(revision: str) -> types.ModuleType:
    """engine/steps/gopher.py at `revision`, loaded under another name (its step is not registered)."""
    source = subprocess.run(
        ["git", "show", f"{revision}:engine/steps/gopher.py"], cwd=REPO, capture_output=True, text=True, check=True
    ).stdout.replace("@register\n", "")
    module = types.ModuleType("gopher_before")
    sys.modules[module.__name__] = module
    exec(compile(source, f"{revision}:engine/steps/gopher.py", "exec"), module.__dict__)  # noqa: S102
    return module


def walked_positions(module: types.ModuleType, batches: list[Any]) -> int:
    """Positions the walk visits over every batch (the Python part of the step)."""
    counted = 0
    original = module._walk_duplicates

    def spy(grams: Any, hashes: Any, word_row: Any, *args: Any) -> Any:
        nonlocal counted
        rows = args[2]
        selected = np.zeros(int(word_row.max()) + 2, dtype=bool)
        selected[rows] = True
        counted += int(selected[word_row[grams.repeated]].sum())
        return original(grams, hashes, word_row, *args)

    module._walk_duplicates = spy
    try:
        step = module.GopherRepetition()
        for batch in batches:
            step(batch)
    finally:
        module._walk_duplicates = original
    return counted


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--before", default="main")
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--results", default="benchmarks/results/gopher_exact.jsonl")
    args = parser.parse_args()
    docs = real_documents()
    batches = [make_batch({"text": docs[i : i + 2048]}) for i in range(0, len(docs), 2048)]
    before = module_at(args.before)
    steps = {"before": before.GopherRepetition, "now": gopher.GopherRepetition}
    best = dict.fromkeys(steps, float("inf"))
    for _ in range(args.repeat):
        for name, cls in steps.items():
            step = cls()
            started = time.process_time()
            for batch in batches:
                step(batch)
            best[name] = min(best[name], time.process_time() - started)
    record = {
        "benchmark": "gopher_exact",
        "timestamp": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "git": git_state(),
        "before": args.before,
        "machine": machine(),
        "docs": len(docs),
        "cpu_seconds": {k: round(v, 3) for k, v in best.items()},
        "docs_per_second": {k: round(len(docs) / v) for k, v in best.items()},
        "now_over_before": round(best["now"] / best["before"], 3),
        "walked_positions": {"before": walked_positions(before, batches), "now": walked_positions(gopher, batches)},
    }
    print(json.dumps(record, indent=2))
    append_record(record, args.results)


if __name__ == "__main__":
    main()
