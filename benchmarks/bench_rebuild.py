"""Nightly rebuild cost, scenario by scenario, on one growing output (issue 11).

    python benchmarks/bench_rebuild.py [--docs 40000] [--shards 100] [--job jobs/fineweb.yaml] [--no-dedup]
        [--stage-text] [--num-cpus N]

Scenarios, each measured against the state the previous one left: a full build; an unchanged rerun; +1% new shards;
+1% changed shards (rewritten with other documents); 1% vanished shards (their files deleted); a blocklist change
whose new domains appear in no shard; one whose new domains appear in 5% of the shards (the job gets `url_filter:
{domains_file: ...}`; documents carry a url on a domain of their own shard). `--no-dedup` drops the job's `dedup:`
section (phase A alone: what selective list invalidation saves is then not hidden by the global dedup rerun);
`--stage-text` runs the dedup with `stage_text: true` (the kept text staged by phase A and copied by removal, issue
13's "before"). Per scenario: the plan's lines (what `corpus-engine plan` says), wall seconds (Ray started once,
not timed), shards redone, re-keyed and reused, and what the run cost (`seconds`: `run_job` as a user calls it,
report included; `run_seconds`: the run alone, from its stats, without writing report.html):

- `cpu_s`: CPU seconds (user + system) of the driver process plus every Ray worker process, each worker
  reporting its own process CPU (`storage_counter.report_to_folder`, a worker setup hook); Ray's own daemons
  (raylet, GCS) are not counted. Idle workers add little; it is process CPU, not a sum of task timers.
- `bytes_written`, `bytes_read`, `requests`: input and output sit behind the counting filesystem `count://`
  (`benchmarks/storage_counter.py`), so every storage call of the driver and of every task is counted as the S3
  requests it would be (GET, PUT, HEAD, LIST, COPY, DELETE); written bytes include temporary files and the
  dedup's shuffle, deleted after the run.
- `bytes_left_written`: the bytes of files the run created or rewrote that are present after it.
- `requests_by_area`: the requests per folder they went to (`_units`: markers and unit stats; `state/...`: the
  dedup's state; `other`: folder listings and the output's top level).
- `phase_seconds`: wall seconds of each phase's tasks (the run's stats.json), e.g. `dedup: removal`.
- `share_of_full`: each of these as a share of the full build's.

After the full build: bytes written (and bytes left) per input byte (issue 13; the input's Parquet bytes), and
the bytes of the shards' URL-key sidecars (`_units/*.urlkeys.parquet`) per document.
Runs on the embedded local Ray and appends one JSON line to benchmarks/results/rebuild.jsonl.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import storage_counter  # noqa: E402
from corpus import job_over, write_corpus  # noqa: E402

from engine import run_job  # noqa: E402
from engine.api import plan_job  # noqa: E402
from engine.inspect.bench import append_record  # noqa: E402
from engine.provenance import git_state, machine  # noqa: E402
from engine.runner.ray import init_ray  # noqa: E402
from engine.spec import JobSpec  # noqa: E402
from engine.steps.base import build_step  # noqa: E402


def files(root: Path) -> dict[str, tuple[int, int]]:
    """Every file under `root`: (size, mtime in ns)."""
    found = {}
    for folder, _, names in os.walk(root):
        for name in names:
            stat = (Path(folder) / name).stat()
            found[str(Path(folder) / name)] = (stat.st_size, stat.st_mtime_ns)
    return found


SHARED = ("seconds", "cpu_s", "bytes_written", "bytes_read", "requests", "bytes_left_written")
"""The measures reported as a share of the full build's."""


def costs(reports: Path) -> Counter[str]:
    """Every process's counters and CPU so far: the Ray workers' reports plus this driver's own."""
    time.sleep(2 * storage_counter.FLUSH_SECONDS)  # every worker has reported since its last task
    total = storage_counter.folder_totals(reports)
    total.update(storage_counter.snapshot())
    total[storage_counter.CPU_SECONDS] += time.process_time()
    return total


def requests_by_area(spent: Counter[str]) -> dict[str, int]:
    """Requests per folder (`storage_counter.area_of`: `_units`, `kept`, `state/fates`, ...; `other` includes
    listings of a folder itself and the output's top level), largest first."""
    areas: Counter[str] = Counter()
    for name, n in spent.items():
        kind, _, area = name.partition("@")
        if area and kind in storage_counter.REQUEST_KINDS and n:
            areas[area] += n
    return dict(areas.most_common())


def scenario(name: str, job: JobSpec, out: Path, reports: Path, full: dict[str, Any] | None) -> dict[str, Any]:
    """Plan, run and measure one scenario (`full`: the full build's record, for the shares)."""
    lines = plan_job(job)
    before = files(out)
    counted = costs(reports)
    started = time.perf_counter()
    stats = run_job(job)
    seconds = time.perf_counter() - started
    spent = costs(reports)
    spent.subtract(counted)
    after = files(out)
    run_stats = json.loads((out / "stats.json").read_text())
    left = sum(size for path, (size, mtime) in after.items() if before.get(path, (None, None))[1] != mtime)
    result: dict[str, Any] = {
        "scenario": name,
        "plan": lines,
        "seconds": round(seconds, 2),
        "run_seconds": round(stats.seconds, 2),
        "cpu_s": round(spent[storage_counter.CPU_SECONDS], 2),
        "shards_processed": stats.shards_processed,
        "shards_skipped": stats.shards_skipped,
        "shards_rekeyed": getattr(stats, "shards_rekeyed", 0),
        "bytes_written": int(spent["bytes_written"]),
        "bytes_read": int(spent["bytes_read"]),
        "requests": int(storage_counter.requests(spent)),
        "requests_by_kind": {kind: int(spent[kind]) for kind in storage_counter.REQUEST_KINDS},
        "requests_by_area": requests_by_area(spent),
        "files_written": int(spent["files_written"]),
        "bytes_left_written": left,
        "phase_seconds": run_stats.get("phase_seconds", {}),
    }
    result["share_of_full"] = {k: round(result[k] / full[k], 4) if full and full[k] else 1.0 for k in SHARED}
    print(json.dumps(result), flush=True)
    return result


def report_cost(job: JobSpec) -> dict[str, float]:
    """Writing report.html once more, alone (every `run_job` ends with it): wall and this process's CPU."""
    from engine.inspect.report import write_report

    started, cpu = time.perf_counter(), time.process_time()
    write_report(job.output.path, job.output.storage_options)
    return {"seconds": round(time.perf_counter() - started, 2), "cpu_s": round(time.process_time() - cpu, 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--docs", type=int, default=40_000)
    parser.add_argument("--shards", type=int, default=100)
    parser.add_argument("--job", default="jobs/fineweb.yaml")
    parser.add_argument("--no-dedup", action="store_true", help="drop the job's dedup section")
    parser.add_argument(
        "--stage-text", action="store_true", help="dedup with `stage_text: true` (phase A stages the kept text)"
    )
    parser.add_argument("--results", default="benchmarks/results/rebuild.jsonl")
    parser.add_argument("--num-cpus", type=int, help="CPUs of the embedded Ray (default: the machine's)")
    args = parser.parse_args()

    reports = Path(tempfile.mkdtemp(prefix="rebuild-costs-"))
    environment = {storage_counter.DIR_ENV: str(reports), "PYTHONPATH": f"{HERE}:{os.environ.get('PYTHONPATH', '')}"}
    init_ray(
        num_cpus=args.num_cpus,
        runtime_env={"env_vars": environment, "worker_process_setup_hook": "storage_counter.report_to_folder"},
    )
    per_shard = args.docs // args.shards
    one_percent = max(1, args.shards // 100)
    five_percent = max(1, args.shards // 20)
    with tempfile.TemporaryDirectory() as tmp:
        src, out, blocklist = Path(tmp) / "in", Path(tmp) / "out", Path(tmp) / "blocklist.txt"
        write_corpus(src, docs=args.docs, shards=args.shards, seed=0, urls=True)
        blocklist.write_text("# nightly blocklist\n")
        job = job_over(args.job, src, out)
        counted = {"path": f"{storage_counter.PROTOCOL}://{src}"}
        job = job.model_copy(
            update={
                "input": job.input.model_copy(update=counted),
                "output": job.output.model_copy(update={"path": f"{storage_counter.PROTOCOL}://{out}"}),
            }
        )
        url_filter = build_step({"type": "url_filter", "domains_file": str(blocklist)})
        steps = [url_filter if s.type == "url_filter" else s for s in job.steps]
        if url_filter not in steps:
            steps = [url_filter, *steps]
        dedup = (
            None if args.no_dedup or job.dedup is None else job.dedup.model_copy(update={"stage_text": args.stage_text})
        )
        job = job.model_copy(update={"steps": steps, "dedup": dedup})

        input_bytes = sum(p.stat().st_size for p in src.rglob("*.parquet"))
        results = [scenario("full build", job, out, reports, None)]
        full = results[0]
        full["input_bytes"] = input_bytes
        full["bytes_written_per_input_byte"] = round(full["bytes_written"] / input_bytes, 3)
        full["bytes_left_per_input_byte"] = round(full["bytes_left_written"] / input_bytes, 3)
        print(json.dumps({k: full[k] for k in ("input_bytes", "bytes_written_per_input_byte")}), flush=True)
        sidecars = sum(p.stat().st_size for p in (out / "_units").rglob("*.urlkeys.parquet"))
        results[0]["list_keys_bytes"] = sidecars
        results[0]["list_keys_bytes_per_doc"] = round(sidecars / args.docs, 2)
        results.append(scenario("unchanged rerun", job, out, reports, full))
        write_corpus(src, docs=per_shard * one_percent, shards=one_percent, seed=1, first_shard=args.shards, urls=True)
        results.append(scenario(f"+{one_percent} new shards (1%)", job, out, reports, full))
        write_corpus(src, docs=per_shard * one_percent, shards=one_percent, seed=2, first_shard=0, urls=True)
        results.append(scenario(f"{one_percent} changed shards (1%)", job, out, reports, full))
        for gone in range(1, 1 + one_percent):  # not shard 0, the changed one
            (src / f"shard-{gone:05d}.parquet").unlink()
        results.append(scenario(f"{one_percent} vanished shards (1%)", job, out, reports, full))
        blocklist.write_text("".join(f"absent{i}.com\n" for i in range(five_percent)))
        results.append(scenario("blocklist change hitting no shard", job, out, reports, full))
        blocklist.write_text("".join(f"news{i}.com\n" for i in range(0, args.shards, args.shards // five_percent)))
        results.append(scenario(f"blocklist change hitting {five_percent} shards (5%)", job, out, reports, full))
        report = report_cost(job)

    record = {
        "benchmark": "rebuild-scenarios",
        "git": git_state(),
        "machine": machine(),
        "job": args.job,
        "dedup": not args.no_dedup,
        "stage_text": args.stage_text,
        "docs": args.docs,
        "shards": args.shards,
        "num_cpus": args.num_cpus,
        "cpu": "driver process + every Ray worker process (user + system); Ray's raylet and GCS not counted",
        "scenarios": results,
        "report_html": report,
    }
    append_record(record, args.results)


if __name__ == "__main__":
    main()
