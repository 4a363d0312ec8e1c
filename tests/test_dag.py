"""The DAG file: imports cleanly and lightly, and declares the nightly's contract."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from tests.conftest import REPO

HEAVY = (
    "torch",
    "transformers",
    "ray",
    "great_expectations",
    "verl",
    "sentence_transformers",
    "pandas",
    "boto3",
)


def test_dagbag_imports_without_errors_or_heavy_modules():
    code = f"""
import json, sys, time
t = time.monotonic()

def _form_defaults_valid(dag):
    # What the trigger form does before enabling its button: every Param's default against its schema.
    from airflow.sdk.definitions.param import ParamsDict
    try:
        ParamsDict(dag.params).validate()
        return True
    except Exception as exc:
        return repr(exc)

from airflow.dag_processing.dagbag import DagBag
bag = DagBag(dag_folder={str(REPO / "dags")!r})
dag = bag.dags.get("genbench_nightly")
print(json.dumps({{
    "errors": {{k: v.splitlines()[-1] for k, v in bag.import_errors.items()}},
    "dags": sorted(bag.dag_ids),
    "heavy": [m for m in {HEAVY!r} if m in sys.modules],
    "tasks": sorted(t.task_id for t in dag.tasks) if dag else [],
    "params": sorted(dag.params.keys()) if dag else [],
    "catchup": dag.catchup if dag else None,
    "max_active_runs": dag.max_active_runs if dag else None,
    "train_concurrency": dag.get_task("train").max_active_tis_per_dag if dag else None,
    "timetable": type(dag.timetable).__name__ if dag else None,
    "form_defaults_valid": _form_defaults_valid(dag) if dag else None,
}}))
"""
    env = {**os.environ, "GENBENCH_TRAIN_CONCURRENCY": "3"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, env=env)
    assert out.returncode == 0, out.stderr[-2000:]
    info = json.loads(out.stdout.strip().splitlines()[-1])
    assert info["errors"] == {}
    assert info["train_concurrency"] == 3  # PPO jobs of one nightly at once
    assert info["dags"] == ["genbench_nightly"]
    assert info["heavy"] == [], f"DAG file imports heavy modules at parse time: {info['heavy']}"
    assert {
        "plan",
        "build_data",
        "validate",
        "check_config",
        "plan_cells",
        "train_sft",
        "train",
        "evaluate",
        "collect",
        "aggregate",
        "detect_regressions",
        "publish",
        "notify",
    } <= set(info["tasks"])
    assert info["params"] == sorted(
        [
            "profile",
            "verl_versions",
            "seeds",
            "families",
            "baseline_version",
            "baselines",
            "profile_overrides",
        ]
    )
    assert info["catchup"] is False and info["max_active_runs"] == 1
    assert info["timetable"] == "NightlySlotTimetable"
    assert info["form_defaults_valid"] is True


def test_train_concurrency_fits_the_machine_unless_set(monkeypatch):
    from genbench_tasks.pipeline import settings

    monkeypatch.delenv(settings.ENV_TRAIN_CONCURRENCY, raising=False)
    memory_gib = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    expected = max(1, min(os.cpu_count() or 1, int(memory_gib // settings.TRAIN_JOB_GIB)))
    assert settings.train_concurrency() == expected >= 1
    monkeypatch.setenv(settings.ENV_TRAIN_CONCURRENCY, "0")
    assert settings.train_concurrency() == 1


def test_schedule_is_configurable_by_env(monkeypatch):
    from genbench_tasks.pipeline import settings

    monkeypatch.setenv(settings.ENV_SCHEDULE, "30 4 * * 1-5")
    assert settings.schedule() == "30 4 * * 1-5"
    monkeypatch.delenv(settings.ENV_SCHEDULE)
    assert settings.schedule() == settings.DEFAULT_SCHEDULE


def test_trigger_form_params_accept_empty_values_and_list_the_shipped_profiles():
    from airflow.dag_processing.dagbag import DagBag
    from airflow.sdk.definitions.param import ParamsDict

    from genbench_tasks.pipeline.nightly import NightlyParams
    from genbench_tasks.profiles import available_profiles

    dag = DagBag(dag_folder=str(REPO / "dags")).dags["genbench_nightly"]
    params = ParamsDict(dag.params)
    resolved = params.validate()
    assert resolved["profile"] == "local-cpu"
    assert {k for k, v in resolved.items() if v is None} == {
        "verl_versions",
        "seeds",
        "families",
        "baseline_version",
        "baselines",
        "profile_overrides",
    }
    assert dag.params.get_param("profile").schema["enum"] == available_profiles()
    NightlyParams.model_validate(resolved)  # what the plan task does with the form's defaults
    for name in ("verl_versions", "seeds", "families", "baseline_version", "baselines", "profile_overrides"):
        assert "null" in dag.params.get_param(name).schema["type"], name
        assert dag.params.get_param(name).description, name


def test_unpausing_schedules_the_next_slot_not_a_missed_one(monkeypatch):
    import datetime

    import pendulum
    from airflow.timetables.base import DataInterval, TimeRestriction

    from genbench_tasks.pipeline import schedule
    from genbench_tasks.pipeline.schedule import NightlySlotTimetable

    timetable = NightlySlotTimetable("0 2 * * *", grace=datetime.timedelta(hours=1))
    free = TimeRestriction(earliest=None, latest=None, catchup=False)

    def at(text):
        now = pendulum.parse(text)
        monkeypatch.setattr(schedule, "utcnow", lambda: now)
        monkeypatch.setattr("airflow.timetables.trigger.utcnow", lambda: now)

    # A fresh DAG unpaused at 09:00: the next slot (tomorrow 02:00), not this morning's.
    at("2026-12-01T09:00:00Z")
    info = timetable.next_dagrun_info(last_automated_data_interval=None, restriction=free)
    assert info.run_after == pendulum.parse("2026-12-02T02:00:00Z")
    # Paused for three nights, unpaused at 09:00: still the next slot, no catch-up of the latest missed one.
    last = DataInterval.exact(pendulum.parse("2026-11-28T02:00:00Z"))
    info = timetable.next_dagrun_info(last_automated_data_interval=last, restriction=free)
    assert info.run_after == pendulum.parse("2026-12-02T02:00:00Z")
    # The scheduler reaching tonight's slot a little late (within the grace) still runs it.
    at("2026-12-01T02:20:00Z")
    last = DataInterval.exact(pendulum.parse("2026-11-30T02:00:00Z"))
    info = timetable.next_dagrun_info(last_automated_data_interval=last, restriction=free)
    assert info.run_after == pendulum.parse("2026-12-01T02:00:00Z")
    # Round trip through Airflow's serialization (what the scheduler reads back).
    assert NightlySlotTimetable.deserialize(timetable.serialize()).serialize() == timetable.serialize()


def test_timetable_is_registered_as_an_airflow_plugin():
    from airflow import plugins_manager

    from genbench_tasks.pipeline.schedule import NightlySlotTimetable

    timetables = plugins_manager.get_timetables_plugins()
    assert timetables["genbench_tasks.pipeline.schedule.NightlySlotTimetable"] is NightlySlotTimetable
