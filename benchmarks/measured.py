"""Measuring every task a phase runs, wherever it runs: CPU, wall, peak RSS and storage requests per task.

`MeasuringExecutor` wraps any engine `Executor` (the Ray one in the benchmarks): each task runs inside
`measured_task`, which resets the process's peak-RSS mark (`/proc/self/clear_refs`), snapshots the storage counters
of `storage_counter` (imported here, so the `count://` filesystem is registered in every Ray worker that runs a
task), calls the task and returns its result with what it cost. A Ray worker runs one task at a time, so the
deltas of its process are the task's own.
"""

from __future__ import annotations

import os
import re
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import storage_counter


def reset_peak_rss() -> bool:
    """Reset this process's peak RSS (VmHWM) to its current RSS; False where the kernel does not allow it."""
    try:
        with open("/proc/self/clear_refs", "w", encoding="ascii") as handle:
            handle.write("5")
    except OSError:
        return False
    return True


def _status(field: str) -> int:
    with open("/proc/self/status", encoding="ascii") as handle:
        for line in handle:
            if line.startswith(f"{field}:"):
                return int(line.split()[1]) * 1024
    return 0


def peak_rss_bytes() -> int:
    """This process's peak RSS since the last reset (VmHWM)."""
    return _status("VmHWM")


def rss_bytes() -> int:
    """This process's resident memory now (VmRSS)."""
    return _status("VmRSS")


def measured_task(fn: Callable[[Any], Any], item: Any) -> tuple[Any, dict[str, Any]]:
    """`fn(item)` and its cost in this process: CPU and wall seconds, peak RSS, storage counters."""
    reset_peak_rss()
    start_rss = rss_bytes()
    before = storage_counter.snapshot()
    cpu, wall = time.process_time(), time.perf_counter()
    result = fn(item)
    cost = {
        "cpu": time.process_time() - cpu,
        "wall": time.perf_counter() - wall,
        "peak_rss": peak_rss_bytes(),
        "start_rss": start_rss,
        "counts": storage_counter.delta(before, storage_counter.snapshot()),
        "pid": os.getpid(),
    }
    return result, cost


_STEP = re.compile(r" step \d+ \((large|small)-star\)")


def phase_of(label: str) -> str:
    """The phase a task label belongs to: every components step counts as `components (star steps)`."""
    label = label.removeprefix("dedup: ")
    return "components (star steps)" if _STEP.search(label) else label


@dataclass
class Phase:
    """What every task of one phase cost, summed (CPU, requests) or maximised (peak RSS)."""

    tasks: int = 0
    maps: int = 0
    wall: float = 0.0
    cpu: float = 0.0
    max_task_cpu: float = 0.0
    max_task_peak_rss: int = 0
    max_task_growth: int = 0
    counts: Counter[str] = field(default_factory=Counter)

    def to_dict(self) -> dict[str, Any]:
        counts = dict(self.counts)
        return {
            "tasks": self.tasks,
            "maps": self.maps,
            "wall_s": round(self.wall, 2),
            "cpu_s": round(self.cpu, 2),
            "max_task_cpu_s": round(self.max_task_cpu, 2),
            "max_task_peak_rss_mb": round(self.max_task_peak_rss / 2**20, 1),
            "max_task_growth_mb": round(self.max_task_growth / 2**20, 1),
            "requests": storage_counter.requests(counts),
            **{k: v for k, v in counts.items() if "@" not in k},
        }


class MeasuringExecutor:
    """An engine `Executor` that measures every task of every `map` call, by phase."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.phases: dict[str, Phase] = defaultdict(Phase)
        self.in_driver: Counter[str] = Counter()
        self.in_driver_cpu = 0.0

    def map(self, fn: Callable[[Any], Any], items: Sequence[Any], *, label: str) -> list[Any]:
        import functools

        started = time.perf_counter()
        pairs = self.inner.map(functools.partial(measured_task, fn), items, label=label)
        phase = self.phases[phase_of(label)]
        phase.maps += 1
        phase.wall += time.perf_counter() - started
        for _, cost in pairs:
            phase.tasks += 1
            phase.cpu += cost["cpu"]
            phase.max_task_cpu = max(phase.max_task_cpu, cost["cpu"])
            phase.max_task_peak_rss = max(phase.max_task_peak_rss, cost["peak_rss"])
            phase.max_task_growth = max(phase.max_task_growth, cost["peak_rss"] - cost["start_rss"])
            phase.counts.update(cost["counts"])
            if cost["pid"] == os.getpid():  # a serial executor: the task ran in the driver's process
                self.in_driver.update(cost["counts"])
                self.in_driver_cpu += cost["cpu"]
        return [result for result, _ in pairs]

    def totals(self) -> Phase:
        total = Phase()
        for phase in self.phases.values():
            total.tasks += phase.tasks
            total.maps += phase.maps
            total.wall += phase.wall
            total.cpu += phase.cpu
            total.max_task_cpu = max(total.max_task_cpu, phase.max_task_cpu)
            total.max_task_peak_rss = max(total.max_task_peak_rss, phase.max_task_peak_rss)
            total.max_task_growth = max(total.max_task_growth, phase.max_task_growth)
            total.counts.update(phase.counts)
        return total


def psutil_module() -> Any:
    """psutil (Ray ships its own copy, importable once Ray is)."""
    import importlib

    try:
        return importlib.import_module("psutil")
    except ImportError:
        importlib.import_module("ray")  # puts ray/thirdparty_files (psutil) on sys.path
        return importlib.import_module("psutil")


def process_tree_cpu() -> float:
    """CPU seconds of this process and every live descendant (Ray's raylet, GCS and workers when embedded)."""
    psutil = psutil_module()
    me = psutil.Process()
    total = 0.0
    for proc in [me, *me.children(recursive=True)]:
        try:
            times = proc.cpu_times()
        except psutil.Error:
            continue
        total += times.user + times.system
    return total
