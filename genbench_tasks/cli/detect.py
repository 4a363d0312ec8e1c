"""`genbench detect`: verdicts over a nightly history; `genbench history rebuild`: regenerate it."""

from __future__ import annotations

import argparse
import json
import sys
import time

from genbench_tasks.cli import arguments


def register(sub: argparse._SubParsersAction) -> None:
    det = sub.add_parser(
        "detect",
        help="change points, stability and verdicts over a history of nightly results",
        description=(
            "Read a history (the nightly's history folder, local or s3://bucket/prefix, or one JSONL/CSV/"
            "parquet file with columns night (ISO date), version, seed, family, metric, value) and write, per "
            "(version, family, metric), a verdict (regression, improvement, no change, inconclusive, "
            "insufficient data) with the change night, the effect and its interval, and the minimum "
            "detectable effect. Tested metrics: a registered family's primary metrics, every metric of "
            "another family; --metrics narrows both."
        ),
        epilog="example: genbench detect --history runs/work/history --baseline 0.8.0 --out verdicts.json",
    )
    det.add_argument("--history", required=True, metavar="PATH_OR_S3_URI", help="history folder or file")
    det.add_argument("--metrics", metavar="M1,M2", help="comma-separated metrics to test")
    det.add_argument(
        "--baseline",
        type=arguments.non_empty,
        metavar="VERSION",
        help="also compare every version against this one",
    )
    det.add_argument("--out", metavar="PATH", help="verdicts JSON (default: print it)")
    det.add_argument(
        "--endpoint-url", type=arguments.http_url, help="S3 endpoint for s3:// histories (MinIO, moto)"
    )
    det.set_defaults(func=_detect)

    hist = sub.add_parser("history", help="the per-version history of nightly results")
    hsub = hist.add_subparsers(dest="history_command", metavar="ACTION", required=True)
    reb = hsub.add_parser(
        "rebuild",
        help="regenerate the history from run directories",
        description=(
            "Write OUT/<run_key>.jsonl for every run under RUNS (a folder of run directories, or the publish "
            "prefix s3://bucket/prefix holding runs/<run_key>/). Idempotent."
        ),
    )
    reb.add_argument("runs", metavar="RUNS", help="folder of run directories or s3://bucket/prefix")
    reb.add_argument("--out", required=True, metavar="DIR", help="history folder to (re)write")
    reb.add_argument("--endpoint-url", type=arguments.http_url, help="S3 endpoint (MinIO, moto)")
    reb.set_defaults(func=_rebuild)


def _detect(args: argparse.Namespace) -> int:
    from genbench_tasks.artifacts.io import write_model
    from genbench_tasks.errors import GenbenchError
    from genbench_tasks.evaluation.history import read_history, series_from_history
    from genbench_tasks.scoring.detection import detect

    metrics = None
    if args.metrics is not None:
        metrics = [m.strip() for m in args.metrics.split(",") if m.strip()]
        if not metrics:
            raise GenbenchError("--metrics needs at least one metric name")
    t0 = time.monotonic()
    series, notes = series_from_history(
        read_history(args.history, endpoint_url=args.endpoint_url), metrics=metrics
    )
    result = detect(series, baseline=args.baseline)
    result.warnings[:0] = notes
    if args.out is None:
        sys.stdout.write(result.model_dump_json(by_alias=True, indent=2) + "\n")
        return 0
    try:
        write_model(args.out, result)
    except OSError as exc:
        raise GenbenchError(f"cannot write {args.out}: {exc.strerror}") from exc
    counts: dict[str, int] = {}
    for v in result.verdicts:
        counts[v.verdict] = counts.get(v.verdict, 0) + 1
    print(
        f"{len(result.verdicts)} series, latest night {result.latest_night}: "
        + json.dumps(counts)
        + f" in {time.monotonic() - t0:.1f}s -> {args.out}"
    )
    for v in result.verdicts:
        if v.verdict in ("regression", "improvement"):
            eff = v.effect
            ci = f" [{eff.low:+.4f}, {eff.high:+.4f}]" if eff and eff.low is not None else ""
            print(
                f"  {v.verdict:11s} {v.version} {v.family}/{v.metric} at {v.change_night}: "
                f"{eff.estimate:+.4f}{ci}"
            )
    return 0


def _rebuild(args: argparse.Namespace) -> int:
    from genbench_tasks.evaluation.history import rebuild_history

    n = rebuild_history(args.runs, args.out, endpoint_url=args.endpoint_url)
    print(f"history: {n} run(s) -> {args.out}")
    return 0
