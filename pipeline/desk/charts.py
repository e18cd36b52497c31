"""Pictures the desk draws on the server, so the browser needs no chart library: delivery and engagement
over time as an inline SVG, and a month calendar as weeks of days."""

from __future__ import annotations

import calendar
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta

from markupsafe import Markup, escape

SERIES = (  # kind, label, colour (each ≥ 4.5:1 against white)
    ("sent", "sent", "#1f4e79"),
    ("delivered", "delivered", "#2e7d32"),
    ("opened", "opened", "#8a4b00"),
    ("clicked", "clicked", "#6a1b9a"),
    ("bounced", "bounced", "#b71c1c"),
)
_WIDTH, _HEIGHT, _PAD = 640, 220, 36


def timeline_svg(points: Sequence[tuple[datetime, str]], title: str) -> Markup:
    """Cumulative counts of each kind over time, one line each; an empty note when nothing happened yet."""
    if not points:
        return Markup('<p class="muted">Nothing sent or reported yet.</p>')
    start, end = points[0][0], points[-1][0]
    span = max((end - start).total_seconds(), 60.0)
    totals = {kind: 0 for kind, _, _ in SERIES}
    lines: dict[str, list[tuple[float, int]]] = {kind: [(0.0, 0)] for kind in totals}
    for when, kind in points:
        kind = "bounced" if kind == "blocked" else kind
        if kind in totals:
            totals[kind] += 1
            lines[kind].append(((when - start).total_seconds() / span, totals[kind]))
    top = max(max(totals.values()), 1)

    def xy(fraction: float, count: int) -> str:
        x = _PAD + fraction * (_WIDTH - 2 * _PAD)
        y = _HEIGHT - _PAD - count / top * (_HEIGHT - 2 * _PAD)
        return f"{x:.1f},{y:.1f}"

    parts = [
        f'<svg role="img" aria-labelledby="chart-title" viewBox="0 0 {_WIDTH} {_HEIGHT}" class="chart">',
        f'<title id="chart-title">{escape(title)}</title>',
        f'<line x1="{_PAD}" y1="{_HEIGHT - _PAD}" x2="{_WIDTH - _PAD}" y2="{_HEIGHT - _PAD}" stroke="#555"/>',
        f'<line x1="{_PAD}" y1="{_PAD}" x2="{_PAD}" y2="{_HEIGHT - _PAD}" stroke="#555"/>',
        f'<text x="{_PAD - 6}" y="{_PAD + 4}" text-anchor="end" font-size="11">{top}</text>',
        f'<text x="{_PAD}" y="{_HEIGHT - 12}" font-size="11">{start:%Y-%m-%d %H:%M} UTC</text>',
        f'<text x="{_WIDTH - _PAD}" y="{_HEIGHT - 12}" text-anchor="end" font-size="11">'
        f"{end:%Y-%m-%d %H:%M} UTC</text>",
    ]
    legend_x = _PAD + 8
    for kind, label, colour in SERIES:
        if totals[kind] == 0:
            continue
        steps = lines[kind] + [(1.0, totals[kind])]
        path = " ".join(xy(f, c) for f, c in steps)
        parts.append(f'<polyline fill="none" stroke="{colour}" stroke-width="2" points="{path}"/>')
        parts.append(
            f'<text x="{legend_x}" y="{_PAD - 12}" fill="{colour}" font-size="12">{escape(label)} {totals[kind]}</text>'
        )
        legend_x += 110
    parts.append("</svg>")
    return Markup("".join(parts))  # noqa: S704 - numbers, dates and escaped labels only


@dataclass(frozen=True, slots=True)
class Month:
    first: date
    weeks: list[list[date | None]]  # Monday first; None outside the month

    @property
    def previous(self) -> date:
        return (self.first - timedelta(days=1)).replace(day=1)

    @property
    def following(self) -> date:
        return (self.first + timedelta(days=32)).replace(day=1)


def month_of(day: date) -> Month:
    first = day.replace(day=1)
    weeks = [
        [d or None for d in week]
        for week in calendar.Calendar(firstweekday=0).monthdatescalendar(first.year, first.month)
    ]
    return Month(first, [[d if d and d.month == first.month else None for d in week] for week in weeks])
