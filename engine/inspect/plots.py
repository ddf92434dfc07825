"""Plots for the report: matplotlib figures drawn off-screen and embedded as inline PNG."""

from __future__ import annotations

import base64
import io
from collections.abc import Sequence
from typing import Any

import numpy as np


def _png(fig: Any) -> str:
    """A matplotlib figure as an <img> tag with the PNG inline (base64)."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100, bbox_inches="tight")
    data = base64.b64encode(buffer.getvalue()).decode("ascii")
    return f'<img alt="plot" src="data:image/png;base64,{data}">'


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
    """A histogram with each threshold drawn as a labelled vertical line.

    With `dropped` (a mask), the bars are stacked: documents the step kept, and those it dropped. A long tail is
    cut at the 99.5th percentile (thresholds stay in view) and the title says so.
    """
    fig = _figure(4.2, 2.6)
    ax = fig.add_subplot()
    finite = np.isfinite(values)
    shown = values[finite]
    low, high = (float(shown.min()), float(shown.max())) if len(shown) else (0.0, 1.0)
    cut = float(np.percentile(shown, 99.5)) if len(shown) >= 200 else high
    limit = max([cut, *(v for _, v in thresholds)])
    if limit < high and isinstance(bins, int):
        title += f" (cut at {limit:.4g}; max {high:.4g})"
        bins = np.linspace(low, limit, bins + 1)
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
    left, right = ax.get_xlim()
    for name, value in thresholds:
        ax.axvline(value, color="#e45756", linestyle="--", linewidth=1.2)
        on_right = value > (left + right) / 2
        ax.text(
            value,
            0.6,
            f" {name}={value:g} ",
            transform=ax.get_xaxis_transform(),
            color="#e45756",
            fontsize=7,
            va="top",
            ha="right" if on_right else "left",
        )
    if log_y:
        ax.set_yscale("log")
    ax.set_title(title, fontsize=8)
    ax.set_xlabel(xlabel, fontsize=8)
    ax.tick_params(labelsize=7)
    return _png(fig)
