"""The DAG file: imports cleanly and lightly, and declares the nightly's contract."""

from __future__ import annotations

import json
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
    "timetable": type(dag.timetable).__name__ if dag else None,
}}))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    info = json.loads(out.stdout.strip().splitlines()[-1])
    assert info["errors"] == {}
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
        ["profile", "verl_versions", "seeds", "families", "baseline_version", "profile_overrides"]
    )
    assert info["catchup"] is False and info["max_active_runs"] == 1
    assert info["timetable"] == "CronTriggerTimetable"


def test_schedule_is_configurable_by_env(monkeypatch):
    from genbench_tasks.pipeline import settings

    monkeypatch.setenv(settings.ENV_SCHEDULE, "30 4 * * 1-5")
    assert settings.schedule() == "30 4 * * 1-5"
    monkeypatch.delenv(settings.ENV_SCHEDULE)
    assert settings.schedule() == settings.DEFAULT_SCHEDULE
