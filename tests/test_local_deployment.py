"""`genbench up` as a user runs it: Airflow's api-server, scheduler, dag-processor and triggerer as separate
processes, a private Ray head with token auth and the local S3 server, all on loopback.

One deployment for the module (startup ~1 min): the DAG parses with no import errors, the trigger form opens
in headless Chromium with its defaults and its Trigger button is enabled, unpausing schedules no missed
nightly, a small run of two verl releases triggered through the REST API (JWT from /auth/token) runs its
Ray tasks deferred in the triggerer, its cells in parallel, one Ray job each (PPO: verl's ``main_ppo`` for
0.8.0 and 0.9.1), to success; its comparison tells the two releases' trainers apart; the report and every
artifact land in S3 with their checksums; a second run with the same inputs redoes nothing and gets its verdicts from
the history. Ctrl-C stops every process it started. (The scheduler's run is the pipeline's end-to-end test:
`dag.test()` would hide form, scheduling and parallelism bugs.)"""

from __future__ import annotations

import datetime
import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from genbench_tasks.launch.local_ray import _our_processes
from genbench_tasks.pipeline.embedded import AirflowApi, stage_times
from genbench_tasks.s3_client import s3_client
from tests.fixtures.small_profile import SMALL
from tests.test_local_ray import listening_addresses, non_loopback

pytestmark = [pytest.mark.integration, pytest.mark.slow]

DAG_ID = "genbench_nightly"
RAY_TASKS = ("train_sft", "train", "evaluate")
CHROMIUM = os.environ.get("GENBENCH_CHROMIUM", "/usr/bin/chromium")


def _cron_three_hours_ago() -> str:
    """A daily slot that passed 3 h ago: unpausing must not run it (the grace is 1 h)."""
    slot = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(hours=3)
    return f"{slot.minute} {slot.hour} * * *"


@pytest.fixture(scope="module")
def deployment(tmp_path_factory) -> Iterator[dict]:
    work = tmp_path_factory.mktemp("up")
    env = {**os.environ, "GENBENCH_NIGHTLY_CRON": _cron_three_hours_ago()}
    for key in [k for k in env if k.startswith(("AIRFLOW_", "AIRFLOW__"))]:
        env.pop(key)  # the test session's private Airflow must not leak into the deployment
    log = open(work / "genbench-up.out", "wb")  # noqa: SIM115
    proc = subprocess.Popen(
        [sys.executable, "-m", "genbench_tasks.cli", "up", "--out", str(work), "--port", "0"],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
    )
    info_path = work / "deployment.json"
    deadline = time.monotonic() + 420
    while not info_path.exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"genbench up did not come up:\n{(work / 'genbench-up.out').read_text()[-4000:]}")
        time.sleep(1)
    info = json.loads(info_path.read_text())
    info["work"] = work
    info["process"] = proc
    try:
        yield info
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)  # what Ctrl-C sends
            try:
                proc.wait(timeout=120)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
        log.close()


@pytest.fixture(scope="module")
def api(deployment) -> AirflowApi:
    api = AirflowApi(deployment["ui_url"], deployment["user"], deployment["password"])
    api.wait_for_dag(DAG_ID, timeout_s=240)  # the dag-processor's first parse
    return api


def _deployment_pids(deployment: dict) -> list[int]:
    root = psutil.Process(deployment["process"].pid)
    pids = {root.pid, *(p.pid for p in root.children(recursive=True))}
    ray_root = deployment["pids"]["ray-head"]
    pids |= {p.pid for p in _our_processes(ray_root, Path(deployment["ray_temp_dir"]))}
    return sorted(pids)


def test_every_socket_of_the_deployment_is_on_loopback(deployment, api):
    listeners = listening_addresses(_deployment_pids(deployment))
    ports = {a.rsplit(":", 1)[1] for addrs in listeners.values() for a in addrs}
    expected = {
        deployment["ui_url"].rsplit(":", 1)[1],
        deployment["s3_endpoint"].rsplit(":", 1)[1],
        deployment["ray_dashboard"].rsplit(":", 1)[1],
    }
    assert expected <= ports, f"listeners not found (the check would pass vacuously): {listeners}"
    assert non_loopback(listeners) == {}, listeners


def test_the_dag_parses_without_import_errors(api):
    assert api.get("/api/v2/importErrors")["total_entries"] == 0
    dag = api.get(f"/api/v2/dags/{DAG_ID}")
    assert dag["is_paused"] is True  # new DAGs start paused: nothing runs until the user says so
    assert "upcoming slots only" in (dag.get("timetable_description") or "")


@pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="needs Debian's chromium (make install adds it)")
def test_trigger_form_opens_with_defaults_and_its_trigger_button_is_enabled(deployment, api, tmp_path):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.goto(deployment["ui_url"])
            page.get_by_label("Username").fill(deployment["user"])
            page.get_by_label("Password").fill(deployment["password"])
            page.get_by_role("button", name="Sign in").click()
            page.wait_for_url(lambda url: "/auth/login" not in url, timeout=60_000)
            page.goto(f"{deployment['ui_url']}/dags/{DAG_ID}")
            page.get_by_role("button", name="Trigger").first.click()
            dialog = page.get_by_role("dialog")
            dialog.get_by_text("Run Parameters").wait_for(timeout=60_000)
            page.wait_for_timeout(1500)  # the form validates its fields after rendering
            page.screenshot(path=str(tmp_path / "trigger-form.png"), full_page=True)
            assert dialog.get_by_text("local-cpu", exact=True).first.is_visible()
            trigger = dialog.get_by_role("button", name="Trigger", exact=True)
            assert trigger.is_visible() and trigger.is_enabled(), f"see {tmp_path / 'trigger-form.png'}"
        finally:
            browser.close()


def _s3(deployment: dict):
    return s3_client(
        deployment["s3_endpoint"], aws_access_key_id="genbench", aws_secret_access_key="genbench-secret"
    )


def _ray_jobs(deployment: dict) -> list[str]:
    from genbench_tasks.launch.ray_jobs import RayJobLauncher

    token = Path(deployment["ray_token_file"]).read_text().strip() if deployment["ray_token_file"] else None
    launcher = RayJobLauncher(deployment["ray_dashboard"], token=token)
    return sorted(j.submission_id for j in launcher.client.list_jobs() if j.submission_id)


def _success_markers(work: Path) -> dict[str, float]:
    return {str(p): p.stat().st_mtime for p in (work / "cells").rglob("_SUCCESS")}


def _get_json(s3, bucket: str, key: str) -> dict:
    return json.loads(s3.get_object(Bucket=bucket, Key=key)["Body"].read())


#: The study's small nightly: two verl releases (0.8.0 from its cached install), one seed, the two baselines
#: (sft, trl-ppo). One seed keeps the suite's main_ppo runs few; the statistics over seeds are
#: tests/test_nightly_detection.py's and tests/test_stats.py's.
CONF = {"verl_versions": ["0.8.0", "0.9.1"], "seeds": 1, "profile_overrides": SMALL}


@pytest.fixture(scope="module")
def first_run(deployment, api) -> dict:
    """The small nightly, triggered through the REST API as the UI does, followed to its end."""
    api.patch(f"/api/v2/dags/{DAG_ID}", {"is_paused": False})
    run = api.post(f"/api/v2/dags/{DAG_ID}/dagRuns", {"logical_date": None, "conf": CONF})
    # ~16 min alone on 2 cores; longer beside the main_ppo tests on the other pytest worker
    state, seen = api.follow_run(DAG_ID, run["dag_run_id"], timeout_s=3000, poll_s=1)
    tis = api.task_instances(DAG_ID, run["dag_run_id"])
    return {"state": state, "seen": seen, "tis": tis, "markers": _success_markers(deployment["work"])}


def test_small_run_defers_its_ray_tasks_and_runs_cells_in_parallel(deployment, api, first_run):
    final = {(ti["task_id"], ti["map_index"]): ti["state"] for ti in first_run["tis"]}
    assert first_run["state"] == "success", final
    assert all(s in ("success", "skipped") for s in final.values()), final
    for task_id in RAY_TASKS:
        assert "deferred" in first_run["seen"].get(task_id, set()), f"{task_id} never deferred: {first_run}"
        assert final[(task_id, 0)] == "success"
    # Four evaluation cells (sft, trl-ppo, 0.8.0, 0.9.1) on a 2-CPU head: they overlap (the scheduler runs
    # mapped tasks in parallel; dag.test() would run them one after the other).
    stages = {
        task_id: (count, wall, summed) for task_id, count, wall, summed in stage_times(first_run["tis"])
    }
    count, wall, summed = stages["evaluate"]
    assert count == 4 and summed > 1.3 * wall, stages["evaluate"]
    # Every cell ran once, each as one Ray job: SFT, 2 verl PPO (one per release) + 1 TRL PPO (the
    # traditional-PPO baseline), 4 evaluations.
    kinds = sorted(Path(p).parts[-3] for p in first_run["markers"])
    assert kinds == ["eval"] * 4 + ["sft"] + ["train"] * 3
    jobs = _ray_jobs(deployment)
    assert len(jobs) == 8 and sum("-train-trl-ppo-" in j for j in jobs) == 1

    # Unpausing a DAG whose slot passed 3 h ago scheduled nothing: the only run is the one we asked for.
    runs = api.get(f"/api/v2/dags/{DAG_ID}/dagRuns")["dag_runs"]
    assert [r["run_type"] for r in runs] == ["manual"], runs


def test_small_run_publishes_the_three_row_report_and_checksummed_artifacts(deployment, first_run):
    assert first_run["state"] == "success"
    s3 = _s3(deployment)
    bucket, prefix = deployment["report_uri"].removeprefix("s3://").split("/", 1)
    (entry,) = _get_json(s3, bucket, f"{prefix}/index.json")["runs"]
    assert entry["status"] == "success"
    run_prefix = f"{prefix}/runs/{entry['run_key']}"
    published = _get_json(s3, bucket, f"{run_prefix}/published.json")
    keys = {o["key"] for o in published["objects"]}
    assert {"report.html", "summary.json", "comparison.json", "manifest.json", "data/datasets.json"} <= keys
    for expected in (
        "train/0.8.0/seed=0/",
        "train/0.9.1/seed=0/",
        "eval/sft/seed=0/samples.",
        "train/trl-ppo/",
    ):
        assert any(k.startswith(expected) for k in keys), expected
    assert any(k.startswith("eval/trl-ppo/seed=0/samples.") for k in keys)
    assert any(k.startswith("validation/") for k in keys)
    for obj in published["objects"]:
        body = s3.get_object(Bucket=bucket, Key=f"{run_prefix}/{obj['key']}")["Body"].read()
        assert hashlib.sha256(body).hexdigest() == obj["sha256"], obj["key"]
    report = s3.get_object(Bucket=bucket, Key=f"{run_prefix}/report.html")["Body"].read().decode()
    assert "<svg" in report and "code_generation" in report and "0.9.1" in report
    summary = _get_json(s3, bucket, f"{run_prefix}/summary.json")
    assert summary["labels"] == ["sft", "trl-ppo", "0.8.0", "0.9.1"]  # the study's rows, in its order
    diffs = {(d["version"], d["baseline"], d["family"], d["metric"]) for d in summary["baseline_differences"]}
    assert ("0.9.1", "trl-ppo", "code_generation", "success_rate") in diffs
    assert ("0.9.1", "sft", "code_generation", "reward_mean") in diffs
    assert "verl against the study" in report and "traditional PPO (TRL)" in report
    comparison = _get_json(s3, bucket, f"{run_prefix}/comparison.json")
    (releases,) = comparison["comparisons"]  # tonight's candidate release against the baseline release
    assert (releases["candidate"]["label"], releases["baseline"]["label"]) == ("0.9.1", "0.8.0")


def test_both_releases_train_with_main_ppo_and_their_trainers_differ(deployment, first_run):
    """The nightly's PPO cells are verl's own trainer for each release (0.8.0 from its cached install, 0.9.1
    this environment's): 2 steps of PPO + GAE with a critic and the KL penalty, logged by verl's file logger.
    The two releases start from the same data, SFT init and seed, and run different trainers (0.9's v1
    trainer, its data plane and sampler): their merged weights differ, and comparison.json's trainer section
    says their training differs from step 1."""
    from genbench_tasks.artifacts.comparison import ComparisonFile
    from genbench_tasks.artifacts.io import read_model
    from genbench_tasks.artifacts.layout import RunLayout
    from genbench_tasks.artifacts.run import CheckpointRef
    from genbench_tasks.artifacts.training import VerlLaunchRecord
    from genbench_tasks.training.outputs import read_metrics
    from genbench_tasks.verl.job import LAUNCH_RECORD

    assert first_run["state"] == "success"
    # the first run (run directory names start with their date)
    run = RunLayout(sorted((deployment["work"] / "runs").iterdir())[0])
    weights = {}
    for version in ("0.8.0", "0.9.1"):
        cell = run.train_cell(version, 0)
        launch = read_model(cell.path / LAUNCH_RECORD, VerlLaunchRecord)
        assert (launch.verl, launch.vllm, launch.device) == (version, None, "cpu")
        rows = read_metrics(cell.train_metrics)
        assert [r.step for r in rows] == [1, 2], version
        for key in ("critic/vf_loss", "actor/pg_loss", "actor/reward_kl_penalty"):
            assert all(key in (r.model_extra or {}) for r in rows), (version, key)
        assert (cell.path / "hydra" / "attempt-0" / ".hydra" / "config.yaml").is_file()
        merged = Path(read_model(cell.checkpoint_ref, CheckpointRef).path) / "model.safetensors"
        weights[version] = merged.read_bytes()  # verl's FSDP -> HF merge, kept in the cell cache
    assert weights["0.8.0"] != weights["0.9.1"]
    (releases,) = read_model(run.comparison, ComparisonFile).comparisons
    assert releases.trainer is not None and releases.trainer.verdict == "differs", releases.trainer
    assert [(s.seed, s.first_differing_step) for s in releases.trainer.seeds] == [(0, 1)], releases.trainer


def test_second_run_with_the_same_inputs_is_all_cached(deployment, api, first_run):
    assert first_run["state"] == "success"
    s3 = _s3(deployment)
    bucket, prefix = deployment["report_uri"].removeprefix("s3://").split("/", 1)
    (first,) = _get_json(s3, bucket, f"{prefix}/index.json")["runs"]
    jobs_before = _ray_jobs(deployment)
    run = api.post(f"/api/v2/dags/{DAG_ID}/dagRuns", {"logical_date": None, "conf": CONF})
    state, _ = api.follow_run(DAG_ID, run["dag_run_id"], timeout_s=900, poll_s=1)
    assert state == "success"
    assert _success_markers(deployment["work"]) == first_run["markers"]  # no cell redone
    assert _ray_jobs(deployment) == jobs_before  # no Ray job submitted

    runs = _get_json(s3, bucket, f"{prefix}/index.json")["runs"]
    assert len(runs) == 2 and all(r["status"] == "success" for r in runs)
    # The second nightly's verdicts come from the history. Both runs are of the same night, so the later run
    # replaces the earlier one there: one night of history, too little to detect anything (no false alarm).
    (second,) = [r for r in runs if r["run_key"] != first["run_key"]]
    doc = _get_json(s3, bucket, f"{prefix}/runs/{second['run_key']}/verdicts.json")
    assert {(v["version"], v["metric"]) for v in doc["verdicts"]} == {
        (v, m) for v in ("0.8.0", "0.9.1") for m in ("success_rate", "reward_mean")
    }
    assert all(v["verdict"] == "insufficient data" and v["nights"] == 1 for v in doc["verdicts"])
    history = s3.list_objects_v2(Bucket=bucket, Prefix=f"{prefix}/history/")["Contents"]
    assert {o["Key"].rsplit("/", 1)[1] for o in history} == {f"{r['run_key']}.jsonl" for r in runs}


def test_ctrl_c_stops_everything_it_started(deployment, api):
    pids = _deployment_pids(deployment)
    proc = deployment["process"]
    proc.send_signal(signal.SIGINT)
    proc.wait(timeout=120)
    assert proc.returncode == 0, (deployment["work"] / "genbench-up.out").read_text()[-3000:]
    deadline = time.monotonic() + 30
    alive = [p for p in pids if _running(p)]
    while alive and time.monotonic() < deadline:
        time.sleep(1)
        alive = [p for p in alive if _running(p)]
    assert alive == [], [_command_line(p) for p in alive]


def _running(pid: int) -> bool:
    """The process exists and is not a zombie (one can exit between any two psutil calls)."""
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def _command_line(pid: int) -> str:
    try:
        return " ".join(psutil.Process(pid).cmdline())
    except psutil.Error:
        return f"<pid {pid} gone>"
