"""Candidate vs baseline regression tables from evaluated run directories.

A *side* is (run directory, model label): its runs are ``RUNDIR/eval/<label>/seed=*/metrics.json`` (run-level
inputs) and its per-item results come from the same runs' ``samples.<family>.jsonl`` (paired inputs; see
:mod:`genbench_tasks.evaluation.aggregate` for the per-seed reduction of K samples). A run directory holding
only ``summary.json`` works too. The statistics are :func:`genbench_tasks.scoring.stats.compare`.

With training runs (``RUNDIR/train/<label>/seed=<n>/metrics.jsonl``) the two sides' trainers are compared
too, seed by seed (:mod:`genbench_tasks.evaluation.trajectories`): deterministic, so no statistics.

Results go to ``comparison.json`` (:class:`ComparisonFile`): one entry per (candidate, baseline) pair; an
entry for the same pair is replaced, others are kept.
"""

from __future__ import annotations

import logging
import os
from datetime import datetime, timezone
from pathlib import Path

from pydantic import BaseModel, Field

from genbench_tasks.artifacts.comparison import Comparison, ComparisonFile, LabeledRow, SideRef
from genbench_tasks.artifacts.evaluation import EvalMetrics
from genbench_tasks.artifacts.io import ArtifactError, read_model, update_model, write_model
from genbench_tasks.artifacts.layout import COMPARISON, CellDir, RunLayout
from genbench_tasks.errors import GenbenchError
from genbench_tasks.evaluation.aggregate import load_items, run_dirs
from genbench_tasks.evaluation.trajectories import compare_trainers, describe, train_cells
from genbench_tasks.labels import is_baseline, label_key
from genbench_tasks.scoring import stats

log = logging.getLogger(__name__)

COMPARISON_NAME = COMPARISON


class Side(BaseModel):
    ref: SideRef
    runs: list[stats.RunRecord]
    items: dict[str, dict[str, stats.ItemResult]]
    warnings: list[str] = Field(default_factory=list)


def labels_of(rundir: str | Path) -> list[str]:
    """Labels with at least one run directory (or, without eval/, in summary.json)."""
    root = Path(rundir)
    if RunLayout(root).eval_dir.is_dir():
        return sorted((label for label, seeds in run_dirs(root).items() if seeds), key=label_key)
    if RunLayout(root).summary.is_file():
        from genbench_tasks.evaluation.aggregate import load_summary

        return load_summary(root).labels
    return []


def load_side(rundir: str | Path, label: str, *, with_items: bool = True) -> Side:
    """Run-level records and per-item results of one label in one run directory."""
    root = Path(rundir)
    if not root.is_dir():
        raise GenbenchError(f"run directory {root} does not exist")
    warnings: list[str] = []
    layout = RunLayout(root)
    if not layout.eval_dir.is_dir():
        if not layout.summary.is_file():
            raise GenbenchError(f"{root} has neither eval/ nor summary.json")
        from genbench_tasks.evaluation.aggregate import load_summary

        summary = load_summary(root)
        runs = [r for r in summary.runs if r.version == label]
        return Side(
            ref=SideRef(rundir=str(root), label=label, seeds=sorted({r.seed for r in runs})),
            runs=runs,
            items=summary.items.get(label, {}) if with_items else {},
            warnings=[],
        )
    dirs = run_dirs(root).get(label, {})
    runs: list[stats.RunRecord] = []
    usable = {}
    for seed, d in dirs.items():
        path = CellDir(d).metrics
        if not path.is_file():
            warnings.append(f"{label}/seed={seed}: no metrics.json")
            continue
        try:
            mf = read_model(path, EvalMetrics)
        except ArtifactError as exc:
            warnings.append(str(exc))
            continue
        usable[seed] = d
        runs += [
            stats.RunRecord(version=label, family=f, seed=seed, metrics=fm.metrics.flat())
            for f, fm in mf.families.items()
        ]
    families = sorted({r.family for r in runs})
    items = load_items(usable, families, label, warnings)[0] if with_items else {}
    return Side(
        ref=SideRef(rundir=str(root), label=label, seeds=sorted(usable)),
        runs=runs,
        items=items,
        warnings=warnings,
    )


def _compare_sides(candidate: Side, baseline: Side, config: stats.CompareConfig) -> Comparison:
    rows = stats.compare(
        candidate.runs,
        baseline.runs,
        candidate.items or None,
        baseline.items or None,
        config,
    )
    labeled = [
        LabeledRow(**row.model_dump(), candidate=candidate.ref.label, baseline=baseline.ref.label)
        for row in rows
    ]
    warnings = candidate.warnings + baseline.warnings
    if not candidate.runs:
        warnings.append(f"candidate {candidate.ref.label} has no runs in {candidate.ref.rundir}")
    if not baseline.runs:
        warnings.append(f"baseline {baseline.ref.label} has no runs in {baseline.ref.rundir}")
    for w in warnings:
        log.warning("%s", w)
    trainer = compare_trainers(
        train_cells(candidate.ref.rundir, candidate.ref.label),
        train_cells(baseline.ref.rundir, baseline.ref.label),
    )
    if trainer is not None:
        log.info("%s vs %s %s", candidate.ref.label, baseline.ref.label, describe(trainer))
    return Comparison(
        candidate=candidate.ref,
        baseline=baseline.ref,
        generated_at=datetime.now(timezone.utc).isoformat(),
        config=config,
        rows=labeled,
        trainer=trainer,
        warnings=warnings,
    )


def write_comparisons(path: str | Path, comparisons: list[Comparison]) -> Path:
    """Merge into ``path``: replace entries for the same (candidate, baseline) sides, keep the others."""

    def key(c: Comparison) -> tuple:
        return (
            os.path.realpath(c.candidate.rundir),
            c.candidate.label,
            os.path.realpath(c.baseline.rundir),
            c.baseline.label,
        )

    new_keys = {key(c) for c in comparisons}

    def merge(existing: ComparisonFile | None) -> ComparisonFile:
        kept = [c for c in existing.comparisons if key(c) not in new_keys] if existing else []
        return ComparisonFile(comparisons=kept + comparisons)

    path = Path(path)
    try:
        update_model(path, ComparisonFile, merge)
    except ArtifactError as exc:
        log.warning("%s; overwriting", exc)
        write_model(path, merge(None))
    except OSError as exc:
        raise GenbenchError(f"cannot write {path}: {exc.strerror}") from exc
    return path


def _pick(label: str | None, available: list[str], rundir: Path, role: str) -> str:
    if label is not None:
        if label not in available:
            raise GenbenchError(
                f"{role} label {label!r} has no runs in {rundir}; available: {', '.join(available) or 'none'}"
            )
        return label
    versions = [x for x in available if not is_baseline(x)]
    if len(versions) == 1:
        return versions[0]
    raise GenbenchError(
        f"{rundir} has labels {', '.join(available) or 'none'}; choose the {role} with --{role} LABEL"
    )


def compare_runs(
    rundir_a: str | Path,
    rundir_b: str | Path | None = None,
    *,
    candidate: str | None = None,
    baseline: str | None = None,
    config: stats.CompareConfig | None = None,
    out: str | Path | None = None,
) -> Comparison:
    """Compare the candidate (``rundir_a``, label ``candidate``) against the baseline (``rundir_b``, or the
    same run directory, label ``baseline``). Labels may be omitted when a run directory has a single
    non-``sft`` label (two run directories: the baseline defaults to the candidate's label). Writes
    ``out`` (default ``rundir_a/comparison.json``)."""
    a = Path(rundir_a)
    b = Path(rundir_b) if rundir_b is not None else a
    for d in (a, b):
        if not d.is_dir():
            raise GenbenchError(f"run directory {d} does not exist")
    same = os.path.realpath(a) == os.path.realpath(b)
    labels_a, labels_b = labels_of(a), labels_of(b)
    cand = _pick(candidate, labels_a, a, "candidate")
    if same:
        if baseline is None:
            raise GenbenchError("comparing labels within one run directory needs --baseline LABEL")
        if baseline == cand:
            raise GenbenchError(f"candidate and baseline are the same runs ({cand} in {a})")
        base = _pick(baseline, labels_b, b, "baseline")
    else:
        base = _pick(
            baseline if baseline is not None else (cand if cand in labels_b else None),
            labels_b,
            b,
            "baseline",
        )
    comparison = _compare_sides(load_side(a, cand), load_side(b, base), config or stats.CompareConfig())
    write_comparisons(Path(out) if out is not None else a / COMPARISON_NAME, [comparison])
    return comparison


def compare_versions(
    rundir: str | Path,
    baseline: str | None,
    candidates: list[str] | None = None,
    *,
    config: stats.CompareConfig | None = None,
) -> list[LabeledRow]:
    """Every version label (default: all but the study's baselines and the baseline version) against ``baseline`` in one run
    directory; writes ``RUNDIR/comparison.json``. No baseline: nothing to compare (empty list)."""
    root = Path(rundir)
    if baseline is None:
        log.warning("no baseline version configured: no regression comparison")
        return []
    labels = labels_of(root)
    chosen = (
        candidates if candidates is not None else [x for x in labels if not is_baseline(x) and x != baseline]
    )
    cfg = config or stats.CompareConfig()
    base_side = load_side(root, baseline)
    comparisons = [_compare_sides(load_side(root, c), base_side, cfg) for c in chosen]
    if comparisons:
        write_comparisons(root / COMPARISON_NAME, comparisons)
    return [row for c in comparisons for row in c.rows]


def format_comparison(comparison: Comparison) -> str:
    """A fixed-width regression table."""

    def f(x: float | None, digits: int = 3) -> str:
        return f"{x:.{digits}f}" if x is not None else "-"

    c, b = comparison.candidate, comparison.baseline
    lines = [
        f"candidate {c.label} ({c.rundir}, n={len(c.seeds)})  vs  baseline {b.label} ({b.rundir}, n={len(b.seeds)})",
        f"{'family':18s} {'metric':14s} {'candidate':>15s} {'baseline':>15s} {'diff':>8s} "
        f"{'95% CI':>19s} {'p_adj':>7s}  {'verdict':17s} stability",
    ]
    for r in comparison.rows:
        diff = r.diff_paired if r.paired_test and r.diff_paired is not None else r.diff
        ci = r.diff_ci_paired if r.paired_test and r.diff_ci_paired is not None else r.diff_ci
        ci_text = f"[{ci[0]:+.3f},{ci[1]:+.3f}]" if ci else "-"
        cand = f"{f(r.mean_candidate)}±{f(r.std_candidate)}"
        base = f"{f(r.mean_baseline)}±{f(r.std_baseline)}"
        lines.append(
            f"{r.family:18s} {r.metric:14s} {cand:>15s} {base:>15s} "
            f"{(f'{diff:+.3f}' if diff is not None else '-'):>8s} {ci_text:>19s} {f(r.p_adjusted):>7s}  "
            f"{r.verdict:17s} {r.stability_verdict}"
        )
    if comparison.trainer is not None:
        lines.append(describe(comparison.trainer))
    for w in comparison.warnings:
        lines.append(f"warning: {w}")
    return "\n".join(lines)
