"""RayJobOperator / RayJobTrigger: the trigger's run() against a real local Ray head, and the operator's
execute -> defer -> execute_complete path with a minimal context (a full dag.test() lives elsewhere)."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import threading
import time
from datetime import timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from airflow.sdk import Connection
from airflow.sdk.exceptions import AirflowException, AirflowFailException, TaskDeferred
from structlog.testing import capture_logs

from genbench_tasks.launch.local_ray import LocalRayHead
from genbench_tasks.pipeline.ray_operator import (
    RayJobOperator,
    RayJobTrigger,
    ray_address_from_connection,
    resolve_ray_endpoint,
)
from tests.fixtures.ray_cluster import cmd, unique_id

# -- unit ----------------------------------------------------------------------------------------------------


def test_module_is_light_to_import():
    code = "import sys, genbench_tasks.pipeline.ray_operator; sys.exit(int('ray' in sys.modules))"
    assert subprocess.run([sys.executable, "-c", code], timeout=120).returncode == 0, "ray imported eagerly"


@pytest.mark.parametrize(
    ("conn", "expected"),
    [
        (Connection(conn_id="c", conn_type="http", host="127.0.0.1", port=8265), "http://127.0.0.1:8265"),
        (
            Connection(conn_id="c", conn_type="https", host="ray.internal", port=443),
            "https://ray.internal:443",
        ),
        (Connection(conn_id="c", conn_type="generic", host="http://head/", port=8265), "http://head:8265"),
        (Connection(conn_id="c", conn_type="ray", host="head", extra='{"scheme": "https"}'), "https://head"),
    ],
)
def test_address_from_connection(conn: Connection, expected: str):
    assert ray_address_from_connection(conn) == expected


def test_endpoint_resolution(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("AIRFLOW_CONN_GENBENCH_RAY", '{"conn_type": "http", "host": "10.9.8.7", "port": 8265}')
    assert resolve_ray_endpoint(None, "genbench_ray") == ("http://10.9.8.7:8265", None)
    assert resolve_ray_endpoint("http://127.0.0.1:1/", "genbench_ray") == ("http://127.0.0.1:1", None)
    monkeypatch.setenv(
        "AIRFLOW_CONN_GENBENCH_RAY",
        '{"conn_type": "http", "host": "ray-head", "port": 8265, "password": " s3cret "}',
    )
    assert resolve_ray_endpoint(None, "genbench_ray") == ("http://ray-head:8265", "s3cret")
    with pytest.raises(AirflowException, match="no host"):
        ray_address_from_connection(Connection(conn_id="c", conn_type="http"))


def test_trigger_serializes_round_trip():
    trig = RayJobTrigger(job_id="j", address="http://127.0.0.1:1", deadline=123.0, poll_interval=2.0)
    path, kwargs = trig.serialize()
    assert path == "genbench_tasks.pipeline.ray_operator.RayJobTrigger"
    assert RayJobTrigger(**kwargs).serialize() == (path, kwargs)


def test_invalid_spec_fails_without_retry():
    op = RayJobOperator(
        task_id="t",
        entrypoint="true",
        submission_id="gb-x",
        runtime_env={"env_vars": {"VLLM_BATCH_INVARIANT": "1"}},
        address="http://127.0.0.1:1",
    )
    with pytest.raises(AirflowFailException, match="VLLM_BATCH_INVARIANT"):
        op.execute({})


def test_execute_complete_raises_with_log_tail():
    op = RayJobOperator(
        task_id="t", entrypoint="true", submission_id="gb-x", address="http://x:1", job_timeout=60
    )
    event = {"job_id": "gb-x", "status": "FAILED", "message": "exit code 3", "log_tail": ["step 2", "crash"]}
    with pytest.raises(AirflowException, match=r"(?s)gb-x ended FAILED: exit code 3.*step 2\ncrash"):
        op.execute_complete({}, event=event)
    with pytest.raises(AirflowException, match="exceeded job_timeout=60s and was stopped"):
        op.execute_complete({}, event={**event, "status": "TIMEOUT", "job_status": "STOPPED"})
    ok = op.execute_complete({}, event={**event, "status": "SUCCEEDED"}, address="http://x:1")
    assert ok == {"job_id": "gb-x", "status": "SUCCEEDED", "address": "http://x:1"}


# -- integration: real local Ray head --------------------------------------------------------------------


async def _first_event(trigger: RayJobTrigger, timeout_s: float = 120) -> dict[str, Any]:
    async def first() -> dict[str, Any]:
        async for event in trigger.run():
            return event.payload
        raise AssertionError("trigger ended without an event")

    return await asyncio.wait_for(first(), timeout=timeout_s)


def _submit(head: LocalRayHead, entrypoint: str, name: str) -> str:
    from genbench_tasks.launch.ray_jobs import RayJobSpec

    return head.launcher().submit_or_attach(RayJobSpec(entrypoint=entrypoint, submission_id=unique_id(name)))


def _wait_status(head: LocalRayHead, job_id: str, wanted: set[str], timeout_s: float = 60) -> str:
    launcher = head.launcher()
    deadline = time.monotonic() + timeout_s
    while (status := getattr(launcher.info(job_id), "status", None)) not in wanted:  # None: not submitted yet
        assert time.monotonic() < deadline, f"{job_id} is {status}, expected {wanted}"
        time.sleep(0.3)
    return status


@pytest.mark.integration
def test_trigger_success_streams_logs(ray_head: LocalRayHead, ray_conn: str, ray_scripts: dict[str, Path]):
    job_id = _submit(ray_head, cmd(ray_scripts["ticker"], "--n", "4", "--interval", "0.2"), "trig-ok")
    trigger = RayJobTrigger(
        job_id=job_id,
        address=ray_head.address,
        ray_conn_id=ray_conn,
        deadline=time.time() + 300,
        poll_interval=0.3,
    )
    with capture_logs() as logs:
        event = asyncio.run(_first_event(trigger))
    assert event["status"] == "SUCCEEDED" and event["job_id"] == job_id
    assert event["log_tail"][-1] == "last line without newline"
    streamed = [str(entry.get("event")) for entry in logs]
    assert any("tick 3" in line for line in streamed), streamed[-10:]
    assert any("last line without newline" in line for line in streamed)


@pytest.mark.integration
def test_trigger_failure_event_and_operator_error(
    ray_head: LocalRayHead, ray_conn: str, ray_scripts: dict[str, Path]
):
    job_id = _submit(ray_head, cmd(ray_scripts["ticker"], "--n", "2", "--exit", "3"), "trig-fail")
    event = asyncio.run(
        _first_event(
            RayJobTrigger(job_id=job_id, address=ray_head.address, ray_conn_id=ray_conn, poll_interval=0.3)
        )
    )
    assert event["status"] == "FAILED"
    assert "tick 1" in event["log_tail"]
    op = RayJobOperator(task_id="t", entrypoint="x", submission_id="y", address=ray_head.address)
    with pytest.raises(AirflowException, match=rf"(?s){job_id} ended FAILED.*tick 1"):
        op.execute_complete({}, event=event, address=ray_head.address)


@pytest.mark.integration
def test_trigger_deadline_stops_job(ray_head: LocalRayHead, ray_conn: str, ray_scripts: dict[str, Path]):
    job_id = _submit(ray_head, cmd(ray_scripts["ticker"], "--n", "900"), "trig-deadline")
    _wait_status(ray_head, job_id, {"RUNNING"})
    trigger = RayJobTrigger(
        job_id=job_id,
        address=ray_head.address,
        ray_conn_id=ray_conn,
        deadline=time.time() + 1,
        poll_interval=0.3,
    )
    event = asyncio.run(_first_event(trigger))
    assert event["status"] == "TIMEOUT" and event["job_status"] == "STOPPED"
    assert ray_head.launcher().status(job_id) == "STOPPED"


@pytest.mark.integration
def test_trigger_on_kill_stops_job(ray_head: LocalRayHead, ray_conn: str, ray_scripts: dict[str, Path]):
    job_id = _submit(ray_head, cmd(ray_scripts["ticker"], "--n", "900"), "trig-kill")
    trigger = RayJobTrigger(job_id=job_id, address=ray_head.address, ray_conn_id=ray_conn, poll_interval=0.3)

    async def scenario() -> None:
        # The triggerer cancels the run() task, then awaits on_kill() when a user marks/clears the task.
        task = asyncio.create_task(_first_event(trigger))
        await asyncio.to_thread(_wait_status, ray_head, job_id, {"RUNNING"})
        await asyncio.sleep(0.5)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await trigger.on_kill()

    asyncio.run(scenario())
    assert _wait_status(ray_head, job_id, {"STOPPED"}) == "STOPPED"


@pytest.mark.integration
def test_operator_defers_then_completes_and_is_idempotent(
    ray_head: LocalRayHead, ray_conn: str, ray_scripts: dict[str, Path]
):
    sid = unique_id("op")
    op = RayJobOperator(
        task_id="train",
        entrypoint=cmd(ray_scripts["ticker"], "--n", "3"),
        submission_id=sid,
        metadata={"verl": "0.9.1", "seed": 7},
        job_timeout=timedelta(minutes=5),
        poll_interval=0.3,
    )
    context: dict[str, Any] = {"ti": SimpleNamespace(try_number=1)}
    with pytest.raises(TaskDeferred) as deferred:
        op.execute(context)
    d = deferred.value
    assert d.method_name == "execute_complete" and isinstance(d.trigger, RayJobTrigger)
    assert d.trigger.job_id == sid and d.trigger.address == ray_head.address
    # The token stays in the connection: the trigger reads it in the triggerer, it is never serialized.
    assert d.trigger.ray_conn_id == ray_conn
    assert ray_head.token not in json.dumps(d.trigger.serialize())
    assert d.timeout > timedelta(minutes=5)  # backstop after the trigger's own deadline
    assert d.trigger.deadline == pytest.approx(time.time() + 300, abs=30)
    event = asyncio.run(_first_event(d.trigger))
    xcom = getattr(op, d.method_name)(context, event=event, **(d.kwargs or {}))
    assert xcom == {"job_id": sid, "status": "SUCCEEDED", "address": ray_head.address}
    assert ray_head.launcher().info(sid).metadata["seed"] == "7"

    # Re-running the task (e.g. cleared after success) attaches to the finished job: no new submission.
    again = RayJobOperator(task_id="train", entrypoint=op.entrypoint, submission_id=sid, poll_interval=0.3)
    assert again.execute(context) == xcom
    assert list(ray_head.launcher().attempts(sid)) == [0]


@pytest.mark.integration
def test_operator_on_kill_stops_job_while_running(
    ray_head: LocalRayHead, ray_conn: str, ray_scripts: dict[str, Path]
):
    """Non-deferrable mode blocks in execute(); on_kill (task SIGTERM) stops the Ray job it follows."""
    sid = unique_id("op-kill")
    op = RayJobOperator(
        task_id="train",
        entrypoint=cmd(ray_scripts["ticker"], "--n", "900"),
        submission_id=sid,
        ray_conn_id=ray_conn,
        deferrable=False,
        poll_interval=0.3,
    )
    errors: list[BaseException] = []

    def run() -> None:
        try:
            op.execute({"ti": SimpleNamespace(try_number=2)})
        except BaseException as exc:
            errors.append(exc)

    worker = threading.Thread(target=run, daemon=True)
    worker.start()
    _wait_status(ray_head, sid, {"RUNNING"})
    op.on_kill()
    worker.join(timeout=90)
    assert not worker.is_alive()
    assert ray_head.launcher().status(sid) == "STOPPED"
    assert len(errors) == 1 and isinstance(errors[0], AirflowException)
    assert "ended STOPPED" in str(errors[0])
    # try_number 2 -> resume even though the cluster had no earlier attempt of this id.
    assert ray_head.launcher().info(sid).entrypoint.endswith(" --resume")
