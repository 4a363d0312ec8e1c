"""The history page across nightly runs: held-out success / reward trends per verl version (mean line with
a seed-std band), the generalization gap over time, and the list of runs with their verdicts."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from genbench_tasks.labels import sort_labels
from genbench_tasks.report.data import IndexEntry, as_index_entry, metric_label
from genbench_tasks.report.html import markup, render
from genbench_tasks.report.run import VERDICT_ORDER
from genbench_tasks.report.svg import Series, line_chart


def _order(entries: list[IndexEntry]) -> list[IndexEntry]:
    return sorted(entries, key=IndexEntry.order_key)


def _trend(entries: list[IndexEntry], family: str, metric: str) -> str:
    versions = sort_labels(
        v for r in entries for v in (r.headline.get(family).versions if family in r.headline else {})
    )
    series = []
    for v in versions:
        pts, band = [], []
        for i, r in enumerate(entries):
            fam = r.headline.get(family)
            s = fam.versions.get(v, {}).get(metric) if fam else None
            if s is None or s.mean is None:
                continue
            pts.append((float(i), s.mean))
            if s.std is not None:
                band.append((float(i), s.mean - s.std, s.mean + s.std))
        if pts:
            series.append(Series(name=v, points=pts, band=band, markers=True, dashed=v == "sft"))
    ticks = [(float(i), r.date or r.run_key) for i, r in enumerate(entries)]
    return line_chart(
        series,
        title=f"{family}: {metric_label(metric)} (mean ± seed std)",
        x_ticks=ticks,
        y_label=metric_label(metric),
        width=540,
        height=250,
    )


def _gap_trend(entries: list[IndexEntry]) -> str:
    versions = sort_labels(v for r in entries for v in r.gap)
    series = []
    for v in versions:
        pts = [
            (float(i), g)
            for i, r in enumerate(entries)
            if (g := (r.gap.get(v) or {}).get("heldout_success")) is not None
        ]
        if pts:
            series.append(Series(name=v, points=pts, markers=True, dashed=v == "sft"))
    ticks = [(float(i), r.date or r.run_key) for i, r in enumerate(entries)]
    return line_chart(
        series,
        title="Held-out success, all held-out families",
        x_ticks=ticks,
        y_label="success rate",
        width=540,
        height=250,
    )


def _run_rows(entries: list[IndexEntry]) -> list[dict]:
    rows = []
    for r in reversed(entries):
        counts = sorted(
            ((v, n) for v, n in r.verdict_counts.items() if n),
            key=lambda kv: VERDICT_ORDER.index(kv[0]) if kv[0] in VERDICT_ORDER else 9,
        )
        more = f" (+{len(r.regressions) - 4})" if len(r.regressions) > 4 else ""
        rows.append(
            {
                "entry": r,
                "versions": ", ".join(r.verl_versions),
                "heldout": [(v, (r.gap.get(v) or {}).get("heldout_success")) for v in sort_labels(r.gap)],
                "counts": counts,
                "regressions": ", ".join(r.regressions[:4]) + more,
            }
        )
    return rows


def render_history(
    summaries: Sequence[IndexEntry | Mapping[str, Any]],
    *,
    latest_href: str | None = "latest/report.html",
    title: str = "genbench nightly history",
) -> str:
    """History page across runs. ``summaries``: ``index.json`` entries (:class:`IndexEntry` or dicts), or
    summary.json dicts carrying ``run_id``/``date``; links are relative to the publish prefix."""
    entries = _order([as_index_entry(s) for s in summaries])
    context: dict[str, Any] = {"title": title, "entries": entries, "latest_href": latest_href, "footer": ""}
    if entries:
        roles = {name: fam.role for r in entries for name, fam in r.headline.items() if fam.role}
        heldout = sorted(n for n, role in roles.items() if role == "heldout") or sorted(
            {n for r in entries for n in r.headline}
        )
        charts = [_gap_trend(entries)] if any(r.gap for r in entries) else []
        charts += [_trend(entries, f, m) for f in heldout for m in ("success_rate", "reward_mean")]
        last = entries[-1].published_at or entries[-1].date
        context.update(
            trend_charts=[markup(c) for c in charts],
            rows=_run_rows(entries),
            footer=f"{len(entries)} runs; last published {last}.",
        )
    return render("history.html", **context)
