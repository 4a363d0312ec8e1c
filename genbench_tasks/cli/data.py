"""`genbench data ...`: build and validate datasets."""

from __future__ import annotations

import argparse
import json
import sys

from genbench_tasks.cli.arguments import output_dir, seed
from genbench_tasks.profiles import DEFAULT_PROFILE


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "data", help="build and validate datasets", description="Build and validate datasets."
    )
    data_sub = parser.add_subparsers(dest="data_command", metavar="SUBCOMMAND", required=True)

    build = data_sub.add_parser(
        "build",
        help="build all datasets of a profile",
        description=(
            "Generate every family's splits deterministically from the profile's seed and sizes and write "
            "verl RL parquet (rl/<family>/<split>.parquet), SFT parquet (sft/...) and datasets.json."
        ),
    )
    build.add_argument(
        "--profile", default=DEFAULT_PROFILE, help=f"profile name or YAML path (default: {DEFAULT_PROFILE})"
    )
    build.add_argument("--out", required=True, help="output directory")
    build.add_argument("--seed", type=seed, default=None, help="override the profile's data seed")
    build.add_argument("--no-validate", action="store_true", help="skip Great Expectations validation")
    build.add_argument(
        "--data-docs", action="store_true", help="also render Great Expectations data docs (HTML; ~2x slower)"
    )
    build.set_defaults(func=_build)

    validate = data_sub.add_parser(
        "validate",
        help="validate a built dataset directory",
        description=(
            "Check DIR/datasets.json against the files, every row (all messages, texts, code ground truth; "
            "reference solutions run in the sandbox), the Great Expectations suites and the cross-split "
            "checks (leaks, n-gram contamination, near-duplicates, ids, the held-out family). Exit 0 when "
            "valid; 1 when the data is invalid (readable report on stderr, JSON report in --report); 2 for "
            "usage errors and unreadable or inconsistent input (missing files, a malformed manifest)."
        ),
    )
    validate.add_argument("dir", help="directory holding datasets.json")
    validate.add_argument(
        "--report", default=None, help="write the JSON report here (default: DIR/validation/)"
    )
    validate.add_argument(
        "--profile",
        default=None,
        help=(
            "profile whose row counts and contamination settings apply "
            "(default: none, i.e. >= 1 row per dataset, 13-gram check allowing no overlap)"
        ),
    )
    validate.add_argument(
        "--data-docs", action="store_true", help="also render Great Expectations data docs (HTML; ~2x slower)"
    )
    validate.add_argument(
        "--cache-dir",
        default=None,
        help="keep passing reports here by content hash: unchanged data then validates in seconds",
    )
    validate.set_defaults(func=_validate)


def _build(args: argparse.Namespace) -> int:
    from genbench_tasks.data.build import build_datasets
    from genbench_tasks.profiles import load_profile

    overrides = {"data": {"seed": args.seed}} if args.seed is not None else None
    profile = load_profile(args.profile, overrides)
    manifest = build_datasets(profile, args.out)
    for entry in manifest.datasets:
        print(f"{entry.name:32s} {entry.rows:6d} rows  {args.out}/{entry.path}")
    if not args.no_validate:
        from genbench_tasks.validation import validate_dataset_dir

        report = validate_dataset_dir(args.out, profile=profile, build_html=args.data_docs)
        print(f"validation: {'passed' if report.success else 'FAILED'}  ({report.report_path})")
        if not report.success:
            _print_failure(report)
            return 1
    print(f"datasets: {args.out}/datasets.json")
    return 0


def _validate(args: argparse.Namespace) -> int:
    from genbench_tasks.profiles import load_profile
    from genbench_tasks.validation import validate_dataset_dir

    profile = load_profile(args.profile) if args.profile else None
    if args.report is not None:
        output_dir(args.report, "--report")
    if args.cache_dir is not None:
        output_dir(args.cache_dir, "--cache-dir")
    report = validate_dataset_dir(
        args.dir, profile=profile, report_dir=args.report, build_html=args.data_docs, cache_dir=args.cache_dir
    )
    print(json.dumps({"success": report.success, "report": str(report.report_path)}))
    if not report.success:
        _print_failure(report)
        return 1
    return 0


def _print_failure(report) -> None:
    """Readable summary, then the usual one-line `genbench: error:` (exit code 1 = data failed validation)."""
    print(report.summary(), file=sys.stderr)
    print(f"genbench: error: {report.one_line()}", file=sys.stderr)
