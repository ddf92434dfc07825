"""Throughput of `language_id` and `quality_classifier` against fastText's own `predict` on the same texts.

The physical limit of a fastText step is `model.predict(list_of_texts, k=1)` on texts already prepared
(newlines as spaces, cut to max_chars). This script times, in one process and one thread (per-core
numbers), on real Common Crawl documents written as batches:

- raw:  `model.predict(prepared, k=1)` alone;
- step: the engine step on the Arrow batch (preparation, predict, columns, verdict);

and reports docs/s (per CPU second of this single-threaded process) of each and the step's overhead over
raw (target: under 15%), also measured directly: the step run with a model that replays recorded
predictions at no cost. Timings interleave raw and step runs and keep the best of `--repeat` CPU
times, because the machine is shared.

Documents: dolma-tests' CC-MAIN-2019-30 extract (670 non-empty, ~55 languages) for language_id; that plus
dragnet's 1,381 human-corrected article texts for quality_classifier, whose model is trained here by
`train_quality_classifier` with DCLM's hyper-parameters (dragnet articles = positive, raw CC = negative).

    /work/venv/bin/python benchmarks/bench_fasttext.py [--repeat 7] [--copies 4] [--batch-rows 2000]

Appends one JSON line to benchmarks/results/bench_fasttext.jsonl unless --no-save.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import platform
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
SHARED = REPO.parent / "shared" / "corpora"
DOLMA = SHARED / "dolma-tests/data-history/formats/gz/CC-MAIN-20190717121559-20190717143559-00140.jsonl.gz"
DRAGNET = SHARED / "dragnet-corrected-text/dragnet_Corrected.tar.gz"


def dolma_texts() -> list[str]:
    with gzip.open(DOLMA, "rt", encoding="utf-8") as handle:
        return [t for t in (json.loads(line)["text"] for line in handle) if t and t.strip()]


def dragnet_texts() -> list[str]:
    texts = []
    with tarfile.open(DRAGNET) as archive:
        for member in sorted(archive.getmembers(), key=lambda m: m.name):
            if member.isfile():
                data = archive.extractfile(member)
                if data is not None:
                    text = data.read().decode("utf-8", errors="replace")
                    if text.strip():
                        texts.append(text)
    return texts


def batches_of(texts: list[str], rows: int) -> list[Any]:
    from engine.batch import make_batch

    return [
        make_batch({"id": [f"d{i + j}" for j in range(len(texts[i : i + rows]))], "text": texts[i : i + rows]})
        for i in range(0, len(texts), rows)
    ]


def best_of(repeat: int, runs: dict[str, Callable[[], object]]) -> dict[str, float]:
    """CPU seconds per run (best of `repeat`), the runs interleaved so load changes hit all alike.

    CPU time of this single-threaded process, not wall time: the machine is shared, and other
    processes' load otherwise shows up as noise of +-30% between identical runs.
    """
    best = dict.fromkeys(runs, float("inf"))
    for _ in range(repeat):
        for name, run in runs.items():
            started = time.process_time()
            run()
            best[name] = min(best[name], time.process_time() - started)
    return best


class ReplayModel:
    """Stands in for the fastText model: returns recorded predictions, batch after batch, at no cost.

    Running the step with it times everything the step does except `predict`: the step's own overhead,
    measured without the noise of re-timing predict on a shared machine.
    """

    def __init__(self, recorded: list[Any], labels: list[str]) -> None:
        self.recorded = recorded
        self.labels = labels
        self.calls = 0

    def predict(self, texts: list[str], k: int = 1) -> Any:
        result = self.recorded[self.calls % len(self.recorded)]
        self.calls += 1
        return result


def measure(step: Any, model: Any, batches: list[Any], repeat: int, module: Any) -> dict[str, float]:
    from engine.models.loader import prepare_texts

    prepared = [prepare_texts(batch, step.max_chars)[0] for batch in batches]
    docs = sum(batch.num_rows for batch in batches)
    step.apply(batches[0])  # warm-up: model load, lazy imports

    def raw() -> None:
        for texts in prepared:
            model.predict(texts, k=1)

    def run_step() -> None:
        for batch in batches:
            step.apply(batch)

    seconds = best_of(repeat, {"raw": raw, "step": run_step})
    replay = ReplayModel([model.predict(texts, k=1) for texts in prepared], model.labels)
    real_loader = module.load_model
    module.load_model = lambda path: replay
    try:
        own = best_of(repeat, {"step_without_predict": run_step})["step_without_predict"]
    finally:
        module.load_model = real_loader
    return {
        "docs": docs,
        "mb": sum(len(t.encode("utf-8")) for texts in prepared for t in texts) / 1e6,
        "raw_docs_per_s": docs / seconds["raw"],
        "step_docs_per_s": docs / seconds["step"],
        "overhead_pct": 100 * (seconds["step"] / seconds["raw"] - 1),
        "own_work_pct": 100 * own / seconds["raw"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--copies", type=int, default=4, help="times the real documents are repeated")
    parser.add_argument("--batch-rows", type=int, default=2000)
    parser.add_argument("--bucket", type=int, default=2_000_000, help="quality model buckets (DCLM: 2M)")
    parser.add_argument("--no-save", action="store_true")
    args = parser.parse_args()

    from engine.models.loader import default_lid_model, load_model
    from engine.models.training import TrainConfig, train_quality_classifier
    from engine.steps import language_id as langid_module
    from engine.steps import quality as quality_module
    from engine.steps.language_id import LanguageId
    from engine.steps.quality import QualityClassifier

    cc, articles = dolma_texts(), dragnet_texts()
    results: dict[str, Any] = {}

    lid = LanguageId(min_score=0.65)
    results["language_id"] = measure(
        lid, load_model(default_lid_model()), batches_of(cc * args.copies, args.batch_rows), args.repeat, langid_module
    )

    with tempfile.TemporaryDirectory(prefix="bench-fasttext-") as workdir:
        import pyarrow as pa
        import pyarrow.parquet as pq

        pq.write_table(pa.table({"text": articles}), f"{workdir}/pos.parquet")
        pq.write_table(pa.table({"text": cc}), f"{workdir}/neg.parquet")
        started = time.perf_counter()
        metrics = train_quality_classifier(
            [f"{workdir}/pos.parquet"], [f"{workdir}/neg.parquet"], f"{workdir}/q.bin", TrainConfig(bucket=args.bucket)
        )
        train_seconds = time.perf_counter() - started
        quality = QualityClassifier(model=f"{workdir}/q.bin", min_score=0.5)
        mixed = [t for pair in zip(articles, cc * 3, strict=False) for t in pair]
        results["quality_classifier"] = measure(
            quality,
            load_model(quality.model),
            batches_of(mixed * max(1, args.copies // 2), args.batch_rows),
            args.repeat,
            quality_module,
        )
        results["quality_classifier"]["train_seconds"] = train_seconds
        results["quality_classifier"]["train_metrics"] = {
            "f1": metrics.f1,
            "train_size": metrics.train_size,
            "test_size": metrics.test_size,
        }

    for name, numbers in results.items():
        print(
            f"{name:20s} docs={numbers['docs']:6d}  raw predict {numbers['raw_docs_per_s']:9,.0f} docs/s  "
            f"step {numbers['step_docs_per_s']:9,.0f} docs/s  overhead {numbers['overhead_pct']:+.1f}% "
            f"(step's own work without predict: {numbers['own_work_pct']:.1f}% of raw predict time)"
        )
    if not args.no_save:
        revision = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True).stdout.strip()
        line = {
            "bench": "fasttext",
            "git": revision,
            "machine": {
                "cpu_count": os.cpu_count(),
                "platform": platform.platform(),
                "python": platform.python_version(),
            },
            "args": vars(args),
            "results": results,
        }
        out = REPO / "benchmarks" / "results" / "bench_fasttext.jsonl"
        out.parent.mkdir(parents=True, exist_ok=True)
        with out.open("a", encoding="utf-8") as handle:
            handle.write(json.dumps(line) + "\n")


if __name__ == "__main__":
    main()
