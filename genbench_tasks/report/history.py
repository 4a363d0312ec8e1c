"""The history page across nightly runs: held-out success / reward trends per verl version (mean line with
a seed-std band), the generalization gap over time, and the list of runs with their verdicts."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from genbench_tasks.labels import sort_labels
from genbench_tasks.report.data import IndexEntry, as_index_entry, metric_label
from genbench_tasks.report.html import badge, e, fmt, page, table
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


def _runs_table(entries: list[IndexEntry]) -> str:
    rows = []
    for r in reversed(entries):
        link = f'<a href="{e(r.report)}">{e(r.run_id)}</a>' if r.report else e(r.run_id)
        heldout = "<br>".join(
            f"{e(v)}: {e(fmt((r.gap.get(v) or {}).get('heldout_success')))}" for v in sort_labels(r.gap)
        )
        counts = " ".join(
            f'<span class="nw">{badge(v, "v")}&nbsp;{n}</span>'
            for v, n in sorted(
                r.verdict_counts.items(),
                key=lambda kv: VERDICT_ORDER.index(kv[0]) if kv[0] in VERDICT_ORDER else 9,
            )
            if n
        )
        regs = ", ".join(r.regressions[:4]) + (
            f" (+{len(r.regressions) - 4})" if len(r.regressions) > 4 else ""
        )
        rows.append(
            f'<tr><td class="l nw">{e(r.date)}</td><td class="l nw">{link}</td><td class="l">{badge(r.status)}</td>'
            f'<td class="l">{badge(r.validation)}</td><td class="l">{e(", ".join(r.verl_versions))}</td>'
            f'<td class="nw">{heldout or "–"}</td><td class="l">{counts or "–"}</td><td class="l small">{e(regs)}</td></tr>'
        )
    return table(
        [
            ("date", True),
            ("run", True),
            ("status", True),
            ("data", True),
            ("verl versions", True),
            ("held-out success", False),
            ("verdicts", True),
            ("regressions", True),
        ],
        rows,
        "runs",
    )


def render_history(
    summaries: Sequence[IndexEntry | Mapping[str, Any]],
    *,
    latest_href: str | None = "latest/report.html",
    title: str = "genbench nightly history",
) -> str:
    """History page across runs. ``summaries``: ``index.json`` entries (:class:`IndexEntry` or dicts), or
    summary.json dicts carrying ``run_id``/``date``; links are relative to the publish prefix."""
    entries = _order([as_index_entry(s) for s in summaries])
    body = [f"<h1>{e(title)}</h1>"]
    meta = [f"<span><b>{len(entries)}</b> runs</span>"]
    if entries:
        meta.append(f"<span>latest: <b>{e(entries[-1].date)}</b> {e(entries[-1].run_id)}</span>")
    if latest_href and entries:
        meta.append(
            f'<span><a href="{e(latest_href)}">latest report</a> · <a href="index.json">index.json</a></span>'
        )
    body.append('<div class="meta">' + "".join(meta) + "</div>")
    if not entries:
        body.append('<p class="muted">No runs published yet.</p>')
        return page(title, "".join(body))

    roles = {name: fam.role for r in entries for name, fam in r.headline.items() if fam.role}
    heldout = sorted(n for n, role in roles.items() if role == "heldout") or sorted(
        {n for r in entries for n in r.headline}
    )
    body.append('<h2 id="trends">Held-out trends per verl version</h2>')
    charts = [_gap_trend(entries)] if any(r.gap for r in entries) else []
    for family in heldout:
        for metric in ("success_rate", "reward_mean"):
            charts.append(_trend(entries, family, metric))
    body.append(
        '<div class="charts">' + "".join(f'<div class="chart-box">{c}</div>' for c in charts) + "</div>"
    )
    body.append('<h2 id="runs">Runs</h2>')
    body.append(_runs_table(entries))
    last = entries[-1].published_at or entries[-1].date
    return page(title, "".join(body), footer=f"{len(entries)} runs; last published {last}.")
