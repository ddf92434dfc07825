"""Where phases B-D spend their CPU: the dedup driver on bench_scale's data, every task run serially in this process
under cProfile (process time), CPU per document by phase and the top functions of the phases asked for.

    python benchmarks/profile_dedup_phases.py --dir /tmp/scale-new/8000000-hub0 [--only "collisions|components"]

The folder is one `bench_scale.py generate` wrote; phases B-D's outputs are removed before and after. Thread pools
are capped at one thread, as in a Ray task. Prints (and with --out writes) a text report; nothing is appended to
benchmarks/results (the CPU figures quoted from it are the profile's, not a measured run's).
"""

from __future__ import annotations

import os

for _name in ("POLARS_MAX_THREADS", "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "RAYON_NUM_THREADS"):
    os.environ[_name] = "1"  # before numpy, pyarrow and polars load

import argparse  # noqa: E402
import cProfile  # noqa: E402
import io  # noqa: E402
import pstats  # noqa: E402
import re  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from collections import defaultdict  # noqa: E402
from collections.abc import Callable, Sequence  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import bench_scale  # noqa: E402
import scale_data  # noqa: E402

from engine.dedup.plan import ShardInput  # noqa: E402
from engine.runner.dedup import run_dedup  # noqa: E402

_STEP = re.compile(r" step \d+ \((large|small)-star\)")


class ProfilingExecutor:
    """Runs every task here, one after another; CPU seconds per phase, a cProfile of the phases matching `only`."""

    def __init__(self, only: str) -> None:
        self.only = re.compile(only)
        self.cpu: dict[str, float] = defaultdict(float)
        self.tasks: dict[str, int] = defaultdict(int)
        self.profiles: dict[str, cProfile.Profile] = {}

    def map(self, fn: Callable[[Any], Any], items: Sequence[Any], *, label: str) -> list[Any]:
        phase = _STEP.sub(" steps", label.removeprefix("dedup: "))
        profile = None
        if self.only.search(phase):
            profile = self.profiles.setdefault(phase, cProfile.Profile(time.process_time))
        out = []
        for item in items:
            started = time.process_time()
            if profile is not None:
                profile.enable()
            out.append(fn(item))
            if profile is not None:
                profile.disable()
            self.cpu[phase] += time.process_time() - started
            self.tasks[phase] += 1
        return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dir", required=True)
    parser.add_argument("--only", default="collisions|components|representatives", help="phases to profile (regex)")
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--out", default=None)
    args = parser.parse_args(argv)
    folder = Path(args.dir).resolve()
    shards = scale_data.load(str(folder))["shards"]
    bench_scale.clean_outputs(folder)
    job = bench_scale.make_job(str(folder), argparse.Namespace(in_memory_max_edges=0))
    inputs = {rel: ShardInput(rows=bench_scale.staged_rows(folder, rel), identity=["synthetic", rel]) for rel in shards}
    executor = ProfilingExecutor(args.only)
    started = time.process_time()
    outcome = run_dedup(job, shards, executor, inputs=inputs)
    total = time.process_time() - started
    docs = sum(i.rows for i in inputs.values())
    lines = [f"{docs:,} documents: {total:.2f} CPU s, {total / docs * 1e6:.2f} µs/doc; counts {outcome.counts}"]
    for phase, cpu in executor.cpu.items():
        lines.append(f"{phase:32s} tasks {executor.tasks[phase]:4d} {cpu:8.2f} s {cpu / docs * 1e6:6.2f} µs/doc")
    for phase, profile in executor.profiles.items():
        text = io.StringIO()
        pstats.Stats(profile, stream=text).sort_stats("tottime").print_stats(args.top)
        lines += [f"===== {phase}", text.getvalue()]
    bench_scale.clean_outputs(folder)
    report = "\n".join(lines)
    if args.out:
        Path(args.out).write_text(report)
    print(report)


if __name__ == "__main__":
    main()
