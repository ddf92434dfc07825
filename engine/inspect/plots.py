"""Plots for the report: SVG drawn by this module from counted bins, embedded as inline `<img>` data.

Our own SVG, not matplotlib: the report draws ~40 plots on every run, nightly reruns included, and matplotlib
spent ~0.17 CPU-s on each (6.5 CPU-s a report, more than the rest of a small night's rebuild); writing the few
hundred elements of a bar chart costs about a millisecond. Each plot is a standalone SVG document in an `<img>`
(no script, nothing shared with the page), its alt text the title, its thresholds in `data-thresholds`.
"""

from __future__ import annotations

import base64
import html
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

THRESHOLD_COLOUR = "#e45756"
KEPT_COLOUR = "#72b7b2"
DROPPED_COLOUR = "#f58518"
BAR_COLOUR = "#4c78a8"
CUT_PERCENTILE = 99.5
FONT = 11
CHAR_WIDTH = 0.6 * FONT
"""A sans-serif character's average advance, for laying out labels without a font engine."""


# ----------------------------------------------------------------------------------------------------------
# Drawing


def _number(value: float) -> str:
    return f"{value:.2f}".rstrip("0").rstrip(".")


@dataclass
class _Canvas:
    """SVG elements of one plot, in pixels (origin top left)."""

    width: float
    height: float
    parts: list[str] = field(default_factory=list)

    def rect(self, x: float, y: float, w: float, h: float, fill: str) -> None:
        if w > 0 and h > 0:
            n = _number
            self.parts.append(f'<rect x="{n(x)}" y="{n(y)}" width="{n(w)}" height="{n(h)}" fill="{fill}"/>')

    def line(self, x1: float, y1: float, x2: float, y2: float, stroke: str, *, dash: str = "", cls: str = "") -> None:
        n = _number
        extra = (f' stroke-dasharray="{dash}"' if dash else "") + (f' class="{cls}"' if cls else "")
        self.parts.append(
            f'<line x1="{n(x1)}" y1="{n(y1)}" x2="{n(x2)}" y2="{n(y2)}" stroke="{stroke}" stroke-width="1.2"{extra}/>'
        )

    def text(
        self, x: float, y: float, content: str, *, anchor: str = "start", size: float = FONT, fill: str = "#222"
    ) -> None:
        halo = ' stroke="#fff" stroke-width="3" paint-order="stroke"' if fill == THRESHOLD_COLOUR else ""
        self.parts.append(
            f'<text x="{_number(x)}" y="{_number(y)}" font-size="{size:g}" text-anchor="{anchor}" fill="{fill}"'
            f"{halo}>{html.escape(content)}</text>"
        )

    def arrow(self, x_from: float, x_to: float, y: float, colour: str) -> None:
        """A horizontal arrow pointing at `x_to` (an edge of the axis)."""
        self.line(x_from, y, x_to, y, colour, cls="threshold")
        head = 6 if x_to > x_from else -6
        corners = ((x_to, y), (x_to - head, y - 3.5), (x_to - head, y + 3.5))
        points = " ".join(f"{_number(a)},{_number(b)}" for a, b in corners)
        self.parts.append(f'<polygon points="{points}" fill="{colour}" class="threshold"/>')

    def svg(self) -> str:
        return (
            f'<svg xmlns="http://www.w3.org/2000/svg" width="{_number(self.width)}" height="{_number(self.height)}"'
            f' viewBox="0 0 {_number(self.width)} {_number(self.height)}" font-family="sans-serif">'
            f'<rect width="100%" height="100%" fill="#fff"/>{"".join(self.parts)}</svg>'
        )


def _img(canvas: _Canvas, *, alt: str = "plot", data: dict[str, str] | None = None) -> str:
    """The plot as an <img> tag with the SVG inline (base64); `data` becomes data-* attributes."""
    encoded = base64.b64encode(canvas.svg().encode("utf-8")).decode("ascii")
    attributes = "".join(f' data-{key}="{html.escape(value)}"' for key, value in (data or {}).items())
    return f'<img alt="{html.escape(alt)}"{attributes} src="data:image/svg+xml;base64,{encoded}">'


@dataclass(frozen=True)
class _Scale:
    """A linear or log mapping of a value range onto a pixel range."""

    low: float
    high: float
    start: float
    end: float
    log: bool = False

    def __call__(self, value: float) -> float:
        if self.log:
            value, low, high = math.log10(max(value, self.low)), math.log10(self.low), math.log10(self.high)
        else:
            low, high = self.low, self.high
        return self.start + (value - low) / ((high - low) or 1.0) * (self.end - self.start)

    def ticks(self) -> list[float]:
        """Round values to label: powers of ten on a log axis, 1-2-5 steps on a linear one."""
        if self.log:
            first, last = math.ceil(math.log10(self.low)), math.floor(math.log10(self.high))
            step = max(1, (last - first + 1) // 6 + 1)
            return [10.0**e for e in range(first, last + 1, step)]
        span = (self.high - self.low) or 1.0
        raw = span / 5
        magnitude = 10 ** math.floor(math.log10(raw))
        step = next(m * magnitude for m in (1, 2, 5, 10) if m * magnitude >= raw)
        first = math.ceil(self.low / step - 1e-9) * step
        count = int(math.floor((self.high - first) / step + 1e-9)) + 1
        return [round(first + i * step, 12) for i in range(count)]


def _tick_label(value: float) -> str:
    if value != 0 and (abs(value) >= 1e6 or abs(value) < 1e-3):
        return f"{value:.0e}".replace("e+0", "e").replace("e-0", "e-")
    if float(value).is_integer():
        return f"{int(value):,}"
    return f"{value:g}"


def _x_axis(canvas: _Canvas, x: _Scale, bottom: float, xlabel: str) -> None:
    canvas.line(x.start, bottom, x.end, bottom, "#555")
    for tick in x.ticks():
        at = x(tick)
        canvas.line(at, bottom, at, bottom + 4, "#555")
        canvas.text(at, bottom + 15, _tick_label(tick), anchor="middle", size=FONT - 1)
    if xlabel:
        canvas.text((x.start + x.end) / 2, bottom + 29, xlabel, anchor="middle")


def _y_axis(canvas: _Canvas, y: _Scale, left: float) -> None:
    canvas.line(left, y.start, left, y.end, "#555")
    for tick in y.ticks():
        at = y(tick)
        canvas.line(left - 4, at, left, at, "#555")
        canvas.text(left - 6, at + 4, _tick_label(tick), anchor="end", size=FONT - 1)


# ----------------------------------------------------------------------------------------------------------
# The plots


def bar_chart(
    labels: Sequence[str], values: Sequence[float], *, xlabel: str, log: bool = False, fmt: str = ",.0f"
) -> str:
    """Horizontal bars, the first at the top, each labelled with its value."""
    row = 22
    texts = [f"{value:{fmt}}" for value in values]
    left = 12 + CHAR_WIDTH * max([len(label) for label in labels] or [1])
    right = 800 - 16 - CHAR_WIDTH * max([len(t) for t in texts] or [1])
    top, height = 10.0, 10 + row * len(labels) + 44
    canvas = _Canvas(800, height)
    largest = max([float(v) for v in values] or [1.0]) or 1.0
    smallest = min([float(v) for v in values if v > 0] or [1.0])
    low = 10 ** math.floor(math.log10(smallest) - 0.3) if log else 0.0
    x = _Scale(low, largest * (1.3 if log else 1.02), left, right, log=log)
    bottom = top + row * len(labels)
    for index, (label, value, text) in enumerate(zip(labels, values, texts, strict=True)):
        y = top + index * row
        end = x(float(value)) if value > 0 else left
        canvas.rect(left, y + 3, end - left, row - 6, BAR_COLOUR)
        canvas.text(left - 6, y + row / 2 + 4, label, anchor="end")
        canvas.text(end + 4, y + row / 2 + 4, text, size=FONT - 1)
    _x_axis(canvas, x, bottom, xlabel)
    canvas.line(left, top, left, bottom, "#555")
    return _img(canvas, alt=f"bar chart: {xlabel}")


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
    """A histogram drawn from counted bins (`engine.histograms`), each threshold a labelled dashed line.

    With `dropped` (counts per bin of the documents the step dropped), the bars are stacked: kept, dropped. With
    200 documents or more, a long tail (reaching more than half the drawn width beyond the cut) is cut where
    `CUT_PERCENTILE`% of the documents are reached, and the title says how many lie beyond. A threshold far outside
    the data (more than the data's width beyond it) would squash the bars into one: it is drawn as an arrow at the
    edge of the axis, labelled with its value. The <img> carries the thresholds in `data-thresholds`, the cut in
    `data-cut`.
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
    lines = title.split("\n")
    legend = dropped is not None
    top = 8 + 14 * len(lines) + (16 if legend else 0)
    canvas = _Canvas(420, top + 150 + 36)
    for index, text in enumerate(lines):
        canvas.text(210, 18 + 14 * index, text, anchor="middle", size=FONT if index == 0 else FONT - 1.5)
    if legend:
        row = 8 + 14 * len(lines) + 2
        for offset, colour, label in (
            (60, KEPT_COLOUR, "kept by the step"),
            (220, DROPPED_COLOUR, "dropped by the step"),
        ):
            canvas.rect(offset, row, 10, 10, colour)
            canvas.text(offset + 14, row + 9, label, size=FONT - 1.5)
    left, right, bottom = 56.0, 408.0, top + 150
    x_low = min([low, *(v for _, v in in_view)])
    pad = 0.03 * ((limit - x_low) or 1.0)
    x = _Scale(x_low - pad, limit + pad, left, right)
    stacked = counts[shown]
    tallest = float(stacked.max()) if len(stacked) else 1.0
    y = _Scale(0.7 if log_y else 0.0, tallest * (2.0 if log_y else 1.08), bottom, top, log=log_y)
    base = y.low
    for lo, hi, count, gone in zip(lows[shown], highs[shown], stacked, dropped_counts[shown], strict=True):
        kept = count - gone
        x0, x1 = x(float(lo)), x(float(hi))
        if kept > 0:
            canvas.rect(x0, y(kept), x1 - x0, y(base) - y(kept), KEPT_COLOUR)
        if gone > 0:
            start = kept if kept > 0 else base
            canvas.rect(x0, y(kept + gone), x1 - x0, y(start) - y(kept + gone), DROPPED_COLOUR)
    _x_axis(canvas, x, bottom, xlabel)
    _y_axis(canvas, y, left)
    for name, value in in_view:
        at = x(value)
        canvas.line(at, top, at, bottom, THRESHOLD_COLOUR, dash="5,3", cls="threshold")
        on_right = at > (left + right) / 2
        label_x = at - 3 if on_right else at + 3
        canvas.text(
            label_x,
            top + 0.4 * (bottom - top),
            f"{name}={value:g}",
            anchor="end" if on_right else "start",
            size=FONT - 1.5,
            fill=THRESHOLD_COLOUR,
        )
    for row, (name, value) in enumerate(beyond):
        at_right = value > limit
        height = top + (0.1 + 0.12 * row) * (bottom - top)
        edge = right if at_right else left
        canvas.arrow(edge - 26 if at_right else edge + 26, edge, height, THRESHOLD_COLOUR)
        canvas.text(
            edge - 30 if at_right else edge + 30,
            height + 4,
            f"{name}={value:g} (off the axis)",
            anchor="end" if at_right else "start",
            size=FONT - 1.5,
            fill=THRESHOLD_COLOUR,
        )
    return _img(canvas, alt=f"histogram: {title}", data=data)
