"""docs/scaling.md's figures: the global dedup of a dump, from the curve bench_scale.py measured.

    python benchmarks/scale_model.py --docs 3e9 --nodes 64 --cores 32 --task-memory 4GiB --shard-docs 1000000

Partition counts come from the engine's own planning functions (`engine.dedup.plan`) at the dump's size; CPU,
bytes and edges per document from the largest measured run without a hub (`benchmarks/results/scale.jsonl`,
design `segments`); objects and GETs from the design's formulas (docs/dedup-design.md, 4.2), which are printed
beside the measured counts at the measured size so the formulas are checked where they can be. Nothing here is
assumed except what the flags give (the cluster and the dump) and `--text-bytes` (the staged text per document of
a real dump, which the synthetic curve does not have; removal's bytes scale with it).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from engine.dedup.plan import (  # noqa: E402
    BAND_ROW_BYTES,
    EDGE_ROW_BYTES,
    MEMBER_ROW_BYTES,
    SHARDS_PER_GROUP,
    band_partitions,
    graph_budget,
    map_groups,
)
from engine.io.segments import pow2ceil  # noqa: E402

BANDS = 14
RESULTS = HERE / "results" / "scale.jsonl"


def counts(docs: int, shard_docs: int, task_memory: int, edges: float, clustered: float) -> dict[str, int]:
    """S, P, M, G, Q the engine chooses for `docs` documents (edges and clustered documents per document given)."""
    shards = math.ceil(docs / shard_docs)
    rows = [shard_docs] * shards
    partitions = band_partitions(docs, BANDS, task_memory)
    maps = len(map_groups(rows, BANDS, partitions, task_memory)) - 1
    groups = max(1, math.ceil(shards / SHARDS_PER_GROUP))
    budget = graph_budget(docs, BANDS, partitions, task_memory)
    held = max(2 * edges * docs * EDGE_ROW_BYTES, clustered * docs * MEMBER_ROW_BYTES)
    graph = pow2ceil(held / budget)
    return {"S": shards, "P": partitions, "M": maps, "G": groups, "Q": graph}


def phase_units(c: dict[str, int], steps: int) -> dict[str, tuple[int, int]]:
    """Per phase: the units its per-unit requests and objects scale with, and the segments its readers fetch
    (one ranged GET each: every (producer, consumer) pair holding data, the product terms of 4.2)."""
    s, p, m, g, q = c["S"], c["P"], c["M"], c["G"], c["Q"]
    return {
        "band keys": (s, 0),  # per shard read (signatures), one object per map task
        "collisions": (p, p * m),
        "components (star steps)": (steps * q, q * p + (steps - 1) * q * q),
        "cluster members": (g, g * q),
        "representatives": (q, q * g),
        "fates": (s, g * q),  # one fate file per shard
        "removal": (s, 0),
    }


def calibrate(record: dict[str, Any]) -> dict[str, tuple[float, float]]:
    """Per phase: requests and objects per unit, from a measured run (its requests minus its segment reads)."""
    c = record_counts(record)
    units = phase_units(c, record["counts_chosen"]["components_steps"])
    found = {}
    for name, (n_units, segments) in units.items():
        phase = record["phases"].get(name)
        if phase is None:
            continue
        found[name] = (max(0.0, (phase["requests"] - segments) / n_units), phase.get("files_written", 0) / n_units)
    return found


def predict(coefficients: dict[str, tuple[float, float]], c: dict[str, int], steps: int) -> tuple[int, int]:
    """Requests and objects of the phases in `coefficients` at counts `c`."""
    requests = objects = 0.0
    for name, (n_units, segments) in phase_units(c, steps).items():
        if name in coefficients:
            per_request, per_object = coefficients[name]
            requests += per_request * n_units + segments
            objects += per_object * n_units
    return int(requests), int(objects)


def record_counts(record: dict[str, Any]) -> dict[str, int]:
    chosen = record["counts_chosen"]
    return {
        "S": record["shards"],
        "P": chosen["band_partitions"],
        "M": chosen["map_tasks"],
        "G": chosen["shard_groups"],
        "Q": chosen["graph_partitions"],
    }


def measured_main_phases(record: dict[str, Any]) -> tuple[int, int]:
    names = phase_units({"S": 1, "P": 1, "M": 1, "G": 1, "Q": 1}, 1)
    phases = [record["phases"][n] for n in names if n in record["phases"]]
    return sum(p["requests"] for p in phases), sum(p.get("files_written", 0) for p in phases)


def load(path: Path, design: str) -> list[dict[str, Any]]:
    records = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return [r for r in records if r.get("design") == design and r.get("run") == "full build" and not r.get("error")]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--docs", type=float, default=3e9)
    parser.add_argument("--shard-docs", type=int, default=1_000_000)
    parser.add_argument("--nodes", type=int, default=64)
    parser.add_argument("--cores", type=int, default=32, help="cores per node")
    parser.add_argument("--task-memory", default="4GiB", help="dedup.task_memory (GiB)")
    parser.add_argument("--text-bytes", type=float, default=3000, help="staged text per kept document, bytes")
    parser.add_argument("--results", default=str(RESULTS))
    parser.add_argument("--design", default="segments")
    args = parser.parse_args(argv)
    memory = int(float(args.task_memory.removesuffix("GiB")) * 2**30)
    records = load(Path(args.results), args.design)
    base = max((r for r in records if r["hub"] == 0), key=lambda r: r["docs"])
    n0, chosen = base["docs"], base["counts_chosen"]
    edges, clustered, steps = chosen["edges"] / n0, chosen["clustered_documents"] / n0, chosen["components_steps"]

    coefficients = calibrate(base)
    print(f"calibrated on {n0:,} documents (git {base['git']['revision'][:7]}): {record_counts(base)}, R = {steps}")
    for other in sorted((r for r in records if r["hub"] == 0 and r["docs"] != n0), key=lambda r: r["docs"]):
        calibrated = calibrate(other)
        requests, objects = predict(calibrated, record_counts(base), steps)
        real_requests, real_objects = measured_main_phases(base)
        print(
            f"  check: calibrated on {other['docs']:,}, predicted at {n0:,}: {requests:,} requests, {objects:,}"
            f" objects; measured {real_requests:,} and {real_objects:,} (main phases, no index or clean-up tasks)"
        )

    n = int(args.docs)
    c = counts(n, args.shard_docs, memory, edges, clustered)
    requests, objects = predict(coefficients, c, steps)
    cores = args.nodes * args.cores
    print(
        f"\n{n:,} documents in {c['S']:,} shards, {args.nodes} nodes x {args.cores} cores,"
        f" task memory {memory >> 30} GiB"
    )
    print(f"  counts: {c} (R = {steps} components steps, as measured)")
    print(f"  requests ~{requests:,} (main phases), objects written ~{objects:,} (one PUT each, no COPY/DELETE)")
    print("\n| phase | tasks | CPU µs/doc (measured) | core-hours | minutes on the cluster (CPU only) |")
    print("|---|---|---|---|---|")
    tasks = {"band keys": c["M"], "collisions": c["P"], "components (star steps)": steps * c["Q"]}
    tasks |= {"cluster members": c["G"], "representatives": c["Q"], "fates": c["G"], "removal": c["S"]}
    total = 0.0
    for name, phase in base["phases"].items():
        per_doc = phase["cpu_s"] / n0 * 1e6
        if name not in tasks or per_doc < 0.05:
            continue
        core_s = per_doc * n / 1e6
        total += core_s
        waves = math.ceil(tasks[name] / cores)
        print(
            f"| {name} | {tasks[name]:,} | {per_doc:.2f} | {core_s / 3600:,.0f} | {core_s / cores / 60:.1f}"
            f" ({waves} wave(s)) |"
        )
    print(f"| all phases B-D | | {total / n * 1e6:.2f} | {total / 3600:,.0f} | {total / cores / 60:.1f} |")
    written, read = base["bytes_written_per_doc"], base["bytes_read_per_doc"]
    print(
        f"\nbytes written {written * n / 1e12:.2f} TB, read {read * n / 1e12:.2f} TB (synthetic text of "
        f"{base['synthetic']['text_chars']} characters)"
    )
    extra = args.text_bytes * 2 * n / 1e12  # removal reads the staged text and writes it again
    print(
        f"  with {args.text_bytes:,.0f} bytes of real text per document, removal adds ~{extra:.1f} TB of reads + writes"
    )
    budget = graph_budget(n, BANDS, c["P"], memory)
    print(
        f"\nmemory per task (bound by the plan): collisions {n * BANDS / c['P'] * BAND_ROW_BYTES / 2**30:.2f} GiB,"
        f" graph tasks <= {budget / 2**30:.2f} GiB; measured largest task at {n0:,}: "
        f"{base['max_task_peak_rss_mb']:.0f} MB ({base['max_task_growth_mb']:.0f} MB above its start)"
    )


if __name__ == "__main__":
    main()
