"""The whole nightly DAG on real components: Airflow (SQLite, dag.test), a local Ray head (Jobs API),
moto's S3 server over HTTP, GX, the tiny CPU model and the installed verl. Then again: nothing is redone."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from genbench_tasks.artifacts.comparison import ComparisonFile
from genbench_tasks.artifacts.layout import COMPARISON, SUMMARY, VERDICTS, PublishedLayout
from genbench_tasks.artifacts.summary import StudySummary
from genbench_tasks.artifacts.verdicts import Detection
from genbench_tasks.pipeline.embedded import airflow_environment, default_dags_folder, run_dag_once
from tests.fixtures.small_profile import SMALL

pytestmark = [pytest.mark.integration, pytest.mark.slow]

BUCKET = "genbench-e2e"


def _s3(endpoint: str):
    import boto3

    return boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1")


def _ray_jobs(head) -> list[str]:
    return sorted(j.submission_id for j in head.launcher().client.list_jobs() if j.submission_id)


def _success_markers(work: Path) -> dict[str, float]:
    return {str(p): p.stat().st_mtime for p in (work / "cells").rglob("_SUCCESS")}


@pytest.fixture
def embedded(tmp_path, ray_head, s3_server, airflow_db, monkeypatch):
    _s3(s3_server).create_bucket(Bucket=BUCKET)
    work = tmp_path / "work"
    env = airflow_environment(
        Path(airflow_db),
        default_dags_folder(),
        s3_server,
        ray_head.address,
        work,
        f"s3://{BUCKET}/nightly",
        ray_token=ray_head.token,
    )
    for key, value in env.items():
        if key.startswith(("AIRFLOW_CONN_", "AIRFLOW_VAR_")):
            monkeypatch.setenv(key, value)
    return {"work": work, "s3": s3_server, "ray": ray_head}


def test_nightly_dag_end_to_end_then_cached(embedded):
    work, s3 = embedded["work"], _s3(embedded["s3"])
    conf = {"profile": "local-cpu", "verl_versions": ["0.9.1"], "seeds": 2, "profile_overrides": SMALL}

    assert run_dag_once(conf) == "success"

    # Every cell ran once: SFT, 2 verl PPO + 2 TRL PPO (the traditional-PPO baseline, one per seed),
    # 2+2+2 evaluations (sft, trl-ppo, 0.9.1).
    markers = _success_markers(work)
    kinds = sorted(Path(p).parts[-3] for p in markers)
    assert kinds == ["eval"] * 6 + ["sft"] + ["train"] * 4
    jobs_after_first = _ray_jobs(embedded["ray"])
    assert len(jobs_after_first) == 11
    assert sum("-train-trl-ppo-" in j for j in jobs_after_first) == 2

    # Published: every object matches its recorded sha256; index and report present.
    index = json.loads(s3.get_object(Bucket=BUCKET, Key="nightly/index.json")["Body"].read())
    runs = index["runs"]
    assert len(runs) == 1 and runs[0]["status"] == "success"
    run_prefix = f"nightly/runs/{runs[0]['run_key']}"
    published = json.loads(s3.get_object(Bucket=BUCKET, Key=f"{run_prefix}/published.json")["Body"].read())
    keys = {o["key"] for o in published["objects"]}
    assert {"report.html", "summary.json", "comparison.json", "manifest.json", "data/datasets.json"} <= keys
    assert any(k.startswith("train/0.9.1/seed=1/") for k in keys)
    assert any(k.startswith("eval/sft/seed=0/samples.") for k in keys)
    assert any(k.startswith("train/trl-ppo/seed=1/") for k in keys)
    assert any(k.startswith("eval/trl-ppo/seed=1/samples.") for k in keys)
    assert any(k.startswith("validation/") for k in keys)
    for obj in published["objects"]:
        body = s3.get_object(Bucket=BUCKET, Key=f"{run_prefix}/{obj['key']}")["Body"].read()
        assert hashlib.sha256(body).hexdigest() == obj["sha256"], obj["key"]
    report = s3.get_object(Bucket=BUCKET, Key=f"{run_prefix}/report.html")["Body"].read().decode()
    assert "<svg" in report and "code_generation" in report and "0.9.1" in report
    summary = StudySummary.model_validate_json(
        s3.get_object(Bucket=BUCKET, Key=f"{run_prefix}/{SUMMARY}")["Body"].read()
    )
    assert summary.labels == ["sft", "trl-ppo", "0.9.1"]  # the study's rows, in its order
    diffs = {(d.version, d.baseline, d.family, d.metric) for d in summary.baseline_differences}
    assert ("0.9.1", "trl-ppo", "code_generation", "success_rate") in diffs
    assert ("0.9.1", "sft", "code_generation", "reward_mean") in diffs
    assert "verl against the study" in report and "traditional PPO (TRL)" in report
    first = ComparisonFile.model_validate_json(
        s3.get_object(Bucket=BUCKET, Key=f"{run_prefix}/{COMPARISON}")["Body"].read()
    )
    assert first.comparisons == []  # one version, no previous nightly: nothing to compare yet

    # Second run: a new DAG run, same inputs -> every cell cached, no Ray job submitted.
    assert run_dag_once(conf) == "success"
    assert _success_markers(work) == markers
    assert _ray_jobs(embedded["ray"]) == jobs_after_first
    index = json.loads(s3.get_object(Bucket=BUCKET, Key="nightly/index.json")["Body"].read())
    assert len(index["runs"]) == 2 and all(r["status"] == "success" for r in index["runs"])

    # The second nightly's verdicts come from the history. Both runs are of the same night, so the later run
    # replaces the earlier one there: one night of history, too little to detect anything (no false alarm).
    second = next(r for r in index["runs"] if r["run_key"] != runs[0]["run_key"])
    key = "nightly/" + PublishedLayout.run_file(second["run_key"], VERDICTS)
    doc = Detection.model_validate_json(s3.get_object(Bucket=BUCKET, Key=key)["Body"].read())
    assert {(v.version, v.metric) for v in doc.verdicts} == {
        ("0.9.1", m) for m in ("success_rate", "reward_mean")
    }
    assert all(v.verdict == "insufficient data" and v.nights == 1 for v in doc.verdicts)
    history = s3.list_objects_v2(Bucket=BUCKET, Prefix="nightly/history/")["Contents"]
    assert {o["Key"].rsplit("/", 1)[1] for o in history} == {f"{r['run_key']}.jsonl" for r in index["runs"]}
