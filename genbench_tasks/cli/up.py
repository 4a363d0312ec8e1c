"""`genbench up`: the real local deployment (Airflow UI, scheduler, triggerer) on loopback."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from genbench_tasks.cli import arguments


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "up",
        help="run Airflow (UI, scheduler, triggerer), a Ray head and S3 locally until Ctrl-C",
        description=(
            "Start the embedded stack as a real deployment, every socket on 127.0.0.1: Airflow's api-server "
            "(the UI), scheduler (LocalExecutor), dag-processor and triggerer as separate processes on "
            "SQLite, a private Ray head with token auth, and a local S3 server (moto; its objects live in "
            "memory until you stop). Prints the UI's URL, user and password, then runs until Ctrl-C, which "
            "stops everything it started. The DAG starts paused: unpause it to trigger runs from the UI; "
            "unpausing schedules the next nightly slot only (GENBENCH_NIGHTLY_CRON), never a missed one."
        ),
    )
    parser.add_argument(
        "--out", type=Path, default=Path("runs/local"), help="work directory (default: runs/local)"
    )
    parser.add_argument(
        "--port",
        type=arguments.int_between(0, 65535),
        default=8080,
        help="UI/API port on 127.0.0.1 (default 8080; 0: any)",
    )
    parser.add_argument(
        "--s3-port",
        type=arguments.int_between(0, 65535),
        default=0,
        help="local S3 port (default: any free port)",
    )
    parser.add_argument(
        "--ray-cpus", type=arguments.positive_int, default=2, help="CPUs the Ray head offers (default 2)"
    )
    parser.set_defaults(func=_up)


def _up(args: argparse.Namespace) -> int:
    from genbench_tasks.pipeline.embedded import LocalDeployment

    deployment = LocalDeployment(
        work_dir=args.out.resolve(), api_port=args.port, ray_cpus=args.ray_cpus, s3_port=args.s3_port
    )

    arguments.stop_on_signals()
    try:
        info = deployment.start()
        print(
            "\ngenbench is up (everything on 127.0.0.1):\n"
            f"  Airflow UI   {info['ui_url']}   user {info['user']}   password {info['password']}\n"
            f"  Ray          {info['ray_dashboard']}   (token: {info['ray_token_file']})\n"
            f"  S3           {info['s3_endpoint']}   reports under {info['report_uri']}\n"
            f"  logs         {info['logs']}\n"
            "Open the UI, unpause genbench_nightly, then Trigger (the form's defaults run the profile's "
            "nightly).\nCtrl-C stops everything.",
            flush=True,
        )
        while True:
            dead = {name: code for name, code in deployment.alive().items() if code is not None}
            if dead:
                print(f"genbench: error: airflow processes exited: {dead}; see {info['logs']}", flush=True)
                return 1
            time.sleep(2)
    except KeyboardInterrupt:
        print("\nstopping ...", flush=True)
        return 0
    finally:
        deployment.stop()
