"""Read a run directory into the views the reports show, and derive its history/index entry.

Every file is read with its model from :mod:`genbench_tasks.artifacts` (``manifest.json`` is required;
summary, comparison, verdicts, validation report and dataset manifest are optional: a failed nightly still
renders with whatever exists, and an invalid file is a warning on the page, not a crash).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from genbench_tasks.artifacts.comparison import ComparisonFile, LabeledRow, TrainerComparison
from genbench_tasks.artifacts.datasets import DatasetEntry, DatasetManifest
from genbench_tasks.artifacts.io import ArtifactError, read_jsonl, read_model, read_optional
from genbench_tasks.artifacts.layout import PublishedLayout, RunLayout, safe_name
from genbench_tasks.artifacts.metrics import TABLE1_METRICS, metric_label
from genbench_tasks.artifacts.published import FamilyHeadline, HeadlineStat, IndexEntry
from genbench_tasks.artifacts.run import RunManifest
from genbench_tasks.artifacts.summary import GapRow, StudySummary
from genbench_tasks.artifacts.summary import Summary as Stat
from genbench_tasks.artifacts.training import TrainStep
from genbench_tasks.artifacts.validation import ValidationReport
from genbench_tasks.artifacts.verdicts import Detection
from genbench_tasks.errors import GenbenchError
from genbench_tasks.labels import sort_labels

log = logging.getLogger(__name__)

__all__ = ["Stat", "metric_label", "safe_name"]

MAX_CURVE_POINTS = 400


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
        return [k for k in TABLE1_METRICS if k in keys] + sorted(keys - set(TABLE1_METRICS))


class SummaryView(BaseModel):
    families: dict[str, FamilyView] = Field(default_factory=dict)
    gap: list[GapRow] = Field(default_factory=list)
    warnings: list[str] = Field(default_factory=list)


#: One regression row of comparison.json, with its candidate and baseline labels.
ComparisonView = LabeledRow


def summary_view(summary: StudySummary) -> SummaryView:
    """summary.json -> the study tables as the report lays them out (Table 1 metrics in registry order)."""
    families = {
        name: FamilyView(
            name=name,
            role=fam.role,
            table1=[
                Table1View(
                    version=r.version, n_runs=r.n_runs, metrics={m: getattr(r, m) for m in TABLE1_METRICS}
                )
                for r in fam.table1
            ],
            table2=[
                Table2View(
                    version=r.version,
                    n_runs=r.n_runs,
                    values={"success_rate_std": r.success_rate_std, "reward_std": r.reward_std},
                )
                for r in fam.table2
            ],
        )
        for name, fam in summary.families.items()
    }
    return SummaryView(families=families, gap=summary.generalization_gap, warnings=summary.warnings)


class TrainerView(BaseModel):
    """How one (candidate, baseline) pair's PPO runs compare seed by seed (``Comparison.trainer``)."""

    candidate: str
    baseline: str
    trainer: TrainerComparison


def trainer_views(comparison: ComparisonFile) -> list[TrainerView]:
    return [
        TrainerView(candidate=c.candidate.label, baseline=c.baseline.label, trainer=c.trainer)
        for c in comparison.comparisons
        if c.trainer is not None
    ]


def comparison_rows(comparison: ComparisonFile) -> tuple[list[LabeledRow], list[str]]:
    """Every row and warning of comparison.json, over its (candidate, baseline) entries."""
    rows = [r for c in comparison.comparisons for r in c.rows]
    return rows, [w for c in comparison.comparisons for w in c.warnings]


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
    manifest: RunManifest
    #: summary.json as written (None when absent or invalid); ``summary`` is its report view
    study: StudySummary | None = None
    summary: SummaryView | None = None
    comparison: list[LabeledRow] = Field(default_factory=list)
    comparison_warnings: list[str] = Field(default_factory=list)
    trainers: list[TrainerView] = Field(default_factory=list)
    validation: ValidationView = ValidationView(status="unknown")
    curves: dict[str, dict[str, list[tuple[float, float]]]] = Field(default_factory=dict)
    samples: list[SampleLink] = Field(default_factory=list)
    datasets: list[DatasetEntry] = Field(default_factory=list)
    verdicts: Detection | None = None
    #: files that exist but do not match their model
    read_warnings: list[str] = Field(default_factory=list)

    @property
    def layout(self) -> RunLayout:
        return RunLayout(self.root)

    @property
    def run_id(self) -> str:
        return self.manifest.run_id

    @property
    def date(self) -> str:
        return self.manifest.date

    @property
    def run_key(self) -> str:
        """``<date>_<run_id>``: the run's immutable folder name in the published layout."""
        return self.manifest.run_key

    @property
    def status(self) -> str:
        return self.manifest.status

    def verdict_counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        rows = [*self.verdicts.verdicts, *self.verdicts.versus_baseline] if self.verdicts else self.comparison
        for row in rows:
            counts[row.verdict] = counts.get(row.verdict, 0) + 1
        return counts or dict(self.manifest.verdicts or {})


# ------------------------------------------------------------------------------------------- readers
def _validation(layout: RunLayout, manifest: RunManifest, warnings: list[str]) -> ValidationView:
    """validation/validation_report.json (``ValidationReport``) + the GX data docs."""
    report = read_optional(layout.validation_report, ValidationReport, warnings)
    status = manifest.validation or "unknown"
    details: list[str] = []
    if report is not None:
        status = "passed" if report.success else "failed"
        for ds in report.datasets:
            for f in ds.failed_expectations:
                col = f" [{f.column}]" if f.column else ""
                details.append(f"{ds.name}: {f.expectation}{col}: {f.details[:300]}")
        details += [f"cross-check {c.name}: {c.details[:300]}" for c in report.cross_checks if not c.success]
    html = None
    if layout.validation_html.is_dir():
        candidates = sorted(layout.validation_html.rglob("index.html"), key=lambda p: (len(p.parts), str(p)))
        candidates = candidates or sorted(layout.validation_html.rglob("*.html"))
        if candidates:
            html = candidates[0].relative_to(layout.root).as_posix()
    return ValidationView(
        status=status,
        report_href=layout.validation_report.relative_to(layout.root).as_posix() if report else None,
        html_href=html,
        details=details[:20],
    )


def read_curve(path: Path, warnings: list[str]) -> list[tuple[float, float]]:
    """(step, mean reward) points of a training ``metrics.jsonl`` (``TrainStep`` rows), thinned to
    ``MAX_CURVE_POINTS``; an unreadable file is no curve plus a warning."""
    try:
        rows = read_jsonl(path, TrainStep, torn_tail=True)
    except ArtifactError as exc:
        warnings.append(str(exc))
        return []
    points = [(float(r.step), r.reward_mean) for r in rows]
    if len(points) > MAX_CURVE_POINTS:
        stride = math.ceil(len(points) / MAX_CURVE_POINTS)
        points = points[::stride] + ([points[-1]] if (len(points) - 1) % stride else [])
    return points


def load_run(rundir: str | Path) -> RunData:
    """Read RUNDIR (manifest.json required; everything else optional)."""
    layout = RunLayout(Path(rundir))
    if not layout.root.is_dir():
        raise GenbenchError(f"run directory not found: {layout.root}")
    manifest = read_model(layout.manifest, RunManifest)
    warnings: list[str] = []
    study = read_optional(layout.summary, StudySummary, warnings)
    comparison = read_optional(layout.comparison, ComparisonFile, warnings)
    rows, comparison_warnings = comparison_rows(comparison) if comparison else ([], [])

    curves: dict[str, dict[str, list[tuple[float, float]]]] = {}
    for label, seeds in layout.train_cells().items():
        for seed, cell in seeds.items():
            if cell.train_metrics.is_file() and (pts := read_curve(cell.train_metrics, warnings)):
                curves.setdefault(label, {})[str(seed)] = pts
    curves = {v: curves[v] for v in sort_labels(curves)}

    samples = [
        SampleLink(
            label=label,
            seed=str(seed),
            family=family,
            href=path.relative_to(layout.root).as_posix(),
            size=path.stat().st_size,
        )
        for label, seed, family, path in layout.iter_samples()
    ]
    datasets = read_optional(layout.dataset_manifest, DatasetManifest, warnings)
    for w in warnings:
        log.warning("%s", w)
    return RunData(
        root=layout.root,
        manifest=manifest,
        study=study,
        summary=summary_view(study) if study else None,
        comparison=rows,
        comparison_warnings=comparison_warnings,
        trainers=trainer_views(comparison) if comparison else [],
        validation=_validation(layout, manifest, warnings),
        curves=curves,
        samples=samples,
        datasets=datasets.datasets if datasets else [],
        verdicts=read_optional(layout.verdicts, Detection, warnings),
        read_warnings=warnings,
    )


# ------------------------------------------------------------------------------------- index entries
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
            f"{r.family}/{metric_label(r.metric)} @ {r.candidate}"
            for r in run.comparison
            if r.verdict == "regression"
        ]
    return IndexEntry(
        run_key=run.run_key,
        run_id=run.run_id,
        date=run.date,
        status=run.status,
        profile=m.profile,
        verl_versions=m.verl_versions,
        baseline_version=m.baseline_version,
        seeds=m.seeds,
        validation=run.validation.status,
        finished=m.finished,
        published_at=published_at,
        report=PublishedLayout.run_file(run.run_key, run.layout.report.name),
        summary=PublishedLayout.run_file(run.run_key, run.layout.summary.name) if run.study else None,
        verdict_counts=run.verdict_counts(),
        regressions=regressions[:50],
        headline=headline,
        gap=gap,
    )


def as_index_entry(obj: IndexEntry | Mapping[str, Any]) -> IndexEntry:
    """An ``index.json`` entry (as read from the published index) as an :class:`IndexEntry`."""
    return obj if isinstance(obj, IndexEntry) else IndexEntry.model_validate(obj)
