"""Read a run directory into a normalized view for the reports, and derive its history/index entry.

Tolerant by design: summary.json / comparison.json are produced by ``evaluation.aggregate`` and
``evaluation.compare`` (schemas of ``scoring.stats``: ``StudyTables``, ``ComparisonRow``); older or partial
runs (a failed nightly) still render with whatever exists.
"""

from __future__ import annotations

import json
import logging
import math
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from genbench_tasks.errors import GenbenchError
from genbench_tasks.labels import sort_labels

log = logging.getLogger(__name__)

#: Display names of the study's metrics (others are shown as their key).
METRIC_LABELS: dict[str, str] = {
    "success_rate": "Success Rate",
    "bleu": "BLEU-4",
    "bleu4": "BLEU-4",
    "consistency": "Consistency",
    "reward_mean": "Reward Mean",
    "success_rate_std": "Success Rate Std",
    "reward_std": "Reward Std",
}
TABLE1_ORDER = ("success_rate", "bleu", "bleu4", "consistency", "reward_mean")
#: Keys tried, in order, for the per-step mean reward in train/*/metrics.jsonl (ours, then verl's).
REWARD_KEYS = ("reward_mean", "critic/rewards/mean", "critic/score/mean", "reward/mean", "reward")
STEP_KEYS = ("step", "global_step", "training/global_step")
MAX_CURVE_POINTS = 400


def metric_label(key: str) -> str:
    return METRIC_LABELS.get(key, key)


def safe_name(text: str) -> str:
    """Path-safe run id (same rule as the pipeline's run_name)."""
    return re.sub(r"[^A-Za-z0-9._-]+", "-", str(text)).strip("-")[:80]


def _num(v: Any) -> float | None:
    if isinstance(v, bool) or v is None:
        return None
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


class Stat(BaseModel):
    """A summary of values across seeds (``scoring.stats.Summary``)."""

    model_config = ConfigDict(extra="ignore")

    n: int | None = None
    mean: float | None = None
    std: float | None = None
    ci_low: float | None = None
    ci_high: float | None = None

    @classmethod
    def coerce(cls, value: Any) -> Stat | None:
        if isinstance(value, Mapping) and "mean" in value:
            return cls(**{k: _num(value.get(k)) if k != "n" else value.get(k) for k in cls.model_fields})
        if (f := _num(value)) is not None:
            return cls(mean=f)
        return None


class Table1View(BaseModel):
    version: str
    n_runs: int | None = None
    metrics: dict[str, Stat]


class Table2View(BaseModel):
    version: str
    n_runs: int | None = None
    values: dict[str, float | None]


class FamilyView(BaseModel):
    name: str
    role: str | None = None
    table1: list[Table1View] = Field(default_factory=list)
    table2: list[Table2View] = Field(default_factory=list)

    def metric_keys(self) -> list[str]:
        keys = {k for row in self.table1 for k in row.metrics}
        return [k for k in TABLE1_ORDER if k in keys] + sorted(keys - set(TABLE1_ORDER))


class GapView(BaseModel):
    version: str
    n_seeds: int | None = None
    in_domain_success: float | None = None
    heldout_success: float | None = None
    gap: Stat | None = None


class SummaryView(BaseModel):
    families: dict[str, FamilyView] = Field(default_factory=dict)
    gap: list[GapView] = Field(default_factory=list)
    warnings: list[str] = Field(default_factory=list)


class ComparisonView(BaseModel):
    """One regression row; ``candidate``/``baseline`` are versions when the file says so."""

    model_config = ConfigDict(extra="allow")

    family: str
    metric: str
    candidate: str | None = None
    baseline: str | None = None
    n_candidate: int | None = None
    n_baseline: int | None = None
    mean_candidate: float | None = None
    mean_baseline: float | None = None
    std_candidate: float | None = None
    std_baseline: float | None = None
    diff: float | None = None
    diff_ci: tuple[float | None, float | None] | None = None
    paired_test: str | None = None
    diff_paired: float | None = None
    diff_ci_paired: tuple[float | None, float | None] | None = None
    p_welch: float | None = None
    p_adjusted: float | None = None
    p_paired: float | None = None
    p_variance: float | None = None
    min_detectable_effect: float | None = None
    verdict: str = "insufficient data"
    stability_verdict: str | None = None

    def shown_diff(self) -> tuple[float | None, tuple[float | None, float | None] | None]:
        """The difference and CI the verdict rests on: item-level (paired) when available, else run-level."""
        if self.paired_test and self.diff_paired is not None:
            return self.diff_paired, self.diff_ci_paired
        return self.diff, self.diff_ci


class ValidationView(BaseModel):
    status: str  # passed | failed | unknown
    report_href: str | None = None
    html_href: str | None = None
    details: list[str] = Field(default_factory=list)


class SampleLink(BaseModel):
    label: str
    seed: str
    family: str
    href: str  # relative to the run root
    size: int


class RunData(BaseModel):
    """Everything the run report shows, read from one RUNDIR."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    root: Path
    manifest: dict[str, Any]
    summary_raw: dict[str, Any] | None = None
    summary: SummaryView | None = None
    comparison: list[ComparisonView] = Field(default_factory=list)
    comparison_warnings: list[str] = Field(default_factory=list)
    validation: ValidationView = ValidationView(status="unknown")
    curves: dict[str, dict[str, list[tuple[float, float]]]] = Field(default_factory=dict)
    samples: list[SampleLink] = Field(default_factory=list)
    datasets: list[dict[str, Any]] = Field(default_factory=list)
    #: verdicts.json (``scoring.detection.Detection``); None when absent or unreadable
    verdicts: Any = None

    @property
    def run_id(self) -> str:
        return str(self.manifest.get("run_id") or self.root.name)

    @property
    def date(self) -> str:
        return str(self.manifest.get("date") or "")

    @property
    def run_key(self) -> str:
        """``<date>_<run_id>``: the run's immutable folder name in the published layout."""
        return f"{self.date}_{safe_name(self.run_id)}" if self.date else safe_name(self.run_id)

    @property
    def status(self) -> str:
        return str(self.manifest.get("status") or "unknown")

    def verdict_counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        rows = [*self.verdicts.verdicts, *self.verdicts.versus_baseline] if self.verdicts else self.comparison
        for row in rows:
            counts[row.verdict] = counts.get(row.verdict, 0) + 1
        if not counts and isinstance(self.manifest.get("verdicts"), Mapping):
            counts = {str(k): int(v) for k, v in self.manifest["verdicts"].items()}
        return counts


# ------------------------------------------------------------------------------------------- readers
def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        log.warning("unreadable JSON %s: %s", path, exc)
        return None


def _rows(value: Any, key: str = "version") -> list[dict[str, Any]]:
    """A list of row dicts from either a list or a {key_value: row} mapping."""
    if isinstance(value, list):
        return [r for r in value if isinstance(r, Mapping)]
    if isinstance(value, Mapping):
        return [{key: k, **v} for k, v in value.items() if isinstance(v, Mapping)]
    return []


def normalize_summary(raw: Mapping[str, Any]) -> SummaryView:
    """summary.json (``StudyTables`` + warnings, possibly nested under ``tables``) -> :class:`SummaryView`."""
    tables: Mapping[str, Any] = raw
    for nest in ("tables", "study", "study_tables"):
        if isinstance(raw.get(nest), Mapping) and "families" in raw[nest]:
            tables = raw[nest]
            break
    families: dict[str, FamilyView] = {}
    fam_raw = tables.get("families") or {}
    items = (
        fam_raw.items() if isinstance(fam_raw, Mapping) else ((f.get("family"), f) for f in _rows(fam_raw))
    )
    for name, fam in items:
        if not isinstance(fam, Mapping) or not name:
            continue
        t1 = []
        for row in _rows(fam.get("table1")):
            metrics = {
                k: s
                for k, v in row.items()
                if k not in ("version", "n_runs") and (s := Stat.coerce(v)) is not None
            }
            if any(isinstance(v, Mapping) for v in row.values()):  # keep only stat-shaped cells
                metrics = {k: s for k, s in metrics.items() if isinstance(row[k], Mapping)}
            t1.append(Table1View(version=str(row.get("version")), n_runs=row.get("n_runs"), metrics=metrics))
        t2 = []
        for row in _rows(fam.get("table2")):
            values = {}
            for k, v in row.items():
                if k in ("version", "n_runs"):
                    continue
                values[k] = v.get("mean") if isinstance(v, Mapping) else _num(v)
            t2.append(Table2View(version=str(row.get("version")), n_runs=row.get("n_runs"), values=values))
        families[str(name)] = FamilyView(name=str(name), role=fam.get("role"), table1=t1, table2=t2)
    gaps = []
    for row in _rows(tables.get("generalization_gap") or raw.get("generalization_gap")):
        gaps.append(
            GapView(
                version=str(row.get("version")),
                n_seeds=row.get("n_seeds"),
                in_domain_success=_num(row.get("in_domain_success")),
                heldout_success=_num(row.get("heldout_success")),
                gap=Stat.coerce(row.get("gap")),
            )
        )
    warnings = []
    for w in raw.get("warnings") or tables.get("warnings") or []:
        warnings.append(w if isinstance(w, str) else json.dumps(w, default=str))
    return SummaryView(families=families, gap=gaps, warnings=warnings)


def _label(side: Any) -> str | None:
    """A side given as a label string or as ``evaluation.compare.SideRef`` ({rundir, label, seeds})."""
    if isinstance(side, str):
        return side
    if isinstance(side, Mapping) and isinstance(side.get("label"), str):
        return side["label"]
    return None


def normalize_comparison(raw: Any) -> tuple[list[ComparisonView], list[str]]:
    """comparison.json -> (rows, warnings). Accepts ``evaluation.compare.ComparisonFile``
    (``{"comparisons": [{candidate, baseline, rows, warnings}]}``), ``{"rows": [...]}``, a row list, or
    ``{version: [rows]}``."""
    groups: list[tuple[dict[str, Any], list[Any]]] = []
    warnings: list[str] = []
    if isinstance(raw, list):
        groups.append(({}, raw))
    elif isinstance(raw, Mapping):
        ctx = {k: v for k in ("candidate", "baseline") if (v := _label(raw.get(k))) is not None}
        if isinstance(raw.get("baseline_version"), str):
            ctx.setdefault("baseline", raw["baseline_version"])
        if isinstance(raw.get("rows"), list):
            groups.append((ctx, raw["rows"]))
        elif isinstance(raw.get("comparisons"), list):
            for comp in raw["comparisons"]:
                if isinstance(comp, Mapping):
                    sub = {
                        **ctx,
                        **{k: v for k in ("candidate", "baseline") if (v := _label(comp.get(k))) is not None},
                    }
                    groups.append((sub, comp.get("rows") or []))
                    warnings += [str(w) for w in comp.get("warnings") or []]
        else:
            for version, rows in raw.items():
                if isinstance(rows, list):
                    groups.append(({**ctx, "candidate": version}, rows))
        warnings += (
            [str(w) for w in raw.get("warnings") or []] if isinstance(raw.get("warnings"), list) else []
        )
    out = []
    for ctx, rows in groups:
        for row in rows:
            if not isinstance(row, Mapping) or "family" not in row or "metric" not in row:
                continue
            data = {**ctx, **row}
            for key in ("candidate", "baseline"):
                data[key] = _label(data.get(key)) or _label(data.get(f"{key}_version"))
            if data["candidate"] is None and isinstance(row.get("version"), str):
                data["candidate"] = row["version"]
            for key in ("diff_ci", "diff_ci_paired"):
                ci = data.get(key)
                data[key] = (
                    tuple(_num(v) for v in ci[:2]) if isinstance(ci, list | tuple) and len(ci) >= 2 else None
                )
            try:
                out.append(ComparisonView.model_validate(data))
            except ValueError as exc:
                log.warning("skipping comparison row %s/%s: %s", row.get("family"), row.get("metric"), exc)
    return out, warnings


VALIDATION_REPORTS = ("report.json", "validation_report.json")


def _validation(root: Path, manifest: Mapping[str, Any]) -> ValidationView:
    """validation/{report,validation_report}.json (``validation.report.ValidationReport``) + GX html."""
    vdir = root / "validation"
    name = next((n for n in VALIDATION_REPORTS if (vdir / n).is_file()), None)
    report = _read_json(vdir / name) if name else None
    status = "unknown"
    details: list[str] = []
    if isinstance(report, Mapping):
        ok = report.get("success", report.get("passed"))
        if isinstance(ok, bool):
            status = "passed" if ok else "failed"
        elif isinstance(report.get("status"), str):
            status = report["status"]
        for ds in _rows(report.get("datasets"), "name"):
            for f in _rows(ds.get("failed_expectations"), "expectation"):
                col = f" [{f['column']}]" if f.get("column") else ""
                details.append(
                    f"{ds.get('name')}: {f.get('expectation')}{col}: {str(f.get('details', ''))[:300]}"
                )
        for check in _rows(report.get("cross_checks"), "name"):
            if check.get("success") is False:
                details.append(f"cross-check {check.get('name')}: {str(check.get('details', ''))[:300]}")
    if status == "unknown" and isinstance(manifest.get("validation"), str):
        status = manifest["validation"]
    html = None
    if (vdir / "html").is_dir():
        candidates = sorted((vdir / "html").rglob("index.html"), key=lambda p: (len(p.parts), str(p)))
        candidates = candidates or sorted((vdir / "html").rglob("*.html"))
        if candidates:
            html = candidates[0].relative_to(root).as_posix()
    return ValidationView(
        status=status,
        report_href=f"validation/{name}" if name else None,
        html_href=html,
        details=details[:20],
    )


def read_curve(path: Path) -> list[tuple[float, float]]:
    """(step, mean reward) points of a metrics.jsonl; unparseable lines are skipped."""
    points: list[tuple[float, float]] = []
    try:
        lines = path.read_text().splitlines()
    except (OSError, UnicodeDecodeError):
        return points
    for i, line in enumerate(lines):
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            continue
        if not isinstance(rec, Mapping):
            continue
        reward = next((r for k in REWARD_KEYS if (r := _num(rec.get(k))) is not None), None)
        if reward is None:
            continue
        step = next((s for k in STEP_KEYS if (s := _num(rec.get(k))) is not None), float(i))
        points.append((step, reward))
    if len(points) > MAX_CURVE_POINTS:
        stride = math.ceil(len(points) / MAX_CURVE_POINTS)
        points = points[::stride] + ([points[-1]] if (len(points) - 1) % stride else [])
    return points


def _seed_label(name: str) -> str:
    return name.split("=", 1)[1] if name.startswith("seed=") else name


def load_run(rundir: str | Path) -> RunData:
    """Read RUNDIR (manifest.json required; everything else optional)."""
    root = Path(rundir)
    if not root.is_dir():
        raise GenbenchError(f"run directory not found: {root}")
    manifest = _read_json(root / "manifest.json")
    if not isinstance(manifest, dict):
        raise GenbenchError(f"{root}/manifest.json is missing or not a JSON object")
    summary_raw = _read_json(root / "summary.json")
    summary = normalize_summary(summary_raw) if isinstance(summary_raw, Mapping) else None
    comparison_raw = _read_json(root / "comparison.json")
    comparison, comparison_warnings = (
        normalize_comparison(comparison_raw) if comparison_raw is not None else ([], [])
    )

    curves: dict[str, dict[str, list[tuple[float, float]]]] = {}
    train = root / "train"
    if train.is_dir():
        for path in sorted(train.glob("*/seed=*/metrics.jsonl")):
            version, seed = path.parent.parent.name, _seed_label(path.parent.name)
            pts = read_curve(path)
            if pts:
                curves.setdefault(version, {})[seed] = pts
    curves = {
        v: dict(sorted(curves[v].items(), key=lambda kv: (len(kv[0]), kv[0]))) for v in sort_labels(curves)
    }

    samples = []
    eval_dir = root / "eval"
    if eval_dir.is_dir():
        for path in sorted(eval_dir.glob("*/*/samples.*.jsonl")):
            family = path.name[len("samples.") : -len(".jsonl")]
            samples.append(
                SampleLink(
                    label=path.parent.parent.name,
                    seed=_seed_label(path.parent.name),
                    family=family,
                    href=path.relative_to(root).as_posix(),
                    size=path.stat().st_size,
                )
            )
    verdicts = None
    if (root / "verdicts.json").is_file():
        from genbench_tasks.scoring.detection import Detection

        try:
            verdicts = Detection.model_validate_json((root / "verdicts.json").read_text())
        except ValueError as exc:
            log.warning("unreadable %s: %s", root / "verdicts.json", str(exc).splitlines()[0])
    datasets_raw = _read_json(root / "data" / "datasets.json")
    datasets = []
    if isinstance(datasets_raw, Mapping) and isinstance(datasets_raw.get("datasets"), list):
        datasets = [d for d in datasets_raw["datasets"] if isinstance(d, Mapping)]
    return RunData(
        root=root,
        manifest=manifest,
        summary_raw=summary_raw if isinstance(summary_raw, dict) else None,
        summary=summary,
        comparison=comparison,
        comparison_warnings=comparison_warnings,
        validation=_validation(root, manifest),
        curves=curves,
        samples=samples,
        datasets=datasets,
        verdicts=verdicts,
    )


# ------------------------------------------------------------------------------------- index entries
class HeadlineStat(BaseModel):
    n: int | None = None
    mean: float | None = None
    std: float | None = None


class FamilyHeadline(BaseModel):
    """Per version: success_rate and reward_mean (mean, seed std) of one family."""

    role: str | None = None
    versions: dict[str, dict[str, HeadlineStat]] = Field(default_factory=dict)


class IndexEntry(BaseModel):
    """One run in ``index.json`` and on the history page (paths relative to the publish prefix)."""

    model_config = ConfigDict(extra="allow")

    run_key: str
    run_id: str
    date: str
    status: str = "unknown"
    profile: str | None = None
    verl_versions: list[str] = Field(default_factory=list)
    baseline_version: str | None = None
    seeds: list[Any] = Field(default_factory=list)
    validation: str = "unknown"
    finished: str | None = None
    published_at: str | None = None
    report: str | None = None
    summary: str | None = None
    verdict_counts: dict[str, int] = Field(default_factory=dict)
    regressions: list[str] = Field(default_factory=list)
    headline: dict[str, FamilyHeadline] = Field(default_factory=dict)
    gap: dict[str, dict[str, float | None]] = Field(default_factory=dict)

    def order_key(self) -> tuple[str, str, str]:
        """Chronological order of runs: date, then finish time, then key."""
        return (self.date, self.finished or "", self.run_key)


HEADLINE_METRICS = ("success_rate", "reward_mean")


def headline_from_summary(
    summary: SummaryView,
) -> tuple[dict[str, FamilyHeadline], dict[str, dict[str, float | None]]]:
    headline = {}
    for name, fam in summary.families.items():
        versions = {}
        for row in fam.table1:
            versions[row.version] = {
                m: HeadlineStat(n=s.n, mean=s.mean, std=s.std)
                for m, s in row.metrics.items()
                if m in HEADLINE_METRICS
            }
        headline[name] = FamilyHeadline(role=fam.role, versions=versions)
    gap = {
        g.version: {
            "in_domain_success": g.in_domain_success,
            "heldout_success": g.heldout_success,
            "gap": g.gap.mean if g.gap else None,
        }
        for g in summary.gap
    }
    return headline, gap


def index_entry(run: RunData, *, published_at: str | None = None) -> IndexEntry:
    """The ``index.json`` entry of a run (paths relative to the publish prefix)."""
    m = run.manifest
    headline, gap = headline_from_summary(run.summary) if run.summary else ({}, {})
    if run.verdicts is not None:
        regressions = [
            f"{r.family}/{metric_label(r.metric)} @ {r.version}"
            + (f" since {r.change_night}" if getattr(r, "change_night", None) else f" vs {r.baseline}")
            for r in [*run.verdicts.verdicts, *run.verdicts.versus_baseline]
            if r.verdict == "regression"
        ]
    else:
        regressions = [
            f"{r.family}/{metric_label(r.metric)}" + (f" @ {r.candidate}" if r.candidate else "")
            for r in run.comparison
            if r.verdict == "regression"
        ]
    base = f"runs/{run.run_key}"
    return IndexEntry(
        run_key=run.run_key,
        run_id=run.run_id,
        date=run.date,
        status=run.status,
        profile=m.get("profile"),
        verl_versions=[str(v) for v in m.get("verl_versions") or []],
        baseline_version=m.get("baseline_version"),
        seeds=list(m.get("seeds") or []),
        validation=run.validation.status,
        finished=str(m["finished"]) if m.get("finished") else None,
        published_at=published_at,
        report=f"{base}/report.html",
        summary=f"{base}/summary.json" if run.summary_raw is not None else None,
        verdict_counts=run.verdict_counts(),
        regressions=regressions[:50],
        headline=headline,
        gap=gap,
    )


def as_index_entry(obj: IndexEntry | Mapping[str, Any]) -> IndexEntry:
    """Accept an index entry, or a summary.json dict carrying ``run_id``/``date`` (headline derived)."""
    if isinstance(obj, IndexEntry):
        return obj
    if "run_key" in obj:
        return IndexEntry.model_validate(obj)
    if "run_id" not in obj:
        raise ValueError("history entry needs run_key or run_id")
    summary = normalize_summary(obj)
    headline, gap = headline_from_summary(summary)
    date = str(obj.get("date") or "")
    run_key = f"{date}_{safe_name(obj['run_id'])}" if date else safe_name(obj["run_id"])
    return IndexEntry(
        run_key=run_key,
        run_id=str(obj["run_id"]),
        date=date,
        status=str(obj.get("status") or "unknown"),
        finished=str(obj["finished"]) if obj.get("finished") else None,
        report=f"runs/{run_key}/report.html",
        headline=headline,
        gap=gap,
    )
