"""`genbench aggregate` and `genbench compare`: study tables across seeds, and regression tables."""

from __future__ import annotations

import argparse

from genbench_tasks.cli.arguments import existing_dir, open_unit_interval, output_dir, output_file, seed


def register(sub: argparse._SubParsersAction) -> None:
    agg = sub.add_parser(
        "aggregate",
        help="aggregate a run directory's evaluations across seeds",
        description=(
            "Read RUNDIR/eval/<label>/seed=<n>/metrics.json (label: sft or a verl version) and "
            "RUNDIR/data/datasets.json; write RUNDIR/summary.json with, per family, Table 1 (success rate, "
            "BLEU-4, consistency, reward mean: mean/std/95% CI across seeds) and Table 2 (success-rate std and "
            "reward std across seeds) per label, the generalization gap, n per cell, per-item data for paired "
            "comparisons, and warnings for missing seeds or cells."
        ),
    )
    agg.add_argument(
        "rundir", metavar="RUNDIR", type=existing_dir, help="run directory holding eval/ (and data/)"
    )
    agg.add_argument("--seeds", nargs="+", type=seed, metavar="N", help="seeds expected (default: all seen)")
    agg.add_argument("--labels", nargs="+", metavar="LABEL", help="labels expected (default: all seen)")
    agg.add_argument("--no-items", action="store_true", help="leave per-item data out of summary.json")
    agg.set_defaults(func=_aggregate)

    cmp = sub.add_parser(
        "compare",
        help="candidate vs baseline regression table",
        description=(
            "Compare a candidate (label in RUNDIR_A) against a baseline (label in RUNDIR_B, or in RUNDIR_A "
            "when RUNDIR_B is omitted or the same): run-level tests across seeds and paired item-level tests "
            "from the samples files, Benjamini-Hochberg corrected. Writes comparison.json (default: in "
            "RUNDIR_A) and prints the table."
        ),
        epilog=(
            "examples: genbench compare runs/r1 --candidate 0.9.1 --baseline 0.8.0   |   "
            "genbench compare runs/tonight runs/last-night --candidate 0.9.1"
        ),
    )
    cmp.add_argument("rundir_a", metavar="RUNDIR_A", type=existing_dir, help="run directory of the candidate")
    cmp.add_argument(
        "rundir_b", metavar="RUNDIR_B", nargs="?", type=existing_dir, help="run directory of the baseline"
    )
    cmp.add_argument("--candidate", metavar="LABEL", help="candidate label (default: the only version label)")
    cmp.add_argument(
        "--baseline", metavar="LABEL", help="baseline label (default: the candidate's label in RUNDIR_B)"
    )
    cmp.add_argument("--out", metavar="PATH", help="comparison.json path (default: RUNDIR_A/comparison.json)")
    cmp.add_argument(
        "--alpha", type=open_unit_interval, default=0.05, help="significance level in (0, 1) (default 0.05)"
    )
    cmp.add_argument("--metrics", nargs="+", metavar="METRIC", help="restrict to these metrics")
    cmp.add_argument(
        "--fail-on-regression", action="store_true", help="exit 1 if any row's verdict is 'regression'"
    )
    cmp.set_defaults(func=_compare)


def _aggregate(args: argparse.Namespace) -> int:
    from genbench_tasks.evaluation.aggregate import SUMMARY_NAME, aggregate, format_tables

    output_dir(args.rundir, "RUNDIR")  # summary.json is written there
    summary = aggregate(
        args.rundir, expected_seeds=args.seeds, expected_labels=args.labels, with_items=not args.no_items
    )
    print(format_tables(summary))
    print(f"summary: {args.rundir}/{SUMMARY_NAME}")
    return 0


def _compare(args: argparse.Namespace) -> int:
    from genbench_tasks.evaluation.compare import COMPARISON_NAME, compare_runs, format_comparison
    from genbench_tasks.scoring.stats import CompareConfig

    output_file(args.out, "--out") if args.out else output_dir(args.rundir_a, "RUNDIR_A")
    config = CompareConfig(alpha=args.alpha, metrics=args.metrics)
    comparison = compare_runs(
        args.rundir_a,
        args.rundir_b,
        candidate=args.candidate,
        baseline=args.baseline,
        config=config,
        out=args.out,
    )
    print(format_comparison(comparison))
    print(f"comparison: {args.out or f'{args.rundir_a}/{COMPARISON_NAME}'}")
    if args.fail_on_regression and any(r.verdict == "regression" for r in comparison.rows):
        return 1
    return 0
