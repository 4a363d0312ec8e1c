"""The per-run HTML report: study tables with CIs per family, generalization gap, regression verdicts,
data validation, sample links and training reward curves. Links are relative to the run root."""

from __future__ import annotations

from pathlib import Path

from genbench_tasks.artifacts.layout import (
    COMPARISON,
    PUBLISHED,
    RUN_HISTORY,
    RUN_MANIFEST,
    SUMMARY,
    VERDICTS,
)
from genbench_tasks.labels import display_name, label_key, sort_labels
from genbench_tasks.report.data import (
    ComparisonView,
    FamilyView,
    RunData,
    load_run,
    metric_label,
)
from genbench_tasks.report.html import badge, e, fmt, fmt_p, page, stat_cell, table
from genbench_tasks.report.svg import BarGroup, Series, bar_chart, line_chart

VERDICT_ORDER = ("regression", "improvement", "inconclusive", "no change", "insufficient data")
MAX_TREND_CHARTS = 12


def _header(run: RunData, history_href: str | None) -> str:
    m = run.manifest
    meta = [
        ("status", badge(run.status)),
        ("date", e(run.date)),
        ("run id", e(run.run_id)),
        ("profile", e(m.profile or "–")),
        ("verl", e(", ".join(m.verl_versions) or "–")),
        ("baseline", e(m.baseline_version or "–")),
        ("seeds", e(", ".join(str(s) for s in m.seeds) or "–")),
        ("data validation", badge(run.validation.status)),
    ]
    for key, value in (
        ("code_version", m.code_version),
        ("data_hash", m.data_hash),
        ("profile_hash", m.profile_hash),
    ):
        if value:
            meta.append((key.replace("_", " "), f"<code>{e(value[:16])}</code>"))
    layout = run.layout
    links = [(RUN_MANIFEST, RUN_MANIFEST)]
    if run.study is not None:
        links.append((SUMMARY, SUMMARY))
    if run.verdicts is not None:
        links.append((VERDICTS, VERDICTS))
    if layout.history_rows.is_file():
        links.append(("history rows", RUN_HISTORY))
    if layout.comparison.is_file():
        links.append((COMPARISON, COMPARISON))
    links.append(("published objects", PUBLISHED))
    if history_href:
        links.insert(0, ("history of all runs", history_href))
    toc = [
        ("#verdicts", "Verdicts"),
        ("#regressions", "Tonight vs baseline"),
        ("#gap", "Generalization gap"),
        ("#baselines", "verl vs baselines"),
        ("#tables", "Study tables"),
        ("#training", "Training reward"),
        ("#validation", "Data validation"),
        ("#samples", "Samples"),
    ]
    return (
        f"<h1>genbench nightly: {e(run.run_key)}</h1>"
        + '<div class="meta">'
        + "".join(f"<span>{e(k)}: <b>{v}</b></span>" for k, v in meta)
        + "</div>"
        + '<div class="meta">'
        + " · ".join(f'<a href="{e(href)}">{e(text)}</a>' for text, href in links)
        + "</div>"
        + '<nav class="toc">'
        + "".join(f'<a href="{e(h)}">{e(t)}</a>' for h, t in toc)
        + "</nav>"
    )


def _warnings(run: RunData) -> str:
    items = list(run.summary.warnings) if run.summary else []
    items += run.read_warnings
    missing = run.manifest.missing_cells
    if missing:
        items.append(f"{len(missing)} cells missing (failed or not run): {', '.join(map(str, missing))}")
    if run.summary is None:
        items.append(f"no summary.json: the run did not reach aggregation (status: {run.status})")
    if not items:
        return ""
    return (
        '<div class="warn"><b>Warnings</b><ul>' + "".join(f"<li>{e(w)}</li>" for w in items) + "</ul></div>"
    )


def _interval(iv) -> str:
    if iv is None:
        return "–"
    ci = f" [{fmt(iv.low)}, {fmt(iv.high)}]" if iv.low is not None and iv.high is not None else ""
    return f"{fmt(iv.estimate)}{ci}"


def _trend_chart(v) -> str:
    """Night means ± seed std of one series, the change night (and a variance change) marked."""
    index = {p.night: float(i) for i, p in enumerate(v.trend)}
    series = Series(
        name=f"{v.version}",
        points=[(index[p.night], p.mean) for p in v.trend],
        band=[(index[p.night], p.mean - p.std, p.mean + p.std) for p in v.trend if p.std is not None],
        markers=True,
    )
    marks = [(index[v.change_night], f"change {v.change_night}")] if v.change_night in index else []
    if v.stability.change_night in index:
        marks.append((index[v.stability.change_night], "variance"))
    return line_chart(
        [series],
        title=f"{v.family}: {metric_label(v.metric)} @ {v.version} ({v.verdict})",
        x_ticks=[(i, p.night[5:]) for p, i in ((p, index[p.night]) for p in v.trend)],
        x_marks=marks,
        y_label=metric_label(v.metric),
        width=420,
        height=220,
    )


def _verdicts(run: RunData) -> str:
    out = ['<h2 id="verdicts">Verdicts over the nightly history</h2>']
    det = run.verdicts
    if det is None:
        return out[0] + '<p class="muted">No verdicts.json (the run did not reach detection).</p>'
    rank = {v: i for i, v in enumerate(VERDICT_ORDER)}
    rows = sorted(det.verdicts, key=lambda v: (rank.get(v.verdict, 9), v.family, v.version, v.metric))
    counts = {v: sum(r.verdict == v for r in [*det.verdicts, *det.versus_baseline]) for v in VERDICT_ORDER}
    out.append(
        f"<p>Latest night <b>{e(det.latest_night or '–')}</b>; change points by E-divisive means with a "
        f"permutation test (p &le; {e(det.config.max_pvalue)}) and the metric's minimum effect; MDE: the "
        f"smallest step found with {e(int(det.config.power * 100))}% power after {e(det.config.mde_nights)} "
        "nights. "
        + " ".join(f"{badge(v, 'v')} <b>{n}</b>&nbsp;&nbsp;" for v, n in counts.items() if n)
        + "</p>"
    )
    if det.warnings:
        out.append(
            '<div class="warn small"><ul>' + "".join(f"<li>{e(w)}</li>" for w in det.warnings) + "</ul></div>"
        )
    body = []
    for v in rows:
        stab = badge(v.stability.verdict, "vs")
        if v.stability.sd_ratio is not None:
            stab += f'<span class="ci">sd ×{e(_interval(v.stability.sd_ratio))}</span>'
        before = f"{v.before.first_night}…{v.before.last_night}" if v.before else ""
        runs = ", ".join((v.before.runs[-1:] if v.before else []) + (v.after.runs[:1] if v.after else []))
        body.append(
            f'<tr class="row-{e(v.verdict.replace(" ", "-"))}"><td class="l nw">{e(v.version)}</td>'
            f'<td class="l">{e(v.family)}</td><td class="l nw">{e(metric_label(v.metric))}</td>'
            f'<td class="l">{badge(v.verdict, "v")}</td><td class="l nw">{e(v.change_night or "–")}'
            + (f'<span class="ci">after {e(before)}; {e(runs)}</span>' if v.change_night else "")
            + f'</td><td class="stat">{e(_interval(v.effect))}</td><td>{e(fmt(v.mde))}</td>'
            f"<td>{e(fmt(v.min_effect))}</td><td>{e(v.seeds_needed if v.seeds_needed is not None else '–')}</td>"
            f'<td>{e(v.nights)}</td><td class="l">{stab}</td>'
            f'<td class="l small">{e("; ".join(v.notes))}</td></tr>'
        )
    out.append(
        table(
            [
                ("version", True),
                ("family", True),
                ("metric", True),
                ("verdict", True),
                ("change night", True),
                ("effect [CI]", False),
                ("MDE", False),
                ("min effect", False),
                ("seeds needed", False),
                ("nights", False),
                ("stability", True),
                ("notes", True),
            ],
            body,
            "verdicts",
        )
    )
    if det.versus_baseline:
        vb = sorted(
            det.versus_baseline, key=lambda v: (rank.get(v.verdict, 9), v.family, v.version, v.metric)
        )
        body = [
            f'<tr class="row-{e(v.verdict.replace(" ", "-"))}"><td class="l nw">{e(v.version)} vs {e(v.baseline)}</td>'
            f'<td class="l">{e(v.family)}</td><td class="l nw">{e(metric_label(v.metric))}</td>'
            f'<td class="l">{badge(v.verdict, "v")}</td><td class="l nw">{e(v.since_night or "all")}</td>'
            f'<td>{e(v.nights)}</td><td class="stat">{e(_interval(v.effect))}</td>'
            f"<td>{e(fmt_p(v.p_value))}</td><td>{e(fmt_p(v.p_adjusted))}</td><td>{e(fmt(v.mde))}</td>"
            f"<td>{e(v.seeds_needed if v.seeds_needed is not None else '–')}</td></tr>"
            for v in vb
        ]
        out.append(
            '<h3 id="versus-baseline">Versions vs baseline, pooled since the last change of either '
            "(Benjamini–Hochberg over versions × families × metrics)</h3>"
        )
        out.append(
            table(
                [
                    ("versions", True),
                    ("family", True),
                    ("metric", True),
                    ("verdict", True),
                    ("since", True),
                    ("nights", False),
                    ("effect [CI]", False),
                    ("p", False),
                    ("p adj.", False),
                    ("MDE", False),
                    ("seeds needed", False),
                ],
                body,
                "versus-baseline",
            )
        )
    flagged = [v for v in rows if v.trend and (v.change_night or v.stability.verdict == "variance increase")]
    others = [v for v in rows if v.trend and v not in flagged]
    shown = (flagged + others)[:MAX_TREND_CHARTS]
    if shown:
        out.append(
            '<div class="charts">'
            + "".join(f'<div class="chart-box">{_trend_chart(v)}</div>' for v in shown)
            + "</div>"
        )
    return "".join(out)


def _regressions(rows: list[ComparisonView], warnings: list[str]) -> str:
    out = [
        '<h2 id="regressions">Tonight vs baseline (single night; descriptive, the verdicts are above)</h2>'
    ]
    if warnings:
        out.append(
            '<div class="warn small"><ul>' + "".join(f"<li>{e(w)}</li>" for w in warnings) + "</ul></div>"
        )
    if not rows:
        return "".join(out) + '<p class="muted">No comparison rows (comparison.json missing or empty).</p>'
    counts = {v: sum(r.verdict == v for r in rows) for v in VERDICT_ORDER}
    counts.update({r.verdict: sum(x.verdict == r.verdict for x in rows) for r in rows})
    out.append(
        "<p>" + " ".join(f"{badge(v, 'v')} <b>{n}</b>&nbsp;&nbsp;" for v, n in counts.items() if n) + "</p>"
    )
    has_versions = any(r.candidate for r in rows)
    has_paired = any(r.p_paired is not None for r in rows)
    headers = [("family", True), ("metric", True)]
    if has_versions:
        headers.append(("versions", True))
    headers += [("candidate", False), ("baseline", False), ("diff [CI]", False), ("p Welch", False)]
    if has_paired:
        headers.append(("p paired", False))
    headers += [("p adj.", False), ("MDE", False), ("verdict", True), ("p var.", False), ("stability", True)]
    rank = {v: i for i, v in enumerate(VERDICT_ORDER)}
    body = []
    for r in sorted(rows, key=lambda r: (rank.get(r.verdict, 9), r.family, r.candidate or "", r.metric)):
        diff, diff_ci = r.shown_diff()
        ci = ""
        if diff_ci and diff_ci[0] is not None and diff_ci[1] is not None:
            ci = f" [{fmt(diff_ci[0])}, {fmt(diff_ci[1])}]"
        cells = [f'<td class="l">{e(r.family)}</td>', f'<td class="l nw">{e(metric_label(r.metric))}</td>']
        if has_versions:
            cells.append(f'<td class="l nw">{e(r.candidate or "?")} vs {e(r.baseline or "?")}</td>')
        cells += [
            _mean_std(r.mean_candidate, r.std_candidate, r.n_candidate),
            _mean_std(r.mean_baseline, r.std_baseline, r.n_baseline),
            f'<td class="stat">{e(fmt(diff) + ci)}'
            + (f'<span class="ci">{e(r.paired_test)}</span>' if r.paired_test else "")
            + "</td>",
            f"<td>{e(fmt_p(r.p_welch))}</td>",
        ]
        if has_paired:
            cells.append(f"<td>{e(fmt_p(r.p_paired))}</td>")
        cells += [
            f"<td>{e(fmt_p(r.p_adjusted))}</td>",
            f"<td>{e(fmt(r.min_detectable_effect))}</td>",
            f'<td class="l">{badge(r.verdict, "v")}</td>',
            f"<td>{e(fmt_p(r.p_variance))}</td>",
            f'<td class="l">{badge(r.stability_verdict, "vs") if r.stability_verdict else "–"}</td>',
        ]
        body.append(f'<tr class="row-{e(r.verdict.replace(" ", "-"))}">{"".join(cells)}</tr>')
    out.append(table(headers, body, "regressions"))
    return "".join(out)


def _mean_std(mean: float | None, std: float | None, n: int | None) -> str:
    text = fmt(mean) + (f" ± {fmt(std)}" if std is not None else "")
    sub = f'<span class="ci">n={e(n)}</span>' if n is not None else ""
    return f'<td class="stat">{e(text)}{sub}</td>'


def _gap(run: RunData) -> str:
    out = ['<h2 id="gap">Generalization gap (in-domain vs held-out success)</h2>']
    gaps = run.summary.gap if run.summary else []
    if not gaps:
        return out[0] + '<p class="muted">No generalization-gap rows.</p>'
    rows = []
    for g in gaps:
        rows.append(
            f'<tr><td class="l">{e(g.version)}</td><td>{e(g.n_seeds if g.n_seeds is not None else "–")}</td>'
            f"<td>{e(fmt(g.in_domain_success))}</td><td>{e(fmt(g.heldout_success))}</td>{stat_cell(g.gap)}</tr>"
        )
    out.append(
        table(
            [
                ("version", True),
                ("seeds", False),
                ("in-domain", False),
                ("held-out", False),
                ("gap ± std [CI]", False),
            ],
            rows,
            "gap",
        )
    )
    groups = [
        BarGroup(label=g.version, values={"in-domain": g.in_domain_success, "held-out": g.heldout_success})
        for g in gaps
    ]
    chart = bar_chart(
        groups,
        title="Success rate: in-domain vs held-out",
        series_names=["in-domain", "held-out"],
        y_label="success rate",
        y_range=(0.0, None),
    )
    out.append(f'<div class="charts"><div class="chart-box">{chart}</div></div>')
    return "".join(out)


def _family(fam: FamilyView) -> str:
    role = f" {badge('held-out' if fam.role == 'heldout' else 'in-domain', 'vs')}" if fam.role else ""
    out = [f'<h3 id="family-{e(fam.name)}">{e(fam.name)}{role}</h3>']
    keys = fam.metric_keys()
    versions = sort_labels(r.version for r in fam.table1)
    by_version = {r.version: r for r in fam.table1}
    rows = []
    for v in versions:
        r = by_version[v]
        n = r.n_runs if r.n_runs is not None else "–"
        rows.append(
            f'<tr><td class="l">{e(v)}</td><td>{e(n)}</td>'
            + "".join(stat_cell(r.metrics.get(k)) for k in keys)
            + "</tr>"
        )
    pair = []
    if rows:
        headers = [("version", True), ("runs", False)] + [(metric_label(k), False) for k in keys]
        pair.append(
            '<div><div class="small muted">Table 1: mean ± std across seeds [95% CI] n</div>'
            + table(headers, rows, "t1")
            + "</div>"
        )
    t2_keys = sorted({k for r in fam.table2 for k in r.values}, key=lambda k: (k != "success_rate_std", k))
    rows2 = []
    by_version2 = {r.version: r for r in fam.table2}
    for v in sort_labels(by_version2):
        r = by_version2[v]
        n = r.n_runs if r.n_runs is not None else "–"
        rows2.append(
            f'<tr><td class="l">{e(v)}</td><td>{e(n)}</td>'
            + "".join(f"<td>{e(fmt(r.values.get(k)))}</td>" for k in t2_keys)
            + "</tr>"
        )
    if rows2:
        headers = [("version", True), ("runs", False)] + [(metric_label(k), False) for k in t2_keys]
        pair.append(
            '<div><div class="small muted">Table 2: seed-to-seed spread (std across seeds)</div>'
            + table(headers, rows2, "t2")
            + "</div>"
        )
    out.append(f'<div class="pair">{"".join(pair)}</div>')
    return "".join(out)


def _baselines(run: RunData) -> str:
    """verl minus each of the study's baselines (SFT only, traditional PPO), per family and metric."""
    out = ['<h2 id="baselines">verl against the study\'s baselines</h2>']
    diffs = run.study.baseline_differences if run.study else []
    if not diffs:
        return out[0] + '<p class="muted">No baseline rows in this run.</p>'
    out.append(
        "<p class=\"small muted\">Mean over the version's seeds minus mean over the baseline's; 95% "
        "percentile-bootstrap interval; Welch p. Descriptive: verdicts come from the nightly history.</p>"
    )
    rows = []
    for d in sorted(diffs, key=lambda d: (d.family, d.metric, label_key(d.baseline), label_key(d.version))):
        interval = f"[{fmt(d.ci_low)}, {fmt(d.ci_high)}]" if d.ci_low is not None else "–"
        rows.append(
            f'<tr><td class="l">{e(d.family)}</td><td class="l">{e(d.metric)}</td>'
            f'<td class="l">{e(display_name(d.version))}</td><td class="l">{e(display_name(d.baseline))}</td>'
            f"<td>{e(d.n_version)} / {e(d.n_baseline)}</td><td>{e(fmt(d.diff))}</td><td>{e(interval)}</td>"
            f"<td>{e(fmt_p(d.p_value))}</td></tr>"
        )
    headers = [
        ("family", True),
        ("metric", True),
        ("version", True),
        ("baseline", True),
        ("seeds", False),
        ("difference", False),
        ("95% CI", False),
        ("p", False),
    ]
    out.append(table(headers, rows, "baselines"))
    return "".join(out)


def _tables(run: RunData) -> str:
    out = ['<h2 id="tables">Study tables per family</h2>']
    fams = run.summary.families if run.summary else {}
    if not fams:
        return out[0] + '<p class="muted">No study tables.</p>'
    ordered = sorted(fams.values(), key=lambda f: (f.role != "train", f.role != "heldout", f.name))
    return "".join(out + [_family(f) for f in ordered])


def _training(run: RunData) -> str:
    out = ['<h2 id="training">Training reward per version and seed</h2>']
    if not run.curves:
        return out[0] + '<p class="muted">No train/*/seed=*/metrics.jsonl with a reward column.</p>'
    charts = []
    for version, seeds in run.curves.items():
        series = [Series(name=f"seed {seed}", points=pts) for seed, pts in seeds.items()]
        charts.append(
            '<div class="chart-box">'
            + line_chart(series, title=f"verl {version}: mean reward", width=360, height=220, x_label="step")
            + "</div>"
        )
    out.append(f'<div class="charts">{"".join(charts)}</div>')
    return "".join(out)


def _validation(run: RunData) -> str:
    v = run.validation
    out = [f'<h2 id="validation">Data validation</h2><p>Status: {badge(v.status)}']
    if v.html_href:
        out.append(f' · <a href="{e(v.html_href)}">Great Expectations data docs</a>')
    if v.report_href:
        out.append(f' · <a href="{e(v.report_href)}">{e(v.report_href.rsplit("/", 1)[-1])}</a>')
    out.append("</p>")
    if v.details:
        out.append("<ul>" + "".join(f"<li>{e(d)}</li>" for d in v.details) + "</ul>")
    if run.datasets:
        rows = [
            f'<tr><td class="l">{e(d.name)}</td><td class="l">{e(d.split)}</td><td>{e(d.rows)}</td></tr>'
            for d in run.datasets
        ]
        out.append(table([("dataset", True), ("split", True), ("rows", False)], rows, "datasets"))
    return "".join(out)


def _size(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


def _samples(run: RunData) -> str:
    out = ['<h2 id="samples">Evaluation samples</h2>']
    if not run.samples:
        return out[0] + '<p class="muted">No eval/*/seed=*/samples.*.jsonl files.</p>'
    families = sorted({s.family for s in run.samples})
    grid: dict[tuple[str, str], dict[str, str]] = {}
    for s in run.samples:
        grid.setdefault((s.label, s.seed), {})[s.family] = (
            f'<a href="{e(s.href)}" title="{e(_size(s.size))}">{e(s.family)}</a>'
        )
    order = {v: i for i, v in enumerate(sort_labels(label for label, _ in grid))}
    rows = []
    for label, seed in sorted(grid, key=lambda k: (order[k[0]], len(k[1]), k[1])):
        cells = "".join(f'<td class="l">{grid[(label, seed)].get(f, "–")}</td>' for f in families)
        rows.append(f'<tr><td class="l">{e(label)}</td><td class="l">{e(seed)}</td>{cells}</tr>')
    out.append(table([("model", True), ("seed", True)] + [(f, True) for f in families], rows, "samples"))
    return "".join(out)


def render_run_report(
    rundir: str | Path | RunData,
    *,
    base_href: str | None = None,
    history_href: str | None = "../../index.html",
) -> str:
    """Self-contained HTML report of one run (inline CSS + SVG, no scripts, relative links).

    ``base_href``: set when the page is served from elsewhere than the run root (``latest/``).
    """
    run = rundir if isinstance(rundir, RunData) else load_run(rundir)
    body = "".join(
        [
            _header(run, history_href),
            _warnings(run),
            _verdicts(run),
            _regressions(run.comparison, run.comparison_warnings),
            _gap(run),
            _baselines(run),
            _tables(run),
            _training(run),
            _validation(run),
            _samples(run),
        ]
    )
    stamp = run.manifest.finished or run.manifest.updated or ""
    footer = f"Run {run.run_key}" + (f", last updated {stamp}" if stamp else "") + "."
    return page(f"genbench {run.run_key}", body, base_href=base_href, footer=footer)


__all__ = ["render_run_report"]
