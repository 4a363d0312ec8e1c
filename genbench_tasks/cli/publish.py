"""`genbench publish RUNDIR s3://bucket/prefix` and `genbench presign s3://bucket/key`."""

from __future__ import annotations

import argparse
import json

from genbench_tasks.cli.arguments import http_url, int_between, non_empty, positive_int


def register(sub: argparse._SubParsersAction) -> None:
    pub = sub.add_parser(
        "publish",
        help="publish a run directory and its HTML report to S3",
        description=(
            "Upload RUNDIR to s3://bucket/prefix/runs/<date>_<run_id>/ (sha256-verified, private objects), "
            "render report.html, then update index.json, latest/ and the history page index.html last."
        ),
    )
    pub.add_argument("rundir", metavar="RUNDIR", help="run directory (holds manifest.json)")
    pub.add_argument("uri", metavar="S3_URI", help="destination s3://bucket[/prefix]")
    _endpoint_args(pub)
    pub.add_argument(
        "--verify",
        choices=("checksum", "readback"),
        default="checksum",
        help="verify objects by S3's SHA256 checksum (default) or by reading them back",
    )
    pub.add_argument("--workers", type=positive_int, default=4, help="parallel uploads (default: 4)")
    pub.add_argument(
        "--multipart-threshold-mb",
        type=int_between(5, 5 * 1024),
        default=64,
        help="multipart above this size (MiB, 5 to 5120: S3's part sizes; default 64)",
    )
    pub.add_argument("--json", action="store_true", help="print the result as JSON")
    pub.set_defaults(func=_publish)

    pre = sub.add_parser(
        "presign",
        help="print a presigned GET URL for an S3 object",
        description="Print a presigned GET URL for an existing object (objects are private).",
    )
    pre.add_argument("uri", metavar="S3_URI", help="s3://bucket/key")
    pre.add_argument(
        "--expires",
        type=int_between(1, 604800),
        default=3600,
        help="validity in seconds (default 3600, max 604800)",
    )
    _endpoint_args(pre)
    pre.set_defaults(func=_presign)


def _endpoint_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--endpoint-url",
        default=None,
        type=http_url,
        help="S3 endpoint (MinIO, moto); default: AWS_ENDPOINT_URL_S3 / AWS_ENDPOINT_URL, else AWS",
    )
    parser.add_argument(
        "--aws-conn-id",
        default=None,
        type=non_empty,
        help="use this Airflow aws connection (S3Hook) instead of plain boto3",
    )


def _store(args: argparse.Namespace, transfer=None):
    from genbench_tasks.s3_client import S3Store

    if args.aws_conn_id:
        return S3Store.from_airflow(args.aws_conn_id, transfer=transfer)
    return S3Store.from_boto3(args.endpoint_url, transfer=transfer)


def _publish(args: argparse.Namespace) -> int:
    from pathlib import Path

    from genbench_tasks.artifacts.layout import RunLayout
    from genbench_tasks.errors import GenbenchError
    from genbench_tasks.publish.s3 import publish_run
    from genbench_tasks.report import RunPages
    from genbench_tasks.s3_client import MiB, S3Uri, TransferSettings

    if not Path(args.rundir).is_dir():
        raise GenbenchError(f"run directory not found: {args.rundir}")
    if not RunLayout(Path(args.rundir)).manifest.is_file():
        raise GenbenchError(f"not a run directory (no manifest.json): {args.rundir}")
    S3Uri.parse(args.uri)
    threshold = args.multipart_threshold_mb * MiB
    transfer = TransferSettings(
        multipart_threshold=threshold, multipart_chunksize=max(threshold // 4, 8 * MiB)
    )
    result = publish_run(
        args.rundir,
        args.uri,
        RunPages.load(args.rundir),
        store=_store(args, transfer),
        verify=args.verify,
        max_workers=args.workers,
    )
    if args.json:
        print(json.dumps(result.model_dump(), indent=2))
        return 0
    print(
        f"published {result.objects} objects ({result.uploaded} uploaded, {result.skipped} unchanged, "
        f"{result.deleted} stale removed) in {result.seconds:.1f}s"
    )
    print(f"run:     {result.run_uri}")
    print(f"report:  {result.report_uri}")
    print(f"history: {result.history_uri}")
    if result.latest_uri:
        print(f"latest:  {result.latest_uri}")
    if result.report_url:
        print(f"view:    {result.report_url}")
    return 0


def _presign(args: argparse.Namespace) -> int:
    from genbench_tasks.s3_client import S3Uri

    target = S3Uri.parse(args.uri)
    print(_store(args).presign(target, args.expires, check_exists=True))
    return 0
