"""genbench nightly: does a verl release still generalize to task families it never trained on?

plan -> build data -> validate (GX) -> check verl configs -> SFT -> PPO per (verl version x seed) on Ray
-> evaluate every checkpoint (held-out + in-domain, seeded) -> aggregate -> detect regressions
-> publish artifacts and the HTML report to S3 -> notify.

Nightly on a cron schedule (env GENBENCH_NIGHTLY_CRON) and on demand with the Params form.
This file only wires tasks: all logic lives in `genbench_tasks.pipeline` (importable without Airflow).
"""

from __future__ import annotations

import pendulum
from airflow.sdk import Param, dag, task

from genbench_tasks.pipeline import settings
from genbench_tasks.pipeline.ray_operator import RayJobOperator
from genbench_tasks.pipeline.schedule import NightlySlotTimetable
from genbench_tasks.profiles import DEFAULT_PROFILE, available_profiles

JOB_TIMEOUT = pendulum.duration(hours=12)


def _plan(data: dict):
    from genbench_tasks.pipeline.nightly import RunPlan

    return RunPlan.model_validate(data)


def _cells(data: dict):
    from genbench_tasks.pipeline.nightly import CellPlan

    return CellPlan.model_validate(data)


def _notify_failure(context) -> None:
    from genbench_tasks.pipeline.notify import notify_dag_failure

    notify_dag_failure(context)


@dag(
    dag_id="genbench_nightly",
    # Upcoming cron slots only: unpausing never starts a missed nightly (see pipeline/schedule.py).
    schedule=NightlySlotTimetable(settings.schedule()),
    catchup=False,
    max_active_runs=1,
    default_args={"retries": 1, "retry_delay": pendulum.duration(minutes=2)},
    on_failure_callback=_notify_failure,
    tags=["genbench", "verl", "regression"],
    doc_md=__doc__,
    # Every field may stay empty: empty means "the profile's value", so the form triggers as it opens.
    params={
        "profile": Param(
            settings.default_profile(),
            type="string",
            enum=available_profiles(),
            title="Profile",
            description=f"{DEFAULT_PROFILE}: the embedded CPU default; gpu-small: the nightly on a GPU cluster; "
            "paper: the full study (GPU, not a nightly)",
        ),
        "verl_versions": Param(
            None,
            type=["null", "array"],
            items={"type": "string"},
            title="verl versions",
            description="One release per line, e.g. 0.9.1. Empty: the profile's list",
        ),
        "seeds": Param(
            None,
            type=["null", "integer"],
            minimum=1,
            maximum=20,
            title="Seeds per version",
            description="Seeds 0..n-1. Empty: the profile's seeds",
        ),
        "families": Param(
            None,
            type=["null", "array"],
            items={"type": "string"},
            title="Task families",
            description="e.g. code_generation. Empty: all of the profile's families",
        ),
        "baseline_version": Param(
            None,
            type=["null", "string"],
            title="Baseline verl version",
            description="The version the others are compared with. Empty: the profile's baseline",
        ),
        "baselines": Param(
            None,
            type=["null", "array"],
            items={"type": "string", "enum": ["sft", "trl-ppo"]},
            title="Baseline rows",
            description="The study's reference rows: sft (SFT only), trl-ppo (traditional PPO, TRL; trained "
            "once per seed per nightly). Empty: the profile's (both)",
        ),
        "profile_overrides": Param(
            None,
            type=["null", "object"],
            title="Profile overrides (advanced)",
            description='JSON deep-merged into the profile, e.g. {"ppo": {"steps": 4}}. Empty: none',
        ),
    },
)
def genbench_nightly():
    @task
    def plan(params: dict, run_id: str, dag_run=None) -> dict:
        from airflow.sdk import Variable

        from genbench_tasks.pipeline.nightly import NightlyParams, plan_run

        date = (dag_run.logical_date or dag_run.run_after).strftime("%Y-%m-%d")
        run = plan_run(
            NightlyParams.model_validate(params), Variable.get(settings.VAR_WORK_DIR), run_id, date
        )
        return run.model_dump()

    @task
    def build_data(run: dict) -> dict:
        from genbench_tasks.pipeline.nightly import build_data

        return build_data(_plan(run)).model_dump()

    @task
    def validate(run: dict) -> dict:
        from genbench_tasks.pipeline.nightly import validate_data

        return validate_data(_plan(run))

    @task
    def versions(run: dict) -> list[str]:
        return run["verl_versions"]

    @task
    def check_config(run: dict, version: str) -> dict:
        from genbench_tasks.pipeline.nightly import check_verl_config

        return check_verl_config(_plan(run), version)

    @task
    def plan_cells(run: dict) -> dict:
        from genbench_tasks.pipeline.nightly import plan_cells

        return plan_cells(_plan(run)).model_dump()

    @task
    def jobs(run: dict, cells: dict, kind: str) -> list[dict]:
        """Operator kwargs for the cells of one kind still to compute (finished cells are cached)."""
        from genbench_tasks.pipeline.nightly import job_kwargs, pending

        plan, cell_plan = _plan(run), _cells(cells)
        chosen = [cell_plan.sft] if kind == "sft" else getattr(cell_plan, kind)
        return [job_kwargs(plan, cell) for cell in pending(chosen)]

    @task(trigger_rule="all_done")
    def collect(run: dict, cells: dict) -> dict:
        from genbench_tasks.pipeline.nightly import collect

        return collect(_plan(run), _cells(cells))

    @task
    def aggregate(run: dict) -> str:
        from genbench_tasks.artifacts.layout import RunLayout
        from genbench_tasks.evaluation.aggregate import aggregate

        aggregate(run["rundir"])
        return str(RunLayout(run["rundir"]).summary)

    @task
    def detect_regressions(run: dict) -> dict:
        from genbench_tasks.pipeline.nightly import detect_regressions

        return detect_regressions(_plan(run))

    @task(trigger_rule="all_done")
    def publish(run: dict) -> dict:
        from genbench_tasks.pipeline.publishing import publish_from_airflow

        return publish_from_airflow(_plan(run))

    @task(trigger_rule="all_done")
    def notify(run: dict, published: dict | None = None) -> None:
        from genbench_tasks.pipeline.notify import notify_run

        notify_run(_plan(run), published)

    run = plan()
    built = build_data(run)
    validated = validate(built)
    configs = check_config.partial(run=built).expand(version=versions(built))
    cells = plan_cells(built)
    [validated, configs] >> cells

    common = {"ray_conn_id": settings.CONN_RAY, "job_timeout": JOB_TIMEOUT}
    sft = RayJobOperator.partial(task_id="train_sft", **common).expand_kwargs(
        jobs.override(task_id="sft_jobs")(built, cells, "sft")
    )
    # none_failed: a cached (skipped) SFT cell must not skip training.
    # At most train_concurrency() PPO jobs at once (cores and memory; a CPU main_ppo job peaks at ~4.5 GiB).
    train = RayJobOperator.partial(
        task_id="train",
        trigger_rule="none_failed",
        max_active_tis_per_dag=settings.train_concurrency(),
        **common,
    ).expand_kwargs(jobs.override(task_id="train_jobs")(built, cells, "train"))
    evaluate = RayJobOperator.partial(task_id="evaluate", trigger_rule="all_done", **common).expand_kwargs(
        jobs.override(task_id="eval_jobs")(built, cells, "eval")
    )
    sft >> train >> evaluate
    collected = collect(built, cells)
    evaluate >> collected
    summary = aggregate(built)
    verdicts = detect_regressions(built)
    collected >> summary >> verdicts
    # Published even when validation or a cell failed: the report shows what happened.
    published = publish(run)
    [verdicts, validated, collected] >> published
    notify(run, published)


genbench_nightly()
