"""`corpus-engine what-if RUN_DIR --set STEP.PARAM=VALUE`: re-try thresholds from a run's score sidecar.

A run made with `output: {keep_scores: true}` wrote `OUT/scores/<rel>.parquet`: per document its `id`, its final
phase-A `reason` (null where kept) and every measured value as `<step label>.<score>` (NaN where the step did not
see the document). `what_if` rebuilds the run's steps with the changed parameters (validated like a job) and
re-decides every document from those values with the steps' `decide`, without reading text or running a model.

The rule (steps s_0 .. s_{n-1} in job order; the first changed step is s_c):

- A document's original *reach* is known from its reason: a document dropped by s_d was seen by s_0 .. s_d; a
  kept document was seen by every step; a document dropped by the reader (`input/...`) by none.
- Documents dropped before s_c keep their original reason: the steps before s_c are unchanged and saw the same
  documents, so they decide the same.
- Every other document is walked from s_c onwards. A changed step re-decides it with `decide(measured)` from the
  stored values; an unchanged step keeps its original decision (it dropped the document exactly when the
  original reason names it), so unchanged steps need no `decide`. The exception is a step whose verdict depends
  on the other documents of its batch (`keep_top_fraction`): after an earlier change it is re-decided batch by
  batch (the sidecar's `batch` column), since the documents reaching it changed.
- A document that the change lets through a step that originally dropped it was never measured by the steps
  after that one. Its fate there is *unknown* without a rerun: it is counted apart (with the step where what is
  known ends), and the kept total is reported as a range. A batch-relative step whose batch holds such a
  document cannot rank it, so every document of that batch reaching the step is unknown there too.

Only phase A (the filters) is re-decided; duplicates removed by a dedup phase are reported as they were.
Every step declares each parameter as deciding (`Decides`: a threshold, a language list, a top fraction) or
measuring (`Measures`: a word list, a line length, the model); what-if refuses a change of the second kind,
naming the parameter and why, since only a rerun measures again (`Step.redecide_refusal`).
"""

from __future__ import annotations

import copy
import math
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.compute as pc
import yaml

from engine.batch import Verdict
from engine.errors import InputError, SpecError
from engine.inspect.run_outputs import iter_score_batches, load_run_job, require_score_files
from engine.io.layout import STATS_FILE, join
from engine.io.markers import read_json
from engine.io.parquet import read_schema
from engine.schema import BATCH, ID, INPUT_STEP, REASON
from engine.spec import JobSpec, parse_job
from engine.steps.base import Decides, Measures, Step

KEPT_LABEL = "kept"


@dataclass(frozen=True)
class Change:
    """One `--set STEP.PARAM=VALUE`: the step's index in the job, the parameter and the new value."""

    text: str
    index: int
    label: str
    param: str
    value: Any
    old: Any


@dataclass(frozen=True)
class WholeRunCut:
    """A `keep_top_fraction` taken over the whole run instead of batch by batch, as a `min_score` to rerun with."""

    label: str
    score: str
    fraction: float
    reaching: int
    kept: int
    min_score: float


@dataclass
class WhatIf:
    """What the changes would do, counted over every document of the run.

    `original` and `new` map a final reason (`step/rule`, or "kept") to a document count; `moves` counts
    documents whose fate changed, by (original, new); `unknown` counts documents whose new fate is not known
    without a rerun, by (original reason, step they would reach next but never did). `whole_run_cuts`: for each
    step that keeps a top fraction of each batch, the same fraction taken over the whole run.
    """

    run_dir: str
    changes: list[Change]
    docs: int = 0
    files: int = 0
    duplicates: int = 0
    seconds: float = 0.0
    original: Counter[str] = field(default_factory=Counter)
    new: Counter[str] = field(default_factory=Counter)
    moves: Counter[tuple[str, str]] = field(default_factory=Counter)
    unknown: Counter[tuple[str, str]] = field(default_factory=Counter)
    whole_run_cuts: list[WholeRunCut] = field(default_factory=list)

    @property
    def kept_range(self) -> tuple[int, int]:
        """Fewest and most documents the changed job would keep (they differ only by unknown documents)."""
        known = self.new[KEPT_LABEL]
        return known, known + sum(self.unknown.values())


# ----------------------------------------------------------------------------------------------------------
# Parsing and applying --set


def parse_setting(text: str) -> tuple[str, str, Any]:
    """`STEP.PARAM=VALUE` -> (step, param, value); the value is read as YAML (`0.2`, `null`, `[a, b]`).

    Raises:
        SpecError: the text is not of that form.
    """
    key, sep, value_text = text.partition("=")
    step, dot, param = key.strip().rpartition(".")
    if not sep or not dot or not step or not param:
        msg = f"--set {text!r}: expected STEP.PARAM=VALUE, e.g. --set doc_length.min_words=100"
        raise SpecError(msg)
    try:
        value = yaml.safe_load(value_text) if value_text.strip() else None
    except yaml.YAMLError as error:
        msg = f"--set {text!r}: the value is not valid YAML: {error}"
        raise SpecError(msg) from None
    return step, param, value


def step_index(steps: Sequence[Step], step: str, *, setting: str) -> int:
    """The index of the step called `step` (its label, i.e. `name` or `type`, or `steps[i]`).

    Raises:
        SpecError: no such step, or the label is ambiguous.
    """
    labels = [s.label for s in steps]
    if step.startswith("steps[") and step.endswith("]"):
        try:
            index = int(step[len("steps[") : -1])
        except ValueError:
            index = -1
        if 0 <= index < len(steps):
            return index
    matches = [i for i, label in enumerate(labels) if label == step]
    if len(matches) == 1:
        return matches[0]
    listed = ", ".join(f"steps[{i}]={label}" for i, label in enumerate(labels)) or "(none)"
    if matches:
        msg = f"--set {setting!r}: several steps are labelled {step!r}; use steps[i] ({listed})"
    else:
        msg = f"--set {setting!r}: the run's job has no step {step!r}; its steps: {listed}"
    raise SpecError(msg)


def apply_settings(raw: dict[str, Any], job: JobSpec, settings: Sequence[str]) -> tuple[JobSpec, list[Change]]:
    """The job with every `--set` applied, validated like a job file, and the changes that differ.

    Raises:
        SpecError: a bad step or parameter name or value, naming the key path and what is allowed.
    """
    changed = copy.deepcopy(raw)
    parsed: list[tuple[str, int, str, Any]] = []
    for text in settings:
        step, param, value = parse_setting(text)
        index = step_index(job.steps, step, setting=text)
        if param in ("type", "name"):
            msg = f"--set {text!r}: `{param}` cannot be changed by what-if (it names the step); rerun the job instead"
            raise SpecError(msg)
        changed["steps"][index][param] = value
        parsed.append((text, index, param, value))
    try:
        new_job = parse_job(changed, source="what-if")
    except SpecError as error:
        sets = " ".join(f"--set {t}" for t, *_ in parsed)
        msg = f"{sets}: {error}"
        raise SpecError(msg) from None
    changes = []
    for text, index, param, _ in parsed:
        before, after = job.steps[index], new_job.steps[index]
        old, new = getattr(before, param), getattr(after, param)
        if old != new:
            changes.append(Change(text, index, before.label, param, new, old))
    for change in changes:
        _check_decidable(job.steps[change.index], new_job.steps[change.index], change)
    return new_job, changes


def _check_decidable(old: Step, new: Step, change: Change) -> None:
    role = type(new).parameters.get(change.param)
    if isinstance(role, Measures):
        refusal: str | None = f"{new.type}.{change.param} {role.why}"
    else:
        refusal = new.redecide_refusal(old)
    if refusal is None:
        return
    deciding = sorted(p for p, role in type(new).parameters.items() if isinstance(role, Decides))
    allowed = ", ".join(deciding) if deciding and new.can_decide() else "(none)"
    msg = (
        f"--set {change.text!r}: what-if cannot answer this from the stored scores: {refusal}. Only a rerun measures "
        f"again (try it on a sample with `corpus-engine bench`). Parameters what-if can change for {change.label}: "
        f"{allowed}"
    )
    raise SpecError(msg)


# ----------------------------------------------------------------------------------------------------------
# Re-deciding


def _reach(reasons: pa.ChunkedArray | pa.Array, labels: Sequence[str]) -> np.ndarray:
    """Per row, the index of the step whose reason it carries (-1: the reader; len(labels): kept).

    Raises:
        InputError: a reason names no step of the job (the sidecar does not belong to this job).
    """
    n = len(reasons)
    reach = np.full(n, len(labels), dtype=np.int64)
    is_kept = np.asarray(pc.is_null(reasons).to_numpy(zero_copy_only=False), dtype=bool)
    matched = is_kept.copy()
    # Longer labels first so that a label that prefixes another (`a` vs `a/b`) cannot steal its rows.
    prefixes = [(INPUT_STEP, -1), *sorted(((label, i) for i, label in enumerate(labels)), key=lambda x: -len(x[0]))]
    for label, index in prefixes:
        hit = pc.fill_null(pc.starts_with(reasons, f"{label}/"), False)
        mask = np.asarray(hit.to_numpy(zero_copy_only=False), dtype=bool) & ~matched
        reach[mask] = index
        matched |= mask
    if not matched.all():
        strays = sorted(set(np.asarray(reasons.to_pylist(), dtype=object)[~matched].tolist()))
        msg = f"score sidecar reasons {strays[:5]} name no step of the run's job (steps: {', '.join(labels)})"
        raise InputError(msg)
    return reach


def _measured(table: pa.Table, label: str, rows: np.ndarray, *, with_ids: bool = False) -> dict[str, np.ndarray]:
    """Step `label`'s stored values for `rows`: scores as floats (NaN where null), labels as objects (and `id`)."""
    prefix = f"{label}."
    measured = {ID: np.asarray(table[ID].to_pylist(), dtype=object)[rows]} if with_ids else {}
    for name in table.column_names:
        if not name.startswith(prefix):
            continue
        column = table[name]
        if pa.types.is_floating(column.type):
            values = np.asarray(pc.fill_null(column, np.nan).to_numpy(), dtype=np.float64)
        else:
            values = np.asarray(column.to_pylist(), dtype=object)
        measured[name[len(prefix) :]] = values[rows]
    return measured


class Fates(NamedTuple):
    """The outcome of re-deciding one sidecar table (see `redecide`)."""

    reason: np.ndarray
    unknown_at: np.ndarray
    ranked: dict[int, np.ndarray]


def _decide(step: Step, label: str, measured: dict[str, np.ndarray]) -> Verdict:
    try:
        return step.decide(measured)
    except KeyError as error:
        msg = (
            f"the score sidecar has no value {error} of step {label!r}: it was written by another job or an older "
            "engine; rerun the job with `keep_scores: true` to get one what-if can read"
        )
        raise InputError(msg) from None


def _decide_by_batch(
    table: pa.Table, step: Step, label: str, rows: np.ndarray, uncertain: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A batch-relative step over `rows`, batch by batch: (keep, reasons, rows whose fate is unknown).

    A batch holding an `uncertain` row (its fate before this step is unknown) cannot be ranked: its rows are
    returned as unknown.
    """
    if BATCH not in table.column_names:
        msg = (
            f"step {label!r} keeps a fraction of each batch, but the score sidecar has no `{BATCH}` column (written "
            "by an older engine); rerun the job with `keep_scores: true`"
        )
        raise InputError(msg)
    batches = np.asarray(table[BATCH].to_numpy(zero_copy_only=False), dtype=np.int64)
    doubtful = set(np.unique(batches[uncertain]).tolist())
    keep = np.ones(len(rows), dtype=bool)
    reasons = np.full(len(rows), None, dtype=object)
    unknown = np.zeros(len(rows), dtype=bool)
    measured = _measured(table, label, rows, with_ids=True)
    for batch in np.unique(batches[rows]).tolist():
        inside = batches[rows] == batch
        if batch in doubtful:
            unknown |= inside
            continue
        verdict = _decide(step, label, {name: values[inside] for name, values in measured.items()})
        keep[inside] = verdict.keep
        reasons[inside] = verdict.prefixed(label).reason
    return keep, reasons, unknown


def redecide(table: pa.Table, old_steps: Sequence[Step], new_steps: Sequence[Step], changed: set[int]) -> Fates:
    """The new fate of every row of one sidecar table, by the rule in the module docstring.

    Returns:
        The new final reason of every row (None where kept); where the new fate is unknown, the label of the
        step the row would reach next but was never measured by (None elsewhere; the reason then holds the
        original reason); and per batch-ranking step index, the ranking scores of the rows known to reach it.
    """
    labels = [s.label for s in old_steps]
    reasons = table[REASON]
    original = np.asarray(reasons.to_pylist(), dtype=object)
    reach = _reach(reasons, labels)
    new = original.copy()
    unknown_at = np.full(len(original), None, dtype=object)
    ranked: dict[int, np.ndarray] = {}
    if not changed:
        return Fates(new, unknown_at, ranked)
    first = min(changed)
    pending = reach >= first  # rows that reached the first changed step: their fate is walked again
    new[pending] = None
    for k in range(first, len(old_steps)):
        never_seen = pending & (reach < k)
        new[never_seen] = original[never_seen]
        unknown_at[never_seen] = labels[k]
        pending &= ~never_seen
        if not pending.any():
            break
        step = new_steps[k]
        ranking = step.batch_ranking()
        if ranking is not None:
            rows = np.flatnonzero(pending)
            uncertain = np.asarray([at is not None for at in unknown_at], dtype=bool)
            keep, why, unknown = _decide_by_batch(table, step, labels[k], rows, uncertain)
            ranked[k] = _measured(table, labels[k], rows[~unknown])[ranking[0]]
            new[rows[unknown]] = original[rows[unknown]]
            unknown_at[rows[unknown]] = labels[k]
            dropped = rows[~keep & ~unknown]
            new[dropped] = why[~keep & ~unknown]
            pending[rows[unknown]] = False
            pending[dropped] = False
        elif k in changed:
            rows = np.flatnonzero(pending)
            verdict = _decide(step, labels[k], _measured(table, labels[k], rows))
            dropped = rows[~verdict.keep]
            new[dropped] = verdict.prefixed(labels[k]).reason[~verdict.keep]
            pending[dropped] = False
        else:
            dropped_here = pending & (reach == k)
            new[dropped_here] = original[dropped_here]
            pending &= ~dropped_here
    return Fates(new, unknown_at, ranked)


def what_if(run_dir: str, settings: Sequence[str], storage_options: dict[str, Any] | None = None) -> WhatIf:
    """Answer from the sidecar alone how the `settings` (`STEP.PARAM=VALUE`) would change the run.

    Raises:
        InputError: `run_dir` is not a run, or has no score sidecar.
        SpecError: a bad `--set` (unknown step or parameter, invalid value, a step without `decide`).
    """
    started = time.perf_counter()
    raw, job = load_run_job(run_dir, storage_options)
    labels = Counter(step.label for step in job.steps)
    twice = sorted(label for label, count in labels.items() if count > 1)
    if twice:
        msg = (
            f"the run's job has several steps labelled {', '.join(twice)}: their reasons and scores cannot be told "
            "apart in the sidecar, so what-if cannot answer; give each step a distinct `name:` and rerun"
        )
        raise SpecError(msg)
    new_job, changes = apply_settings(raw, job, settings)
    files = require_score_files(run_dir, job, storage_options)
    result = WhatIf(run_dir, changes, files=len(files))
    stats = read_json(join(run_dir, STATS_FILE), storage_options or {}) or {}
    result.duplicates = int(stats.get("duplicates", 0))
    changed = {c.index for c in changes}
    ranked: dict[int, list[np.ndarray]] = {}
    # Only the columns re-deciding reads: ids, reasons, batches, and the values of the steps from the first change.
    later = [step.label for step in job.steps[min(changed) :]] if changed else []
    schema = read_schema(files[0], storage_options or {})
    wanted = [ID, REASON, BATCH, *(c for c in schema.names if c.partition(".")[0] in later)]
    for table in iter_score_batches(files, storage_options, columns=wanted):
        fates = redecide(table, job.steps, new_job.steps, changed)
        result.docs += table.num_rows
        _count(result, table[REASON], fates.reason, fates.unknown_at)
        for index, scores in fates.ranked.items():
            ranked.setdefault(index, []).append(scores)
    for index, parts in sorted(ranked.items()):
        cut = whole_run_cut(new_job.steps[index], np.concatenate(parts))
        if cut is not None:
            result.whole_run_cuts.append(cut)
    result.seconds = time.perf_counter() - started
    return result


def whole_run_cut(step: Step, scores: np.ndarray) -> WholeRunCut | None:
    """The step's top fraction taken over every document known to reach it, as the `min_score` that keeps it.

    The step itself ranks batch by batch; ranking the whole run instead is the exact corpus-wide cut (keeping
    `ceil(fraction * n)` documents, more on ties at the cut score). None when no document reaches the step.
    """
    ranking = step.batch_ranking()
    if ranking is None or len(scores) == 0:
        return None
    score, fraction = ranking
    count = max(1, min(len(scores), math.ceil(fraction * len(scores) - 1e-9)))
    cut = float(np.sort(scores)[::-1][count - 1])
    kept = int((scores >= cut).sum())
    return WholeRunCut(step.label, score, fraction, len(scores), kept, cut)


def _count(result: WhatIf, original: pa.ChunkedArray, new: np.ndarray, unknown_at: np.ndarray) -> None:
    """Add one table's (original, new, unknown) outcomes to the counters, grouped in polars (no row loop)."""
    outcomes = pa.table(
        {
            "old": pc.fill_null(original.cast(pa.string()), KEPT_LABEL),
            "new": pc.fill_null(pa.array(new, type=pa.string(), from_pandas=True), KEPT_LABEL),
            "unknown_at": pa.array(unknown_at, type=pa.string(), from_pandas=True),
        }
    )
    frame = pl.DataFrame(pl.from_arrow(outcomes))
    for old, new_key, at, count in frame.group_by(["old", "new", "unknown_at"]).len().iter_rows():
        result.original[old] += count
        if at is not None:
            result.unknown[(old, at)] += count
            continue
        result.new[new_key] += count
        if new_key != old:
            result.moves[(old, new_key)] += count


# ----------------------------------------------------------------------------------------------------------
# Printing and the command


def format_what_if(result: WhatIf) -> str:
    """The table `what-if` prints: documents per outcome, original vs with the changes, then what moved."""
    lines = [
        f"what-if on {result.run_dir}: {result.docs:,} documents from {result.files} score file(s) "
        f"in {result.seconds:.2f}s (no text read, no model run)"
    ]
    if not result.changes:
        lines.append("no parameter differs from the run's job: nothing changes")
    for change in result.changes:
        lines.append(f"  steps[{change.index}] {change.label}.{change.param}: {change.old!r} -> {change.value!r}")
    keys = sorted(set(result.original) | set(result.new), key=lambda k: (k != KEPT_LABEL, k))
    shown = [k for k in keys if k == KEPT_LABEL or result.original[k] != result.new[k]]
    # With dedup, phase A's kept documents are the run's kept plus its duplicates: say so on the row.
    kept_name = "kept by the steps" if result.duplicates else KEPT_LABEL
    width = max([len(k) for k in shown] + [24])
    lines.append(f"  {'outcome':<{width}} {'original':>10} {'what-if':>10} {'change':>8}")
    for key in shown:
        before, after = result.original[key], result.new[key]
        name = kept_name if key == KEPT_LABEL else key
        lines.append(f"  {name:<{width}} {before:>10,} {after:>10,} {after - before:>+8,}")
    if len(keys) > len(shown):
        lines.append(f"  ({len(keys) - len(shown)} other outcomes unchanged)")
    unknown = sum(result.unknown.values())
    if unknown:
        low, high = result.kept_range
        lines.append(
            f"  {'unknown (needs a rerun)':<{width}} {'':>10} {unknown:>10,}"
            f"   -> kept would be between {low:,} and {high:,}"
        )
        for (was, next_step), count in sorted(result.unknown.items(), key=lambda x: -x[1]):
            lines.append(f"      {count:>8,}  were {was}; pass the change but were never measured by {next_step}")
    if result.duplicates:
        lines.append(
            f"  duplicates removed by dedup in the run: {result.duplicates:,} (not re-decided; the run kept "
            f"{result.original[KEPT_LABEL] - result.duplicates:,})"
        )
    for cut in result.whole_run_cuts:
        lines.append(
            f"  {cut.label} keeps the top {cut.fraction:g} of each batch; over the whole run, the top "
            f"{cut.fraction:g} of the {cut.reaching:,} documents reaching it score >= {cut.min_score!r} "
            f"({cut.kept:,} documents): --set {cut.label}.keep_top_fraction=null "
            f"--set {cut.label}.min_score={cut.min_score!r} keeps exactly those"
        )
    if result.moves:
        lines.append("  documents that change fate:")
        for (was, becomes), count in sorted(result.moves.items(), key=lambda x: (-x[1], x[0])):
            lines.append(f"      {count:>8,}  {was} -> {becomes}")
    return "\n".join(lines)
