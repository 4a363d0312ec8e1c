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
from genbench_tasks.labels import label_key, sort_labels
from genbench_tasks.report.data import (
    ComparisonView,
    FamilyView,
    RunData,
    load_run,
    metric_label,
)
from genbench_tasks.report.html import fmt, markup, render
from genbench_tasks.report.svg import BarGroup, Series, bar_chart, line_chart

VERDICT_ORDER = ("regression", "improvement", "inconclusive", "no change", "insufficient data")
MAX_TREND_CHARTS = 12


def _header(run: RunData, history_href: str | None) -> dict:
    m = run.manifest
    meta = [
        ("profile", m.profile or "–"),
        ("verl", ", ".join(m.verl_versions) or "–"),
        ("baseline", m.baseline_version or "–"),
        ("seeds", ", ".join(str(s) for s in m.seeds) or "–"),
    ]
    hashes = [
        (key.replace("_", " "), value[:16])
        for key, value in (
            ("code_version", m.code_version),
            ("data_hash", m.data_hash),
            ("profile_hash", m.profile_hash),
        )
        if value
    ]
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
    return {"meta": meta, "hashes": hashes, "links": links}


def _warnings(run: RunData) -> list[str]:
    items = list(run.summary.warnings) if run.summary else []
    items += run.read_warnings
    missing = run.manifest.missing_cells
    if missing:
        items.append(f"{len(missing)} cells missing (failed or not run): {', '.join(map(str, missing))}")
    if run.summary is None:
        items.append(f"no summary.json: the run did not reach aggregation (status: {run.status})")
    return items


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


def _verdicts(run: RunData) -> dict | None:
    det = run.verdicts
    if det is None:
        return None
    rank = {v: i for i, v in enumerate(VERDICT_ORDER)}
    rows = sorted(det.verdicts, key=lambda v: (rank.get(v.verdict, 9), v.family, v.version, v.metric))
    counts = {v: sum(r.verdict == v for r in [*det.verdicts, *det.versus_baseline]) for v in VERDICT_ORDER}
    flagged = [v for v in rows if v.trend and (v.change_night or v.stability.verdict == "variance increase")]
    others = [v for v in rows if v.trend and v not in flagged]
    return {
        "det": det,
        "counts": counts,
        "rows": [
            {
                "v": v,
                "before": f"{v.before.first_night}…{v.before.last_night}" if v.before else "",
                "runs": ", ".join(
                    (v.before.runs[-1:] if v.before else []) + (v.after.runs[:1] if v.after else [])
                ),
                "notes": "; ".join(v.notes),
            }
            for v in rows
        ],
        "versus": sorted(
            det.versus_baseline, key=lambda v: (rank.get(v.verdict, 9), v.family, v.version, v.metric)
        ),
        "charts": [markup(_trend_chart(v)) for v in (flagged + others)[:MAX_TREND_CHARTS]],
    }


def _regressions(rows: list[ComparisonView], warnings: list[str]) -> dict:
    counts = {v: sum(r.verdict == v for r in rows) for v in VERDICT_ORDER}
    counts.update({r.verdict: sum(x.verdict == r.verdict for x in rows) for r in rows})
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
        body.append({"r": r, "diff": fmt(diff) + ci})
    return {
        "warnings": warnings,
        "rows": body,
        "counts": counts,
        "headers": headers,
        "has_versions": has_versions,
        "has_paired": has_paired,
    }


def _gap(run: RunData) -> dict:
    gaps = run.summary.gap if run.summary else []
    if not gaps:
        return {"rows": [], "chart": None}
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
    return {"rows": gaps, "chart": markup(chart)}


def _family(fam: FamilyView) -> dict:
    keys = fam.metric_keys()
    by_version = {r.version: r for r in fam.table1}
    t1 = [
        (v, by_version[v].n_runs, [by_version[v].metrics.get(k) for k in keys])
        for v in sort_labels(r.version for r in fam.table1)
    ]
    t2_keys = sorted({k for r in fam.table2 for k in r.values}, key=lambda k: (k != "success_rate_std", k))
    by_version2 = {r.version: r for r in fam.table2}
    t2 = [
        (v, by_version2[v].n_runs, [by_version2[v].values.get(k) for k in t2_keys])
        for v in sort_labels(by_version2)
    ]
    return {
        "name": fam.name,
        "role": fam.role,
        "t1": t1,
        "t1_headers": [("version", True), ("runs", False)] + [(metric_label(k), False) for k in keys],
        "t2": t2,
        "t2_headers": [("version", True), ("runs", False)] + [(metric_label(k), False) for k in t2_keys],
    }


def _baselines(run: RunData) -> list:
    """verl minus each of the study's baselines (SFT only, traditional PPO), per family and metric."""
    diffs = run.study.baseline_differences if run.study else []
    return sorted(diffs, key=lambda d: (d.family, d.metric, label_key(d.baseline), label_key(d.version)))


def _families(run: RunData) -> list[dict]:
    fams = run.summary.families if run.summary else {}
    ordered = sorted(fams.values(), key=lambda f: (f.role != "train", f.role != "heldout", f.name))
    return [_family(f) for f in ordered]


def _training(run: RunData) -> list:
    return [
        markup(
            line_chart(
                [Series(name=f"seed {seed}", points=pts) for seed, pts in seeds.items()],
                title=f"verl {version}: mean reward",
                width=360,
                height=220,
                x_label="step",
            )
        )
        for version, seeds in run.curves.items()
    ]


def _datasets(run: RunData) -> list[tuple]:
    return [(d.name, d.split, d.rows) for d in run.datasets]


def _size(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


def _samples(run: RunData) -> dict:
    families = sorted({s.family for s in run.samples})
    grid: dict[tuple[str, str], dict[str, dict]] = {}
    for s in run.samples:
        grid.setdefault((s.label, s.seed), {})[s.family] = {
            "href": s.href,
            "size": _size(s.size),
            "family": s.family,
        }
    order = {v: i for i, v in enumerate(sort_labels(label for label, _ in grid))}
    rows = [
        (label, seed, [grid[(label, seed)].get(f) for f in families])
        for label, seed in sorted(grid, key=lambda k: (order[k[0]], len(k[1]), k[1]))
    ]
    return {"families": [(f, True) for f in families], "rows": rows}


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
    stamp = run.manifest.finished or run.manifest.updated or ""
    return render(
        "run.html",
        title=f"genbench {run.run_key}",
        base_href=base_href,
        footer=f"Run {run.run_key}" + (f", last updated {stamp}" if stamp else "") + ".",
        run=run,
        header=_header(run, history_href),
        warnings=_warnings(run),
        verdicts=_verdicts(run),
        regressions=_regressions(run.comparison, run.comparison_warnings),
        gap=_gap(run),
        baselines=_baselines(run),
        families=_families(run),
        training=_training(run),
        datasets=_datasets(run),
        samples=_samples(run),
    )


__all__ = ["render_run_report"]
