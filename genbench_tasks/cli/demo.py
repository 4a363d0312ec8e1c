"""`genbench demo`: run the nightly DAG once on the embedded default, through the real scheduler."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from genbench_tasks.artifacts.run import PublishRecord
from genbench_tasks.cli import arguments
from genbench_tasks.profiles import DEFAULT_PROFILE

DAG_ID = "genbench_nightly"


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "demo",
        help="run the nightly DAG once on the embedded default",
        description=(
            "Start the embedded stack as `genbench up` does (Airflow's api-server, scheduler, dag-processor and "
            "triggerer, a private Ray head, a local S3 server; all on 127.0.0.1), trigger genbench_nightly once "
            "through Airflow's REST API and follow it: build and validate data, SFT, PPO per verl version x "
            "seed, evaluate, aggregate, detect regressions, publish the report. Cells run in parallel as the "
            "Ray head's CPUs allow. Prints each stage's time, the report's URL and a local copy's path."
        ),
    )
    parser.add_argument(
        "--out", type=Path, default=Path("runs/demo"), help="work directory (default: runs/demo)"
    )
    parser.add_argument("--profile", default=DEFAULT_PROFILE, help=f"profile (default: {DEFAULT_PROFILE})")
    parser.add_argument(
        "--verl-versions", nargs="+", default=None, help="default: the profile's (0.8.0 0.9.1)"
    )
    parser.add_argument(
        "--seeds",
        type=arguments.positive_int,
        default=None,
        help="seeds per version (default: the profile's)",
    )
    parser.add_argument(
        "--overrides", type=arguments.json_object, default=None, help="JSON deep-merged into the profile"
    )
    parser.add_argument(
        "--ray-cpus", type=arguments.positive_int, default=2, help="CPUs the Ray head offers (default 2)"
    )
    parser.add_argument(
        "--timeout", type=arguments.positive_int, default=4 * 3600, help="give up after this many seconds"
    )
    parser.add_argument(
        "--serve", action="store_true", help="keep everything up until Ctrl-C to browse the UI"
    )
    parser.set_defaults(func=_demo)


def _demo(args: argparse.Namespace) -> int:
    from genbench_tasks.pipeline.embedded import AirflowApi, LocalDeployment, stage_times
    from genbench_tasks.profiles import load_profile

    load_profile(args.profile, args.overrides)  # bad profile or overrides: fail before starting anything
    work = args.out.resolve()
    deployment = LocalDeployment(work_dir=work, api_port=0, ray_cpus=args.ray_cpus)
    arguments.stop_on_signals()
    try:
        info = deployment.start()
        print(f"Airflow UI {info['ui_url']} (user {info['user']}, password {info['password']})", flush=True)
        api = AirflowApi(info["ui_url"], info["user"], info["password"])
        api.wait_for_dag(DAG_ID)
        api.patch(f"/api/v2/dags/{DAG_ID}", {"is_paused": False})
        conf = {
            "profile": args.profile,
            "verl_versions": args.verl_versions,
            "seeds": args.seeds,
            "profile_overrides": args.overrides,
        }
        run = api.post(f"/api/v2/dags/{DAG_ID}/dagRuns", {"logical_date": None, "conf": conf})
        run_id = run["dag_run_id"]
        print(f"triggered {DAG_ID} run {run_id}", flush=True)
        started = time.monotonic()

        def progress(ti: dict) -> None:
            index = f"[{ti['map_index']}]" if ti["map_index"] >= 0 else ""
            print(f"  {time.monotonic() - started:7.0f}s  {ti['task_id']}{index}: {ti['state']}", flush=True)

        state, _ = api.follow_run(DAG_ID, run_id, timeout_s=args.timeout, on_change=progress)
        wall = time.monotonic() - started
        print(f"\nDAG run finished: {state} in {wall:.0f}s\n\nstage              tasks    wall s   summed s")
        for task_id, count, stage_wall, summed in stage_times(api.task_instances(DAG_ID, run_id)):
            print(f"{task_id:<18} {count:>5} {stage_wall:>9.0f} {summed:>10.0f}")
        published = _latest_published(work)
        if published:
            print(f"\nreport (S3, presigned): {published.report_url}")
            print(f"report (local copy):    {published.local_report}")
        if args.serve:
            print("serving until Ctrl-C ...", flush=True)
            try:
                while True:
                    time.sleep(3600)
            except KeyboardInterrupt:
                pass
        return 0 if state == "success" else 1
    except KeyboardInterrupt:
        print("\nstopping ... (finished cells stay cached: the next demo reuses them)", flush=True)
        return 130
    finally:
        deployment.stop()


def _latest_published(work: Path) -> PublishRecord | None:
    from genbench_tasks.artifacts.io import read_model
    from genbench_tasks.artifacts.layout import PUBLISH_RECORD, WorkLayout

    runs = sorted(WorkLayout(work).runs.glob(f"*/{PUBLISH_RECORD}"), key=lambda p: p.stat().st_mtime)
    return read_model(runs[-1], PublishRecord) if runs else None
