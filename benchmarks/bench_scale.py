"""Phases B-D of the global dedup at 1M-8M documents: how wall, CPU, files, requests and memory grow.

    python benchmarks/bench_scale.py generate --docs 1000000 --dir /tmp/scale/1M [--hub 0]
    python benchmarks/bench_scale.py run --dir /tmp/scale/1M [--in-memory-max-edges 0] [--rerun] [--grow 0.01]
    python benchmarks/bench_scale.py curve --docs 1000000,2000000,4000000,8000000 [--hub-at-largest 1000000]
    python benchmarks/bench_scale.py report --dir /tmp/scale/1M     # after `run`: the report as a user writes it

`generate` writes what phase A leaves (signature files in the engine's layout, a short staged text per document,
`benchmarks/scale_data.py`), with a known duplicate structure. `run` drives the engine's own dedup driver
(`run_dedup(job, shards, executor)`) on a local Ray with the machine's CPUs and the partition count chosen
automatically, with the job's output behind the `count://` filesystem (`benchmarks/storage_counter.py`), so every
storage call of the driver and of every task is counted as the S3 requests it would be. Per run it records wall
and CPU seconds (every task's, plus the driver's), objects and bytes written and read, requests by kind, and the
peak RSS of the driver and of the largest task, in total and by phase; then checks the duplicates removed and
the rows written against the ground truth. `--rerun` measures an unchanged rerun after it; `--grow F` first
builds without the last F of the shards, then measures the rebuild once they are added (a night with new shards:
the driver probes their band rows against the dedup state the build left; `counts_chosen` says `night`, the fate
files rewritten and the churn: `merged`, `better_copy`). `--change N` then rewrites N shards (their rows reversed:
new content, same ground truth; this rewrites files of `--dir`) and measures that night, `--vanish N` then drops N
other shards from the input (changed and vanished shards: docs/dedup-design.md 5.3).
Appends one JSON line per measured run to benchmarks/results/scale.jsonl. After each run the folder holds what
`run_job` leaves after a dedup job (`stats.json`: the dedup's counters, cluster sizes among them; the resolved
job), so `report` runs `python -m engine report DIR` in a fresh process, as a user would, and records its wall
time and peak RSS (benchmarks/results/scale_report.jsonl).

Timings are from a shared 2-core machine: compare ratios within one run of the script.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import scale_data  # noqa: E402
import storage_counter  # noqa: E402
from measured import MeasuringExecutor, peak_rss_bytes, process_tree_cpu, reset_peak_rss  # noqa: E402

from engine.dedup.plan import ShardInput  # noqa: E402
from engine.inspect.report import REPORT_FILE  # noqa: E402
from engine.io.layout import DEDUP, KEPT, REJECTED, RESOLVED_JOB_FILE, STATS_FILE, join  # noqa: E402
from engine.io.markers import write_json  # noqa: E402
from engine.provenance import git_state, machine  # noqa: E402
from engine.runner.dedup import DedupOutcome, run_dedup  # noqa: E402
from engine.runner.run import write_resolved_job  # noqa: E402
from engine.spec import JobSpec  # noqa: E402
from engine.stats import DUPLICATE_ROWS, KEPT_ROWS, Stats  # noqa: E402
from engine.version import __version__  # noqa: E402

RESULTS = HERE / "results" / "scale.jsonl"
REPORT_RESULTS = HERE / "results" / "scale_report.jsonl"


def partition_count(job: JobSpec, shards: list[str]) -> int:
    """The band partition count the previous design chooses for this job (its own plan)."""
    from tests.dedup.reference.plan import make_plan

    plan, _ = make_plan(job, shards)
    return int(plan.partitions)


def identity(folder: Path, rel: str) -> list[Any]:
    """A shard's identity as phase A reports it: it changes when its files are rewritten (`--change`)."""
    from engine.dedup.signatures import signatures_file

    return ["synthetic", rel, Path(signatures_file(str(folder), scale_data.dedup_spec(), rel)).stat().st_mtime_ns]


def run_design(
    design: str, job: JobSpec, shards: list[str], executor: Any
) -> tuple[dict[str, int], dict[str, int], DedupOutcome | None]:
    """Run one design's driver; duplicates removed per shard, the counts it chose and (engine) its outcome.

    `segments` (the engine's) gets each shard's signature rows and an identity, as `run` passes phase A's results;
    `reference` is the design before segments (tests/dedup/reference), which fingerprints every file itself.
    """
    if design == "reference":
        from tests.dedup import reference

        local = job.model_copy(
            update={"output": job.output.model_copy(update={"path": job.output.path.split("://")[-1]})}
        )
        counts = {"band_partitions": partition_count(local, shards)}  # uncounted: not part of the run
        return reference.run_dedup(job, shards, executor), counts, None
    folder = Path(job.output.path.split("://", 1)[-1])
    inputs = {rel: ShardInput(rows=staged_rows(folder, rel), identity=identity(folder, rel)) for rel in shards}
    outcome = run_dedup(job, shards, executor, inputs=inputs)
    found = {"clusters": outcome.clusters, "largest_cluster": outcome.largest_cluster, "night": outcome.mode == "night"}
    found |= {f"churn_{name}": count for name, count in outcome.churn.items()}  # merged, better_copy on a night
    return outcome.removed(), outcome.counts | found, outcome


def write_run_stats(folder: Path, job: JobSpec, outcome: DedupOutcome, docs: int, seconds: float) -> None:
    """`OUT/stats.json` and the resolved job, as `run_job` leaves them after a dedup job, so `corpus-engine report
    OUT` reads this run as a user's. Phase A is the generator here: every document passed it (no step ran)."""
    total = Stats(shards_total=len(outcome.shards), docs_in=docs, seconds=seconds)
    total.docs_kept = outcome.kept
    total.duplicates = outcome.duplicates
    total.written[KEPT_ROWS] += outcome.kept
    total.written[DUPLICATE_ROWS] += outcome.duplicates_written
    for removal in outcome.shards.values():
        total.duplicates_by_language.update(removal.duplicates_by_language)
    total.cluster_sizes.update(outcome.cluster_sizes)
    total.largest_cluster = outcome.largest_cluster
    total.churn.update(outcome.churn)
    total.check_conservation(f"bench_scale {folder}")
    data = total.to_dict() | {"conserved": total.is_conserved(), "failed_shards": {}, "job": job.name}
    data["engine_version"] = __version__
    local = job.model_copy(update={"output": job.output.model_copy(update={"path": str(folder)})})
    write_json(join(str(folder), STATS_FILE), data, {})
    write_resolved_job(local)


def append_record(record: dict[str, Any], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a", encoding="utf-8") as handle:
        handle.write(json.dumps(record, sort_keys=True, default=str) + "\n")


def make_job(output: str, args: argparse.Namespace) -> JobSpec:
    # The corpus (scale_data.py) is staged as phase A stages text (`_stage/kept`): removal copies it.
    dedup: dict[str, Any] = {"type": "minhash", "in_memory_max_edges": args.in_memory_max_edges, "stage_text": True}
    if getattr(args, "partitions", None):
        dedup["partitions"] = args.partitions
    if getattr(args, "task_memory", None):
        dedup["task_memory"] = args.task_memory
    return JobSpec.model_validate({"input": {"path": "unused"}, "output": {"path": output}, "dedup": dedup})


def start_ray(cpus: int | None) -> int:
    """A private local Ray (never someone else's cluster) whose workers import the benchmark modules."""
    import logging

    import ray

    path = os.pathsep.join(p for p in (str(HERE), os.environ.get("PYTHONPATH", "")) if p)
    ray.init(
        address="local",
        num_cpus=cpus,
        include_dashboard=False,
        logging_level=logging.WARNING,
        log_to_driver=False,
        runtime_env={"env_vars": {"POLARS_MAX_THREADS": "1", "PYTHONPATH": path}},
    )
    return int(ray.cluster_resources().get("CPU", 1))


def clean_outputs(folder: Path) -> None:
    """Remove what phases B-D wrote (either design's folders, kept/, rejected/), keeping phase A's files."""
    dedup = [*folder.glob(f"{DEDUP}/*/work"), *folder.glob(f"{DEDUP}/*/shuffle"), *folder.glob(f"{DEDUP}/*/state")]
    for path in [*dedup, folder / KEPT, folder / REJECTED]:
        shutil.rmtree(path, ignore_errors=True)
    for name in (STATS_FILE, RESOLVED_JOB_FILE, REPORT_FILE):
        (folder / name).unlink(missing_ok=True)


def folder_state(folder: Path) -> dict[str, dict[str, int]]:
    """Files and bytes left on storage after a run, by area (what a next night starts from)."""
    state: dict[str, dict[str, int]] = {}
    for path in folder.rglob("*"):
        if path.is_file() and path.name != "synthetic.json":
            area = storage_counter.area_of(str(path))
            entry = state.setdefault(area, {"files": 0, "bytes": 0})
            entry["files"] += 1
            entry["bytes"] += path.stat().st_size
    return dict(sorted(state.items()))


def parquet_rows(folder: Path, pattern: str) -> int:
    import pyarrow.parquet as pq

    return sum(pq.read_metadata(p).num_rows for p in folder.glob(pattern))


def measure_run(folder: Path, shards: list[str], args: argparse.Namespace, executor: Any) -> dict[str, Any]:
    """One call of the dedup driver over `shards`, measured; the record (without provenance)."""
    job = make_job(f"{storage_counter.PROTOCOL}://{folder}", args)
    measuring = MeasuringExecutor(executor)
    reset_peak_rss()
    before = storage_counter.snapshot()
    tree_cpu, cpu, started = process_tree_cpu(), time.process_time(), time.perf_counter()
    error, counts, outcome = None, {}, None
    try:
        removed, counts, outcome = run_design(args.design, job, shards, measuring)
    except Exception as failure:  # noqa: BLE001 - a benchmark records where the design breaks
        error, removed = f"{type(failure).__name__}: {failure}"[:2000], {}
    wall = time.perf_counter() - started
    driver_cpu = time.process_time() - cpu - measuring.in_driver_cpu
    tree_cpu = process_tree_cpu() - tree_cpu
    driver_peak = peak_rss_bytes()
    driver_counts = Counter(storage_counter.delta(before, storage_counter.snapshot()))
    driver_counts.subtract(measuring.in_driver)
    totals = measuring.totals()
    all_counts = Counter(totals.counts)
    all_counts.update({k: v for k, v in driver_counts.items() if v})
    n = sum(staged_rows(folder, rel) for rel in shards)
    if outcome is not None:  # after the measured window: what `run_job` writes last, for `report`
        write_run_stats(folder, job, outcome, n, wall)
    cpu_total = totals.cpu + driver_cpu
    by_area: dict[str, dict[str, int]] = {}
    for key, value in all_counts.items():
        if "@" in key:
            kind, area = key.split("@", 1)
            by_area.setdefault(area, {})[kind] = value
    return {
        "docs": n,
        "shards": len(shards),
        "partitions": counts.get("band_partitions"),
        "counts_chosen": counts,
        "error": error,
        "duplicates": sum(removed.values()),
        "wall_s": round(wall, 2),
        "cpu_s": round(cpu_total, 2),
        "driver_cpu_s": round(driver_cpu, 2),
        "ray_process_tree_cpu_s": round(tree_cpu, 2),
        "wall_us_per_doc": round(wall / n * 1e6, 2),
        "cpu_us_per_doc": round(cpu_total / n * 1e6, 2),
        "tasks": totals.tasks,
        "driver_peak_rss_mb": round(driver_peak / 2**20, 1),
        "max_task_peak_rss_mb": round(totals.max_task_peak_rss / 2**20, 1),
        "max_task_growth_mb": round(totals.max_task_growth / 2**20, 1),
        "requests": storage_counter.requests(all_counts),
        "requests_per_1k_docs": round(storage_counter.requests(all_counts) / n * 1000, 2),
        "driver_requests": storage_counter.requests(driver_counts),
        "counts": {k: v for k, v in sorted(all_counts.items()) if "@" not in k},
        "bytes_written_per_doc": round(all_counts["bytes_written"] / n, 1),
        "bytes_read_per_doc": round(all_counts["bytes_read"] / n, 1),
        "by_area": dict(sorted(by_area.items())),
        "phases": {name: phase.to_dict() for name, phase in measuring.phases.items()},
    }


def staged_rows(folder: Path, rel: str) -> int:
    import pyarrow.parquet as pq

    from engine.io.layout import STAGE, join, shard_file

    return int(pq.read_metadata(shard_file(str(folder), join(STAGE, KEPT), rel)).num_rows)


def check(record: dict[str, Any], truth: dict[str, Any], folder: Path, *, full: bool) -> dict[str, Any]:
    """Duplicates and rows written against the ground truth (only for a run over every shard)."""
    kept = parquet_rows(folder / KEPT, "**/*.parquet")
    dups = parquet_rows(folder / REJECTED, "**/*.duplicates.parquet")
    checks: dict[str, Any] = {"kept_rows": kept, "duplicate_rows": dups, "conserved": kept + dups == record["docs"]}
    if full:
        checks["duplicates_as_expected"] = record["duplicates"] == truth["expected_duplicates"]
        chosen = record.get("counts_chosen") or {}
        if "clusters" in chosen:  # the stats counters the dedup tasks emit, against the generator's clusters
            checks["clusters_found_expected"] = [chosen["clusters"], truth["clusters"]]
            checks["largest_cluster_found_expected"] = [chosen["largest_cluster"], truth["largest_cluster"]]
    return checks


def reverse_rows(folder: Path, rel: str) -> None:
    """Change a shard as a new night would bring it (new content: its rows in the reverse order, so the ground truth
    holds): its signature and staged files are rewritten."""
    import pyarrow.parquet as pq

    from engine.dedup.signatures import signatures_file
    from engine.io.layout import STAGE, join, shard_file

    for path in (
        signatures_file(str(folder), scale_data.dedup_spec(), rel),
        shard_file(str(folder), join(STAGE, KEPT), rel),
    ):
        table = pq.read_table(path)
        pq.write_table(
            table.take(list(range(table.num_rows - 1, -1, -1))),
            path,
            row_group_size=scale_data.ROW_GROUP,
            compression="zstd",
        )


def cmd_generate(args: argparse.Namespace) -> None:
    spec = scale_data.Synthetic(docs=args.docs, shard_docs=args.shard_docs, hub=args.hub, seed=args.seed)
    started = time.perf_counter()
    described = scale_data.generate(args.dir, spec)
    print(
        json.dumps({k: v for k, v in described.items() if k != "shards"} | {"seconds": time.perf_counter() - started})
    )


def cmd_run(args: argparse.Namespace) -> None:
    folder = Path(args.dir).resolve()
    truth = scale_data.load(str(folder))
    shards: list[str] = truth["shards"]
    clean_outputs(folder)
    ray_started = time.perf_counter()
    cpus = start_ray(args.cpus)
    ray_seconds = time.perf_counter() - ray_started
    from engine.runner.ray import RayExecutor

    executor = RayExecutor()
    runs: list[tuple[str, list[str]]] = []
    if args.grow:
        held = max(1, math.ceil(len(shards) * args.grow))
        runs += [("full build without the new shards", shards[:-held]), (f"+{held} new shards", shards)]
    else:
        runs.append(("full build", shards))
    if args.rerun:
        runs.append(("unchanged rerun", shards))
    changed = shards[1 : 1 + args.change]
    if changed:
        runs.append((f"{len(changed)} changed shards", shards))
    vanished = shards[1 + args.change : 1 + args.change + args.vanish]
    if vanished:
        runs.append((f"{len(vanished)} vanished shards", [rel for rel in shards if rel not in vanished]))
    base = {
        "benchmark": "scale",
        "design": args.design,
        "git": git_state(),
        "machine": {**machine(), "ray_cpus": cpus},
        "synthetic": truth["spec"],
        "hub": truth["spec"]["hub"],
        "in_memory_max_edges": args.in_memory_max_edges,
        "ray_start_s": round(ray_seconds, 2),
        "command": " ".join(sys.argv),
    }
    first: dict[str, Any] | None = None
    for name, subset in runs:
        if name.endswith("changed shards"):
            for rel in changed:
                reverse_rows(folder, rel)
        record = measure_run(folder, subset, args, executor)
        record["run"] = name
        record["checks"] = check(record, truth, folder, full=subset == shards and name == "full build")
        record["storage_after"] = folder_state(folder)
        if first is None:
            first = record
        else:
            record["share_of_full_build"] = {
                key: round(record[key] / first[key], 4) if first[key] else None
                for key in ("wall_s", "cpu_s", "requests")
            } | {"bytes_written": round(record["counts"].get("bytes_written", 0) / first["counts"]["bytes_written"], 4)}
        append_record({**base, **record}, Path(args.results))
        summary = {k: record[k] for k in ("run", "docs", "partitions", "wall_s", "cpu_us_per_doc", "requests")}
        print(json.dumps({**summary, "max_task_mb": record["max_task_peak_rss_mb"], "checks": record["checks"]}))
        if record["error"]:
            print(record["error"], file=sys.stderr)
            break


def cmd_report(args: argparse.Namespace) -> None:
    """`python -m engine report DIR` in a fresh process, as a user runs it, on the run `run` left in DIR; its wall
    time and peak RSS (the child's own, from wait4), with the sizes of what it reads."""
    import subprocess

    folder = Path(args.dir).resolve()
    stats = folder / STATS_FILE
    if not stats.exists():
        sys.exit(f"{stats} does not exist: run `bench_scale.py run --dir {folder}` first")
    truth = scale_data.load(str(folder))
    path = os.pathsep.join(p for p in (str(HERE.parent), os.environ.get("PYTHONPATH")) if p)
    command = [sys.executable, "-m", "engine", "report", str(folder)]
    with tempfile.TemporaryFile() as log:
        started = time.perf_counter()
        child = subprocess.Popen(command, env={**os.environ, "PYTHONPATH": path}, stdout=log, stderr=log)  # noqa: S603
        _, status, usage = os.wait4(child.pid, 0)
        wall = time.perf_counter() - started
        log.seek(0)
        output = log.read().decode(errors="replace")
    data = json.loads(stats.read_text())
    record = {
        "benchmark": "scale_report",
        "git": git_state(),
        "machine": machine(),
        "synthetic": truth["spec"],
        "docs": data.get("docs_in"),
        "command": " ".join(command),
        "exit_status": os.waitstatus_to_exitcode(status),
        "wall_s": round(wall, 2),
        "report_peak_rss_mb": round(usage.ru_maxrss / 1024, 1),
        "stats_json_bytes": stats.stat().st_size,
        "report_bytes": (folder / REPORT_FILE).stat().st_size if (folder / REPORT_FILE).exists() else None,
        "clusters_in_stats": sum(int(v) for v in (data.get("cluster_sizes") or {}).values()),
        "corpus_bytes": sum(p.stat().st_size for p in folder.rglob("*.parquet")),
    }
    append_record(record, Path(args.results))
    shown = ("docs", "exit_status", "wall_s", "report_peak_rss_mb", "stats_json_bytes")
    print(json.dumps({k: record[k] for k in shown}))
    if record["exit_status"] != 0:
        sys.exit(output[-2000:])


def cmd_curve(args: argparse.Namespace) -> None:
    """`generate` then `run` at each size, each run in a fresh process (so driver memory is its own)."""
    import subprocess

    sizes = [int(x) for x in args.docs.split(",")]
    for docs in sizes:
        hubs = [0] + ([args.hub_at_largest] if args.hub_at_largest and docs == max(sizes) else [])
        for hub in hubs:
            folder = Path(args.work) / f"{docs}-hub{hub}"
            script = [sys.executable, __file__]
            gen = ["generate", "--docs", str(docs), "--hub", str(hub), "--dir", str(folder)]
            subprocess.run([*script, *gen, "--shard-docs", str(args.shard_docs)], check=True)
            run = ["run", "--dir", str(folder), "--results", args.results, "--design", args.design]
            run += ["--in-memory-max-edges", str(args.in_memory_max_edges)]
            if args.task_memory:
                run += ["--task-memory", str(args.task_memory)]
            subprocess.run([*script, *run], check=False)
            if not args.keep:
                shutil.rmtree(folder, ignore_errors=True)


def cmd_table(args: argparse.Namespace) -> None:
    """Markdown tables of the recorded runs (the numbers quoted in docs/dedup-design.md)."""
    records = [json.loads(line) for line in Path(args.results).read_text().splitlines() if line.strip()]
    records = [r for r in records if r.get("design") == args.design]
    print(
        "| docs | hub | run | S | P | tasks | wall s | CPU µs/doc | objects written | requests | requests/1k docs "
        "| B written/doc | B read/doc | driver MB | largest task MB (growth) |"
    )
    print("|" + "---|" * 15)
    for r in records:
        print(
            f"| {r['docs']:,} | {r['hub']:,} | {r['run']} | {r['shards']} | {r['partitions']} | {r['tasks']} "
            f"| {r['wall_s']} | {r['cpu_us_per_doc']} | {r['counts'].get('files_written', 0):,} | {r['requests']:,} "
            f"| {r['requests_per_1k_docs']} | {r['bytes_written_per_doc']} | {r['bytes_read_per_doc']} "
            f"| {r['driver_peak_rss_mb']} | {r['max_task_peak_rss_mb']} ({r['max_task_growth_mb']}) |"
        )
    print()
    print("| docs | hub | phase | tasks | CPU µs/doc | objects written | requests | GET | largest task MB (growth) |")
    print("|" + "---|" * 9)
    for r in records:
        for name, phase in r["phases"].items():
            print(
                f"| {r['docs']:,} | {r['hub']:,} | {name} | {phase['tasks']} "
                f"| {round(phase['cpu_s'] / r['docs'] * 1e6, 2)} | {phase.get('files_written', 0):,} "
                f"| {phase['requests']:,} | {phase.get('GET', 0):,} "
                f"| {phase['max_task_peak_rss_mb']} ({phase['max_task_growth_mb']}) |"
            )


def main_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("generate")
    p.add_argument("--docs", type=int, required=True)
    p.add_argument("--dir", required=True)
    p.add_argument("--hub", type=int, default=0, help="exact copies of one page (0: no hub)")
    p.add_argument("--shard-docs", type=int, default=100_000)
    p.add_argument("--seed", type=int, default=0)
    for name in ("run", "curve"):
        p = sub.add_parser(name)
        p.add_argument("--results", default=str(RESULTS))
        p.add_argument(
            "--design",
            choices=["segments", "reference"],
            default="segments",
            help="segments: the engine's driver; reference: the design before segments (tests/dedup/reference)",
        )
        p.add_argument("--task-memory", type=int, default=None, help="dedup.task_memory (default: the engine's)")
        p.add_argument("--in-memory-max-edges", type=int, default=0, help="0: components always distributed")
        if name == "run":
            p.add_argument("--dir", required=True)
            p.add_argument("--cpus", type=int, default=None)
            p.add_argument("--partitions", type=int, default=None, help="default: automatic")
            p.add_argument("--rerun", action="store_true", help="also measure an unchanged rerun")
            p.add_argument("--grow", type=float, default=0.0, help="build without this share of shards, then add")
            p.add_argument(
                "--change",
                type=int,
                default=0,
                help="then change N shards (rows reversed: rewrites the folder's files)",
            )
            p.add_argument("--vanish", type=int, default=0, help="then drop N other shards from the input")
        else:
            p.add_argument("--docs", default="1000000,2000000,4000000,8000000")
            p.add_argument("--hub-at-largest", type=int, default=0)
            p.add_argument("--shard-docs", type=int, default=100_000)
            p.add_argument("--work", default="/tmp/scale")
            p.add_argument("--keep", action="store_true", help="keep the generated folders")
    p = sub.add_parser("report", help="time `python -m engine report` on the run `run` left in --dir")
    p.add_argument("--dir", required=True)
    p.add_argument("--results", default=str(REPORT_RESULTS))
    p = sub.add_parser("table")
    p.add_argument("--results", default=str(RESULTS))
    p.add_argument("--design", default="segments", help="the recorded design to show (`current`: the baseline lines)")
    return parser


def main(argv: list[str] | None = None) -> None:
    args = main_parser().parse_args(argv)
    commands = {"generate": cmd_generate, "run": cmd_run, "report": cmd_report, "curve": cmd_curve, "table": cmd_table}
    commands[args.command](args)


if __name__ == "__main__":
    main()
