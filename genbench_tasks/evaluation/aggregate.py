"""Aggregate a run directory's evaluations across seeds into ``RUNDIR/summary.json``.

Layout read::

    RUNDIR/data/datasets.json                      families with a test split, and their roles
    RUNDIR/eval/<label>/seed=<n>/metrics.json      one run (label: ``sft`` or a verl version, e.g. 0.9.1)
    RUNDIR/eval/<label>/seed=<n>/samples.<family>.jsonl   per-sample results (optional: item-level data)
    RUNDIR/eval/<label>/seed=<n>/manifest.json     sampling settings (optional: checked for consistency)

``summary.json`` (:class:`StudySummary`): per family the study's Table 1 (Success Rate, BLEU-4, Consistency,
Reward Mean: mean / ddof=1 std / 95% bootstrap CI across seeds) and Table 2 (Success Rate Std and Reward Std
across seeds) per label, with n per cell; the generalization gap per label; every run's scalar metrics;
per-item results for paired comparisons; and what is missing (seeds, cells) as warnings, never as errors.

Per-item results (``items[label][family][item_id]``) hold one entry per seed, in ``item_seeds`` order. With
K samples per prompt a seed's entry reduces them: ``reward`` = mean over the K samples, ``passed`` = strict
majority of the K samples passed, ``hypothesis`` = sample 0 (an unbiased single draw, for BLEU).
"""

from __future__ import annotations

import json
import logging
from collections import defaultdict
from datetime import datetime, timezone
from pathlib import Path

from genbench_tasks.artifacts.evaluation import EvalManifest, EvalMetrics, SampleLine
from genbench_tasks.artifacts.io import ArtifactError, read_jsonl, read_model, read_optional, write_model
from genbench_tasks.artifacts.layout import SUMMARY, CellDir, RunLayout
from genbench_tasks.artifacts.summary import FamilySummary, MissingCell, StudySummary
from genbench_tasks.errors import GenbenchError
from genbench_tasks.labels import is_baseline, label_key
from genbench_tasks.scoring import stats

log = logging.getLogger(__name__)

SUMMARY_NAME = SUMMARY


def run_dirs(rundir: Path) -> dict[str, dict[int, Path]]:
    """label -> seed -> ``RUNDIR/eval/<label>/seed=<n>``."""
    return {
        label: {seed: cell.path for seed, cell in seeds.items()}
        for label, seeds in RunLayout(rundir).eval_cells().items()
    }


def _dataset_families(rundir: Path, warnings: list[str]) -> dict[str, str | None]:
    """family -> role for every RL test split in RUNDIR/data/datasets.json (empty if absent)."""
    from genbench_tasks.data.build import load_manifest

    layout = RunLayout(rundir)
    if not layout.dataset_manifest.is_file():
        warnings.append("no data/datasets.json: expected families inferred from the runs")
        return {}
    try:
        manifest = load_manifest(layout.data_dir)
    except GenbenchError as exc:
        warnings.append(str(exc))
        return {}
    return dict(manifest.test_families())


def _registry_role(family: str) -> str | None:
    from genbench_tasks.families import get_family

    try:
        return get_family(family).role
    except GenbenchError:
        return None


def read_samples(path: Path) -> list[SampleLine]:
    return read_jsonl(path, SampleLine)


def item_results(
    per_seed: dict[int, list[SampleLine]], warnings: list[str], where: str
) -> tuple[dict[str, stats.ItemResult], list[int]]:
    """Per-item, per-seed results (see module docstring) over the items present in every seed."""
    seeds = sorted(per_seed)
    grouped: dict[int, dict[str, list[SampleLine]]] = {}
    for seed in seeds:
        g: dict[str, list[SampleLine]] = defaultdict(list)
        for s in per_seed[seed]:
            g[s.prompt_id].append(s)
        grouped[seed] = g
    common = set.intersection(*(set(g) for g in grouped.values())) if grouped else set()
    dropped = set.union(*(set(g) for g in grouped.values())) - common if grouped else set()
    if dropped:
        warnings.append(f"{where}: {len(dropped)} item(s) not present in every seed left out of item data")
    items: dict[str, stats.ItemResult] = {}
    for pid in sorted(common):
        passed, reward, hyp, ref = [], [], [], None
        for seed in seeds:
            samples = sorted(grouped[seed][pid], key=lambda s: s.sample_index)
            k = len(samples)
            passed.append(sum(s.passed for s in samples) * 2 > k)
            reward.append(sum(s.reward for s in samples) / k)
            hyp.append(samples[0].text)
            ref = ref if ref is not None else samples[0].reference
        items[pid] = stats.ItemResult(passed=passed, reward=reward, hypothesis=hyp, reference=ref)
    return items, seeds


def load_items(
    seed_dirs: dict[int, Path], families: list[str], label: str, warnings: list[str]
) -> tuple[dict[str, dict[str, stats.ItemResult]], dict[str, list[int]]]:
    """family -> item -> ItemResult for one label, from its seeds' samples files."""
    items: dict[str, dict[str, stats.ItemResult]] = {}
    order: dict[str, list[int]] = {}
    for family in families:
        per_seed: dict[int, list[SampleLine]] = {}
        for seed, d in seed_dirs.items():
            path = CellDir(d).samples(family)
            if not path.is_file():
                continue
            try:
                per_seed[seed] = read_samples(path)
            except ArtifactError as exc:
                warnings.append(f"{exc}; no item data")
        if per_seed:
            items[family], order[family] = item_results(per_seed, warnings, f"{label}/{family}")
    return items, order


def aggregate(
    rundir: str | Path,
    *,
    expected_seeds: list[int] | None = None,
    expected_labels: list[str] | None = None,
    with_items: bool = True,
    write: bool = True,
) -> StudySummary:
    """Aggregate ``RUNDIR/eval/*/seed=*/metrics.json`` into ``RUNDIR/summary.json`` (module docstring).

    Missing seeds and cells become ``missing`` entries and ``warnings``; a run directory without ``eval/``
    is an error.
    """
    root = Path(rundir)
    if not root.is_dir():
        raise GenbenchError(f"run directory {root} does not exist")
    if not (root / "eval").is_dir():
        raise GenbenchError(f"{root} has no eval/ directory (expected RUNDIR/eval/<label>/seed=<n>/)")
    warnings: list[str] = []
    missing: list[MissingCell] = []
    roles = _dataset_families(root, warnings)
    dirs = run_dirs(root)
    for label in expected_labels or []:
        dirs.setdefault(label, {})
    labels = sorted(dirs, key=label_key)
    seeds = sorted(set(expected_seeds or []) | {s for by_seed in dirs.values() for s in by_seed})

    runs: list[stats.RunRecord] = []
    seen_families: set[str] = set(roles)
    sampling: dict[str, list[str]] = defaultdict(list)
    present: dict[str, dict[str, list[int]]] = defaultdict(lambda: defaultdict(list))  # family -> label
    usable_dirs: dict[str, dict[int, Path]] = defaultdict(dict)
    for label in labels:
        if not dirs[label]:
            missing.append(MissingCell(label=label, reason="no runs"))
            continue
        for seed in seeds:
            d = dirs[label].get(seed)
            if d is None:
                missing.append(MissingCell(label=label, seed=seed, reason="no run directory"))
                continue
            cell = CellDir(d)
            path = cell.metrics
            if not path.is_file():
                missing.append(MissingCell(label=label, seed=seed, reason="no metrics.json (run incomplete)"))
                continue
            try:
                mf = read_model(path, EvalMetrics)
            except ArtifactError as exc:
                missing.append(MissingCell(label=label, seed=seed, reason="malformed metrics.json"))
                warnings.append(str(exc))
                continue
            if mf.seed != seed:
                warnings.append(f"{path}: says seed {mf.seed} but lies in seed={seed}; using {seed}")
            if mf.model_label != label:
                warnings.append(
                    f"{path}: says label {mf.model_label!r} but lies in {label}/; using {label!r}"
                )
            manifest = read_optional(cell.manifest, EvalManifest, warnings)
            if manifest is not None:
                sampling[json.dumps(manifest.sampling, sort_keys=True)].append(f"{label}/seed={seed}")
            usable_dirs[label][seed] = d
            for family, fm in mf.families.items():
                seen_families.add(family)
                if family not in roles and fm.role is not None:
                    roles[family] = fm.role
                runs.append(
                    stats.RunRecord(version=label, family=family, seed=seed, metrics=fm.metrics.flat())
                )
                present[family][label].append(seed)

    families = sorted(seen_families)
    for family in families:
        roles.setdefault(family, _registry_role(family))
        for label in labels:
            for seed in sorted(usable_dirs[label]):
                if seed not in present[family][label]:
                    missing.append(
                        MissingCell(
                            label=label, seed=seed, family=family, reason="family not in metrics.json"
                        )
                    )
    for label in labels:
        lacking = [s for s in seeds if s not in usable_dirs[label]]
        if lacking and usable_dirs[label]:
            warnings.append(
                f"{label}: seed(s) {', '.join(map(str, lacking))} missing; n={len(usable_dirs[label])} "
                f"of {len(seeds)}"
            )
        elif not usable_dirs[label]:
            warnings.append(f"{label}: no usable runs")
    cells = [m for m in missing if m.family is not None]
    if cells:
        warnings.append(
            f"{len(cells)} missing cell(s): "
            + ", ".join(f"{m.label}/seed={m.seed}/{m.family}" for m in cells[:10])
            + (" ..." if len(cells) > 10 else "")
        )
    if len(sampling) > 1:
        warnings.append(
            "runs used different sampling settings: "
            + "; ".join(f"{k} ({len(v)} runs, e.g. {v[0]})" for k, v in sampling.items())
        )
    if not runs:
        warnings.append("no usable evaluation runs")

    tables = stats.study_tables(runs, {f: r for f, r in roles.items() if r in ("train", "heldout")})
    summaries: dict[str, FamilySummary] = {}
    for family in families:
        ft = tables.families.get(family)
        summaries[family] = FamilySummary(
            family=family,
            role=roles.get(family),
            table1=ft.table1 if ft else [],
            table2=ft.table2 if ft else [],
            n={label: len(present[family][label]) for label in labels},
            seeds={label: sorted(present[family][label]) for label in labels},
        )

    items: dict[str, dict[str, dict[str, stats.ItemResult]]] = {}
    item_seeds: dict[str, dict[str, list[int]]] = {}
    if with_items:
        for label in labels:
            if usable_dirs[label]:
                items[label], item_seeds[label] = load_items(usable_dirs[label], families, label, warnings)

    summary = StudySummary(
        rundir=str(root),
        generated_at=datetime.now(timezone.utc).isoformat(),
        labels=labels,
        seeds=seeds,
        families=summaries,
        generalization_gap=tables.generalization_gap,
        baseline_differences=stats.baseline_differences(runs, [x for x in labels if is_baseline(x)]),
        runs=sorted(runs, key=lambda r: (label_key(r.version), r.family, r.seed)),
        items=items,
        item_seeds=item_seeds,
        missing=missing,
        warnings=warnings,
    )
    for w in warnings:
        log.warning("%s", w)
    if write:
        write_model(RunLayout(root).summary, summary)
        log.info(
            "wrote %s: %d runs, %d labels, %d families",
            root / SUMMARY_NAME,
            len(runs),
            len(labels),
            len(families),
        )
    return summary


def load_summary(rundir: str | Path) -> StudySummary:
    path = RunLayout(rundir).summary
    if not path.is_file():
        raise GenbenchError(f"{path} not found; run `genbench aggregate {rundir}` first")
    return read_model(path, StudySummary)


def format_tables(summary: StudySummary) -> str:
    """Human-readable Table 1 / Table 2 / gap, one block per family."""

    def cell(s: stats.Summary, scale: float = 1.0, digits: int = 3) -> str:
        if s.mean is None:
            return "-"
        text = f"{s.mean * scale:.{digits}f}"
        if s.std is not None:
            text += f"±{s.std * scale:.{digits}f}"
        return text

    def num(x: float | None) -> str:
        return f"{x:.3f}" if x is not None else "-"

    lines: list[str] = []
    for name, fam in summary.families.items():
        lines.append(f"== {name} ({fam.role or '?'})")
        lines.append(
            f"  {'label':10s} {'n':>3s}  {'success':>13s}  {'BLEU-4':>13s}  {'consistency':>13s}  "
            f"{'reward':>13s}  {'succ std':>8s}  {'rew std':>8s}"
        )
        t2 = {r.version: r for r in fam.table2}
        for r in fam.table1:
            r2 = t2.get(r.version)
            lines.append(
                f"  {r.version:10s} {r.n_runs:3d}  {cell(r.success_rate):>13s}  {cell(r.bleu, digits=2):>13s}  "
                f"{cell(r.consistency):>13s}  {cell(r.reward_mean):>13s}  "
                f"{num(r2.success_rate_std if r2 else None):>8s}  {num(r2.reward_std if r2 else None):>8s}"
            )
    if summary.generalization_gap:
        lines.append("== generalization gap (in-domain success - held-out success)")
        for g in summary.generalization_gap:
            ci = f" [{g.gap.ci_low:.3f}, {g.gap.ci_high:.3f}]" if g.gap.ci_low is not None else ""
            lines.append(f"  {g.version:10s} n={g.n_seeds}  gap {cell(g.gap)}{ci}")
    for w in summary.warnings:
        lines.append(f"warning: {w}")
    return "\n".join(lines)
