"""RayJobLauncher: spec/runtime_env validation (unit) and the Jobs API mechanics on a real local Ray head."""

from __future__ import annotations

import asyncio
import importlib.metadata
import json
import logging
import time
from pathlib import Path

import pytest

from genbench_tasks.launch.local_ray import LocalRayHead
from genbench_tasks.launch.ray_jobs import (
    VERL_OWNED_ENV_VARS,
    LogCursor,
    RayJobConfigError,
    RayJobError,
    RayJobLauncher,
    RayJobSpec,
    attempt_id,
    attempt_of,
    runtime_env_for_verl,
)
from genbench_tasks.verl import ensure_verl_env, first_on_python_path
from tests.fixtures.ray_cluster import cmd, unique_id

log = logging.getLogger(__name__)
# Ray's own tail_job_logs passes ssl=None to aiohttp.
pytestmark = pytest.mark.filterwarnings("ignore:ssl=None is deprecated:DeprecationWarning")


# -- unit ----------------------------------------------------------------------------------------------------


def test_runtime_env_is_the_verl_versions_image():
    env = runtime_env_for_verl("0.9.1", "registry.local/genbench-verl:0.9.1", {"GENBENCH_SEED": "3"})
    assert env == {"image_uri": "registry.local/genbench-verl:0.9.1", "env_vars": {"GENBENCH_SEED": "3"}}
    with pytest.raises(RayJobConfigError, match="image_uri"):
        runtime_env_for_verl("0.9.1", None)
    with pytest.raises(RayJobConfigError, match="not a verl version"):
        runtime_env_for_verl("0.9.1; rm -rf /", "registry.local/x")


@pytest.mark.parametrize("var", sorted(VERL_OWNED_ENV_VARS))
def test_verl_owned_env_vars_rejected(var):
    with pytest.raises(RayJobConfigError, match=f"{var}.*set by verl itself"):
        runtime_env_for_verl("0.9.1", "registry.local/x", {var: "1", "OTHER": "x"})
    with pytest.raises(ValueError, match="set by verl itself"):
        RayJobSpec(entrypoint="true", submission_id="gb-x", runtime_env={"env_vars": {var: "1"}})


def test_spec_validation():
    with pytest.raises(ValueError, match="-try"):
        RayJobSpec(entrypoint="true", submission_id="gb-x-try2")
    with pytest.raises(ValueError, match="submission_id"):
        RayJobSpec(entrypoint="true", submission_id="bad id/with space")
    spec = RayJobSpec(entrypoint="python -m t --out o", submission_id="gb-x")
    assert spec.entrypoint_for_attempt(0) == "python -m t --out o"
    assert spec.entrypoint_for_attempt(2) == "python -m t --out o --resume"
    assert spec.model_copy(update={"resume_arg": None}).entrypoint_for_attempt(1) == spec.entrypoint
    assert spec.model_copy(update={"resume": True}).entrypoint_for_attempt(0).endswith(" --resume")


def test_attempt_ids_round_trip():
    assert [attempt_id("a-b", n) for n in range(3)] == ["a-b", "a-b-try1", "a-b-try2"]
    assert [attempt_of("a-b", j) for j in ("a-b", "a-b-try12", "a-b-try0", "a-bc", "a-b-tryx")] == [
        0,
        12,
        None,
        None,
        None,
    ]


def test_log_cursor_snapshots_and_chunks():
    c = LogCursor()
    assert c.from_snapshot("a\nb") == ["a"]
    assert c.from_snapshot("a\nb\nc\n") == ["b", "c"]
    assert c.from_snapshot("a\nb\nc\nd") == []
    assert c.flush() == ["d"]
    t = LogCursor()
    assert t.feed("x\ny") == ["x"]
    assert t.feed("z\n") == ["yz"]
    assert t.offset == 5


def test_tail_falls_back_to_polling_when_the_stream_breaks():
    class BrokenStreamClient:
        polls = 0

        async def tail_job_logs(self, job_id: str):
            yield "a\nb"
            raise RuntimeError("WebSocket connection closed unexpectedly")

        def get_job_status(self, job_id: str) -> str:
            self.polls += 1
            return "RUNNING" if self.polls < 2 else "SUCCEEDED"

        def get_job_logs(self, job_id: str) -> str:
            return "a\nb\nc\nlast" if self.polls >= 2 else "a\nb\nc\n"

    launcher = RayJobLauncher("http://127.0.0.1:9")
    launcher._client = BrokenStreamClient()  # type: ignore[assignment]
    lines: list[str] = []
    asyncio.run(launcher.tail("j", lines.append, poll_s=0.01))
    assert lines == ["a", "b", "c", "last"]


def test_submission_waits_for_the_heads_job_agent():
    """A head that just started answers 500 "No available agent" for a few seconds: retried, not failed."""

    class AgentlessThenReady:
        calls = 0

        def submit_job(self, **kwargs) -> str:
            self.calls += 1
            if self.calls < 3:
                raise RuntimeError(
                    "Request failed with status code 500: No available agent to submit job, please try again later.."
                )
            return kwargs["submission_id"]

        def list_jobs(self) -> list:
            return []

    launcher = RayJobLauncher("http://127.0.0.1:9")
    launcher._client = AgentlessThenReady()  # type: ignore[assignment]
    spec = RayJobSpec(entrypoint="echo hi", submission_id="gbtest-agent")
    job_id, how = launcher.submit_or_attach_detailed(spec)
    assert how == "submitted" and job_id.startswith("gbtest-agent") and launcher._client.calls == 3
    # Still no agent after the wait: the one-line refusal, not a hang.
    launcher = RayJobLauncher("http://127.0.0.1:9", agent_wait_s=0)
    launcher._client = AgentlessThenReady()  # type: ignore[assignment]
    with pytest.raises(RayJobError, match="No available agent"):
        launcher.submit_or_attach(spec)


def test_client_is_lazy():
    launcher = RayJobLauncher("http://127.0.0.1:9")  # nothing listens there: must not be contacted
    assert launcher._client is None


# -- integration: real local Ray head --------------------------------------------------------------------


def _wait_status(launcher: RayJobLauncher, job_id: str, wanted: set[str], timeout_s: float = 60) -> str:
    deadline = time.monotonic() + timeout_s
    status = launcher.status(job_id)
    while status not in wanted and time.monotonic() < deadline:
        time.sleep(0.3)
        status = launcher.status(job_id)
    assert status in wanted, f"{job_id} is {status}, expected {wanted}"
    return status


def _wait_log(launcher: RayJobLauncher, job_id: str, needle: str, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while needle not in launcher.logs(job_id):
        assert time.monotonic() < deadline, f"{needle!r} never appeared in {job_id}'s log"
        time.sleep(0.3)


@pytest.fixture
def launcher(ray_head: LocalRayHead) -> RayJobLauncher:
    return ray_head.launcher()


def _ticks(lines: list[str]) -> list[str]:
    return [ln for ln in lines if ln.startswith("tick")]


@pytest.mark.integration
def test_submit_tail_logs_and_success(launcher: RayJobLauncher, ray_scripts: dict[str, Path]):
    spec = RayJobSpec(
        entrypoint=cmd(ray_scripts["ticker"], "--n", "5", "--interval", "0.1"),
        submission_id=unique_id("ok"),
        metadata={"verl": "0.9.1", "seed": "1"},
        runtime_env={"env_vars": {"GENBENCH_SEED": "1"}},
    )
    job_id = launcher.submit_or_attach(spec)
    assert job_id == spec.submission_id
    streamed: list[str] = []

    async def sink(line: str) -> None:
        streamed.append(line)

    asyncio.run(asyncio.wait_for(launcher.tail(job_id, sink), timeout=120))
    assert _ticks(streamed) == [f"tick {i}" for i in range(5)]
    assert streamed[-1] == "last line without newline"  # the line tail_job_logs may drop
    assert launcher.status(job_id) == "SUCCEEDED"

    polled: list[str] = []
    outcome = launcher.wait(job_id, timeout_s=30, poll_s=0.5, on_log=polled.append)
    assert outcome.succeeded and not outcome.timed_out
    assert _ticks(polled) == _ticks(streamed) and polled[-1] == "last line without newline"
    assert "tick 4" in launcher.logs(job_id)
    info = launcher.info(job_id)
    assert info.metadata["seed"] == "1" and info.metadata["genbench_attempt"] == "0"


@pytest.mark.integration
def test_attach_cancel_resubmit_and_timeout(
    launcher: RayJobLauncher, ray_head: LocalRayHead, ray_scripts: dict[str, Path]
):
    """Deterministic id: a second submit attaches; Ctrl-C in wait() stops the job; a STOPPED job is
    resubmitted as -try1; wait() past its timeout stops that one."""
    spec = RayJobSpec(entrypoint=cmd(ray_scripts["ticker"], "--n", "900"), submission_id=unique_id("attach"))
    first = launcher.submit_or_attach_detailed(spec)
    assert first == (spec.submission_id, "submitted")
    _wait_status(launcher, spec.submission_id, {"RUNNING"})
    assert launcher.submit_or_attach_detailed(spec) == (spec.submission_id, "attached")
    # A second client (e.g. a retried Airflow task on another worker) sees the same single job.
    assert ray_head.launcher().submit_or_attach(spec) == spec.submission_id
    assert list(launcher.attempts(spec.submission_id)) == [0]

    def on_log(line: str) -> None:
        if line == "tick 1":
            raise KeyboardInterrupt  # what Ctrl-C during a CLI `wait` looks like

    with pytest.raises(KeyboardInterrupt):
        launcher.wait(spec.submission_id, timeout_s=120, poll_s=0.3, on_log=on_log)
    _wait_status(launcher, spec.submission_id, {"STOPPED"})

    retry, action = launcher.submit_or_attach_detailed(spec)
    assert (retry, action) == (f"{spec.submission_id}-try1", "resubmitted")
    _wait_log(launcher, retry, "tick 0")
    outcome = launcher.wait(retry, timeout_s=0.5, poll_s=0.3, on_log=None)
    assert outcome.timed_out and outcome.status == "STOPPED"
    assert list(launcher.attempts(spec.submission_id)) == [0, 1]


@pytest.mark.integration
def test_failed_job_resubmitted_as_try1_and_resumes(
    launcher: RayJobLauncher, ray_scripts: dict[str, Path], tmp_path: Path
):
    out = tmp_path / "run"
    spec = RayJobSpec(
        entrypoint=cmd(ray_scripts["trainer"], "--out", str(out), "--steps", "4", "--fail-at", "3"),
        submission_id=unique_id("resume"),
    )
    first = launcher.submit_or_attach(spec)
    o1 = launcher.wait(first, timeout_s=90, poll_s=0.5, on_log=None)
    assert o1.status == "FAILED" and "crash at step 3" in "\n".join(o1.log_tail)
    assert sorted(p.name for p in (out / "state").iterdir()) == ["step_1", "step_2"]

    second, action = launcher.submit_or_attach_detailed(spec)
    assert (second, action) == (f"{spec.submission_id}-try1", "resubmitted")
    o2 = launcher.wait(second, timeout_s=90, poll_s=0.5, on_log=None)
    assert o2.succeeded, o2.log_tail
    assert "resuming from step 2" in o2.log_tail
    assert json.loads((out / "done.json").read_text()) == {"start": 2, "resumed": True}
    info = launcher.info(second)
    assert info.entrypoint.endswith(" --resume")
    assert info.metadata["genbench_resumed_from"] == spec.submission_id
    assert info.metadata["genbench_attempt"] == "1"
    # Done now: a further call reports the successful attempt and submits nothing.
    assert launcher.submit_or_attach_detailed(spec) == (second, "succeeded")
    assert list(launcher.attempts(spec.submission_id)) == [0, 1]


@pytest.mark.integration
def test_deleted_job_and_submission_races(launcher: RayJobLauncher, ray_scripts: dict[str, Path]):
    spec = RayJobSpec(
        entrypoint=cmd(ray_scripts["ticker"], "--n", "1", "--exit", "1"), submission_id=unique_id("del")
    )
    job_id = launcher.submit_or_attach(spec)
    _wait_status(launcher, job_id, {"FAILED"})
    # A racing submitter finds the id taken by a dead job: it moves on to the next free id.
    raced = launcher._submit(spec, 0, previous=None)
    assert raced == f"{spec.submission_id}-try1"
    _wait_status(launcher, raced, {"FAILED"})
    # Ray 2.60 lets a deleted id be reused: the cluster then has no memory of the earlier attempts, so the
    # orchestrator says `resume=True` (it knows this is a retry) and the trainer resumes from its checkpoint.
    for jid in (job_id, raced):
        launcher.client.delete_job(jid)
    assert launcher.attempts(spec.submission_id) == {}
    again = launcher.submit_or_attach(spec.model_copy(update={"resume": True}))
    assert again == spec.submission_id
    assert launcher.info(again).entrypoint.endswith(" --resume")
    _wait_status(launcher, again, {"FAILED"})


@pytest.mark.integration
def test_duplicate_verl_env_var_rejected_before_submission(launcher: RayJobLauncher):
    sid = unique_id("dupenv")
    with pytest.raises(ValueError, match="VERL_FULL_DETERMINISM"):
        launcher.submit_or_attach(
            RayJobSpec(
                entrypoint="true", submission_id=sid, runtime_env={"env_vars": {"VERL_FULL_DETERMINISM": "1"}}
            )
        )
    assert launcher.attempts(sid) == {}


@pytest.mark.integration
@pytest.mark.slow
def test_cached_install_pins_older_verl_without_touching_base(
    ray_head: LocalRayHead, ray_scripts: dict[str, Path], tmp_path: Path
):
    """verl 0.8.0 in a Ray job from its cached ``--target`` install (what the nightly puts first on a cell's
    PYTHONPATH) while the base env keeps its verl and numpy 2 (0.8.0 pins numpy<2, not applied: --no-deps)."""
    base_verl = importlib.metadata.version("verl")
    assert base_verl != "0.8.0"
    install = ensure_verl_env("0.8.0")
    spec = RayJobSpec(
        entrypoint=f"{first_on_python_path(install)} && {cmd(ray_scripts['verl_probe'])}",
        submission_id=unique_id("genbench-train-local-cpu-verl0_8_0-s0"),
        entrypoint_num_cpus=1,
    )
    launcher = RayJobLauncher(ray_head.address, token=ray_head.token)
    lines: list[str] = []
    job_id = launcher.submit_or_attach(spec)
    result = launcher.wait(job_id, timeout_s=600, poll_s=2, on_log=lines.append)
    assert result.status == "SUCCEEDED", result.message
    probe = dict(ln.split(" ", 1) for ln in lines if " " in ln and ln.split(" ", 1)[0].isupper())
    assert probe["VERL_DIST"] == "0.8.0", lines
    assert probe["VERL_PKG"] == "0.8.0"
    assert probe["VERL_PATH"].startswith(str(install)), probe["VERL_PATH"]
    assert probe["NUMPY"].startswith("2.")
    assert importlib.metadata.version("verl") == base_verl  # base env untouched
    # Same spec again: attaches to the finished job instead of running it twice.
    assert launcher.submit_or_attach(spec) == job_id
