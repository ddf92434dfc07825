"""Plots for the report: matplotlib figures drawn off-screen and embedded as inline PNG."""

from __future__ import annotations

import base64
import html
import io
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

THRESHOLD_COLOUR = "#e45756"
CUT_PERCENTILE = 99.5


def _png(fig: Any, *, alt: str = "plot", data: dict[str, str] | None = None) -> str:
    """A matplotlib figure as an <img> tag with the PNG inline (base64); `data` becomes data-* attributes."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100, bbox_inches="tight")
    encoded = base64.b64encode(buffer.getvalue()).decode("ascii")
    attributes = "".join(f' data-{key}="{html.escape(value)}"' for key, value in (data or {}).items())
    return f'<img alt="{html.escape(alt)}"{attributes} src="data:image/png;base64,{encoded}">'


def _figure(width: float, height: float) -> Any:
    """A figure drawn by the Agg canvas, without pyplot's global state (safe in any thread, no display)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height))
    FigureCanvasAgg(fig)
    return fig


def bar_chart(
    labels: Sequence[str], values: Sequence[float], *, xlabel: str, log: bool = False, fmt: str = ",.0f"
) -> str:
    """Horizontal bars, largest first at the top."""
    fig = _figure(8, max(1.5, 0.28 * len(labels) + 0.8))
    ax = fig.add_subplot()
    positions = np.arange(len(labels))
    ax.barh(positions, values, color="#4c78a8")
    ax.set_yticks(positions, labels=list(labels), fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel(xlabel)
    if log:
        ax.set_xscale("log")
    for y, value in zip(positions, values, strict=True):
        ax.text(value, y, f" {value:{fmt}}", va="center", fontsize=7)
    return _png(fig)


def histogram(
    values: np.ndarray,
    *,
    title: str,
    thresholds: Sequence[tuple[str, float]] = (),
    dropped: np.ndarray | None = None,
    log_y: bool = False,
    bins: Any = 40,
    xlabel: str = "",
) -> str:
    """A histogram with each threshold drawn as a labelled dashed vertical line.

    With `dropped` (a mask), the bars are stacked: documents the step kept, and those it dropped. With 200 values
    or more, a long tail (reaching more than half the drawn width beyond it) is cut at the `CUT_PERCENTILE`th
    percentile and the title says how many documents lie beyond the cut. A threshold far outside the data (more
    than the data's width beyond it) would squash the bars into one: it is drawn as an arrow at the edge of the
    axis, labelled with its value. The <img> carries the thresholds in `data-thresholds`, the cut in `data-cut`.
    """
    fig = _figure(4.2, 2.6)
    ax = fig.add_subplot()
    finite = np.isfinite(values)
    shown = values[finite]
    low, high = (float(shown.min()), float(shown.max())) if len(shown) else (0.0, 1.0)
    cut = float(np.percentile(shown, CUT_PERCENTILE)) if len(shown) >= 200 else high
    if cut <= low or high - cut <= 0.5 * (cut - low):  # no long tail (or a few values): the whole range is drawn
        cut = high
    span = max(cut - low, 1e-9)
    in_view = [(name, value) for name, value in thresholds if low - span <= value <= cut + span]
    beyond = [(name, value) for name, value in thresholds if (name, value) not in in_view]
    limit = max([cut, *(v for _, v in in_view)])
    data = {"thresholds": " ".join(f"{name}={value:g}" for name, value in thresholds)}
    if limit < high and isinstance(bins, int):
        above = int((shown > limit).sum())
        title += f"\n(axis cut at the {CUT_PERCENTILE:g}th percentile, {limit:.4g}: {above:,} above, max {high:.4g})"
        data["cut"] = f"{limit:g}"
        bins = np.linspace(min([low, *(v for _, v in in_view)]), limit, bins + 1)
    if dropped is not None:
        mask = dropped[finite]
        ax.hist(
            [shown[~mask], shown[mask]],
            bins=bins,
            stacked=True,
            color=["#72b7b2", "#f58518"],
            label=["kept by the step", "dropped by the step"],
        )
        ax.legend(fontsize=6, loc="best")
    else:
        ax.hist(shown, bins=bins, color="#72b7b2")
    _mark_thresholds(ax, in_view, beyond)
    if log_y:
        ax.set_yscale("log")
    ax.set_title(title, fontsize=8)
    ax.set_xlabel(xlabel, fontsize=8)
    ax.tick_params(labelsize=7)
    return _png(fig, alt=f"histogram: {title}", data=data)


def _mark_thresholds(ax: Any, in_view: Sequence[tuple[str, float]], beyond: Sequence[tuple[str, float]]) -> None:
    """Thresholds in view as labelled dashed lines; those far off the axis as labelled arrows at its edge."""
    left, right = ax.get_xlim()
    for name, value in in_view:
        ax.axvline(value, color=THRESHOLD_COLOUR, linestyle="--", linewidth=1.2)
        on_right = value > (left + right) / 2
        ax.text(
            value,
            0.6,
            f" {name}={value:g} ",
            transform=ax.get_xaxis_transform(),
            color=THRESHOLD_COLOUR,
            fontsize=7,
            va="top",
            ha="right" if on_right else "left",
        )
    left, right = ax.get_xlim()
    for row, (name, value) in enumerate(beyond):
        at_right = value > right
        ax.annotate(
            f"{name}={value:g} (off the axis)",
            xy=(1.0 if at_right else 0.0, 0.9 - 0.12 * row),
            xycoords="axes fraction",
            xytext=(-6 if at_right else 6, 0),
            textcoords="offset points",
            color=THRESHOLD_COLOUR,
            fontsize=7,
            va="center",
            ha="right" if at_right else "left",
            arrowprops={"arrowstyle": "-|>", "color": THRESHOLD_COLOUR},
        )


def binned_histogram(
    bins: Mapping[str, int],
    *,
    title: str,
    edges: Callable[[str], tuple[float, float]],
    thresholds: Sequence[tuple[str, float]] = (),
    dropped: Mapping[str, int] | None = None,
    log_y: bool = False,
    xlabel: str = "",
) -> str:
    """A histogram drawn from counted bins (`engine.histograms`), as `histogram` draws one from values.

    With `dropped` (counts per bin of the documents the step dropped), the bars are stacked: kept, dropped. A long
    tail is cut where `CUT_PERCENTILE`% of the documents are reached, and the title says how many lie beyond.
    """
    keys = sorted((k for k, n in bins.items() if n > 0), key=int)
    counts = np.asarray([bins[k] for k in keys], dtype=np.float64)
    dropped_counts = np.asarray([(dropped or {}).get(k, 0) for k in keys], dtype=np.float64)
    lows = np.asarray([edges(k)[0] for k in keys])
    highs = np.asarray([edges(k)[1] for k in keys])
    total = counts.sum()
    low, high = (float(lows[0]), float(highs[-1])) if keys else (0.0, 1.0)
    cut_index = len(keys) - 1
    if total >= 200:
        cut_index = int(np.searchsorted(np.cumsum(counts), total * CUT_PERCENTILE / 100))
    cut = float(highs[min(cut_index, len(keys) - 1)]) if keys else high
    if cut <= low or high - cut <= 0.5 * (cut - low):
        cut = high
    span = max(cut - low, 1e-9)
    in_view = [(name, value) for name, value in thresholds if low - span <= value <= cut + span]
    beyond = [(name, value) for name, value in thresholds if (name, value) not in in_view]
    limit = max([cut, *(v for _, v in in_view)])
    data = {"thresholds": " ".join(f"{name}={value:g}" for name, value in thresholds)}
    shown = highs <= limit
    if limit < high:
        above = int(counts[~shown].sum())
        title += f"\n(axis cut at the {CUT_PERCENTILE:g}th percentile, {limit:.4g}: {above:,} above, max {high:.4g})"
        data["cut"] = f"{limit:g}"
    fig = _figure(4.2, 2.6)
    ax = fig.add_subplot()
    widths = highs[shown] - lows[shown]
    kept = counts[shown] - dropped_counts[shown]
    ax.bar(lows[shown], kept, width=widths, align="edge", color="#72b7b2", label="kept by the step")
    if dropped is not None:
        ax.bar(
            lows[shown],
            dropped_counts[shown],
            width=widths,
            bottom=kept,
            align="edge",
            color="#f58518",
            label="dropped by the step",
        )
        ax.legend(fontsize=6, loc="best")
    _mark_thresholds(ax, in_view, beyond)
    if log_y:
        ax.set_yscale("log")
    ax.set_title(title, fontsize=8)
    ax.set_xlabel(xlabel, fontsize=8)
    ax.tick_params(labelsize=7)
    return _png(fig, alt=f"histogram: {title}", data=data)
