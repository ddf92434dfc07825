"""Memory of a large fastText model in the Ray workers of one node: is the loaded model shared between them?

Issue 14: the quality classifier (805 MB with the engine's training defaults: dim 100, bucket 2M, word bigrams)
is loaded once per worker process. This script builds a model of that size (the engine's hyper-parameters on
synthetic lines: the size comes from `bucket x dim`, not from the data), starts the embedded Ray with 2 CPUs,
and has 2 tasks load it with `engine.models.loader.load_model` and hold it, while the driver reads each
worker's `/proc/<pid>/smaps_rollup`: RSS, PSS (shared pages divided among their users) and USS (private pages).
The same is measured before any model is loaded (baseline) and for the model quantized by fastText itself
(`model.quantize()`, product quantization, written as `.ftz`), with the agreement of the two models' scores.

    PYTHONPATH=$PWD /work/main/.venv/bin/python benchmarks/bench_model_memory.py [--no-save]

Appends one JSON line to benchmarks/results/model_memory.jsonl unless --no-save.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
WORKERS = 2
HOLD_SECONDS = 20


def build_models(folder: Path) -> tuple[Path, Path, list[str]]:
    """A supervised model with the engine's default size (`.bin`), its quantized form (`.ftz`), test lines."""
    import fasttext

    rng = random.Random(14)
    words = [f"w{i}" for i in range(5000)]
    lines = []
    for i in range(20000):
        positive = i % 2 == 1
        pool = words[:2500] if positive else words[2500:]
        lines.append(("__label__hq " if positive else "__label__lq ") + " ".join(rng.choice(pool) for _ in range(30)))
    train = folder / "train.txt"
    train.write_text("\n".join(lines) + "\n")
    model = fasttext.train_supervised(
        str(train), dim=100, bucket=2_000_000, wordNgrams=2, epoch=1, thread=1, verbose=0, seed=14
    )
    full = folder / "quality.bin"
    model.save_model(str(full))
    model.quantize(qnorm=True)
    quantized = folder / "quality.ftz"
    model.save_model(str(quantized))
    tests = [" ".join(rng.choice(words[:2500] if i % 2 else words[2500:]) for _ in range(30)) for i in range(2000)]
    return full, quantized, tests


def hold(model: str | None, pid_file: str) -> int:
    """A task: load `model` with the engine's loader (or only import fastText), then stay alive to be measured."""
    from engine.models.loader import import_fasttext, load_model

    import_fasttext()
    if model is not None:
        load_model(model).predict("warm up")
    Path(pid_file).write_text(str(os.getpid()))
    time.sleep(HOLD_SECONDS)
    return os.getpid()


def rollup(pid: int) -> dict[str, int]:
    """RSS, PSS, USS and shared memory of a process, in MiB (Linux smaps_rollup)."""
    fields: dict[str, int] = {}
    with open(f"/proc/{pid}/smaps_rollup", encoding="ascii") as handle:
        for line in handle:
            name, _, value = line.partition(":")
            if value.strip().endswith("kB"):
                fields[name] = int(value.split()[0]) // 1024
    return {
        "rss_mib": fields["Rss"],
        "pss_mib": fields["Pss"],
        "uss_mib": fields["Private_Clean"] + fields["Private_Dirty"],
        "shared_mib": fields["Shared_Clean"] + fields["Shared_Dirty"],
    }


def measure(model: str | None, folder: Path) -> list[dict[str, int]]:
    import ray

    remote = ray.remote(num_cpus=1, max_calls=1)(hold)  # a fresh worker process for every task
    pid_files = [str(folder / f"pid-{i}") for i in range(WORKERS)]
    for path in pid_files:
        Path(path).unlink(missing_ok=True)
    refs = [remote.remote(model, path) for path in pid_files]
    deadline = time.monotonic() + 300
    while not all(Path(p).exists() for p in pid_files) and time.monotonic() < deadline:
        time.sleep(0.2)
    time.sleep(1)
    found = [rollup(int(Path(p).read_text())) for p in pid_files]
    pids = set(ray.get(refs))
    assert len(pids) == WORKERS, "both tasks ran in one worker process"
    return found


def agreement(full: Path, quantized: Path, texts: list[str]) -> dict[str, float]:
    """How far the quantized model's probability of `hq` is from the full model's, on the test lines."""
    from engine.models.loader import load_model

    def scores(path: Path) -> np.ndarray:
        labels, probs = load_model(str(path)).predict(texts, k=2)
        return np.asarray(
            [dict(zip(ls, ps, strict=True)).get("__label__hq", 0.0) for ls, ps in zip(labels, probs, strict=True)]
        )

    a, b = scores(full), scores(quantized)
    return {
        "max_abs_diff": float(np.abs(a - b).max()),
        "mean_abs_diff": float(np.abs(a - b).mean()),
        "same_side_of_0_5": float(np.mean((a >= 0.5) == (b >= 0.5))),  # synthetic lines: easy to separate
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--no-save", action="store_true")
    args = parser.parse_args()
    from engine.runner.ray import init_ray

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        full, quantized, tests = build_models(folder)
        os.environ.pop("RAY_ADDRESS", None)
        init_ray()
        results: dict[str, Any] = {
            "model_bytes": {"bin": full.stat().st_size, "ftz": quantized.stat().st_size},
            "baseline": measure(None, folder),
            "bin": measure(str(full), folder),
            "ftz": measure(str(quantized), folder),
            "ftz_vs_bin_scores": agreement(full, quantized, tests),
        }
    for name in ("baseline", "bin", "ftz"):
        for index, worker in enumerate(results[name]):
            print(f"{name:8s} worker {index}: " + "  ".join(f"{k} {v:5d}" for k, v in worker.items()))
    print("model bytes:", results["model_bytes"], " ftz vs bin:", results["ftz_vs_bin_scores"])
    if not args.no_save:
        revision = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True).stdout.strip()
        line = {
            "bench": "model_memory",
            "git": revision,
            "machine": {"cpu_count": os.cpu_count(), "platform": platform.platform()},
            "workers": WORKERS,
            "results": results,
        }
        with (REPO / "benchmarks" / "results" / "model_memory.jsonl").open("a", encoding="utf-8") as handle:
            handle.write(json.dumps(line) + "\n")


if __name__ == "__main__":
    main()
