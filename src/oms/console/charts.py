"""Charts drawn on the server as inline SVG: no chart library, no script, nothing to download.

Each chart is a small, accessible picture (``role="img"`` with a title and a description that
says what it shows); the page always prints the same numbers in a table beside it, so a screen
reader, a text browser or a copy-paste gets the data, not a picture of it. Pure functions of
their input (no I/O): testable without a browser.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from markupsafe import Markup, escape

WIDTH = 640
HEIGHT = 220
PAD_LEFT = 56
PAD_BOTTOM = 36
PAD_TOP = 12
PAD_RIGHT = 12
BAR = "#1f5fa8"  # 6.3:1 on white
ALT = "#8a4b08"
GRID = "#c9ced6"
TEXT = "#1c2430"

_ids = itertools.count(1)


@dataclass(frozen=True, slots=True)
class Point:
    label: str
    value: float


def _nice_max(value: float) -> float:
    """A round axis maximum at or above ``value`` (1, 2, 2.5 or 5 times a power of ten)."""
    if value <= 0:
        return 1.0
    magnitude = 10 ** (len(str(int(value))) - 1) if value >= 1 else 1.0
    for step in (1, 2, 2.5, 5, 10):
        if value <= step * magnitude:
            return step * magnitude
    return 10 * magnitude  # pragma: no cover


def bar_chart(
    *,
    title: str,
    points: Sequence[Point],
    fmt: Callable[[float], str] = lambda v: f"{v:g}",
    color: str = BAR,
) -> Markup:
    """A vertical bar chart of ``points`` with a labelled y axis (0 .. a round maximum) and
    every few x labels (all when they fit)."""
    uid = f"chart-{next(_ids)}"
    top = _nice_max(max((p.value for p in points), default=0.0))
    plot_w = WIDTH - PAD_LEFT - PAD_RIGHT
    plot_h = HEIGHT - PAD_TOP - PAD_BOTTOM
    n = max(1, len(points))
    slot = plot_w / n
    bar_w = max(1.0, slot * 0.7)
    label_every = max(1, round(n / 10))
    parts = [
        f'<svg class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" '
        f'aria-labelledby="{uid}-t {uid}-d" xmlns="http://www.w3.org/2000/svg">',
        f'<title id="{uid}-t">{escape(title)}</title>',
        f'<desc id="{uid}-d">{escape(_describe(points, fmt))}</desc>',
    ]
    for i in range(5):  # horizontal grid and y labels
        value = top * i / 4
        y = PAD_TOP + plot_h - plot_h * i / 4
        parts.append(
            f'<line x1="{PAD_LEFT}" x2="{WIDTH - PAD_RIGHT}" y1="{y:.1f}" y2="{y:.1f}" '
            f'stroke="{GRID}" stroke-width="1"/>'
            f'<text x="{PAD_LEFT - 6}" y="{y + 4:.1f}" text-anchor="end" font-size="11" '
            f'fill="{TEXT}">{escape(fmt(value))}</text>'
        )
    for i, p in enumerate(points):
        h = plot_h * (p.value / top) if top else 0.0
        x = PAD_LEFT + i * slot + (slot - bar_w) / 2
        y = PAD_TOP + plot_h - h
        parts.append(
            f'<rect x="{x:.1f}" y="{y:.1f}" width="{bar_w:.1f}" height="{h:.1f}" '
            f'fill="{color}"><title>{escape(p.label)}: {escape(fmt(p.value))}</title></rect>'
        )
        if i % label_every == 0:
            parts.append(
                f'<text x="{x + bar_w / 2:.1f}" y="{HEIGHT - PAD_BOTTOM + 16}" '
                f'text-anchor="middle" font-size="11" fill="{TEXT}">{escape(p.label)}</text>'
            )
    parts.append("</svg>")
    return Markup("".join(parts))


def hbar_chart(
    *,
    title: str,
    points: Sequence[Point],
    fmt: Callable[[float], str] = lambda v: f"{v:g}",
    color: str = BAR,
    maximum: float | None = None,
) -> Markup:
    """Horizontal bars, one row per point, the value printed at the end of each bar (for a
    few named figures: durations, rates, counts by status)."""
    uid = f"chart-{next(_ids)}"
    row_h = 28
    label_w = 150
    height = PAD_TOP + row_h * max(1, len(points)) + 8
    top = maximum if maximum is not None else _nice_max(max((p.value for p in points), default=0))
    plot_w = WIDTH - label_w - 90
    parts = [
        f'<svg class="chart" viewBox="0 0 {WIDTH} {height}" role="img" '
        f'aria-labelledby="{uid}-t {uid}-d" xmlns="http://www.w3.org/2000/svg">',
        f'<title id="{uid}-t">{escape(title)}</title>',
        f'<desc id="{uid}-d">{escape(_describe(points, fmt))}</desc>',
    ]
    for i, p in enumerate(points):
        y = PAD_TOP + i * row_h
        w = plot_w * min(1.0, p.value / top) if top else 0.0
        parts.append(
            f'<text x="{label_w - 8}" y="{y + 17}" text-anchor="end" font-size="14" '
            f'fill="{TEXT}">{escape(p.label)}</text>'
            f'<rect x="{label_w}" y="{y + 4}" width="{plot_w}" height="18" fill="#eef1f5"/>'
            f'<rect x="{label_w}" y="{y + 4}" width="{w:.1f}" height="18" fill="{color}"/>'
            f'<text x="{label_w + plot_w + 8}" y="{y + 17}" font-size="14" '
            f'fill="{TEXT}">{escape(fmt(p.value))}</text>'
        )
    parts.append("</svg>")
    return Markup("".join(parts))


def _describe(points: Sequence[Point], fmt: Callable[[float], str]) -> str:
    if not points:
        return "No data in this window."
    shown = ", ".join(f"{p.label}: {fmt(p.value)}" for p in points[:12])
    more = f" and {len(points) - 12} more (see the table)" if len(points) > 12 else ""
    return shown + more
