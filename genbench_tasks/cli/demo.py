"""`genbench demo`: run the nightly DAG once on the embedded default."""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "demo",
        help="run the nightly DAG once on the embedded default",
        description=(
            "Start a local S3-compatible server (moto) and a local Ray head on loopback, initialise Airflow "
            "on SQLite, and run dags/genbench_nightly.py once with dag.test(): build and validate data, SFT, "
            "PPO per verl version x seed, evaluate, aggregate, detect regressions, publish the report. "
            "Prints the report's URL and a local copy's path."
        ),
    )
    parser.add_argument("--out", default="runs/demo", help="work directory (runs, cell cache, Airflow home)")
    parser.add_argument("--profile", default="local-cpu", help="profile (default: local-cpu)")
    parser.add_argument("--verl-versions", nargs="+", default=[], help="default: the profile's (0.8.0 0.9.1)")
    parser.add_argument("--seeds", type=int, default=5, help="seeds per version (default: 5)")
    parser.add_argument("--overrides", default="{}", help="JSON deep-merged into the profile")
    parser.add_argument(
        "--serve", action="store_true", help="keep the S3 server up until Ctrl-C to browse the report"
    )
    parser.set_defaults(func=_demo)


def _demo(args: argparse.Namespace) -> int:
    from genbench_tasks.errors import GenbenchError
    from genbench_tasks.pipeline.embedded import (
        DEMO_BUCKET,
        DEMO_PREFIX,
        airflow_environment,
        default_dags_folder,
        local_ray_head,
        local_s3_server,
        migrate_airflow_db,
        run_dag_once,
    )

    try:
        overrides = json.loads(args.overrides)
    except json.JSONDecodeError as exc:
        raise GenbenchError(f"--overrides is not valid JSON: {exc.msg}") from None
    work = Path(args.out).resolve()
    airflow_home = work / "airflow"
    airflow_home.mkdir(parents=True, exist_ok=True)
    report_uri = f"s3://{DEMO_BUCKET}/{DEMO_PREFIX}"
    with local_s3_server() as endpoint, local_ray_head() as head:
        env = airflow_environment(
            airflow_home, default_dags_folder(), endpoint, head.address, work, report_uri, head.token
        )
        os.environ.update(env)  # before Airflow is imported
        migrate_airflow_db(env)
        conf = {
            "profile": args.profile,
            "verl_versions": args.verl_versions,
            "seeds": args.seeds,
            "profile_overrides": overrides,
        }
        started = time.monotonic()
        state = run_dag_once(conf)
        print(f"\nDAG run finished: {state} in {time.monotonic() - started:.0f}s")
        published = _latest_published(work)
        if published:
            print(f"report (S3, presigned): {published.get('report_url')}")
            print(f"report (local copy):    {published.get('local_report')}")
        if args.serve:
            print("serving S3 until Ctrl-C ...")
            try:
                while True:
                    time.sleep(3600)
            except KeyboardInterrupt:
                pass
    return 0 if state.endswith("success") else 1


def _latest_published(work: Path) -> dict | None:
    runs = sorted((work / "runs").glob("*/.publish_result.json"), key=lambda p: p.stat().st_mtime)
    return json.loads(runs[-1].read_text()) if runs else None
