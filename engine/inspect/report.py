"""`OUT/report.html`: what a run did, as one self-contained page (plots embedded as PNG, no script, no server).

Sections, each present when its data exists in the output folder:

- totals and the conservation line (`stats.json`);
- drops per step and rule, as a bar chart and a table (`stats.json`);
- histograms of every step's scores with the job's thresholds marked (`scores/`, written with
  `output.keep_scores`; at most `MAX_SCORE_ROWS` rows are read, file by file, so the page stays cheap on huge
  runs); thresholds are the parameters `engine.steps.base.score_thresholds` pairs with each score;
- language distribution of the kept documents (`kept/language=<code>/` row counts from Parquet metadata, or the
  `language` column of the kept files);
- dedup cluster sizes (the fixed-bin `cluster_sizes` counters dedup's tasks put into `stats.json`);
- per-shard timing and the slowest shards (`_units/<rel>.stats.json`).

`write_report(output_path, storage_options)` writes the page and returns its URL; `corpus-engine report RUN_DIR`
regenerates it from what the run left.
"""

from __future__ import annotations

import datetime as dt
import html
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from engine.errors import InputError
from engine.inspect.plots import CUT_PERCENTILE, bar_chart, histogram
from engine.inspect.run_outputs import iter_score_batches, run_job_and_header, score_files, unit_stats
from engine.io.atomic import write_text
from engine.io.layout import KEPT, STATS_FILE, join
from engine.io.markers import read_json
from engine.io.paths import filesystem, list_files
from engine.schema import LANGUAGE, REASON
from engine.spec import JobSpec
from engine.stats import CLUSTER_SIZE_BINS
from engine.steps.base import score_thresholds

REPORT_FILE = "report.html"
MAX_SCORE_ROWS = 1_000_000
MAX_SCORE_PLOTS = 40
SLOWEST_SHARDS = 10
MAX_LANGUAGES = 30


# ----------------------------------------------------------------------------------------------------------
# Reading what a run left


def score_sample(output_path: str, storage_options: dict[str, Any], limit: int = MAX_SCORE_ROWS) -> dict[str, Any]:
    """Up to `limit` rows of the score sidecar: every `<step>.<score>` column and the `reason` column."""
    columns: dict[str, list[np.ndarray]] = {}
    reasons: list[pa.ChunkedArray] = []
    rows = 0
    for table in iter_score_batches(score_files(output_path, storage_options), storage_options):
        take = min(table.num_rows, limit - rows)
        table = table.slice(0, take)
        for name in table.column_names:
            if "." in name and pa.types.is_floating(table.schema.field(name).type):  # labels are not plotted
                columns.setdefault(name, []).append(
                    np.asarray(pc.fill_null(table[name], np.nan).to_numpy(), dtype=np.float64)
                )
        reasons.append(table[REASON])
        rows += take
        if rows >= limit:
            break
    reason = pa.chunked_array([c for r in reasons for c in r.chunks], type=pa.string())
    return {"rows": rows, "columns": {k: np.concatenate(v) for k, v in columns.items()}, "reasons": reason}


def language_counts(output_path: str, storage_options: dict[str, Any]) -> Counter[str]:
    """Kept documents per language: from `language=<code>` folders' row counts, else the `language` column."""
    kept = join(output_path, KEPT)
    fs, _ = filesystem(kept, storage_options)
    counts: Counter[str] = Counter()
    for url in list_files(kept, storage_options, "**/*.parquet"):
        parts = [p for p in url.split("/") if p.startswith(f"{LANGUAGE}=")]
        with fs.open(url, "rb") as handle:
            parquet = pq.ParquetFile(handle)
            if parts:
                counts[parts[-1].split("=", 1)[1]] += parquet.metadata.num_rows
            elif LANGUAGE in parquet.schema_arrow.names:
                column = parquet.read(columns=[LANGUAGE])[LANGUAGE]
                for value, count in zip(*_value_counts(column), strict=True):
                    counts[str(value)] += count
    return counts


def _value_counts(column: Any) -> tuple[list[Any], list[int]]:
    counted = pc.value_counts(column)
    return counted.field("values").to_pylist(), counted.field("counts").to_pylist()


def _table(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(_cell(c))}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _cell(value: Any) -> str:
    if isinstance(value, bool) or value is None:
        return str(value)
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:,.2f}" if abs(value) < 1e6 else f"{value:,.0f}"
    return str(value)


# ----------------------------------------------------------------------------------------------------------
# The page


@dataclass
class Section:
    id: str
    title: str
    body: str


def _totals(stats: dict[str, Any]) -> list[Section]:
    docs_in, kept = stats.get("docs_in", 0), stats.get("docs_kept", 0)
    dropped = stats.get("docs_dropped", sum(stats.get("dropped", {}).values()))
    duplicates = stats.get("duplicates", 0)
    reused = int(stats.get("docs_reused", 0))
    rows = [
        ("documents read", docs_in),
        *([("of which reused from the last run (skipped shards)", reused)] if reused else []),
        ("kept", kept),
        ("dropped by filters", dropped),
        ("duplicates removed", duplicates),
        (
            "shards",
            f"{stats.get('shards_total', 0):,} ({stats.get('shards_processed', 0):,} processed, "
            f"{stats.get('shards_skipped', 0):,} skipped, {stats.get('shards_failed', 0):,} failed)",
        ),
        ("text MB read / kept", f"{stats.get('bytes_in', 0) / 1e6:,.1f} / {stats.get('bytes_kept', 0) / 1e6:,.1f}"),
        ("seconds", float(stats.get("seconds", 0.0))),
        ("documents processed per second", stats.get("docs_per_second")),
    ]
    if kept is None:  # a dedup job with failed shards: nothing reached kept/ (stats.json says why)
        rows[1] = ("kept", f"none yet: {stats.get('dedup', 'dedup did not run')}")
        kept = stats.get("docs_staged", 0)
    total = kept + dropped + duplicates
    holds = total == docs_in
    verdict = "holds" if holds else "VIOLATED"
    line = (
        f'<p class="conservation {"ok" if holds else "bad"}">kept {kept:,} + dropped {dropped:,} + duplicates '
        f"{duplicates:,} = {total:,} {'=' if holds else '≠'} {docs_in:,} documents read (conservation {verdict})</p>"
    )
    failed = stats.get("failed_shards") or {}
    if failed:
        line += "<p>Failed shards:</p>" + _table(["shard", "error"], sorted(failed.items()))
    return [
        Section("totals", "Totals", _table(["", "value"], rows)),
        Section("conservation", "Conservation", line),
    ]


def _drops(stats: dict[str, Any]) -> Section | None:
    dropped = Counter(stats.get("dropped", {}))
    if stats.get("duplicates"):
        dropped["dedup/duplicate"] += int(stats["duplicates"])
    if not dropped:
        return Section("drops", "Drops per step and rule", "<p>No document was dropped.</p>")
    docs_in = max(int(stats.get("docs_in", 0)), 1)
    ordered = dropped.most_common()
    chart = bar_chart([r for r, _ in ordered], [c for _, c in ordered], xlabel="documents dropped")
    by_step: Counter[str] = Counter()
    for reason, count in ordered:
        by_step[reason.split("/", 1)[0]] += count
    steps = _table(
        ["step", "dropped", "share of documents read"],
        [(s, c, f"{100 * c / docs_in:.2f}%") for s, c in by_step.most_common()],
    )
    rules = _table(
        ["step/rule", "dropped", "share of documents read"], [(r, c, f"{100 * c / docs_in:.2f}%") for r, c in ordered]
    )
    speed = stats.get("step_docs_per_second") or {}
    timing = ""
    if speed:
        timing = "<h3>Step throughput (documents per second of step time, per core)</h3>" + _table(
            ["step", "documents seen", "seconds", "docs/s"],
            [
                (s, stats.get("step_docs", {}).get(s), float(stats.get("step_seconds", {}).get(s, 0.0)), v)
                for s, v in speed.items()
            ],
        )
    return Section("drops", "Drops per step and rule", chart + steps + rules + timing)


def _scores(output_path: str, storage_options: dict[str, Any], job: JobSpec | None) -> Section | None:
    sample = score_sample(output_path, storage_options)
    if not sample["columns"]:
        return None
    steps = {step.label: step for step in job.steps} if job is not None else {}
    figures: list[str] = []
    constant: list[tuple[str, str, int, str]] = []
    empty: list[str] = []
    reasons_by_step: dict[str, np.ndarray] = {}
    for name in sample["columns"]:
        label, _, score = name.partition(".")
        values = sample["columns"][name]
        step = steps.get(label)
        marks = score_thresholds(step, [score]).get(score, []) if step is not None else []
        reached = np.isfinite(values)
        if not reached.any():
            empty.append(name)
            continue
        distinct = np.unique(values[reached])
        if len(distinct) == 1:  # one bar says nothing a line cannot
            bounds = ", ".join(f"{param}={value:g}" for param, value in marks)
            constant.append((name, f"{distinct[0]:g}", int(reached.sum()), bounds))
            continue
        if len(figures) == MAX_SCORE_PLOTS:
            continue
        dropped = reasons_by_step.get(label)
        if dropped is None:
            hit = pc.fill_null(pc.starts_with(sample["reasons"], f"{label}/"), False)
            dropped = np.asarray(hit.to_numpy(zero_copy_only=False), dtype=bool)
            reasons_by_step[label] = dropped
        figures.append(histogram(values[reached], title=name, thresholds=marks, dropped=dropped[reached], log_y=True))
    plotted = len(sample["columns"]) - len(constant) - len(empty)
    note = (
        f"<p>{sample['rows']:,} documents from the score sidecar; each histogram holds the documents that reached "
        "the step and have a value (log scale), split into those the step kept and those it dropped. Dashed red "
        "lines: the job's thresholds on that score (a threshold far outside the values is an arrow at the edge). "
        f"With 200 values or more and a long tail, the x axis stops at the {CUT_PERCENTILE:g}th percentile (or at "
        "a threshold beyond it) so that a few extreme documents do not squash the rest into one bar; the title "
        "then says where the axis stops and how many documents lie beyond it.</p>"
    )
    if plotted > MAX_SCORE_PLOTS:
        note += f"<p>{plotted - MAX_SCORE_PLOTS} more score columns not plotted.</p>"
    tables = ""
    if constant:
        tables += "<h3>Scores with a single value (not plotted)</h3>" + _table(
            ["score", "value", "documents", "thresholds"], constant
        )
    if empty:
        tables += "<p>No document has a value for: " + html.escape(", ".join(empty)) + " (not plotted).</p>"
    return Section("scores", "Scores", note + '<div class="grid">' + "".join(figures) + "</div>" + tables)


def _languages(output_path: str, storage_options: dict[str, Any]) -> Section | None:
    counts = language_counts(output_path, storage_options)
    if not counts:
        return None
    top = counts.most_common(MAX_LANGUAGES)
    rest = sum(counts.values()) - sum(c for _, c in top)
    labels, values = [k for k, _ in top], [c for _, c in top]
    if rest:
        labels.append("(others)")
        values.append(rest)
    total = sum(counts.values())
    chart = bar_chart(labels, values, xlabel="kept documents")
    table = _table(["language", "kept documents", "share"], [(k, c, f"{100 * c / total:.1f}%") for k, c in top])
    count = f"{len(counts)} language" + ("s" if len(counts) != 1 else "")
    return Section("languages", f"Languages of kept documents ({count})", chart + table)


def _dedup(stats: dict[str, Any]) -> Section | None:
    """Cluster sizes from the fixed-bin counters the dedup tasks emitted into stats.json (never the corpus)."""
    counts = {int(low): int(n) for low, n in (stats.get("cluster_sizes") or {}).items() if n}
    if not counts:
        return None
    bins = CLUSTER_SIZE_BINS
    lows = sorted(counts)
    clusters = sum(counts.values())
    largest = int(stats.get("largest_cluster") or lows[-1])

    def label(low: int) -> str:
        high = min(bins[bins.index(low) + 1] - 1 if low != bins[-1] else largest, largest)
        return f"{low:,}" if high <= low else f"{low:,}-{high:,}"

    seen, median = 0, lows[-1]
    for low in lows:
        seen += counts[low]
        if 2 * seen >= clusters:
            median = low
            break
    rows = [
        ("clusters", f"{clusters:,}"),
        ("documents in clusters", f"{clusters + int(stats.get('duplicates', 0)):,}"),
        ("duplicates removed (members minus one per cluster)", f"{int(stats.get('duplicates', 0)):,}"),
        ("largest cluster", f"{largest:,}"),
        ("median cluster size", label(median)),
    ]
    chart = bar_chart([label(low) for low in lows], [counts[low] for low in lows], xlabel="clusters", log=True)
    return Section("dedup", "Duplicate clusters", _table(["", "value"], rows) + chart)


def _shards(units: list[tuple[str, dict[str, Any]]], *, deduplicated: bool) -> Section | None:
    if not units:
        return None
    seconds = np.asarray([float(u.get("seconds", 0.0)) for _, u in units])
    if len(units) <= 60:
        order = np.argsort(-seconds, kind="stable")
        chart = bar_chart([units[i][0] for i in order], [seconds[i] for i in order], xlabel="seconds", fmt=".2f")
    else:
        chart = histogram(seconds, title="seconds per shard", xlabel="seconds")
    slowest = sorted(units, key=lambda u: -float(u[1].get("seconds", 0.0)))[:SLOWEST_SHARDS]
    rows = []
    for rel, unit in slowest:
        secs = float(unit.get("seconds", 0.0))
        docs = int(unit.get("docs_in", 0))
        rows.append((rel, docs, secs, round(docs / secs, 1) if secs > 0 else None, unit.get("docs_kept")))
    summary = (
        f"<p>{len(units):,} shards; seconds per shard: median {np.median(seconds):.2f}, "
        f"max {seconds.max():.2f}, total {seconds.sum():.2f}.</p>"
    )
    kept = "kept by the steps (before dedup)" if deduplicated else "kept"
    table = "<h3>Slowest shards</h3>" + _table(["shard", "documents", "seconds", "docs/s", kept], rows)
    return Section("shards", "Per-shard timing", summary + chart + table)


_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1100px; color: #222; }
h1 { font-size: 1.5em; } h2 { border-bottom: 1px solid #ccc; padding-bottom: .2em; margin-top: 1.6em; }
table { border-collapse: collapse; margin: .6em 0; font-size: .9em; }
td, th { border: 1px solid #ddd; padding: .25em .6em; text-align: left; }
td:not(:first-child) { text-align: right; font-variant-numeric: tabular-nums; }
.conservation { font-weight: bold; } .ok { color: #2a7a2a; } .bad { color: #b00020; }
.grid { display: flex; flex-wrap: wrap; gap: .5em; } img { max-width: 100%; }
nav a { margin-right: 1em; } .meta { color: #666; font-size: .85em; }
"""


def render(output_path: str, storage_options: dict[str, Any]) -> str:
    """The report page of the run in `output_path`, as HTML text.

    Raises:
        InputError: the folder holds no `stats.json` (the run never finished a first pass).
    """
    stats = read_json(join(output_path, STATS_FILE), storage_options)
    if stats is None:
        msg = f"{join(output_path, STATS_FILE)} does not exist: {output_path!r} holds no finished run to report on"
        raise InputError(msg)
    job, header = run_job_and_header(output_path, storage_options)
    units = unit_stats(output_path, storage_options)
    sections = [
        *_totals(stats),
        _drops(stats),
        _scores(output_path, storage_options, job),
        _languages(output_path, storage_options),
        _dedup(stats),
        _shards(units, deduplicated=bool(stats.get("duplicates")) or (job is not None and job.dedup is not None)),
    ]
    present = [s for s in sections if s is not None]
    nav = "".join(f'<a href="#{s.id}">{html.escape(s.title)}</a>' for s in present)
    body = "".join(f'<section id="{s.id}"><h2>{html.escape(s.title)}</h2>{s.body}</section>' for s in present)
    name = stats.get("job") or (job.name if job is not None else "run")
    steps = ", ".join(s.label for s in job.steps) if job is not None else "unknown"
    generated = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    meta = (
        f'<p class="meta">output {html.escape(output_path)} · steps: {html.escape(steps)} · '
        f"{html.escape(header or 'engine version unknown')} · generated {generated}</p>"
    )
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>corpus-engine report: {html.escape(str(name))}</title><style>{_STYLE}</style></head>"
        f"<body><h1>corpus-engine report: {html.escape(str(name))}</h1>{meta}<nav>{nav}</nav>{body}</body></html>\n"
    )


def write_report(output_path: str, storage_options: dict[str, Any]) -> str:
    """Write `OUT/report.html` for the run in `output_path` (atomically); its URL.

    Raises:
        InputError: the folder holds no finished run (no `stats.json`).
    """
    url = join(output_path, REPORT_FILE)
    write_text(url, render(output_path, storage_options), storage_options)
    return url
