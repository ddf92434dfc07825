"""Where the CPU goes in issue 13's lines that miss their goal: cProfile's top entries, own time first.

    python benchmarks/profile_side_by_side.py [--docs 4000] [--shards 4] [--top 15] [--lines chain,signatures,job]

Lines (same corpus as bench_side_by_side.py, `benchmarks/corpus.py` seed 0, batches as a unit reads them, one
polars thread):
- `chain`: the four heuristic steps as `process_batch` runs them;
- `signatures`: `signature_table` (FineWeb's MinHash: normalise, shingle, hash, band keys);
- `job`: what one filter unit of `jobs/fineweb.yaml` computes per batch: the preset's six steps, then the
  signatures of the kept rows (no reading or writing: those are in stats.json's phase timings).

Two lists per line: functions by their own CPU time (polars, NumPy and fastText calls appear as `<method ...>`),
and the same time charged to the nearest engine function that called it (which step's code asked for it).
Appends one JSON line to benchmarks/results/profiles.jsonl.
Profiling slows Python-heavy code more than native code: use the shares, not the totals.
"""

from __future__ import annotations

import argparse
import cProfile
import json
import os
import pstats
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("POLARS_MAX_THREADS", "1")

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from bench_side_by_side import STEP_PARAMS, STEPS, our_batches  # noqa: E402


def _label(key: tuple[str, int, str]) -> str:
    file, line, name = key
    if file == "~":
        return name
    parts = Path(file).parts
    short = "/".join(parts[parts.index("engine") :]) if "engine" in parts else Path(file).name
    return f"{short}:{line}({name})"


def _is_engine(key: tuple[str, int, str]) -> bool:
    return "site-packages" not in key[0] and "engine" in Path(key[0]).parts


def _by_engine_function(raw: dict[Any, Any]) -> dict[tuple[str, int, str], float]:
    """Every function's own time charged to the nearest engine function above it (shared out by its callers'
    cumulative time): which engine code the polars, NumPy and fastText calls were made for."""
    owners: dict[Any, dict[Any, float]] = {}  # function -> {engine function: fraction}

    def owners_of(key: Any, visiting: frozenset[Any]) -> dict[Any, float]:
        if key in owners:
            return owners[key]
        callers = {c: v for c, v in (raw[key][4] if key in raw else {}).items() if c not in visiting}
        if _is_engine(key) or not callers:
            found = {key: 1.0}
        else:
            total = sum(v[3] for v in callers.values()) or 1.0
            found = {}
            for caller, v in callers.items():
                for owner, part in owners_of(caller, visiting | {key}).items():
                    found[owner] = found.get(owner, 0.0) + part * v[3] / total
        owners[key] = found
        return found

    charged: dict[tuple[str, int, str], float] = {}
    for key, value in raw.items():
        for owner, part in owners_of(key, frozenset()).items():
            charged[owner] = charged.get(owner, 0.0) + value[2] * part
    return charged


def profile(run: Any, top: int) -> dict[str, Any]:
    profiler = cProfile.Profile(time.process_time)  # CPU time: other processes on the machine do not count
    profiler.runcall(run)
    raw = pstats.Stats(profiler).stats  # type: ignore[attr-defined]
    total = sum(entry[2] for entry in raw.values())
    own = sorted(raw.items(), key=lambda kv: kv[1][2], reverse=True)[:top]
    engine = sorted(_by_engine_function(raw).items(), key=lambda kv: kv[1], reverse=True)[:top]
    return {
        "cpu_seconds": round(total, 2),
        "own": [{"function": _label(k), "seconds": round(v[2], 3), "share": round(v[2] / total, 3)} for k, v in own],
        "engine": [{"function": _label(k), "seconds": round(v, 3), "share": round(v / total, 3)} for k, v in engine],
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--docs", type=int, default=4_000)
    parser.add_argument("--shards", type=int, default=4)
    parser.add_argument("--top", type=int, default=15)
    parser.add_argument("--lines", default="chain,signatures,job")
    parser.add_argument("--results", default=str(HERE / "results" / "profiles.jsonl"))
    parser.add_argument("--no-save", action="store_true")
    args = parser.parse_args()

    from corpus import write_corpus

    from engine.dedup.signatures import signature_table
    from engine.pipeline import process_batch
    from engine.provenance import git_state, machine
    from engine.spec import MinhashDedup
    from engine.steps import build_step
    from engine.steps.presets import expand_preset

    chain = [build_step({"type": name, **STEP_PARAMS.get(name, {})}) for name in STEPS]
    job_steps = [build_step(step) for step in expand_preset("fineweb")]
    dedup = MinhashDedup()
    lines = {
        "chain": lambda batches: [process_batch(b, chain, input_verdict=v) for b, v in batches],
        "signatures": lambda batches: [signature_table(b, dedup) for b, _ in batches],
        "job": lambda batches: [
            signature_table(process_batch(b, job_steps, input_verdict=v).kept, dedup) for b, v in batches
        ],
    }
    result: dict[str, Any] = {"benchmark": "profile_side_by_side", "spec": vars(args) | {"seed": 0}}
    with tempfile.TemporaryDirectory(prefix="profile-") as work:
        folder = write_corpus(Path(work) / "corpus", docs=args.docs, shards=args.shards, seed=0)
        warm = our_batches(folder)[0]
        for run in lines.values():  # models loaded, regexes compiled
            run([(warm[0].slice(0, 50), None)])
        for name in args.lines.split(","):
            batches = our_batches(folder)
            result[name] = profile(lambda run=lines[name], batches=batches: run(batches), args.top)
            print(f"\n{name}: {args.docs:,} docs, {result[name]['cpu_seconds']} CPU-s under cProfile")
            for kind in ("own", "engine"):
                print(f"  {'own time' if kind == 'own' else 'charged to the engine function that asked for it'}:")
                for entry in result[name][kind]:
                    print(f"    {entry['share']:6.1%} {entry['seconds']:8.3f}s  {entry['function']}")
    result |= {"git": git_state(), "machine": machine(), "load_average": list(os.getloadavg())}
    result["time"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    if not args.no_save:
        with open(args.results, "a", encoding="utf-8") as out:
            out.write(json.dumps(result, sort_keys=True) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
