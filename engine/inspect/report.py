"""`OUT/report.html`: what a run did, as one self-contained page (plots embedded as SVG images, no script, no
server).

Everything comes from `stats.json` alone, whose counters every unit and dedup task adds to (issue 14):
the report reads no document, no kept or score file and no unit's stats, so its cost and the driver's memory
do not grow with the corpus. Sections, each present when its data exists:

- totals and the conservation line;
- drops per step and rule, as a bar chart and a table;
- histograms of every step's scores (fixed bins counted by every unit, `Stats.score_bins`), stacked into the
  documents the step kept and those it dropped, with the job's thresholds marked (the parameters
  `engine.steps.base.score_thresholds` pairs with each score);
- language distribution of the kept documents (`Stats.languages`; in a dedup job, counted before dedup unless
  the run also counted its duplicates by language);
- dedup cluster sizes (the fixed-bin `cluster_sizes` counters dedup's tasks put into `stats.json`);
- per-shard timing and the slowest shards (`Stats.shard_seconds_bins`, `slowest_shards`).

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

from engine.errors import InputError
from engine.histograms import bin_edges, decode_bins, decode_named, quantile
from engine.inspect.plots import CUT_PERCENTILE, bar_chart, binned_histogram
from engine.inspect.run_outputs import run_job_and_header
from engine.io.atomic import write_text
from engine.io.layout import STATS_FILE, join
from engine.io.markers import read_json
from engine.spec import JobSpec
from engine.stats import CLUSTER_SIZE_BINS
from engine.steps.base import score_thresholds

REPORT_FILE = "report.html"
MAX_SCORE_PLOTS = 40
SLOWEST_SHARDS = 10
MAX_LANGUAGES = 30


# ----------------------------------------------------------------------------------------------------------
# Reading what a run left


# ----------------------------------------------------------------------------------------------------------
# The page


@dataclass
class Section:
    id: str
    title: str
    body: str


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


def _scores(stats: dict[str, Any], job: JobSpec | None) -> Section | None:
    counted = decode_named(stats.get("score_bins") or {})
    dropped_bins = decode_named(stats.get("score_bins_dropped") or {})
    if not counted:
        return None
    steps = {step.label: step for step in job.steps} if job is not None else {}
    figures: list[str] = []
    single: list[tuple[str, str, int, str]] = []
    plotted = 0
    for name, bins in sorted(counted.items()):
        label, _, score = name.partition(".")
        step = steps.get(label)
        marks = score_thresholds(step, [score]).get(score, []) if step is not None else []
        filled = [k for k, n in bins.items() if n > 0]
        if not filled:
            continue
        if len(filled) == 1:  # one bar says nothing a line cannot
            low, high = bin_edges(filled[0])
            bounds = ", ".join(f"{param}={value:g}" for param, value in marks)
            single.append((name, f"[{low:.4g}, {high:.4g})", int(bins[filled[0]]), bounds))
            continue
        plotted += 1
        if len(figures) == MAX_SCORE_PLOTS:
            continue
        figures.append(
            binned_histogram(
                bins,
                title=name,
                edges=bin_edges,
                thresholds=marks,
                dropped=dropped_bins.get(name, {}),
                log_y=True,
            )
        )
    note = (
        "<p>Counted by every shard as it ran, in fixed bins (0.02 wide below 1, four per doubling above), so the "
        "histograms cover every document however large the run; each holds the documents that reached the step "
        "and have a value (log scale), split into those the step kept and those it dropped. Dashed red lines: the "
        "job's thresholds on that score (a threshold far outside the values is an arrow at the edge). With 200 "
        f"values or more and a long tail, the x axis stops at the {CUT_PERCENTILE:g}th percentile (or at a "
        "threshold beyond it); the title then says where the axis stops and how many documents lie beyond it.</p>"
    )
    if plotted > MAX_SCORE_PLOTS:
        note += f"<p>{plotted - MAX_SCORE_PLOTS} more score columns not plotted.</p>"
    tables = ""
    if single:
        tables += "<h3>Scores whose values all fall in one bin (not plotted)</h3>" + _table(
            ["score", "bin", "documents", "thresholds"], single
        )
    return Section("scores", "Scores", note + '<div class="grid">' + "".join(figures) + "</div>" + tables)


def _languages(stats: dict[str, Any], *, deduplicated: bool) -> Section | None:
    counts: Counter[str] = Counter(stats.get("languages") or {})
    if not counts:
        return None
    removed = Counter(stats.get("duplicates_by_language") or {})
    after_dedup = not deduplicated or sum(removed.values()) == int(stats.get("duplicates") or 0)
    counts = +(counts - removed) if after_dedup else counts
    top = counts.most_common(MAX_LANGUAGES)
    rest = sum(counts.values()) - sum(c for _, c in top)
    labels, values = [k for k, _ in top], [c for _, c in top]
    if rest:
        labels.append("(others)")
        values.append(rest)
    total = sum(counts.values())
    what = "kept documents" if after_dedup else "documents kept by the steps (before dedup)"
    chart = bar_chart(labels, values, xlabel=what)
    table = _table(["language", what, "share"], [(k, c, f"{100 * c / total:.1f}%") for k, c in top])
    count = f"{len(counts)} language" + ("s" if len(counts) != 1 else "")
    note = (
        ""
        if after_dedup
        else f"<p>Counted before dedup: {int(stats.get('duplicates') or 0):,} duplicates were then removed.</p>"
    )
    return Section(
        "languages", f"Languages of kept documents ({count})", note + chart + table + _drops_by_language(stats)
    )


def _drops_by_language(stats: dict[str, Any]) -> str:
    """Per language: documents the steps kept and dropped once the language was known, the drop rate and the
    reason that dropped most (from `dropped_by_language`; nothing when no step labelled a dropped document)."""
    by_reason: dict[str, Counter[str]] = {}
    for key, n in (stats.get("dropped_by_language") or {}).items():
        language, reason = key.split(" ", 1)
        by_reason.setdefault(language, Counter())[reason] += int(n)
    if not by_reason:
        return ""
    kept: Counter[str] = Counter(stats.get("languages") or {})
    totals = {lang: kept[lang] + sum(by_reason.get(lang, Counter()).values()) for lang in {*kept, *by_reason}}
    rows = []
    for lang, total in sorted(totals.items(), key=lambda item: (-item[1], item[0]))[:MAX_LANGUAGES]:
        reasons = by_reason.get(lang, Counter())
        dropped = sum(reasons.values())
        top = reasons.most_common(1)
        rows.append((lang, kept[lang], dropped, f"{100 * dropped / total:.1f}%", top[0][0] if top else ""))
    note = (
        "<h3>Drop rate per language</h3><p>Documents whose language was known when they were dropped or kept by"
        " the steps (documents dropped before language identification are not counted here).</p>"
    )
    return note + _table(["language", "kept by the steps", "dropped", "drop rate", "top reason"], rows)


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


def _shards(stats: dict[str, Any], *, deduplicated: bool) -> Section | None:
    bins = decode_bins(stats.get("shard_seconds_bins") or {})
    slowest: list[list[Any]] = stats.get("slowest_shards") or []
    shards = sum(bins.values())
    if not shards:
        return None
    chart = binned_histogram(bins, title="seconds per shard", edges=bin_edges, xlabel="seconds")
    rows = []
    for seconds, rel, docs, kept_docs in slowest[:SLOWEST_SHARDS]:
        rows.append((rel, int(docs), float(seconds), round(docs / seconds, 1) if seconds > 0 else None, kept_docs))
    longest = float(slowest[0][0]) if slowest else float("nan")
    summary = (
        f"<p>{shards:,} shards; seconds per shard: median about {quantile(bins, 0.5):.2f} (from the bins), "
        f"max {longest:.2f}, total {float(stats.get('shard_seconds_total') or 0.0):.2f}.</p>"
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
    deduplicated = bool(stats.get("duplicates")) or (job is not None and job.dedup is not None)
    sections = [
        *_totals(stats),
        _drops(stats),
        _scores(stats, job),
        _languages(stats, deduplicated=deduplicated),
        _dedup(stats),
        _shards(stats, deduplicated=deduplicated),
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
