"""A tiny inline-SVG chart helper (no JS, no external assets): line charts with optional std bands, and
grouped bar charts. All text is escaped; output is a standalone ``<svg>`` element string."""

from __future__ import annotations

import math
from collections.abc import Sequence
from html import escape

from pydantic import BaseModel, Field

#: Okabe-Ito palette (colour-blind safe), without black.
PALETTE = ("#0072B2", "#E69F00", "#009E73", "#CC79A7", "#D55E00", "#56B4E9", "#F0E442", "#999999")


class Series(BaseModel):
    """One line: points ``(x, y)``; optional band ``(x, low, high)`` drawn under it."""

    name: str
    points: list[tuple[float, float]]
    band: list[tuple[float, float, float]] = Field(default_factory=list)
    color: str | None = None
    markers: bool = False
    dashed: bool = False


class BarGroup(BaseModel):
    """One x category with one bar per series name (None = missing)."""

    label: str
    values: dict[str, float | None]


def _fmt(v: float) -> str:
    return f"{v:.1f}".rstrip("0").rstrip(".") if abs(v) < 1e6 else f"{v:.3g}"


def nice_ticks(lo: float, hi: float, count: int = 5) -> list[float]:
    """About ``count`` round tick values covering [lo, hi]."""
    if not math.isfinite(lo) or not math.isfinite(hi):
        return [0.0, 1.0]
    if hi <= lo:
        hi = lo + (abs(lo) or 1.0)
    raw = (hi - lo) / max(count - 1, 1)
    mag = 10 ** math.floor(math.log10(raw))
    step = min((m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw), default=10 * mag)
    start = math.floor(lo / step) * step
    ticks, t = [], start
    while t <= hi + step * 1e-9:
        ticks.append(round(t, 12))
        t += step
    if ticks[-1] < hi:
        ticks.append(round(t, 12))
    return ticks


def _tick_label(v: float) -> str:
    if v == 0:
        return "0"
    if abs(v) >= 1000 or abs(v) < 0.01:
        return f"{v:.3g}"
    return f"{v:.2f}".rstrip("0").rstrip(".")


class _Frame:
    """Maps data coordinates to pixels inside the plot area."""

    def __init__(
        self,
        width: int,
        height: int,
        xr: tuple[float, float],
        yr: tuple[float, float],
        top: int,
        x_pad: float = 0,
    ):
        self.left, self.right, self.top, self.bottom = 52, 12, top, 34
        self.x_pad = x_pad
        self.width, self.height = width, height
        self.x0, self.x1 = xr if xr[1] > xr[0] else (xr[0] - 0.5, xr[0] + 0.5)
        self.y0, self.y1 = yr if yr[1] > yr[0] else (yr[0] - 0.5, yr[0] + 0.5)

    @property
    def pw(self) -> float:
        return self.width - self.left - self.right

    @property
    def ph(self) -> float:
        return self.height - self.top - self.bottom

    def x(self, v: float) -> float:
        return self.left + self.x_pad + (v - self.x0) / (self.x1 - self.x0) * (self.pw - 2 * self.x_pad)

    def y(self, v: float) -> float:
        return self.top + (1 - (v - self.y0) / (self.y1 - self.y0)) * self.ph


def _open(width: int, height: int, title: str, css_class: str) -> list[str]:
    return [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="{escape(css_class)}" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" role="img" aria-label="{escape(title)}">',
        f"<title>{escape(title)}</title>",
        f'<text x="{width / 2:.0f}" y="14" text-anchor="middle" class="chart-title" font-size="12" '
        f'font-weight="600">{escape(title)}</text>',
    ]


def _y_axis(f: _Frame, ticks: list[float], y_label: str) -> list[str]:
    out = []
    for t in ticks:
        y = f.y(t)
        out.append(
            f'<line x1="{f.left}" x2="{f.width - f.right}" y1="{y:.1f}" y2="{y:.1f}" stroke="#e3e3e3" '
            f'stroke-width="1"/>'
        )
        out.append(
            f'<text x="{f.left - 6}" y="{y + 3.5:.1f}" text-anchor="end" font-size="10" fill="#555">'
            f"{escape(_tick_label(t))}</text>"
        )
    if y_label:
        cy = f.top + f.ph / 2
        out.append(
            f'<text x="12" y="{cy:.1f}" transform="rotate(-90 12 {cy:.1f})" text-anchor="middle" '
            f'font-size="10" fill="#555">{escape(y_label)}</text>'
        )
    out.append(
        f'<line x1="{f.left}" x2="{f.left}" y1="{f.top}" y2="{f.top + f.ph:.1f}" stroke="#888" stroke-width="1"/>'
    )
    out.append(
        f'<line x1="{f.left}" x2="{f.width - f.right}" y1="{f.top + f.ph:.1f}" y2="{f.top + f.ph:.1f}" '
        f'stroke="#888" stroke-width="1"/>'
    )
    return out


def _legend(names: Sequence[tuple[str, str]], width: int) -> tuple[list[str], int]:
    """Legend rows under the title; returns the elements and the height used."""
    out, x, y = [], 8.0, 30.0
    for name, color in names:
        w = 18 + 6.2 * len(name) + 12
        if x + w > width - 8 and x > 8:
            x, y = 8.0, y + 14
        out.append(f'<rect x="{x:.1f}" y="{y - 8:.1f}" width="12" height="8" fill="{escape(color)}" rx="1"/>')
        out.append(f'<text x="{x + 16:.1f}" y="{y:.1f}" font-size="10" fill="#333">{escape(name)}</text>')
        x += w
    return out, int(y) + 8


def line_chart(
    series: Sequence[Series],
    *,
    title: str,
    width: int = 520,
    height: int = 240,
    x_label: str = "",
    y_label: str = "",
    x_ticks: Sequence[tuple[float, str]] | None = None,
    y_range: tuple[float | None, float | None] = (None, None),
    x_marks: Sequence[tuple[float, str]] = (),
) -> str:
    """A line chart: one ``<path>`` per series, bands as filled ``<path>``; ``x_ticks`` = (x, label);
    ``x_marks`` = (x, label): a labelled vertical dashed line each (e.g. a change night)."""
    colored = [
        s.model_copy(update={"color": s.color or PALETTE[i % len(PALETTE)]}) for i, s in enumerate(series)
    ]
    xs = [p[0] for s in colored for p in s.points] + [b[0] for s in colored for b in s.band]
    ys = [p[1] for s in colored for p in s.points] + [v for s in colored for b in s.band for v in b[1:]]
    xs = [v for v in xs if math.isfinite(v)]
    ys = [v for v in ys if math.isfinite(v)]
    out = _open(width, height, title, "chart line-chart")
    legend, legend_h = _legend([(s.name, s.color or "#000") for s in colored], width)
    out += legend
    if not xs or not ys:
        out.append(
            f'<text x="{width / 2:.0f}" y="{height / 2:.0f}" text-anchor="middle" font-size="11" fill="#777">'
            "no data</text></svg>"
        )
        return "".join(out)
    lo = y_range[0] if y_range[0] is not None else min(ys)
    hi = y_range[1] if y_range[1] is not None else max(ys)
    pad = (hi - lo) * 0.05 if hi > lo else 0.0
    ticks = nice_ticks(lo - (pad if y_range[0] is None else 0), hi + (pad if y_range[1] is None else 0))
    x_pad = 30.0 if x_ticks is not None else 4.0  # room for centred category labels at both ends
    f = _Frame(width, height, (min(xs), max(xs)), (ticks[0], ticks[-1]), top=legend_h + 4, x_pad=x_pad)
    out += _y_axis(f, ticks, y_label)
    if x_ticks is None:
        x_ticks = [(t, _tick_label(t)) for t in nice_ticks(f.x0, f.x1, 6) if f.x0 <= t <= f.x1]
    step = max(1, math.ceil(len(x_ticks) / max(1, int(f.pw // 60))))
    for i, (xv, label) in enumerate(x_ticks):
        if i % step:
            continue
        x = f.x(xv)
        out.append(
            f'<text x="{x:.1f}" y="{f.top + f.ph + 13:.1f}" text-anchor="middle" font-size="10" fill="#555">'
            f"{escape(label)}</text>"
        )
    if x_label:
        out.append(
            f'<text x="{f.left + f.pw / 2:.1f}" y="{height - 4}" text-anchor="middle" font-size="10" '
            f'fill="#555">{escape(x_label)}</text>'
        )
    for xv, label in x_marks:
        x = f.x(xv)
        out.append(
            f'<line class="mark" x1="{x:.1f}" x2="{x:.1f}" y1="{f.top}" y2="{f.top + f.ph:.1f}" stroke="#9b1c1c" '
            f'stroke-width="1.2" stroke-dasharray="3 2"/>'
            f'<text x="{x + 3:.1f}" y="{f.top + 10}" font-size="10" fill="#9b1c1c">{escape(label)}</text>'
        )
    for s in colored:
        band = [b for b in s.band if all(math.isfinite(v) for v in b)]
        if len(band) >= 2:
            upper = " L ".join(f"{f.x(x):.1f} {f.y(h):.1f}" for x, _, h in band)
            lower = " L ".join(f"{f.x(x):.1f} {f.y(low):.1f}" for x, low, _ in reversed(band))
            out.append(
                f'<path class="band" d="M {upper} L {lower} Z" fill="{escape(s.color or "")}" '
                f'fill-opacity="0.16" stroke="none"/>'
            )
        elif len(band) == 1:
            x, low, h = band[0]
            out.append(
                f'<line class="band" x1="{f.x(x):.1f}" x2="{f.x(x):.1f}" y1="{f.y(low):.1f}" y2="{f.y(h):.1f}" '
                f'stroke="{escape(s.color or "")}" stroke-opacity="0.4" stroke-width="6"/>'
            )
    for s in colored:
        pts = [(x, y) for x, y in s.points if math.isfinite(x) and math.isfinite(y)]
        if not pts:
            continue
        d = "M " + " L ".join(f"{f.x(x):.1f} {f.y(y):.1f}" for x, y in pts)
        dash = ' stroke-dasharray="4 3"' if s.dashed else ""
        out.append(
            f'<path class="series" d="{d}" fill="none" stroke="{escape(s.color or "")}" stroke-width="1.6"'
            f"{dash}><title>{escape(s.name)}</title></path>"
        )
        if s.markers or len(pts) == 1:
            for x, y in pts:
                out.append(
                    f'<circle cx="{f.x(x):.1f}" cy="{f.y(y):.1f}" r="2.6" fill="{escape(s.color or "")}">'
                    f"<title>{escape(s.name)}: {escape(_fmt(y) if abs(y) >= 10 else f'{y:.3f}')}</title></circle>"
                )
    out.append("</svg>")
    return "".join(out)


def bar_chart(
    groups: Sequence[BarGroup],
    *,
    title: str,
    series_names: Sequence[str],
    width: int = 520,
    height: int = 220,
    y_label: str = "",
    y_range: tuple[float | None, float | None] = (None, None),
) -> str:
    """Grouped vertical bars: one group per category, one bar per series name."""
    colors = {name: PALETTE[i % len(PALETTE)] for i, name in enumerate(series_names)}
    out = _open(width, height, title, "chart bar-chart")
    legend, legend_h = _legend(list(colors.items()), width)
    out += legend
    vals = [v for g in groups for v in g.values.values() if v is not None and math.isfinite(v)]
    if not groups or not vals:
        out.append(
            f'<text x="{width / 2:.0f}" y="{height / 2:.0f}" text-anchor="middle" font-size="11" fill="#777">'
            "no data</text></svg>"
        )
        return "".join(out)
    lo = y_range[0] if y_range[0] is not None else min(0.0, min(vals))
    hi = y_range[1] if y_range[1] is not None else max(0.0, max(vals))
    ticks = nice_ticks(lo, hi)
    f = _Frame(width, height, (0.0, float(len(groups))), (ticks[0], ticks[-1]), top=legend_h + 4)
    out += _y_axis(f, ticks, y_label)
    slot = f.pw / len(groups)
    bar_w = slot * 0.8 / max(1, len(series_names))
    zero = f.y(max(f.y0, min(0.0, f.y1)))
    for gi, g in enumerate(groups):
        gx = f.left + gi * slot + slot * 0.1
        for si, name in enumerate(series_names):
            v = g.values.get(name)
            if v is None or not math.isfinite(v):
                continue
            y = f.y(v)
            top, h = min(y, zero), abs(zero - y)
            out.append(
                f'<rect x="{gx + si * bar_w:.1f}" y="{top:.1f}" width="{bar_w * 0.92:.1f}" height="{h:.1f}" '
                f'fill="{colors[name]}"><title>{escape(g.label)} {escape(name)}: {v:.3f}</title></rect>'
            )
        out.append(
            f'<text x="{f.left + gi * slot + slot / 2:.1f}" y="{f.top + f.ph + 13:.1f}" text-anchor="middle" '
            f'font-size="10" fill="#555">{escape(g.label)}</text>'
        )
    out.append("</svg>")
    return "".join(out)
