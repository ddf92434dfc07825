"""The core of every unit: run a batch through the steps and account for every row."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from engine.batch import Verdict, take, text_bytes
from engine.histograms import count_bins
from engine.io.documents import canonical_batch
from engine.schema import BATCH, ID, INPUT_STEP, LANGUAGE, REASON
from engine.spec import InputSpec
from engine.stats import Stats
from engine.steps.base import Step
from engine.steps.tokens import carry_tokens


def read_documents(raw: pa.RecordBatch, spec: InputSpec, *, rel: str, first_row: int) -> tuple[pa.Table, Verdict]:
    """A raw record batch of a shard as a canonical batch plus the reader's verdict, per the job's `input:`."""
    return canonical_batch(
        raw,
        text_column=spec.text_column,
        id_column=spec.id_column,
        rel=rel,
        first_row=first_row,
        max_text_bytes=spec.max_text_bytes,
    )


class StepContractError(RuntimeError):
    """A step broke the interface (wrong verdict length, changed row count): a bug in that step."""


@dataclass
class BatchResult:
    """What one batch became: kept rows, rejected rows (with `reason`), and the counters."""

    kept: pa.Table
    rejected: pa.Table
    stats: Stats
    scores: pa.Table | None = None
    kept_rows: np.ndarray | None = None
    """The kept rows' positions in the input batch (what a dedup job without staged text records of them)."""


class _ScoreSheet:
    """Every step's measured values for every row of a batch (NaN, or null for labels, where a step did not see it)."""

    def __init__(self, ids: pa.ChunkedArray, batch_index: int) -> None:
        self.ids = ids
        self.batch_index = batch_index
        self.reason = np.full(len(ids), None, dtype=object)
        self.columns: dict[str, np.ndarray] = {}

    def record(self, label: str, positions: np.ndarray, verdict: Verdict) -> None:
        for name, values in verdict.scores.items():
            column = self.columns.setdefault(f"{label}.{name}", np.full(len(self.ids), np.nan))
            column[positions] = values
        for name, categories in verdict.labels.items():
            column = self.columns.setdefault(f"{label}.{name}", np.full(len(self.ids), None, dtype=object))
            column[positions] = categories
        dropped = ~verdict.keep
        self.reason[positions[dropped]] = verdict.prefixed(label).reason[dropped]

    def table(self) -> pa.Table:
        arrays = {
            ID: self.ids,
            REASON: pa.array(self.reason.tolist(), type=pa.string()),
            BATCH: pa.array(np.full(len(self.ids), self.batch_index, dtype=np.int32)),
        }
        for name, values in self.columns.items():
            kind = pa.string() if values.dtype == object else pa.float64()
            arrays[name] = pa.array(values.tolist() if values.dtype == object else values, type=kind)
        return pa.table(arrays)


def _with_reason(rows: pa.Table, reasons: np.ndarray) -> pa.Table:
    return rows.append_column(REASON, pa.array(reasons.tolist(), type=pa.string()))


def _keep_rows(batch: pa.Table, keep: np.ndarray) -> pa.Table:
    """The rows of `batch` where `keep` is true; the words already split for it follow the rows."""
    if keep.all():
        return batch
    kept = take(batch, keep)
    carry_tokens(batch, kept, keep)
    return kept


def count_scores(stats: Stats, label: str, verdict: Verdict) -> None:
    """Add a step's measured values to the stats' fixed-bin histograms: all it saw, and those it dropped."""
    dropped = ~verdict.keep
    for name, values in verdict.scores.items():
        key = f"{label}.{name}"
        stats.score_bins.setdefault(key, Counter()).update(count_bins(values))
        if dropped.any():
            stats.score_bins_dropped.setdefault(key, Counter()).update(count_bins(values[dropped]))


def process_batch(
    batch: pa.Table,
    steps: Sequence[Step],
    *,
    input_verdict: Verdict | None = None,
    keep_scores: bool = False,
    batch_index: int = 0,
    before_step: Callable[[int, pa.Table], None] | None = None,
) -> BatchResult:
    """Run `batch` through `steps` in order; every row ends kept or rejected with one reason.

    `input_verdict` (from the reader) drops bad documents before any step sees them, with reasons
    `input/<code>`. A rejected row carries the text as it was when its step saw it. With `keep_scores`, the
    result also holds a score sheet: `id`, final `reason`, `batch` (`batch_index`: steps that cut a fraction of
    each batch are re-decided batch by batch) and one `<step>.<score>` column per measured value and label.
    `before_step(index, rows)` sees the rows that reach each step (a unit records what its blocklists see).
    """
    stats = Stats(docs_in=batch.num_rows, bytes_in=text_bytes(batch))
    rejected: list[pa.Table] = []
    current = batch
    positions = np.arange(batch.num_rows)
    sheet = _ScoreSheet(batch[ID], batch_index) if keep_scores else None

    def reject(label: str, rows: pa.Table, verdict: Verdict, languages_from: pa.Table) -> None:
        dropped = ~verdict.keep
        if dropped.any():
            reasons = verdict.prefixed(label).reason[dropped]
            stats.dropped.update(Counter(reasons.tolist()))
            rejected.append(_with_reason(take(rows, dropped), reasons))
            if LANGUAGE in languages_from.column_names:  # the step that labels a row tells its language too
                languages = take(languages_from.select([LANGUAGE]), dropped)[LANGUAGE].to_pylist()
                pairs = zip(languages, reasons.tolist(), strict=True)
                stats.dropped_by_language.update(f"{language} {reason}" for language, reason in pairs)

    if input_verdict is not None:
        reject(INPUT_STEP, current, input_verdict, current)
        if sheet is not None:
            sheet.record(INPUT_STEP, positions, input_verdict)
        current = _keep_rows(current, input_verdict.keep)
        positions = positions[input_verdict.keep]
    for index, step in enumerate(steps):
        if current.num_rows == 0:
            break
        if before_step is not None:
            before_step(index, current)
        started = time.perf_counter()
        try:
            result, verdict = step.apply(current)
        except Exception as error:
            error.add_note(f"in step {step.label!r}")
            raise
        stats.step_seconds[step.label] += time.perf_counter() - started
        stats.step_docs[step.label] += current.num_rows
        if len(verdict) != current.num_rows or result.num_rows != current.num_rows:
            msg = (
                f"step {step.label!r} returned {result.num_rows} rows and {len(verdict)} verdicts "
                f"for {current.num_rows} rows; a step must keep rows in place"
            )
            raise StepContractError(msg)
        # Rejected rows keep the text their step saw (before a transform rewrote it).
        reject(step.label, current, verdict, result)
        count_scores(stats, step.label, verdict)
        if sheet is not None:
            sheet.record(step.label, positions, verdict)
        current = _keep_rows(result, verdict.keep)
        positions = positions[verdict.keep]
    stats.docs_kept = current.num_rows
    stats.bytes_kept = text_bytes(current)
    if LANGUAGE in current.column_names and current.num_rows:
        counted = pc.value_counts(current[LANGUAGE])
        for value, count in zip(counted.field("values").to_pylist(), counted.field("counts").to_pylist(), strict=True):
            stats.languages[str(value)] += count
    if rejected:
        rejected_table = pa.concat_tables(rejected, promote_options="default")
    else:
        rejected_table = _with_reason(batch.slice(0, 0), np.array([], dtype=object))
    return BatchResult(current, rejected_table, stats, sheet.table() if sheet is not None else None, positions)


def score_schema(input_schema: pa.Schema, steps: Sequence[Step], *, input_verdict: Verdict) -> pa.Schema:
    """The schema of a shard's score sidecar: every step's columns, whether or not a batch reached the step.

    Found by running the steps on an empty batch (every step names its scores and labels even then), so a shard
    whose first batch is dropped whole by an early step still gets the later steps' columns.
    """
    empty = input_schema.empty_table()
    sheet = _ScoreSheet(empty[ID], 0)
    sheet.record(INPUT_STEP, np.zeros(0, dtype=np.int64), input_verdict)
    for step in steps:
        empty, verdict = step.apply(empty)
        sheet.record(step.label, np.zeros(0, dtype=np.int64), verdict)
    return sheet.table().schema


def output_schema(input_schema: pa.Schema, steps: Sequence[Step]) -> pa.Schema:
    """The schema kept rows have after `steps`: found by running the steps on an empty batch."""
    current = input_schema.empty_table()
    for step in steps:
        current, _ = step.apply(current)
    return current.schema
