"""Issue 13's table in one run: ours, datatrove 0.10.1's and the ratio for each line, on the same documents.

    python benchmarks/bench_side_by_side.py [--docs 10000] [--shards 10] [--e2e-docs 50000]
        [--datatrove-docs 500] [--datatrove-e2e-docs 4000] [--cpus 1,2] [--no-save]

Runs in the engine's environment; datatrove's side runs in /work/venv-bench as a subprocess of this same
script (`--datatrove-python`), on the same Parquet shards. Corpora come from benchmarks/corpus.py (real web
documents from ../shared/corpora, scaled with seeded variants), built under a temporary folder.

Lines (per-core figures; what each measures):
- the four heuristic steps, each on the same input: documents per CPU-second of one single-threaded
  process (each step on every batch read fresh, so no step reuses words split by another);
- the same four as a chain, as `process_batch` runs them (rows a step drops skip the later ones; datatrove:
  the four filters per document, stopping at the first drop, as its pipeline does);
- language_id (lid.176, the model shipped in engine/models for both sides), per CPU-second;
- MinHash signatures (FineWeb's 5-grams, 14x8), per CPU-second: ours `signature_table` per batch,
  datatrove's `MinhashDedupSignature.get_shingles` + `get_signature` per document;
- `jobs/fineweb.yaml` end to end: wall time of `python -m engine run` from the command line (Ray start and
  every phase included) with the embedded Ray limited to N CPUs (`--num-cpus`), documents per second and
  per core. datatrove's figure: its LocalPipelineExecutor with the same filters (no URL filter: the corpus
  has no URLs, ours passes them) and its 4 MinHash stages on the first `--datatrove-e2e-docs` documents.

datatrove's step lines are timed on an evenly spaced sample of the same documents (`--datatrove-docs`);
ours on all of them. Appends one JSON line to benchmarks/results/side_by_side.jsonl (git revision, machine,
parameters, every number). Timings on a shared machine are noisy: compare the ratios of one run.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("POLARS_MAX_THREADS", "1")  # per-core figures: one thread
os.environ.setdefault("RAYON_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))

STEPS = ("gopher_repetition", "gopher_quality", "c4_quality", "fineweb_quality")
STEP_PARAMS: dict[str, dict[str, Any]] = {"c4_quality": {"filter_no_terminal_punct": False}}
MODEL = ROOT / "engine" / "models" / "lid.176.ftz"
BATCH_ROWS = 2048  # the job's default input.batch_rows


# ------------------------------------------------------------------------------------------------------------
# Shared: the corpus


def shard_paths(folder: Path) -> list[Path]:
    return sorted(folder.glob("*.parquet"))


def sample_rows(n: int, wanted: int) -> list[int]:
    """`wanted` evenly spaced row numbers of `n` (all of them when wanted is 0 or >= n)."""
    if wanted <= 0 or wanted >= n:
        return list(range(n))
    step = n / wanted
    return [int(i * step) for i in range(wanted)]


def read_texts(folder: Path) -> tuple[list[str], list[str]]:
    import pyarrow.parquet as pq

    ids: list[str] = []
    texts: list[str] = []
    for path in shard_paths(folder):
        table = pq.read_table(path, columns=["id", "text"])
        ids += table["id"].to_pylist()
        texts += table["text"].to_pylist()
    return ids, texts


def cpu_seconds() -> float:
    return time.process_time()


# ------------------------------------------------------------------------------------------------------------
# Ours (engine environment)


def our_batches(folder: Path) -> list[tuple[Any, Any]]:
    """Canonical batches (and input verdicts) as a unit reads them; new buffers on every call."""
    import pyarrow.parquet as pq

    from engine.io.documents import canonical_batch

    out = []
    for path in shard_paths(folder):
        row = 0
        for raw in pq.ParquetFile(path).iter_batches(batch_size=BATCH_ROWS):
            out.append(
                canonical_batch(
                    raw, text_column="text", id_column="id", rel=path.name, first_row=row, max_text_bytes=10_000_000
                )
            )
            row += raw.num_rows
    return out


def measure_ours(folder: Path, repeat: int) -> dict[str, Any]:
    from engine.dedup.signatures import signature_table
    from engine.pipeline import process_batch
    from engine.spec import MinhashDedup
    from engine.steps import build_step

    steps = {name: build_step({"type": name, **STEP_PARAMS.get(name, {})}) for name in STEPS}
    language = build_step({"type": "language_id", "languages": ["en"]})
    dedup = MinhashDedup()
    warm = our_batches(folder)[0][0].slice(0, 50)
    for step in (*steps.values(), language):  # regexes compiled, model loaded
        step.apply(warm)
    signature_table(warm, dedup)

    def best(run: Any) -> float:
        times = []
        for _ in range(repeat):
            batches = our_batches(folder)
            started = cpu_seconds()
            run(batches)
            times.append(cpu_seconds() - started)
        return min(times)

    docs = sum(b.num_rows for b, _ in our_batches(folder))
    seconds: dict[str, float] = {}
    for name, step in steps.items():
        seconds[name] = best(lambda batches, step=step: [step.apply(b) for b, _ in batches])
    chain = list(steps.values())
    kept = [0]

    def run_chain(batches: list[tuple[Any, Any]]) -> None:
        kept[0] = sum(process_batch(b, chain, input_verdict=v).kept.num_rows for b, v in batches)

    seconds["chain"] = best(run_chain)
    seconds["language_id"] = best(lambda batches: [language.apply(b) for b, _ in batches])
    seconds["minhash_signatures"] = best(lambda batches: [signature_table(b, dedup) for b, _ in batches])
    return {
        "docs": docs,
        "cpu_seconds": {k: round(v, 3) for k, v in seconds.items()},
        "docs_per_cpu_second": {k: round(docs / v, 1) for k, v in seconds.items()},
        "chain_kept": kept[0],
    }


def has_num_cpus_option() -> bool:
    done = subprocess.run(
        [sys.executable, "-m", "engine", "run", "--help"], capture_output=True, text=True, check=False, cwd=ROOT
    )
    return "--num-cpus" in done.stdout


def run_job_cli(corpus: Path, work: Path, cpus: int, *, limit: bool) -> dict[str, Any]:
    """`python -m engine run` on `corpus` with jobs/fineweb.yaml, wall time from spawn to exit."""
    import yaml

    job = yaml.safe_load((ROOT / "jobs" / "fineweb.yaml").read_text(encoding="utf-8"))
    job["input"]["path"] = str(corpus)
    out = work / f"out-{cpus}cpu"
    shutil.rmtree(out, ignore_errors=True)
    job_file = work / "fineweb-bench.yaml"
    job_file.write_text(yaml.safe_dump(job), encoding="utf-8")
    command = [sys.executable, "-m", "engine", "run", str(job_file), "--output", str(out), "--quiet"]
    if limit:
        command += ["--num-cpus", str(cpus)]
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH", "")]))
    for name in ("POLARS_MAX_THREADS", "RAYON_NUM_THREADS", "OMP_NUM_THREADS"):
        env.pop(name, None)  # the job decides its own threads
    started = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, env=env, cwd=ROOT, check=False)
    wall = time.perf_counter() - started
    if done.returncode != 0:
        msg = f"{' '.join(command)} failed ({done.returncode}):\n{done.stdout[-2000:]}\n{done.stderr[-4000:]}"
        raise RuntimeError(msg)
    stats = json.loads((out / "stats.json").read_text(encoding="utf-8"))
    docs = int(stats["docs_in"])
    shutil.rmtree(out, ignore_errors=True)
    return {
        "cpus": cpus,
        "cpus_limited": limit,
        "docs": docs,
        "wall_seconds": round(wall, 2),
        "docs_per_second": round(docs / wall, 1),
        "docs_per_second_per_core": round(docs / wall / cpus, 1),
        "kept": stats.get("docs_kept"),
        "duplicates": stats.get("duplicates"),
        # where the wall time went (stats.json): Ray start, each phase's tasks, each step inside the units
        "ray_cpus": stats.get("ray_cpus"),
        "ray_start_seconds": stats.get("ray_start_seconds"),
        "run_seconds": stats.get("seconds"),
        "phase_seconds": stats.get("phase_seconds"),
        "step_seconds": {k: round(v, 2) for k, v in (stats.get("step_seconds") or {}).items()},
        "phase_peak_rss_mib": {k: round(v / 2**20) for k, v in (stats.get("phase_peak_rss_bytes") or {}).items()},
    }


# ------------------------------------------------------------------------------------------------------------
# datatrove (bench environment)


def _local_lid_model(folder: Path) -> None:
    """Point datatrove's lid.176 download at the model shipped in engine/models (no network here)."""
    os.environ["HF_ASSETS_CACHE"] = str(folder)
    from datatrove.io import strip_protocol
    from datatrove.utils.lid import FT176LID
    from huggingface_hub import cached_assets_path

    target = Path(cached_assets_path(library_name="datatrove", namespace="lid", subfolder=FT176LID.MODEL_SUBFOLDER))
    path = target / strip_protocol(FT176LID.MODEL_URL).replace("/", "_")
    if not path.exists():
        path.symlink_to(MODEL)
    Path(f"{path}.completed").touch()


def _datatrove_filter(name: str) -> Any:
    from compare_datatrove_filters import datatrove_filters
    from datatrove.pipeline.filters import LanguageFilter

    if name == "language_id":
        return LanguageFilter(languages=["en"])
    return datatrove_filters()[name]()


def measure_datatrove(folder: Path, sample: int) -> dict[str, Any]:
    from datatrove.data import Document
    from datatrove.pipeline.dedup.minhash import MinhashConfig, MinhashDedupSignature

    ids, texts = read_texts(folder)
    rows = sample_rows(len(texts), sample)
    docs = [(ids[i], texts[i]) for i in rows]
    filters = {name: _datatrove_filter(name) for name in (*STEPS, "language_id")}
    for step in filters.values():  # spaCy and the model loaded before timing
        step.filter(Document(text="Warm up the tokenizer and the model.", id="warm"))
    seconds: dict[str, float] = {}
    for name, step in filters.items():
        started = cpu_seconds()
        for doc_id, text in docs:
            step.filter(Document(text=text, id=doc_id))
        seconds[name] = cpu_seconds() - started
    kept = 0
    started = cpu_seconds()
    for doc_id, text in docs:
        doc = Document(text=text, id=doc_id)
        for name in STEPS:
            result = filters[name].filter(doc)
            if not (result if isinstance(result, bool) else result[0]):
                break
        else:
            kept += 1
    seconds["chain"] = cpu_seconds() - started
    signer = MinhashDedupSignature(output_folder=tempfile.mkdtemp(prefix="dt-sigs-"), config=MinhashConfig())
    started = cpu_seconds()
    for _, text in docs:
        shingles = signer.get_shingles(text)
        if shingles.size:
            signer.get_signature(shingles)
    seconds["minhash_signatures"] = cpu_seconds() - started
    return {
        "docs": len(docs),
        "cpu_seconds": {k: round(v, 3) for k, v in seconds.items()},
        "docs_per_cpu_second": {k: round(len(docs) / v, 2) for k, v in seconds.items()},
        "chain_kept": kept,
    }


def datatrove_job(folder: Path, work: Path, workers: int) -> dict[str, Any]:
    """The FineWeb job as datatrove's FineWeb recipe lays it out: a filter stage writing the survivors, then
    the 4 MinHash stages (signatures, buckets, clusters, filter + writer) reading them."""
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

    shutil.rmtree(work, ignore_errors=True)
    shards = shard_paths(folder)
    config = MinhashConfig()
    logs = str(work / "logs")
    filtered = str(work / "filtered")

    def executor(pipeline: list[Any], tasks: int, name: str) -> LocalPipelineExecutor:
        return LocalPipelineExecutor(
            pipeline=pipeline,
            tasks=tasks,
            workers=min(workers, tasks),
            logging_dir=f"{logs}/{name}",
            start_method="fork",
        )

    def survivors() -> ParquetReader:
        return ParquetReader(filtered, glob_pattern="*.parquet")

    stages = [
        executor(
            [
                ParquetReader(str(folder), glob_pattern="*.parquet", id_key="id", text_key="text"),
                *[_datatrove_filter(name) for name in ("language_id", *STEPS)],
                ParquetWriter(filtered),
            ],
            len(shards),
            "filters",
        ),
        executor(
            [survivors(), MinhashDedupSignature(output_folder=str(work / "sigs"), config=config)], len(shards), "1"
        ),
        executor(
            [MinhashDedupBuckets(input_folder=str(work / "sigs"), output_folder=str(work / "buckets"), config=config)],
            config.num_buckets,
            "2",
        ),
        executor(
            [
                MinhashDedupCluster(
                    input_folder=str(work / "buckets"), output_folder=str(work / "remove"), config=config
                )
            ],
            1,
            "3",
        ),
        executor(
            [survivors(), MinhashDedupFilter(input_folder=str(work / "remove")), ParquetWriter(str(work / "kept"))],
            len(shards),
            "4",
        ),
    ]
    started = time.perf_counter()
    stage_seconds = []
    for stage in stages:
        at = time.perf_counter()
        stage.run()
        stage_seconds.append(round(time.perf_counter() - at, 2))
    wall = time.perf_counter() - started
    import pyarrow.parquet as pq

    docs = sum(pq.ParquetFile(p).metadata.num_rows for p in shards)
    kept = sum(pq.ParquetFile(p).metadata.num_rows for p in (work / "kept").glob("*.parquet"))
    shutil.rmtree(work, ignore_errors=True)
    return {
        "workers": workers,
        "docs": docs,
        "kept": kept,
        "wall_seconds": round(wall, 2),
        "stage_seconds": stage_seconds,
        "docs_per_second": round(docs / wall, 2),
        "docs_per_second_per_core": round(docs / wall / workers, 2),
    }


def datatrove_main(args: argparse.Namespace) -> int:
    with tempfile.TemporaryDirectory(prefix="dt-assets-") as assets:
        _local_lid_model(Path(assets))
        result: dict[str, Any] = {}
        if args.datatrove_docs:
            result["steps"] = measure_datatrove(Path(args.corpus), args.datatrove_docs)
        if args.e2e_corpus:
            result["e2e"] = [
                datatrove_job(Path(args.e2e_corpus), Path(args.work) / f"dt-{n}", n) for n in args.cpus_list
            ]
        import datatrove

        result["version"] = datatrove.__version__ if hasattr(datatrove, "__version__") else "0.10.1"
    print(json.dumps(result))
    return 0


# ------------------------------------------------------------------------------------------------------------
# The run


def ratio(ours: float, theirs: float | None) -> str:
    return f"{ours / theirs:,.1f}x" if theirs else "-"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--docs", type=int, default=10_000, help="documents for the step lines")
    parser.add_argument("--shards", type=int, default=10)
    parser.add_argument("--e2e-docs", type=int, default=50_000, help="documents for the end-to-end lines (0: skip)")
    parser.add_argument("--e2e-shards", type=int, default=0, help="default: one shard per 1,000 documents")
    parser.add_argument("--cpus", default="1,2", help="CPU counts of the end-to-end lines")
    parser.add_argument("--datatrove-docs", type=int, default=500, help="sample for datatrove's step lines (0: none)")
    parser.add_argument("--datatrove-e2e-docs", type=int, default=4_000, help="0: skip datatrove's job")
    parser.add_argument("--datatrove-python", default="/work/venv-bench/bin/python")
    parser.add_argument("--repeat", type=int, default=3, help="best of N for our step lines")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--work", default=None, help="folder for corpora and outputs (default: a temporary one)")
    parser.add_argument("--results", default=str(HERE / "results" / "side_by_side.jsonl"))
    parser.add_argument("--no-steps", action="store_true", help="only the end-to-end lines")
    parser.add_argument("--no-save", action="store_true")
    # internal: datatrove's side, run in the bench environment
    parser.add_argument("--datatrove-side", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--corpus", help=argparse.SUPPRESS)
    parser.add_argument("--e2e-corpus", default="", help=argparse.SUPPRESS)
    args = parser.parse_args()
    args.cpus_list = [int(c) for c in args.cpus.split(",") if c]
    if args.datatrove_side:
        return datatrove_main(args)

    from corpus import write_corpus

    from engine.provenance import git_state, machine

    work = Path(args.work or tempfile.mkdtemp(prefix="side-by-side-"))
    work.mkdir(parents=True, exist_ok=True)
    corpus = write_corpus(work / "corpus", docs=args.docs, shards=args.shards, seed=args.seed)
    megabytes = sum(len(t.encode("utf-8")) for t in read_texts(corpus)[1]) / 1e6
    print(f"corpus: {args.docs:,} documents, {megabytes:.1f} MB of text, {args.shards} shards ({corpus})", flush=True)

    ours = {} if args.no_steps else measure_ours(corpus, args.repeat)
    print("ours (step lines) done", flush=True)
    e2e_corpus = None
    e2e: list[dict[str, Any]] = []
    if args.e2e_docs:
        shards = args.e2e_shards or max(1, args.e2e_docs // 1000)
        e2e_corpus = write_corpus(work / "e2e", docs=args.e2e_docs, shards=shards, seed=args.seed + 1)
        limit = has_num_cpus_option()
        for cpus in args.cpus_list:
            e2e.append(run_job_cli(e2e_corpus, work, cpus, limit=limit))
            print(f"ours end to end on {cpus} CPU(s): {e2e[-1]}", flush=True)

    theirs: dict[str, Any] = {}
    if args.datatrove_python and Path(args.datatrove_python).exists():
        command = [args.datatrove_python, str(Path(__file__).resolve()), "--datatrove-side", "--corpus", str(corpus)]
        command += ["--datatrove-docs", str(0 if args.no_steps else args.datatrove_docs), "--cpus", args.cpus]
        command += ["--work", str(work)]
        if e2e_corpus is not None and args.datatrove_e2e_docs:
            subset = work / "e2e-datatrove"
            subset.mkdir(exist_ok=True)
            needed = args.datatrove_e2e_docs
            for path in shard_paths(e2e_corpus):  # the first shards of the same corpus
                if needed <= 0:
                    break
                import pyarrow.parquet as pq

                rows = pq.ParquetFile(path).metadata.num_rows
                shutil.copy(path, subset / path.name)
                needed -= rows
            command += ["--e2e-corpus", str(subset)]
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH", "")]))
        done = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
        if done.returncode != 0:
            print(f"datatrove side failed:\n{done.stderr[-4000:]}", file=sys.stderr)
            return 1
        theirs = json.loads(done.stdout.strip().splitlines()[-1])

    dt_steps = theirs.get("steps", {}).get("docs_per_cpu_second", {})
    rows = []
    for name in (*STEPS, "chain", "language_id", "minhash_signatures") if ours else ():
        rows.append((name, ours["docs_per_cpu_second"][name], dt_steps.get(name)))
    print()
    print(f"{'line':40s} {'ours':>14s} {'datatrove':>14s} {'ratio':>8s}")
    labels = {"chain": "the four as a chain", "minhash_signatures": "MinHash signatures"}
    for name, o, t in rows:
        label = labels.get(name, name) + " (docs/CPU-s)"
        print(f"{label:40s} {o:14,.0f} {'-' if t is None else f'{t:,.1f}':>14s} {ratio(o, t):>8s}")
    dt_e2e = {entry["workers"]: entry for entry in theirs.get("e2e", [])}
    for entry in e2e:
        t = dt_e2e.get(entry["cpus"])
        label = f"fineweb.yaml end to end, {entry['cpus']} CPU (docs/s/core wall)"
        theirs_rate = t["docs_per_second_per_core"] if t else None
        print(
            f"{label:40s} {entry['docs_per_second_per_core']:14,.1f} "
            f"{'-' if theirs_rate is None else f'{theirs_rate:,.1f}':>14s} "
            f"{ratio(entry['docs_per_second_per_core'], theirs_rate):>8s}"
        )
        phases = ", ".join(f"{k} {v:.1f}s" for k, v in (entry["phase_seconds"] or {}).items())
        print(f"    Ray start {entry['ray_start_seconds']}s; {phases}; steps (all units): {entry['step_seconds']}")
    if len(e2e) >= 2:
        one, many = e2e[0], e2e[-1]
        scaling = many["docs_per_second"] / (one["docs_per_second"] * many["cpus"] / one["cpus"])
        print(f"scaling {one['cpus']} -> {many['cpus']} CPUs: {scaling:.0%} of linear (wall)")

    record = {
        "benchmark": "side_by_side",
        "git": git_state(),
        "machine": machine(),
        "load_average": os.getloadavg(),
        "spec": {
            "job": "jobs/fineweb.yaml",
            "docs": args.docs,
            "shards": args.shards,
            "megabytes": round(megabytes, 1),
            "seed": args.seed,
            "batch_rows": BATCH_ROWS,
            "e2e_docs": args.e2e_docs,
            "datatrove_docs": theirs.get("steps", {}).get("docs"),
            "datatrove_e2e_docs": args.datatrove_e2e_docs,
        },
        "ours": ours,
        "ours_e2e": e2e,
        "datatrove": theirs,
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    if not args.no_save:
        target = Path(args.results)
        target.parent.mkdir(parents=True, exist_ok=True)
        with target.open("a", encoding="utf-8") as handle:
            handle.write(json.dumps(record, sort_keys=True) + "\n")
        print(f"\nappended to {target}")
    if args.work is None:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
