"""`corpus-engine bench JOB.yaml`: every step alone and the whole pipeline on a sample, in-process on one core.

What it measures, on the same sampled documents (read and decoded before any clock starts):

- *Each step alone*: every step sees every sampled document that passed the reader's checks, as rewritten or
  annotated by the steps before it (so a step that needs `language` gets it) but with no document dropped.
  That gives each step's throughput and drop rate independent of the order of the steps.
- *The pipeline*: `engine.pipeline.process_batch` with the job's steps, as a unit runs them (phase A only: a
  job's `dedup:` is a global phase over the whole corpus and is not benchmarked here).
- *Rule overlap*: over the "alone" decisions, per rule, the documents only this rule drops versus those that
  another step drops too. A step reports one reason per document (the first of its rules that fired), so
  overlap is between rules of different steps; two rules of the same step never both claim a document.

Throughput is per core: documents (or text MB) divided by the CPU time of this process (`time.process_time`,
all threads), so a library that uses several threads does not look faster than it is; wall time is in the JSON.

Examples: per rule, K dropped documents (text truncated) and K kept documents nearest the threshold. Which score
a rule tests is found by name (`too_few_words` -> `words`, `too_many_bullet_lines` -> `bullet_lines_ratio`,
`mean_word_length_low` -> `mean_word_length`), else as the only score whose values separate the rule's dropped
documents from the step's kept ones; when neither works, the near-threshold examples are omitted and the output
says so. A rule named `too_few_*` / `*_low` / `min_*` is a lower bound (nearest kept = smallest values), one named
`too_many_*` / `*_high` / `max_*` an upper bound; otherwise the side is taken from the data.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from engine.batch import Verdict, take, text_bytes
from engine.errors import SpecError
from engine.io.parquet import iter_batches
from engine.io.paths import Shard, list_shards
from engine.pipeline import process_batch, read_documents
from engine.provenance import git_state, machine
from engine.schema import ID, TEXT
from engine.spec import JobSpec
from engine.stats import Stats
from engine.steps.base import Step, score_thresholds

DEFAULT_SAMPLE = 2000
DEFAULT_RESULTS = "benchmarks/results/bench.jsonl"
MAX_SAMPLED_SHARDS = 16
EXAMPLE_CHARS = 240
LOW_PREFIXES = ("too_few_", "min_")
HIGH_PREFIXES = ("too_many_", "max_")


# ----------------------------------------------------------------------------------------------------------
# The sample


@dataclass
class Sample:
    """Sampled documents as canonical batches with the reader's verdicts, and where they came from."""

    batches: list[tuple[pa.Table, Verdict]]
    shards: list[str]
    how: str

    @property
    def docs(self) -> int:
        return sum(batch.num_rows for batch, _ in self.batches)


def load_sample(job: JobSpec, *, sample: int | None = None, shards_path: str | None = None) -> Sample:
    """Read the documents to benchmark on.

    `shards_path`: every document of the shards under that path (read with the job's input settings).
    Otherwise up to `sample` documents (default 2000) from the job's input: up to 16 shards spread evenly over
    the sorted shard list, an equal share of what is still wanted from the start of each (deterministic, a
    bounded number of files opened, not only the first shard); fewer when the last shards are short.
    """
    spec = job.input
    if shards_path is not None:
        shards = list_shards(shards_path, spec.storage_options, spec.glob)
        batches = [b for shard in shards for b in _read_shard(job, shard, None)]
        return Sample(batches, [s.rel for s in shards], f"every document of {len(shards)} shard(s) under {shards_path}")
    wanted = sample if sample is not None else DEFAULT_SAMPLE
    if wanted < 1:
        msg = f"--sample must be at least 1, got {wanted}"
        raise SpecError(msg)
    listed = list_shards(spec.path, spec.storage_options, spec.glob)
    count = min(len(listed), MAX_SAMPLED_SHARDS, wanted)
    picks = sorted({round(i * (len(listed) - 1) / max(count - 1, 1)) for i in range(count)})
    shards = [listed[i] for i in picks]
    batches = []
    for index, shard in enumerate(shards):
        # An equal share of what is still wanted, so a short shard's shortfall goes to the next ones.
        taken = sum(batch.num_rows for batch, _ in batches)
        quota = math.ceil((wanted - taken) / (len(shards) - index))
        batches.extend(_read_shard(job, shard, quota))
    how = (
        f"about {math.ceil(wanted / len(shards))} documents from the start of each of {len(shards)} of "
        f"{len(listed)} shard(s) under {spec.path}"
    )
    return Sample(batches, [s.rel for s in shards], how)


def _read_shard(job: JobSpec, shard: Shard, quota: int | None) -> list[tuple[pa.Table, Verdict]]:
    spec, row = job.input, 0
    batches: list[tuple[pa.Table, Verdict]] = []
    if quota == 0:
        return batches
    for raw in iter_batches(shard.url, spec.storage_options, spec.batch_rows):
        if quota is not None and row + raw.num_rows > quota:
            raw = raw.slice(0, quota - row)
        batches.append(read_documents(raw, spec, rel=shard.rel, first_row=row))
        row += raw.num_rows
        if quota is not None and row >= quota:
            break
    return batches


# ----------------------------------------------------------------------------------------------------------
# Measuring


@dataclass
class StepRun:
    """One step applied alone to every sampled document."""

    label: str
    type: str
    docs: int = 0
    bytes: int = 0
    cpu_seconds: float = 0.0
    wall_seconds: float = 0.0
    reasons: list[np.ndarray] = field(default_factory=list)
    scores: dict[str, list[np.ndarray]] = field(default_factory=dict)

    def reason_array(self) -> np.ndarray:
        return np.concatenate(self.reasons) if self.reasons else np.array([], dtype=object)

    def score_arrays(self) -> dict[str, np.ndarray]:
        return {name: np.concatenate(parts) for name, parts in self.scores.items()}


@dataclass
class Bench:
    """Everything one `bench` run measured (see `to_record` for the JSON line)."""

    job: JobSpec
    sample: Sample
    steps: list[StepRun]
    pipeline: Stats
    pipeline_cpu: float
    pipeline_wall: float
    ids: np.ndarray
    texts: np.ndarray


def _warm_up(steps: Sequence[Step], batch: pa.Table) -> None:
    """Run every step once on a few rows, untimed: loads models and compiles patterns before the clock."""
    current = batch.slice(0, 8)
    for step in steps:
        current, _ = step.apply(current)


def run_bench(job: JobSpec, sample: Sample) -> Bench:
    """Apply every step alone, then the whole pipeline, to the sample; in this process, on one core."""
    runs = [StepRun(step.label, step.type) for step in job.steps]
    valid = [take(batch, verdict.keep) for batch, verdict in sample.batches]
    first = next((b for b in valid if b.num_rows), None)
    if first is not None:
        _warm_up(job.steps, first)
    ids, texts = [], []
    for batch in valid:
        if batch.num_rows == 0:
            continue
        ids.append(np.asarray(batch[ID].to_pylist(), dtype=object))
        texts.append(np.asarray(pc.utf8_slice_codeunits(batch[TEXT], 0, EXAMPLE_CHARS).to_pylist(), dtype=object))
        current = batch
        for step, run in zip(job.steps, runs, strict=True):
            cpu, wall = time.process_time(), time.perf_counter()
            result, verdict = step.apply(current)
            run.cpu_seconds += time.process_time() - cpu
            run.wall_seconds += time.perf_counter() - wall
            run.docs += current.num_rows
            run.bytes += text_bytes(current)
            run.reasons.append(verdict.reason)
            for name, values in verdict.scores.items():
                run.scores.setdefault(name, []).append(np.asarray(values, dtype=np.float64))
            current = result
    total = Stats()
    cpu, wall = time.process_time(), time.perf_counter()
    for batch, verdict in sample.batches:
        total = total + process_batch(batch, job.steps, input_verdict=verdict).stats
    pipeline_cpu, pipeline_wall = time.process_time() - cpu, time.perf_counter() - wall
    return Bench(
        job,
        sample,
        runs,
        total,
        pipeline_cpu,
        pipeline_wall,
        np.concatenate(ids) if ids else np.array([], dtype=object),
        np.concatenate(texts) if texts else np.array([], dtype=object),
    )


def _rate(count: float, seconds: float) -> float | None:
    return round(count / seconds, 1) if seconds > 0 else None


def overlap(bench: Bench) -> tuple[dict[str, dict[str, int]], list[list[int]]]:
    """Per rule (`step/rule`): documents it drops alone, of which `only` this rule drops, `shared` with others;
    and the step-by-step matrix of documents both steps drop."""
    reasons = [run.reason_array() for run in bench.steps]
    dropped = [np.asarray([r is not None for r in reason], dtype=bool) for reason in reasons]
    if not dropped:
        return {}, []
    droppers = np.sum(dropped, axis=0)
    rules: dict[str, dict[str, int]] = {}
    for run, reason, mask in zip(bench.steps, reasons, dropped, strict=True):
        for rule in sorted({r for r in reason[mask]}):
            hit = reason == rule
            rules[f"{run.label}/{rule}"] = {
                "dropped": int(hit.sum()),
                "only": int((hit & (droppers == 1)).sum()),
                "shared": int((hit & (droppers > 1)).sum()),
            }
    matrix = [[int((a & b).sum()) for b in dropped] for a in dropped]
    return rules, matrix


# ----------------------------------------------------------------------------------------------------------
# Which score a rule tests, and which parameter is its threshold


def _strip_bound(name: str) -> tuple[str, str | None]:
    """`too_few_words` -> ("words", "low"), `mean_word_length_high` -> ("mean_word_length", "high")."""
    for prefix in LOW_PREFIXES:
        if name.startswith(prefix):
            return name[len(prefix) :], "low"
    for prefix in HIGH_PREFIXES:
        if name.startswith(prefix):
            return name[len(prefix) :], "high"
    if name.endswith("_low"):
        return name[: -len("_low")], "low"
    if name.endswith("_high"):
        return name[: -len("_high")], "high"
    return name, None


def rule_score(rule: str, scores: dict[str, np.ndarray], dropped: np.ndarray, kept: np.ndarray) -> str | None:
    """The score a rule tests: by name, else the only score separating its dropped documents from kept ones."""
    stem, _ = _strip_bound(rule)
    for candidate in (stem, f"{stem}_ratio"):
        if candidate in scores:
            return candidate
    separating = []
    for name, values in scores.items():
        d, k = values[dropped], values[kept]
        d, k = d[~np.isnan(d)], k[~np.isnan(k)]
        if len(d) and len(k) and (d.max() < k.min() or d.min() > k.max()):
            separating.append(name)
    return separating[0] if len(separating) == 1 else None


def rule_side(rule: str, values: np.ndarray, dropped: np.ndarray, kept: np.ndarray) -> str:
    """ "low" if the rule drops small values (nearest kept = smallest), "high" if it drops large ones."""
    _, side = _strip_bound(rule)
    if side is not None:
        return side
    d, k = values[dropped], values[kept]
    return "low" if np.nanmedian(d) < np.nanmedian(k) else "high"


@dataclass
class Examples:
    """Example documents of one rule: dropped ones, and kept ones nearest its threshold."""

    rule: str
    score: str | None
    side: str | None
    threshold: list[tuple[str, float]]
    dropped: list[dict[str, Any]]
    near: list[dict[str, Any]]


def examples(bench: Bench, k: int) -> list[Examples]:
    """`k` dropped and `k` near-threshold kept documents per rule (see the module docstring)."""
    found = []
    for step, run in zip(bench.job.steps, bench.steps, strict=True):
        reason = run.reason_array()
        scores = run.score_arrays()
        kept = np.asarray([r is None for r in reason], dtype=bool)
        for rule in sorted({r for r in reason[~kept]}):
            hit = reason == rule
            name = rule_score(rule, scores, hit, kept)
            side = rule_side(rule, scores[name], hit, kept) if name is not None else None

            values = scores[name] if name is not None else None

            def row(i: int, values: np.ndarray | None = values) -> dict[str, Any]:
                value = float(values[i]) if values is not None else None
                return {"id": bench.ids[i], "score": value, "text": bench.texts[i]}

            dropped = [row(int(i)) for i in np.flatnonzero(hit)[:k]]
            near: list[dict[str, Any]] = []
            if name is not None and kept.any():
                candidates = np.flatnonzero(kept & ~np.isnan(scores[name]))
                order = np.argsort(scores[name][candidates], kind="stable")
                if side == "high":
                    order = order[::-1]
                near = [row(int(i)) for i in candidates[order[:k]]]
            threshold = score_thresholds(step, [name]).get(name, []) if name is not None else []
            other_side = "max_" if side == "low" else "min_"
            threshold = [(p, v) for p, v in threshold if not p.startswith(other_side)]
            found.append(Examples(f"{run.label}/{rule}", name, side, threshold, dropped, near))
    return found


# ----------------------------------------------------------------------------------------------------------
# The JSON line and the table


def to_record(bench: Bench) -> dict[str, Any]:
    """The JSON line appended to the results file."""
    sample_docs = bench.sample.docs
    rules, matrix = overlap(bench)
    steps = []
    for run in bench.steps:
        reason = run.reason_array()
        counts = Counter(r for r in reason.tolist() if r is not None)
        steps.append(
            {
                "step": run.label,
                "type": run.type,
                "docs": run.docs,
                "mb": round(run.bytes / 1e6, 3),
                "cpu_seconds": round(run.cpu_seconds, 4),
                "wall_seconds": round(run.wall_seconds, 4),
                "docs_per_second_per_core": _rate(run.docs, run.cpu_seconds),
                "mb_per_second_per_core": _rate(run.bytes / 1e6, run.cpu_seconds),
                "drop_rate": round(sum(counts.values()) / run.docs, 4) if run.docs else None,
                "rules": {
                    rule: {**rules[f"{run.label}/{rule}"], "rate": round(n / run.docs, 4)}
                    for rule, n in sorted(counts.items())
                },
            }
        )
    stats = bench.pipeline
    return {
        "timestamp": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "git": git_state(),
        "machine": machine(),
        "job": {"name": bench.job.name, "hash": bench.job.phase_a_hash(), "steps": [s.label for s in bench.job.steps]},
        "sample": {
            "docs": sample_docs,
            "valid_docs": len(bench.ids),
            "shards": bench.sample.shards,
            "how": bench.sample.how,
        },
        "steps": steps,
        "pipeline": {
            "docs": stats.docs_in,
            "kept": stats.docs_kept,
            "mb": round(stats.bytes_in / 1e6, 3),
            "cpu_seconds": round(bench.pipeline_cpu, 4),
            "wall_seconds": round(bench.pipeline_wall, 4),
            "docs_per_second_per_core": _rate(stats.docs_in, bench.pipeline_cpu),
            "mb_per_second_per_core": _rate(stats.bytes_in / 1e6, bench.pipeline_cpu),
            "drop_rate": round(stats.docs_dropped / stats.docs_in, 4) if stats.docs_in else None,
            "dropped": dict(sorted(stats.dropped.items())),
        },
        "overlap_matrix": matrix,
    }


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f}%"


def _num(value: float | None) -> str:
    return "-" if value is None else f"{value:,.0f}" if value >= 100 else f"{value:,.2f}"


def format_table(record: dict[str, Any]) -> str:
    """The table `bench` prints: one row per step alone, per rule beneath it, then the pipeline."""
    sample = record["sample"]
    lines = [
        f"bench {record['job']['name']!r} (job hash {record['job']['hash']}): {sample['docs']:,} documents"
        f" ({sample['valid_docs']:,} past the reader's checks), {sample['how']}",
        "each step alone sees every document past the reader's checks (its drop rates are of those); the pipeline"
        " row counts every sampled document; docs/s and MB/s per core (CPU time);"
        " only/shared = documents no other step / another step drops too",
        f"  {'step / rule':<44} {'docs/s':>9} {'MB/s':>7} {'dropped':>8} {'only':>6} {'shared':>6}",
    ]
    for step in record["steps"]:
        lines.append(
            f"  {step['step']:<44} {_num(step['docs_per_second_per_core']):>9}"
            f" {_num(step['mb_per_second_per_core']):>7} {_pct(step['drop_rate']):>8}"
        )
        for rule, info in step["rules"].items():
            lines.append(
                f"    {rule:<42} {'':>9} {'':>7} {_pct(info['rate']):>8} {info['only']:>6} {info['shared']:>6}"
            )
    pipe = record["pipeline"]
    lines.append(
        f"  {'pipeline (all steps, in order)':<44} {_num(pipe['docs_per_second_per_core']):>9}"
        f" {_num(pipe['mb_per_second_per_core']):>7} {_pct(pipe['drop_rate']):>8}"
    )
    for reason, count in sorted(pipe["dropped"].items(), key=lambda x: -x[1]):
        lines.append(f"    {reason:<42} {'':>9} {'':>7} {_pct(count / pipe['docs']):>8}")
    labels = record["job"]["steps"]
    matrix = record["overlap_matrix"]
    if len(labels) > 1:
        lines.append("documents dropped by both steps (each alone; diagonal: dropped by the step):")
        width = max(len(label) for label in labels)
        for label, row in zip(labels, matrix, strict=True):
            lines.append(f"  {label:<{width}} " + " ".join(f"{v:>7,}" for v in row))
    return "\n".join(lines)


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def format_examples(found: Sequence[Examples]) -> str:
    """Per rule: dropped documents, then kept documents nearest the threshold (or why there are none)."""
    lines = []
    for ex in found:
        bound = ", ".join(f"{p}={v:g}" for p, v in ex.threshold) or "threshold parameter not identified"
        tested = f"score {ex.score} ({ex.side} bound; {bound})" if ex.score else "score not identified"
        lines.append(f"== {ex.rule}: {tested}")
        for label, rows in (("dropped", ex.dropped), ("kept, nearest the threshold", ex.near)):
            if label.startswith("kept") and ex.score is None:
                lines.append("  kept, nearest the threshold: omitted (no score identified for this rule)")
                continue
            lines.append(f"  {label}:")
            for row in rows:
                score = "" if row["score"] is None else f" {ex.score}={row['score']:.4g}"
                lines.append(f"    [{row['id']}]{score} {_one_line(row['text'])[:160]!r}")
    return "\n".join(lines)


def append_record(record: dict[str, Any], path: str) -> None:
    """Append the record as one JSON line (creating the folder)."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    with target.open("a", encoding="utf-8") as handle:
        handle.write(json.dumps(record, sort_keys=True, default=str) + "\n")
